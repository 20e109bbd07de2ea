#!/usr/bin/env bash
# tests/cli/convert_bad.sh - qforge-convert on broken inputs and failing
# outputs: one clear error line, exit 1, and nothing left in the output
# directory (no partial file, no temp file). Fixtures are copies of
# models/stories260K with one thing broken.
. tests/lib.sh
CONV=$QF_BIN/qforge-convert
ST_EDIT=${QF_TOOLS:-build/tools}/st_edit
M=$QF_DATA/models/stories260K

if [ ! -x "$CONV" ]; then fail build "$CONV not built"; finish; exit; fi
if ! need_data fixtures models/stories260K; then finish; exit; fi

# fixture NAME: a fresh copy of stories260K in $TMP/NAME
fixture() {
  local d=$TMP/$1
  rm -rf "$d"; mkdir -p "$d"
  cp "$M"/config.json "$M"/generation_config.json "$M"/special_tokens_map.json "$M"/tokenizer.json \
     "$M"/tokenizer.model "$M"/tokenizer_config.json "$M"/model.safetensors "$d"/
  echo "$d"
}

# bad NAME REGEX DIR [args...]: exit 1, stderr "qforge-convert: error: ..." on
# one line matching REGEX, and the output directory left empty.
bad() {
  local name=$1 re=$2 dir=$3; shift 3
  local outdir=$TMP/out-$name
  rm -rf "$outdir"; mkdir -p "$outdir"
  local err rc
  err=$("$CONV" "$dir" -o "$outdir/x.gguf" --outtype f32 "$@" 2>&1 >/dev/null); rc=$?
  if [ $rc -ne 1 ]; then fail "$name" "exit $rc, want 1; stderr: $err"; return; fi
  if [ "$(printf '%s\n' "$err" | wc -l)" -ne 1 ] || ! printf '%s' "$err" | grep -q "^qforge-convert: error: "; then
    fail "$name" "not one 'qforge-convert: error:' line: $err"; return; fi
  if ! printf '%s' "$err" | grep -Eq -- "$re"; then fail "$name" "stderr '$err' does not match /$re/"; return; fi
  if [ -n "$(ls -A "$outdir")" ]; then fail "$name" "left behind: $(ls -A "$outdir" | tr '\n' ' ')"; return; fi
  pass "$name"
}

d=$(fixture missing_config); rm "$d/config.json"
bad missing_config "missing_config/config.json: not found" "$d"

d=$(fixture corrupt_config); printf '{"architectures": ["LlamaForCausalLM"], ' >"$d/config.json"
bad corrupt_config "config.json" "$d"

d=$(fixture unknown_arch); sed -i 's/LlamaForCausalLM/GPT2LMHeadModel/' "$d/config.json"
bad unknown_arch "config.json: architecture 'GPT2LMHeadModel' is not supported \(supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, .*Phi3ForCausalLM.*MixtralForCausalLM" "$d"

d=$(fixture shape_mismatch); sed -i 's/"intermediate_size": 172/"intermediate_size": 176/' "$d/config.json"
bad shape_mismatch "tensor 'model.layers.0.mlp.down_proj.weight' has shape \[64, 172\] but config.json implies \[64, 176\] \(hidden_size, intermediate_size\)" "$d"

d=$(fixture head_mismatch); sed -i 's/"num_key_value_heads": 4/"num_key_value_heads": 2/' "$d/config.json"
bad kv_heads_mismatch "self_attn.k_proj.weight' has shape \[32, 64\] but config.json implies \[16, 64\]" "$d"

d=$(fixture layers_mismatch); sed -i 's/"num_hidden_layers": 5/"num_hidden_layers": 4/' "$d/config.json"
bad layers_mismatch "tensor 'model.layers.4\..*' is in block 4 but config.json has 4 layers" "$d"

d=$(fixture untied); sed -i 's/"tie_word_embeddings": true/"tie_word_embeddings": false/' "$d/config.json"
bad untied_without_lm_head "missing tensor 'lm_head.weight' \(config.json: tie_word_embeddings is false\)" "$d"

d=$(fixture vocab_mismatch); sed -i 's/"vocab_size": 512/"vocab_size": 500/' "$d/config.json"
bad vocab_mismatch "tokenizer.model: 512 pieces but config.json vocab_size is 500" "$d"

d=$(fixture no_tokenizer); rm "$d/tokenizer.model" "$d/tokenizer.json"
bad no_tokenizer "no tokenizer.model or tokenizer.json" "$d"

d=$(fixture corrupt_tokenizer_model); head -c 3001 "$M/tokenizer.model" >"$d/tokenizer.model"
bad truncated_tokenizer_model "tokenizer.model: (corrupt protobuf|piece)" "$d"

d=$(fixture lfs_tokenizer_model); printf "version https://git-lfs.github.com/spec/v1\noid sha256:0\n" >"$d/tokenizer.model"
bad lfs_pointer_tokenizer_model "tokenizer.model: is a git-lfs pointer" "$d"

