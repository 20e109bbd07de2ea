#!/usr/bin/env bash
# quantize.sh - qforge-quantize, the program:
#  - byte identity with the llama-quantize oracle files (whole files) and the
#    peer (--method exact; the default searches K-quant presets, see
#    tests/cli/quantize_search.sh),
#  - the same bytes for 1 and 2 threads (default method),
#  - the mix rules against the peer llama-quantize on a 16-layer GQA model,
#  - every TYPE loads and scores in llama-perplexity (finite ppl),
#  - bad inputs: exit codes, messages, nothing left behind.
. "$(dirname "$0")/../lib.sh"
# OpenMP threads that spin while waiting make a 2-core machine shared with
# other jobs crawl (each parallel region waits for a descheduled spinner);
# sleeping waiters change nothing in the output, only the time.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
QF_TOOLS=${QF_TOOLS:-build/tools}
Q=$QF_BIN/qforge-quantize
O=$QF_DATA/oracles/llamacpp
PEER_DIR=$QF_DATA/peers/llama.cpp/bin
WIKI=$QF_DATA/corpus/wikitext-2-raw/wiki.test.raw
TYPES="Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K F16 BF16 F32"
ABS_TMP=$(cd "$TMP" && pwd)
ABS_Q=$(cd "$(dirname "$Q")" && pwd)/$(basename "$Q")

# --- byte identity with the oracle files ---------------------------------
for t in Q8_0 Q4_0 Q4_1 Q5_0 Q4_K_M; do
  need_data "oracle-stories260K-$t" oracles/llamacpp/stories260K-$t.gguf || continue
  if ! "$Q" -q --method exact "$O/stories260K-F32.gguf" "$TMP/s-$t.gguf" $t >/dev/null 2>"$TMP/err"; then
    fail "oracle-stories260K-$t" "$(cat "$TMP/err")"
  elif cmp -s "$TMP/s-$t.gguf" "$O/stories260K-$t.gguf"; then pass "oracle-stories260K-$t"
  else fail "oracle-stories260K-$t" "$(cmp "$TMP/s-$t.gguf" "$O/stories260K-$t.gguf" 2>&1 | head -n 1)"; fi
done
for t in Q2_K Q3_K_M Q4_K_M Q5_K_M Q6_K; do
  need_data "oracle-synth-tinyk-$t" oracles/llamacpp/synth-tinyk-$t.gguf || continue
  if ! "$Q" -q --method exact "$O/synth-tinyk-F16.gguf" "$TMP/k-$t.gguf" $t >/dev/null 2>"$TMP/err"; then
    fail "oracle-synth-tinyk-$t" "$(cat "$TMP/err")"
  elif cmp -s "$TMP/k-$t.gguf" "$O/synth-tinyk-$t.gguf"; then pass "oracle-synth-tinyk-$t"
  else fail "oracle-synth-tinyk-$t" "$(cmp "$TMP/k-$t.gguf" "$O/synth-tinyk-$t.gguf" 2>&1 | head -n 1)"; fi
done
# llama-quantize recorded the imatrix path as given on its command line
# ("stories260K-imatrix-wiki64x512.dat"), so run from the oracle directory.
for t in Q4_0 Q4_K_M; do
  need_data "oracle-stories260K-$t-imat" oracles/llamacpp/stories260K-$t-imat.gguf || continue
  if ! (cd "$O" && "$ABS_Q" -q --method exact --imatrix stories260K-imatrix-wiki64x512.dat stories260K-F32.gguf \
        "$ABS_TMP/si-$t.gguf" $t >/dev/null 2>"$ABS_TMP/err"); then
    fail "oracle-stories260K-$t-imat" "$(cat "$TMP/err")"
  elif cmp -s "$TMP/si-$t.gguf" "$O/stories260K-$t-imat.gguf"; then pass "oracle-stories260K-$t-imat"
  else fail "oracle-stories260K-$t-imat" "$(cmp "$TMP/si-$t.gguf" "$O/stories260K-$t-imat.gguf" 2>&1 | head -n 1)"; fi
