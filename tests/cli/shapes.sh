#!/usr/bin/env bash
# tests/cli/shapes.sh - GGUF hyperparameters that lie about the model's size
# (block_count 2^31 or 4e9, head_count 2^31, key_length 2^40, a huge
# embedding_length or context_length, head_count_kv 0 or not dividing
# head_count). verify, calibrate and quantize must check them against the
# file's tensors before sizing anything: exit 1 and one error line naming the
# file and the key, no crash, no output, and no huge allocation (each run is
# under `ulimit -v 4000000`, so an attempted multi-GB allocation fails loudly).
. tests/lib.sh
# The address-space cap makes an attempted huge allocation fail loudly; ASan
# reserves terabytes of shadow memory at start, so under ASan the cap is off.
vlimit() { [ -n "${QF_ASAN:-}" ] || ulimit -v 4000000; }
B=$QF_BIN
T=${QF_TOOLS:-build/tools}
WIKI=corpus/wikitext-2-raw/wiki.test.raw
for p in qforge-verify qforge-quantize qforge-calibrate; do
  [ -x "$B/$p" ] || { fail setup "$B/$p not built"; finish; exit; }
done
[ -x "$T/gguf_edit" ] || { fail setup "$T/gguf_edit not built"; finish; exit; }
need_data all "oracles/llamacpp/stories260K-F32.gguf" && need_data all "$WIKI" || { finish; exit; }
F32=$QF_DATA/oracles/llamacpp/stories260K-F32.gguf
TEXT=$TMP/wiki.txt
head -c 20000 "$QF_DATA/$WIKI" >"$TEXT"

# edit NAME KEY TYPE VALUE: $TMP/NAME.gguf = the F32 model with one key replaced
edit() { "$T/gguf_edit" "$F32" "$TMP/$1.gguf" --set "$2" "$3" "$4" >/dev/null || fail "setup-$1" "gguf_edit failed"; }
# bounded NAME CODE REGEX -- cmd: exit CODE, exactly one stderr line matching
# REGEX, under a 4 GB address-space limit and a time limit, no output written
bounded() {
  local name=$1 code=$2 re=$3; shift 4
  local out rc
  rm -f "$TMP/out.gguf"
  out=$( (vlimit; timeout -s KILL 60 "$@") 2>&1 >/dev/null); rc=$?
  if [ "$rc" -ne "$code" ]; then fail "$name" "exit $rc, want $code; stderr: $out"; return; fi
  if [ "$(printf '%s\n' "$out" | wc -l)" -ne 1 ]; then fail "$name" "want one stderr line, got: $out"; return; fi
  if ! printf '%s' "$out" | grep -Eq -- "$re"; then fail "$name" "stderr '$out' does not match /$re/"; return; fi
  if [ -e "$TMP/out.gguf" ]; then fail "$name" "an output was written"; return; fi
  pass "$name"
}
# each NAME REGEX [TOOLS]: the fixture through verify, calibrate and quantize (or TOOLS)
each() {
  local name=$1 re=$2 tools=${3:-"verify calibrate quantize"}
  for tool in $tools; do
    case $tool in
    verify) bounded "$name-verify" 1 "$re" -- "$B/qforge-verify" "$TMP/$name.gguf" -f "$TEXT" -c 64 --chunks 1 -t 1 ;;
    calibrate) bounded "$name-calibrate" 1 "$re" -- "$B/qforge-calibrate" "$TMP/$name.gguf" -f "$TEXT" -c 64 --chunks 1 \
                 -t 1 -o "$TMP/out.gguf" ;;
    quantize) bounded "$name-quantize" 1 "$re" -- "$B/qforge-quantize" "$TMP/$name.gguf" "$TMP/out.gguf" Q4_K_M ;;
    esac
  done
}

# the unedited model passes the same runs (the checks refuse only lies)
edit ok llama.block_count u32 5
for tool in verify calibrate quantize; do
  case $tool in
  verify) cmd=("$B/qforge-verify" "$TMP/ok.gguf" -f "$TEXT" -c 64 --chunks 1 -t 1) ;;
  calibrate) cmd=("$B/qforge-calibrate" "$TMP/ok.gguf" -f "$TEXT" -c 64 --chunks 1 -t 1 -o "$TMP/ok-im.gguf") ;;
  quantize) cmd=("$B/qforge-quantize" "$TMP/ok.gguf" "$TMP/ok-q.gguf" Q4_K_M) ;;
  esac
  (vlimit; "${cmd[@]}" >/dev/null 2>&1) && pass "honest-$tool" || fail "honest-$tool" "the unedited model is refused"
done