d=$(fixture garbage_tokenizer_model); printf "\x0a\xff\xff\xff\xff\x0f" >"$d/tokenizer.model"
bad garbage_tokenizer_model "tokenizer.model: corrupt protobuf" "$d"

d=$(fixture corrupt_tokenizer_config); printf '{"add_bos_token": tru}' >"$d/tokenizer_config.json"
bad corrupt_tokenizer_config "tokenizer_config.json" "$d"

d=$(fixture corrupt_tokenizer_json); printf '[1, 2' >"$d/tokenizer.json"
bad corrupt_tokenizer_json "tokenizer.json" "$d"

d=$(fixture no_weights); rm "$d/model.safetensors"
bad no_weights "safetensors|no_weights" "$d"

d=$(fixture truncated_weights); head -c 500000 "$M/model.safetensors" >"$d/model.safetensors"
bad truncated_weights "model.safetensors" "$d"

if [ -x "$ST_EDIT" ]; then
  d=$(fixture missing_tensor)
  "$ST_EDIT" "$M/model.safetensors" "$d/model.safetensors" --drop model.layers.3.mlp.up_proj.weight
  bad missing_tensor "missing tensor 'model.layers.3.mlp.up_proj.weight'" "$d"

  d=$(fixture int_weight)
  "$ST_EDIT" "$M/model.safetensors" "$d/model.safetensors" --retype model.layers.0.mlp.up_proj.weight I32
  bad unsupported_dtype "tensor 'model.layers.0.mlp.up_proj.weight' has dtype I32 \(supported: F32, F16, BF16; F8_E4M3 with a quantization_config\)" "$d"
else
  skip missing_tensor "$ST_EDIT not built"
  skip unsupported_dtype "$ST_EDIT not built"
fi

# --- output side ---------------------------------------------------------------
err=$("$CONV" "$M" -o "$TMP/no/such/dir/x.gguf" 2>&1 >/dev/null); rc=$?
if [ $rc -eq 1 ] && printf '%s' "$err" | grep -q "^qforge-convert: error: .*no/such/dir"; then pass unwritable_dir
else fail unwritable_dir "exit $rc: $err"; fi

# a file size limit: write() fails with EFBIG (SIGXFSZ is ignored), no file left
mkdir -p "$TMP/out-ulimit"
err=$(ulimit -f 200; "$CONV" "$M" -o "$TMP/out-ulimit/x.gguf" --outtype f32 2>&1 >/dev/null); rc=$?
if [ $rc -eq 1 ] && printf '%s' "$err" | grep -qi "file too large" && [ -z "$(ls -A "$TMP/out-ulimit")" ]; then
  pass write_failure_efbig
else fail write_failure_efbig "exit $rc: $err; left: $(ls -A "$TMP/out-ulimit")"; fi

# a full disk: write() fails with ENOSPC (without and with --fsync), no file left.
# Needs a small tmpfs, so root; skipped otherwise.
mkdir -p "$TMP/out-full"
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=1M qf-convert-full "$TMP/out-full" 2>/dev/null; then
  for fs in "" --fsync; do
    err=$("$CONV" "$M" -o "$TMP/out-full/x.gguf" --outtype f32 $fs 2>&1 >/dev/null); rc=$?
    left=$(ls -A "$TMP/out-full")
    if [ $rc -eq 1 ] && [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] &&
       printf '%s' "$err" | grep -q "^qforge-convert: error: .*x.gguf: write failed: No space left on device" && [ -z "$left" ]; then
      pass "write_failure_enospc${fs:+_fsync}"
    else fail "write_failure_enospc${fs:+_fsync}" "exit $rc: $err; left: $left"; fi
  done
  umount "$TMP/out-full"
else
  skip write_failure_enospc "needs root to mount a 1 MiB tmpfs"
fi

# a later shard cannot be renamed into place: the finished first shard is removed
mkdir -p "$TMP/out-split/x-00002-of-00002.gguf/blocker"
err=$("$CONV" "$M" -o "$TMP/out-split/x.gguf" --outtype f32 --split-max-size 1M 2>&1 >/dev/null); rc=$?
left=$(ls -A "$TMP/out-split")
if [ $rc -eq 1 ] && [ "$left" = "x-00002-of-00002.gguf" ]; then pass split_failure_removes_shards
else fail split_failure_removes_shards "exit $rc: $err; left: $left"; fi

# the manifest cannot be written: the GGUF goes too
mkdir -p "$TMP/out-manifest/x.gguf.xxh"
err=$("$CONV" "$M" -o "$TMP/out-manifest/x.gguf" --outtype f32 --manifest 2>&1 >/dev/null); rc=$?
left=$(ls -A "$TMP/out-manifest")
if [ $rc -eq 1 ] && [ "$left" = "x.gguf.xxh" ]; then pass manifest_failure_removes_output
else fail manifest_failure_removes_output "exit $rc: $err; left: $left"; fi
finish