done

# --- threads ---------------------------------------------------------------
if need_data threads oracles/llamacpp/synth-tinyk-F16.gguf; then
  ok=1
  for t in Q4_K_M Q3_K_S Q5_1; do
    OMP_NUM_THREADS=1 "$Q" -q "$O/synth-tinyk-F16.gguf" "$TMP/t1.gguf" $t >/dev/null 2>&1 || ok=0
    OMP_NUM_THREADS=2 "$Q" -q "$O/synth-tinyk-F16.gguf" "$TMP/t2.gguf" $t >/dev/null 2>&1 || ok=0
    "$Q" -q --threads 3 "$O/synth-tinyk-F16.gguf" "$TMP/t3.gguf" $t >/dev/null 2>&1 || ok=0
    cmp -s "$TMP/t1.gguf" "$TMP/t2.gguf" && cmp -s "$TMP/t1.gguf" "$TMP/t3.gguf" || { ok=0; break; }
  done
  if [ $ok = 1 ]; then pass threads; else fail threads "OMP_NUM_THREADS=1/2 or --threads 3 give different bytes ($t)"; fi
fi

# --- mix rules against the peer llama-quantize ----------------------------
# 16 layers (use_more_bits, n/8, n/16 all pick layers), GQA 4, untied output,
# every row 256 long; with and without an imatrix. IQ4_NL: attn_v Q5_K (GQA 4),
# ffn_down Q5_K in the first n/8 layers only without an imatrix.
if need_data peer-mix oracles/llamacpp/synth-tinyk-F16.gguf; then
  if [ ! -x "$PEER_DIR/llama-quantize" ]; then
    skip peer-mix "peer binary $PEER_DIR/llama-quantize not found"
  elif ! "$QF_TOOLS/quant_mix_model" "$O/synth-tinyk-F16.gguf" "$TMP/mix.gguf" "$TMP/mix.dat" 16 1 2>"$TMP/err"; then
    fail peer-mix "quant_mix_model: $(cat "$TMP/err")"
  else
    for run in Q2_K: Q3_K_M: Q4_K_S: Q4_K_M: Q5_K_M: Q4_K_M:imat Q4_0:imat Q5_0:imat Q3_K_L:imat IQ4_NL: IQ4_NL:imat; do
      t=${run%%:*}; mode=${run#*:}; args=()
      [ "$mode" = imat ] && args=(--imatrix "$TMP/mix.dat")
      name="peer-mix-$t${mode:+-$mode}"
      if ! "$PEER_DIR/llama-quantize" "${args[@]}" "$TMP/mix.gguf" "$TMP/peer.gguf" $t 1 >"$TMP/peer.log" 2>&1; then
        fail "$name" "llama-quantize failed: $(tail -n 1 "$TMP/peer.log")"
      elif ! "$Q" -q --method exact "${args[@]}" "$TMP/mix.gguf" "$TMP/ours.gguf" $t >/dev/null 2>"$TMP/err"; then
        fail "$name" "$(cat "$TMP/err")"
      elif cmp -s "$TMP/peer.gguf" "$TMP/ours.gguf"; then pass "$name"
      else fail "$name" "$(cmp "$TMP/peer.gguf" "$TMP/ours.gguf" 2>&1 | head -n 1)"; fi
    done
  fi
fi

# --- checkpoint directories of every architecture fixture read directly (generated
# rope/longrope tensors, Gemma's 1 + w norms, stacked Mixtral experts, permuted Q/K):
# the bytes of convert --outtype auto then quantize ---
A=oracles/llamacpp/archs
if need_data archs-dir-input $A/mixtral/hf/config.json; then
  bad=
  for a in gemma gemma2 granite mixtral phi3 phi3-longrope; do
    h=$QF_DATA/$A/$a/hf
    [ -d "$h" ] || continue
    "$QF_BIN/qforge-convert" --outtype auto "$h" -o "$TMP/arch.gguf" >/dev/null 2>&1 || { bad="$bad $a(convert)"; continue; }
    "$Q" -q "$TMP/arch.gguf" "$TMP/arch-a.gguf" Q4_K_M >/dev/null 2>&1
    "$Q" -q "$h" "$TMP/arch-b.gguf" Q4_K_M >/dev/null 2>&1 && cmp -s "$TMP/arch-a.gguf" "$TMP/arch-b.gguf" || bad="$bad $a"
  done
  rm -f "$TMP"/arch*.gguf
  if [ -z "$bad" ]; then pass archs-dir-input; else fail archs-dir-input "directory read differs:$bad"; fi
fi

# --- a Hugging Face checkpoint: tinystories-distill-3M (BF16, rows of 256/768) --
TS=models/tinystories-distill-3M
if need_data hf-dir-input $TS/config.json; then
  if ! "$QF_BIN/qforge-convert" --outtype auto "$QF_DATA/$TS" -o "$TMP/ts.gguf" >/dev/null 2>"$TMP/err"; then
    fail hf-dir-input "qforge-convert: $(cat "$TMP/err")"
  else
    # a directory as IN is read as the GGUF convert --outtype auto writes: same bytes as convert + quantize
    "$Q" -q "$TMP/ts.gguf" "$TMP/ts-a.gguf" Q4_K_M >/dev/null 2>&1
    if "$Q" -q "$QF_DATA/$TS" "$TMP/ts-b.gguf" Q4_K_M >/dev/null 2>"$TMP/err" && cmp -s "$TMP/ts-a.gguf" "$TMP/ts-b.gguf" &&
       [ -z "$(ls "$TMP" | grep '\.tmp\.')" ]; then pass hf-dir-input
    else fail hf-dir-input "directory input differs from convert + quantize, or temp files left: $(cat "$TMP/err")"; fi
    # BF16 input against the peer
    if [ -x "$PEER_DIR/llama-quantize" ]; then
      for t in Q4_K_M Q5_1; do
        "$PEER_DIR/llama-quantize" "$TMP/ts.gguf" "$TMP/peer.gguf" $t 1 >/dev/null 2>&1
        "$Q" -q --method exact "$TMP/ts.gguf" "$TMP/ours.gguf" $t >/dev/null 2>&1
        if cmp -s "$TMP/peer.gguf" "$TMP/ours.gguf"; then pass "peer-bf16-$t"; else fail "peer-bf16-$t" "differs from llama-quantize"; fi
      done
    else
      skip peer-bf16 "peer binary $PEER_DIR/llama-quantize not found"
    fi
  fi
fi

# --- every TYPE loads and scores in llama-perplexity -----------------------
# (flags per shared/peers/llama.cpp/PROVENANCE.md: -t 1 -b <ctx>, F32 KV cache)
[ -f "$TMP/ts.gguf" ] && ln -s "$TMP/ts.gguf" "$TMP/tinystories-distill-3M.gguf"
for model in stories260K-F32 synth-tinyk-F16 tinystories-distill-3M; do
  if [ $model = tinystories-distill-3M ]; then
    need_data "ppl-$model" $TS/config.json || continue
    src=$TMP/$model.gguf
    [ -f "$src" ] || { fail "ppl-$model" "conversion failed"; continue; }
  else
    need_data "ppl-$model" oracles/llamacpp/$model.gguf || continue
    src=$O/$model.gguf
  fi
  if [ ! -x "$PEER_DIR/llama-perplexity" ] || [ ! -f "$WIKI" ]; then
    skip "ppl-$model" "llama-perplexity or $WIKI not found"; continue
  fi
  bad=
  for t in $TYPES; do
    if ! "$Q" -q "$src" "$TMP/p.gguf" $t >/dev/null 2>"$TMP/err"; then bad="$bad $t(quantize: $(cat "$TMP/err"))"; continue; fi
    ppl=$("$PEER_DIR/llama-perplexity" -m "$TMP/p.gguf" -f "$WIKI" -c 128 --chunks 2 -t 1 -b 128 -ctk f32 -ctv f32 2>&1 |
          sed -n 's/.*Final estimate: PPL = \([0-9.eE+-]*\).*/\1/p')
    # finite and sane: a 512-token vocabulary bounds a working model's ppl well below 1e4
    if ! awk -v p="$ppl" 'BEGIN { exit !(p != "" && p + 0 > 1 && p + 0 < 10000) }'; then bad="$bad $t(ppl '$ppl')"; fi
  done
  if [ -z "$bad" ]; then pass "ppl-$model"; else fail "ppl-$model" "$bad"; fi
done

# --- summary, --json, --manifest, --dry-run, --help --------------------------
if need_data outputs oracles/llamacpp/stories260K-F32.gguf; then
  out=$("$Q" -q "$O/stories260K-F32.gguf" "$TMP/sum.gguf" Q4_K_M 2>/dev/null)
  if printf '%s' "$out" | grep -q 'output:    281792 bytes' && printf '%s' "$out" | grep -q 'fallbacks: 35' &&
     printf '%s' "$out" | grep -q 'f32 11 f16 5 q5_0 28 q8_0 3'; then pass summary
  else fail summary "unexpected summary: $out"; fi
  n=$("$Q" "$O/stories260K-F32.gguf" "$TMP/sum.gguf" Q4_K_M 2>&1 >/dev/null | grep -c '^qforge-quantize: fallback: ')
  if [ "$n" = 35 ]; then pass fallback-lines; else fail fallback-lines "$n fallback lines on stderr, want 35"; fi
  n=$("$Q" --quiet "$O/stories260K-F32.gguf" "$TMP/sum.gguf" Q4_K_M 2>&1 >/dev/null | wc -c)
  if [ "$n" = 0 ]; then pass quiet; else fail quiet "--quiet printed $n bytes on stderr"; fi
  "$Q" -q --json "$O/stories260K-F32.gguf" "$TMP/sum.gguf" Q4_K_M >"$TMP/sum.json" 2>/dev/null
  if command -v python3 >/dev/null 2>&1; then
    if python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["n_fallbacks"]==35==len(d["fallbacks"]); assert d["output_bytes"]==281792; assert d["types"]["q5_0"]==28; assert len(d["tensors"])==47' "$TMP/sum.json" 2>"$TMP/err"
    then pass json; else fail json "$(tail -n 1 "$TMP/err")"; fi
  else
    if grep -q '"n_fallbacks": 35' "$TMP/sum.json"; then pass json; else fail json "no n_fallbacks 35"; fi
  fi
  if "$Q" -q --manifest "$O/stories260K-F32.gguf" "$TMP/man.gguf" Q8_0 >/dev/null 2>&1 &&
     [ "$(grep -c '^tensor [0-9a-f]\{32\} ' "$TMP/man.gguf.xxh")" = 47 ] &&
     grep -q '^file [0-9a-f]\{32\} man.gguf$' "$TMP/man.gguf.xxh"; then pass manifest
  else fail manifest "OUT.gguf.xxh missing or incomplete"; fi
  # --fsync changes durability, not bytes
  if "$Q" -q --fsync "$O/stories260K-F32.gguf" "$TMP/fs.gguf" Q8_0 >/dev/null 2>&1 &&
     "$Q" -q "$O/stories260K-F32.gguf" "$TMP/nofs.gguf" Q8_0 >/dev/null 2>&1 &&
     cmp -s "$TMP/fs.gguf" "$TMP/nofs.gguf"; then pass fsync_same_bytes
  else fail fsync_same_bytes "--fsync failed or changed the output"; fi
  rm -f "$TMP/dry.gguf"
  if "$Q" -q --dry-run "$O/stories260K-F32.gguf" "$TMP/dry.gguf" Q4_K_M | grep -q '^blk.2.attn_v.weight .* q8_0 .*fallback from q6_K' &&
     [ ! -e "$TMP/dry.gguf" ]; then pass dry-run
  else fail dry-run "plan line missing or a file was written"; fi
  h=$("$Q" --help)
  if [ $? = 0 ] && printf '%s' "$h" | grep -q 'qforge-convert' && printf '%s' "$h" | grep -q 'peak RSS' &&
     printf '%s' "$h" | grep -q 'Q4_K_M'; then pass help; else fail help "--help incomplete"; fi
fi

# --- bad inputs ----------------------------------------------------------------
if need_data bad-inputs oracles/llamacpp/stories260K-F32.gguf; then
  IN=$O/stories260K-F32.gguf
  expect_exit unknown-type 2 'unknown type .Q4_K_X.*valid types: .*Q4_K_M' -- "$Q" "$IN" "$TMP/x.gguf" Q4_K_X
  expect_exit unknown-option 2 "unknown option '--frobnicate'" -- "$Q" --frobnicate "$IN" "$TMP/x.gguf" Q8_0
  expect_exit missing-args 2 'expected IN.gguf OUT.gguf TYPE' -- "$Q" "$IN"
  expect_exit bad-tensor-type 2 "unknown tensor type 'q9_0'" -- "$Q" --tensor-type 'attn=q9_0' "$IN" "$TMP/x.gguf" Q8_0
  expect_exit bad-regex 1 "not a valid regex" -- "$Q" --tensor-type 'attn_(=q8_0' "$IN" "$TMP/x.gguf" Q8_0
  "$Q" -q "$IN" "$TMP/q8.gguf" Q8_0 >/dev/null 2>&1
  expect_exit requantize 1 'already quantized \(q8_0\).*--allow-requantize' -- "$Q" "$TMP/q8.gguf" "$TMP/x.gguf" Q4_0
  if "$Q" -q --allow-requantize "$TMP/q8.gguf" "$TMP/x.gguf" Q4_0 >/dev/null 2>&1; then pass allow-requantize
  else fail allow-requantize "--allow-requantize did not work"; fi
  # an imatrix for another model: entries renamed (built with formats/imatrix.h)
  if [ -x "$QF_TOOLS/quant_mix_model" ] && "$QF_TOOLS/quant_mix_model" "$IN" "$TMP/other.gguf" "$TMP/other.dat" 2 2>/dev/null; then
    expect_exit imatrix-other-model 1 'blk.0.attn_k.weight.* has 256 values but the tensor needs 64' -- \
      "$Q" --imatrix "$TMP/other.dat" "$IN" "$TMP/x.gguf" Q4_0
  else
    fail imatrix-other-model "cannot build the imatrix"
  fi
  expect_exit imatrix-missing 1 'nonexistent.dat' -- "$Q" --imatrix "$TMP/nonexistent.dat" "$IN" "$TMP/x.gguf" Q4_0
  expect_exit unwritable 1 '/nonexistent-dir/' -- "$Q" "$IN" /nonexistent-dir/out.gguf Q8_0
  cp "$IN" "$TMP/in.gguf"
  expect_exit same-path 1 'output is the input' -- "$Q" "$TMP/in.gguf" "$TMP/in.gguf" Q8_0
  expect_exit same-file-other-path 1 'output is the input' -- "$Q" "$TMP/in.gguf" "$TMP/./in.gguf" Q8_0
  if cmp -s "$IN" "$TMP/in.gguf"; then pass input-untouched; else fail input-untouched "input changed"; fi
  printf 'keep me' >"$TMP/existing.gguf"
  expect_exit failure-keeps-output 1 'another model|has 256 values' -- \
    "$Q" --imatrix "$TMP/other.dat" "$IN" "$TMP/existing.gguf" Q4_0
  if [ "$(cat "$TMP/existing.gguf")" = 'keep me' ] && [ -z "$(ls "$TMP" | grep '\.tmp\.')" ]; then pass nothing-left-behind
  else fail nothing-left-behind "existing output changed or temp files left: $(ls "$TMP" | grep '\.tmp\.')"; fi
  mkdir -p "$TMP/not-a-checkpoint"
  expect_exit directory-input 1 'config.json' -- "$Q" "$TMP/not-a-checkpoint" "$TMP/x.gguf" Q8_0
fi
finish