edit bc31 llama.block_count u32 2147483648
each bc31 "bc31.gguf: key 'llama.block_count' is 2147483648 but the file has tensors for 5 blocks"
edit bc4e9 llama.block_count u64 4000000000
each bc4e9 "bc4e9.gguf: key 'llama.block_count' is 4000000000 but the file has tensors for 5 blocks"
edit bc6 llama.block_count u32 6
each bc6 "bc6.gguf: key 'llama.block_count' is 6 but the file has tensors for 5 blocks"
edit bc4 llama.block_count u32 4
each bc4 "bc4.gguf: key 'llama.block_count' is 4 but the file has tensors for 5 blocks"
edit hc31 llama.attention.head_count u32 2147483648
each hc31 "hc31.gguf: key 'llama.attention.head_count' (gives query rows 17179869184 but tensor 'blk.0.attn_q.weight' has 64|is 2147483648)"
edit hc16 llama.attention.head_count u32 16
each hc16 "hc16.gguf: key 'llama.attention.head_count' gives query rows 128 but tensor 'blk.0.attn_q.weight' has 64" "verify calibrate"
# quantize copies these keys without sizing anything from them
edit kl40 llama.attention.key_length u64 1099511627776
each kl40 "kl40.gguf: key 'llama.attention.head_count' \(8\) times key 'llama.attention.key_length' \(1099511627776\) overflows" "verify calibrate"
edit kl16 llama.attention.key_length u32 16
each kl16 "kl16.gguf: key 'llama.attention.head_count' gives query rows 128" "verify calibrate"
edit vl40 llama.attention.value_length u64 1099511627776
each vl40 "vl40.gguf: key 'llama.attention.head_count' \(8\) times key 'llama.attention.value_length' \(1099511627776\) overflows" "verify calibrate"
edit emb llama.embedding_length u64 1099511627776
each emb "emb.gguf: key 'llama.embedding_length' gives a width of 1099511627776 but tensor 'token_embd.weight' has 64" "verify calibrate"
edit ff llama.feed_forward_length u64 1099511627776
each ff "ff.gguf: key 'llama.feed_forward_length' gives feed-forward rows 1099511627776 but tensor 'blk.0.ffn_up.weight' has 172" "verify calibrate"
edit hkv0 llama.attention.head_count_kv u32 0
each hkv0 "hkv0.gguf: key 'llama.attention.head_count_kv' (is 0, not a positive count|\(0\) does not divide head_count 8)"
edit hkv3 llama.attention.head_count_kv u32 3
each hkv3 "hkv3.gguf: key 'llama.attention.head_count_kv' \(3\) does not divide head_count 8"
edit hkv8 llama.attention.head_count_kv u32 8
each hkv8 "hkv8.gguf: key 'llama.attention.head_count_kv' gives key rows 64 but tensor 'blk.0.attn_k.weight' has 32" "verify calibrate"

# context_length 2^40 with -c beyond it: refused before the KV cache is sized
# (the engine's own bound, "KV cache for ctx N would need X", is in engine_test)
edit ctx llama.context_length u64 1099511627776
out=$( (vlimit; timeout -s KILL 60 "$B/qforge-verify" "$TMP/ctx.gguf" -f "$TEXT" -c 1099511627777 --chunks 1 \
        --allow-long-ctx -q) 2>&1 >/dev/null); rc=$?
[ "$rc" -eq 1 ] && printf '%s' "$out" | grep -q "wiki.txt: need at least 2199023255554 tokens for a context of 1099511627777" &&
  pass ctx-verify || fail ctx-verify "exit $rc: $out"
bounded ctx-calibrate 1 "wiki.txt: 12329 tokens, fewer than one chunk of 1099511627777" -- \
  "$B/qforge-calibrate" "$TMP/ctx.gguf" -f "$TEXT" -c 1099511627777 --chunks 1 -t 1 --allow-long-ctx --quiet -o "$TMP/out.gguf"

# the same lies in an HF checkpoint's config.json, through verify, calibrate and convert
if need_data hf models/stories260K/config.json; then
  # hf NAME KEY VALUE REGEX: the checkpoint with config.json's KEY set to VALUE
  hf() {
    local d=$TMP/hf-$1
    cp -r "$QF_DATA/models/stories260K" "$d"
    sed -i "s/\"$2\": [0-9]*/\"$2\": $3/" "$d/config.json"
    grep -q "\"$2\": $3" "$d/config.json" || { fail "setup-hf-$1" "config.json edit failed"; return; }
    bounded "hf-$1-verify" 1 "$4" -- "$B/qforge-verify" "$d" -f "$TEXT" -c 64 --chunks 1 -t 1
    bounded "hf-$1-calibrate" 1 "$4" -- "$B/qforge-calibrate" "$d" -f "$TEXT" -c 64 --chunks 1 -t 1 -o "$TMP/out.gguf"
    bounded "hf-$1-convert" 1 "${5:-$4}" -- "$B/qforge-convert" "$d" -o "$TMP/out.gguf"
    rm -rf "$d"
  }
  hf l4e9 num_hidden_layers 4000000000 "config.json: num_hidden_layers 4000000000 is too large for any model"
  hf l31 num_hidden_layers 2147483648 "config.json: num_hidden_layers 2147483648 is too large for any model"
  hf l6 num_hidden_layers 6 "hf-l6: config.json num_hidden_layers is 6 but the file has tensors for 5 blocks" \
    "hf-l6: missing tensor 'model.layers.5.input_layernorm.weight'"
  hf h31 num_attention_heads 2147483648 "(num_attention_heads gives query rows 17179869184|num_attention_heads\*head_dim)"
  hf hd40 head_dim 1099511627776 "config.json: head_dim 1099511627776 is too large for any model"
  hf e40 hidden_size 1099511627776 "hidden_size"
  hf kv0 num_key_value_heads 0 "config.json: num_key_value_heads 0 must be positive"
  hf kv3 num_key_value_heads 3 "num_key_value_heads"
fi
finish
