#!/usr/bin/env bash
# tests/cli/hardening.sh - the tools against hostile or careless inputs: corrupt
# saved logits, FIFOs and devices, outputs onto inputs, wrong kinds of files,
# infinities, lying GGUF keys, terminal escapes in names, split keys, config
# values verify cannot run. Every case must end in one clear error line and
# exit 1 (never a crash, a hang or a clobbered input). Fixtures are made here
# from the shared models with the tools in tests/tools.
. tests/lib.sh
B=$QF_BIN
T=${QF_TOOLS:-build/tools}
O=$QF_DATA/oracles/llamacpp
WIKI=corpus/wikitext-2-raw/wiki.test.raw
for p in qforge-verify qforge-inspect qforge-quantize qforge-calibrate qforge-convert; do
  [ -x "$B/$p" ] || { fail setup "$B/$p not built"; finish; exit; }
done
need_data all "oracles/llamacpp/stories260K-F32.gguf" && need_data all "$WIKI" || { finish; exit; }
F32=$O/stories260K-F32.gguf
TEXT=$TMP/wiki.txt
head -c 20000 "$QF_DATA/$WIKI" >"$TEXT"
R="-c 64 --chunks 2 -t 1"
# run_to SECONDS NAME CODE REGEX -- cmd: expect_exit with a time limit (a hang fails)
run_to() {
  local s=$1; shift
  local name=$1 code=$2 re=$3; shift 4
  expect_exit "$name" "$code" "$re" -- timeout -s KILL "$s" "$@"
}
# u64_at FILE OFFSET: a little-endian uint64 from a file
u64_at() { od -An -t u8 -j "$2" -N 8 "$1" | tr -d ' '; }
# poke FILE OFFSET HEXBYTES: overwrite bytes in place ("\x00\x00\x00\x40")
poke() { printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }

# ------------------------------------------------ 1. saved logits, every field
"$B/qforge-verify" "$F32" -f "$TEXT" $R --save-logits "$TMP/top.qfl" --logits-top 8 -q >/dev/null &&
"$B/qforge-verify" "$F32" -f "$TEXT" $R --save-logits "$TMP/full.qfl" --logits-top 0 -q >/dev/null ||
  fail save-logits "qforge-verify --save-logits failed"
D=$(u64_at "$TMP/top.qfl" 72)   # data_offset
# the first row's first token id (after the 16-byte row header) out of range
cp "$TMP/top.qfl" "$TMP/bad-id.qfl"; poke "$TMP/bad-id.qfl" $((D + 16)) '\x00\x00\x00\x40'
expect_exit logits-topk-id-out-of-range 1 'bad-id.qfl: chunk 0 row 0: corrupt top-k row \(a token id\)' -- \
  "$B/qforge-verify" "$F32" -f "$TEXT" $R --base-logits "$TMP/bad-id.qfl"
cp "$TMP/top.qfl" "$TMP/neg-id.qfl"; poke "$TMP/neg-id.qfl" $((D + 16 + 4)) '\xff\xff\xff\xff'
expect_exit logits-topk-id-negative 1 'corrupt top-k row \(a token id\)' -- \
  "$B/qforge-verify" "$F32" -f "$TEXT" $R --base-logits "$TMP/neg-id.qfl"
# the second id repeats the first
cp "$TMP/top.qfl" "$TMP/dup-id.qfl"
dd if="$TMP/top.qfl" of="$TMP/dup-id.qfl" bs=1 skip=$((D + 16)) seek=$((D + 20)) count=4 conv=notrunc status=none
expect_exit logits-topk-id-repeated 1 'corrupt top-k row \(a repeated token id\)' -- \
  "$B/qforge-verify" "$F32" -f "$TEXT" $R --base-logits "$TMP/dup-id.qfl"
# a log-probability of +inf (fp16 0x7c00) and a NaN NLL
cp "$TMP/top.qfl" "$TMP/inf-logp.qfl"; poke "$TMP/inf-logp.qfl" $((D + 16 + 32)) '\x00\x7c'
expect_exit logits-topk-logp-inf 1 'corrupt top-k row \(a log-probability\)' -- \
  "$B/qforge-verify" "$F32" -f "$TEXT" $R --base-logits "$TMP/inf-logp.qfl"
cp "$TMP/top.qfl" "$TMP/nan-nll.qfl"; poke "$TMP/nan-nll.qfl" "$D" '\x00\x00\x00\x00\x00\x00\xf8\x7f'
expect_exit logits-topk-nll-nan 1 "corrupt top-k row \(the token's NLL\)" -- \
  "$B/qforge-verify" "$F32" -f "$TEXT" $R --base-logits "$TMP/nan-nll.qfl"
# a NaN logit in a full file; a non-zero reserved header byte
DF=$(u64_at "$TMP/full.qfl" 72)
cp "$TMP/full.qfl" "$TMP/nan-logit.qfl"; poke "$TMP/nan-logit.qfl" $((DF + 40)) '\x00\x00\xc0\x7f'
expect_exit logits-full-nan 1 'nan-logit.qfl: chunk 0: logit 10 is nan' -- \
  "$B/qforge-verify" "$F32" -f "$TEXT" $R --base-logits "$TMP/nan-logit.qfl"
cp "$TMP/full.qfl" "$TMP/reserved.qfl"; poke "$TMP/reserved.qfl" 100 '\x01'
expect_exit logits-reserved 1 'corrupt logits file header' -- \
  "$B/qforge-verify" "$F32" -f "$TEXT" $R --base-logits "$TMP/reserved.qfl"
# llama-perplexity's format: a row whose scale is NaN
LP=$QF_DATA/peers/llama.cpp/bin/llama-perplexity
if [ -x "$LP" ] && "$LP" -m "$F32" -f "$TEXT" -t 1 -b 64 -c 64 --chunks 2 --kl-divergence-base "$TMP/l.kld" \
     >"$TMP/lp.log" 2>&1; then
  "$B/qforge-verify" "$F32" -f "$TEXT" $R --base-logits "$TMP/l.kld" >/dev/null 2>&1 &&
    pass llamacpp-logits-ok || fail llamacpp-logits-ok "the peer's file is refused"
  cp "$TMP/l.kld" "$TMP/l-nan.kld"; poke "$TMP/l-nan.kld" $((20 + 4 * 2 * 64)) '\x00\x00\xc0\x7f'
  expect_exit llamacpp-logits-scale-nan 1 'chunk 0 row 0: corrupt llama.cpp logits row \(scale nan' -- \
    "$B/qforge-verify" "$F32" -f "$TEXT" $R --base-logits "$TMP/l-nan.kld"
else
  skip llamacpp-logits "peer llama-perplexity not available"
fi

# ------------------------------------------------ 4. FIFOs never block
mkfifo "$TMP/fifo"
IM=$O/stories260K-imatrix-wiki64x512.dat
run_to 20 fifo-inspect 1 'fifo: is a FIFO, not a regular file' -- "$B/qforge-inspect" "$TMP/fifo"
run_to 20 fifo-verify-model 1 'fifo: is a FIFO' -- "$B/qforge-verify" "$TMP/fifo" -f "$TEXT" $R
run_to 20 fifo-verify-base 1 'fifo: is a FIFO' -- "$B/qforge-verify" "$F32" -f "$TEXT" $R --base "$TMP/fifo"
run_to 20 fifo-verify-text 1 'fifo: is a FIFO' -- "$B/qforge-verify" "$F32" -f "$TMP/fifo" $R
run_to 20 fifo-verify-base-logits 1 'fifo: is a FIFO' -- "$B/qforge-verify" "$F32" -f "$TEXT" $R --base-logits "$TMP/fifo"
run_to 20 fifo-quantize-model 1 'fifo: is a FIFO' -- "$B/qforge-quantize" "$TMP/fifo" "$TMP/q.gguf" Q8_0
run_to 20 fifo-quantize-imatrix 1 'fifo: is a FIFO' -- "$B/qforge-quantize" --imatrix "$TMP/fifo" "$F32" "$TMP/q.gguf" Q4_K_M
run_to 20 fifo-calibrate-model 1 'fifo: is a FIFO' -- "$B/qforge-calibrate" "$TMP/fifo" -f "$TEXT" -o "$TMP/i.gguf"
run_to 20 fifo-calibrate-text 1 'fifo: is a FIFO' -- "$B/qforge-calibrate" "$F32" -f "$TMP/fifo" -o "$TMP/i.gguf"
run_to 20 devzero-verify-text 1 '/dev/zero: is a character device' -- "$B/qforge-verify" "$F32" -f /dev/zero $R
[ -e "$TMP/q.gguf" ] || [ -e "$TMP/i.gguf" ] && fail fifo-no-output "an output was written"

# ------------------------------------------------ 5. an output is never an input
cp "$F32" "$TMP/s.gguf"; cp "$TEXT" "$TMP/t.txt"
sum0=$(cat "$TMP/s.gguf" "$TMP/t.txt" | cksum)
expect_exit out-calibrate-onto-model 1 's.gguf: output is the input file' -- \
  "$B/qforge-calibrate" "$TMP/s.gguf" -f "$TMP/t.txt" -c 64 --chunks 1 -o "$TMP/s.gguf"
expect_exit out-calibrate-onto-text 1 't.txt: output is the input file' -- \
  "$B/qforge-calibrate" "$TMP/s.gguf" -f "$TMP/t.txt" -c 64 --chunks 1 -o "$TMP/t.txt" --output-format dat
expect_exit out-save-logits-onto-model 1 's.gguf: output is the input file' -- \
  "$B/qforge-verify" "$TMP/s.gguf" -f "$TMP/t.txt" $R --save-logits "$TMP/s.gguf"
ln -f "$TMP/s.gguf" "$TMP/s-hardlink.gguf"
expect_exit out-save-logits-onto-base 1 's.gguf: output is the input file' -- \
  "$B/qforge-verify" "$F32" -f "$TMP/t.txt" $R --base "$TMP/s-hardlink.gguf" --save-logits "$TMP/s.gguf"
expect_exit out-save-logits-onto-text 1 't.txt: output is the input file' -- \
  "$B/qforge-verify" "$TMP/s.gguf" -f "$TMP/t.txt" $R --save-logits "$TMP/t.txt"
expect_exit out-quantize-onto-model 1 's.gguf: output is the input file' -- \
  "$B/qforge-quantize" "$TMP/s.gguf" "$TMP/s.gguf" Q8_0
cp "$IM" "$TMP/im.dat"
expect_exit out-quantize-onto-imatrix 1 'im.dat: output is the input file' -- \
  "$B/qforge-quantize" --imatrix "$TMP/im.dat" "$TMP/s.gguf" "$TMP/im.dat" Q4_K_M
cmp -s "$IM" "$TMP/im.dat" || fail out-quantize-onto-imatrix "the imatrix changed"
if need_data hf-dir models/stories260K/config.json; then
  cp -r "$QF_DATA/models/stories260K" "$TMP/hf"
  hsum0=$(find "$TMP/hf" -type f | sort | xargs cat | cksum)
  for f in $(cd "$TMP/hf" && ls *.safetensors config.json); do
    expect_exit "out-convert-onto-$f" 1 "output is a file of the input checkpoint" -- \
      "$B/qforge-convert" "$TMP/hf" -o "$TMP/hf/$f"
    expect_exit "out-quantize-onto-$f" 1 "output is a file of the input checkpoint" -- \
      "$B/qforge-quantize" "$TMP/hf" "$TMP/hf/$f" Q8_0
  done
  [ "$(find "$TMP/hf" -type f ! -name model.gguf | sort | xargs cat | cksum)" = "$hsum0" ] && pass out-hf-dir-intact || fail out-hf-dir-intact "checkpoint changed"
  # a new GGUF inside the checkpoint directory is fine
  "$B/qforge-convert" "$TMP/hf" -o "$TMP/hf/model.gguf" -q >/dev/null 2>&1 && pass out-convert-into-dir ||
    fail out-convert-into-dir "convert into the checkpoint directory failed"
fi
[ "$(cat "$TMP/s.gguf" "$TMP/t.txt" | cksum)" = "$sum0" ] && pass out-inputs-intact || fail out-inputs-intact "an input changed"

# ------------------------------------------------ 6. outputs that are not regular files
run_to 20 out-fifo 1 'fifo: is a FIFO: refusing to replace it' -- "$B/qforge-quantize" "$F32" "$TMP/fifo" Q8_0
[ -p "$TMP/fifo" ] && pass out-fifo-kept || fail out-fifo-kept "the FIFO was replaced"
mkdir "$TMP/adir"
expect_exit out-dir 1 'adir: is a directory' -- "$B/qforge-verify" "$F32" -f "$TEXT" $R --save-logits "$TMP/adir"
# a device node of our own (never /dev/null itself: a broken tool would replace it)
if mknod "$TMP/null" c 1 3 2>/dev/null; then
  run_to 20 out-chardev 1 'null: is a character device' -- "$B/qforge-calibrate" "$F32" -f "$TEXT" -c 64 --chunks 1 -o "$TMP/null"
  [ -c "$TMP/null" ] && pass out-chardev-kept || fail out-chardev-kept "the device node was replaced"
else
  skip out-chardev "cannot create a device node here (not root)"
fi
: >"$TMP/target.gguf"; ln -s "$TMP/target.gguf" "$TMP/link.gguf"
"$B/qforge-quantize" "$F32" "$TMP/link.gguf" Q8_0 -q >/dev/null 2>&1 && [ -f "$TMP/link.gguf" ] &&
  pass out-symlink-to-file || fail out-symlink-to-file "a symlink to a regular file as output failed"

# ------------------------------------------------ 3. text read only as far as the chunks need
if [ -n "${QF_ASAN:-}" ]; then
  skip text-prefix-rss "RSS is not meaningful under ASan"
elif [ -x /usr/bin/time ]; then
  for i in 1 2 3 4 5 6 7 8 9 10; do cat "$QF_DATA/$WIKI"; done >"$TMP/big.txt"   # 13 MB
  /usr/bin/time -v "$B/qforge-verify" "$F32" -f "$TMP/big.txt" -c 64 --chunks 2 -t 1 >"$TMP/big.out" 2>"$TMP/big.err"
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$TMP/big.err")
  # the whole text tokenized takes ~25 bytes per byte (~330 MB); 2 chunks need a few kB
  if [ -n "$rss" ] && [ "$rss" -lt 60000 ] && grep -q '^perplexity: ' "$TMP/big.out"; then pass text-prefix-rss
  else fail text-prefix-rss "peak RSS ${rss:-?} kB for 2 chunks of a 13 MB text (want < 60000)"; fi
  /usr/bin/time -v "$B/qforge-calibrate" "$F32" -f "$TMP/big.txt" -c 64 --chunks 2 -t 1 -o "$TMP/big.gguf" --quiet 2>"$TMP/bigc.err"
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$TMP/bigc.err")
  if [ -n "$rss" ] && [ "$rss" -lt 60000 ] && [ -s "$TMP/big.gguf" ]; then pass calibrate-text-prefix-rss
  else fail calibrate-text-prefix-rss "peak RSS ${rss:-?} kB for 2 chunks of a 13 MB text (want < 60000)"; fi
else
  skip text-prefix-rss "/usr/bin/time not installed (make deps)"
fi
# a prefix gives the same result as the whole text (the first 8 chunks of 1.3 MB)
"$B/qforge-verify" "$F32" -f "$QF_DATA/$WIKI" -c 256 --chunks 8 -t 1 --json >"$TMP/pre.json" 2>/dev/null
head -c 400000 "$QF_DATA/$WIKI" >"$TMP/cut.txt"
"$B/qforge-verify" "$F32" -f "$TMP/cut.txt" -c 256 --chunks 8 -t 1 --json >"$TMP/cut.json" 2>/dev/null
p1=$(sed -n 's/.*"ppl": \([-0-9.e]*\).*/\1/p' "$TMP/pre.json"); p2=$(sed -n 's/.*"ppl": \([-0-9.e]*\).*/\1/p' "$TMP/cut.json")
[ -n "$p1" ] && [ "$p1" = "$p2" ] && pass text-prefix-same-ppl || fail text-prefix-same-ppl "ppl $p1 (prefix read) vs $p2 (400 kB cut)"

# ------------------------------------------------ 19. wrong kind of file
printf '# a readme\n\nSome text that is not a model.\n' >"$TMP/README.md"
expect_exit wrong-kind-inspect-text 1 'README.md: not a GGUF or safetensors file \(it looks like text\)' -- "$B/qforge-inspect" "$TMP/README.md"
gzip -c "$TMP/README.md" >"$TMP/readme.gz"
expect_exit wrong-kind-inspect-gzip 1 'readme.gz: not a GGUF or safetensors file \(it looks like gzip data\)' -- "$B/qforge-inspect" "$TMP/readme.gz"
expect_exit wrong-kind-imatrix-text 1 'README.md: not an imatrix file \(.dat or GGUF\): it looks like text' -- \
  "$B/qforge-quantize" --imatrix "$TMP/README.md" "$F32" "$TMP/q.gguf" Q4_K_M
expect_exit wrong-kind-imatrix-safetensors 1 'not an imatrix file \(.dat or GGUF\): it looks like a safetensors file' -- \
  "$B/qforge-quantize" --imatrix "$QF_DATA/models/stories260K/model.safetensors" "$F32" "$TMP/q.gguf" Q4_K_M
expect_exit wrong-kind-model-text 1 'README.md: .*not a gguf file' -- "$B/qforge-verify" "$TMP/README.md" -f "$TEXT" $R
if [ -d "$TMP/hf" ]; then
  cp -r "$TMP/hf" "$TMP/hf-text"; cp "$TMP/README.md" "$TMP/hf-text/model.safetensors"
  expect_exit wrong-kind-safetensors-text 1 'model.safetensors: not a safetensors file \(it looks like text\)' -- \
    "$B/qforge-convert" "$TMP/hf-text" -o "$TMP/x.gguf"
fi

# ------------------------------------------------ 7. infinities and NaN never reach an artifact
"$T/gguf_edit" "$F32" "$TMP/big-w.gguf" --poke blk.0.attn_q.weight 5 1e38 &&
"$T/gguf_edit" "$F32" "$TMP/nan-w.gguf" --poke blk.1.ffn_up.weight 7 nan || fail fixtures "gguf_edit failed"
for t in Q8_0 Q4_0 F16 Q4_K_M; do
  expect_exit "inf-scale-quantize-$t" 1 "tensor 'blk.0.attn_q.weight': element 5 is 1e\+38, beyond what [a-z0-9_]+ holds" -- \
    "$B/qforge-quantize" "$TMP/big-w.gguf" "$TMP/inf-$t.gguf" "$t"
  [ -e "$TMP/inf-$t.gguf" ] && fail "inf-scale-quantize-$t" "an output was written"
done
"$B/qforge-quantize" "$TMP/big-w.gguf" "$TMP/big-bf16.gguf" BF16 -q >/dev/null 2>&1 &&
  pass big-weight-bf16-ok || fail big-weight-bf16-ok "1e38 fits bf16 but was refused"
expect_exit nan-quantize 1 "tensor 'blk.1.ffn_up.weight' has a non-finite value \(nan or inf\) near element 7" -- \
  "$B/qforge-quantize" "$TMP/nan-w.gguf" "$TMP/nan-q.gguf" Q8_0
expect_exit verify-nan-ppl 1 'the perplexity is not finite' -- "$B/qforge-verify" "$TMP/nan-w.gguf" -f "$TEXT" $R
expect_exit verify-nan-no-save 1 'no logits saved' -- "$B/qforge-verify" "$TMP/nan-w.gguf" -f "$TEXT" $R --save-logits "$TMP/nan.qfl"
[ -e "$TMP/nan.qfl" ] && fail verify-nan-no-save "logits of a NaN model were saved"
if [ -d "$TMP/hf" ]; then
  rm -f "$TMP/hf/model.gguf"
  for v in nan inf -inf; do
    cp -r "$TMP/hf" "$TMP/hf-$v"
    "$T/st_edit" "$TMP/hf/model.safetensors" "$TMP/hf-$v/model.safetensors" --poke model.layers.0.mlp.up_proj.weight 9 "$v"
    for ty in f32 f16 bf16 q8_0; do
      expect_exit "convert-$v-$ty" 1 "tensor 'model.layers.0.mlp.up_proj.weight': element 9 is -?(nan|inf)" -- \
        "$B/qforge-convert" "$TMP/hf-$v" -o "$TMP/c-$v-$ty.gguf" --outtype $ty
    done
  done
  cp -r "$TMP/hf" "$TMP/hf-big"
  "$T/st_edit" "$TMP/hf/model.safetensors" "$TMP/hf-big/model.safetensors" --poke model.layers.0.mlp.up_proj.weight 9 1e38
  for ty in f16 q8_0; do
    expect_exit "convert-f16-overflow-$ty" 1 "element 9 is 1e\+38, beyond what $ty holds" -- \
      "$B/qforge-convert" "$TMP/hf-big" -o "$TMP/c-big-$ty.gguf" --outtype $ty
  done
  "$B/qforge-convert" "$TMP/hf-big" -o "$TMP/c-big-f32.gguf" --outtype f32 -q >/dev/null 2>&1 &&
    pass convert-big-f32-ok || fail convert-big-f32-ok "1e38 fits f32 but was refused"
fi

# ------------------------------------------------ 8. hyperparameters that overflow the shapes
"$T/gguf_edit" "$F32" "$TMP/h33.gguf" --set llama.attention.head_count u64 8589934592 \
  --set llama.attention.head_count_kv u64 8589934592 --set llama.attention.key_length u64 8589934592 &&
"$T/gguf_edit" "$F32" "$TMP/theta0.gguf" --set llama.rope.freq_base f32 0 || fail fixtures "gguf_edit failed"
expect_exit heads-2-33 1 "h33.gguf: key 'llama.attention.head_count' \(8589934592\) times key 'llama.attention.key_length' \(8589934592\) overflows" -- \
  "$B/qforge-verify" "$TMP/h33.gguf" -f "$TEXT" $R
expect_exit rope-theta-0 1 'theta0.gguf: rope frequency base 0 is not a positive number' -- \
  "$B/qforge-verify" "$TMP/theta0.gguf" -f "$TEXT" $R
# general.alignment 1 and 4 (not multiples of 8): tests/bad-inputs/gguf/alignment-{1,4}.gguf

# ------------------------------------------------ 9. names with terminal escapes are printed escaped
ESC=$(printf '\033')
"$T/gguf_edit" "$F32" "$TMP/esc.gguf" --set "$(printf 'evil.\033[31mkey\rX')" str x \
  --rename blk.0.attn_q.weight "$(printf 'blk.0.attn_q\033]0;pwn\007.weight')" || fail fixtures "gguf_edit failed"
"$B/qforge-inspect" "$TMP/esc.gguf" --tensors >"$TMP/esc.txt" 2>&1
if grep -q "$ESC" "$TMP/esc.txt" || grep -q "$(printf '\r')" "$TMP/esc.txt"; then fail inspect-escapes "raw ESC/CR in the output"
elif grep -qF 'evil.\x1b[31mkey\rX' "$TMP/esc.txt" && grep -qF 'blk.0.attn_q\x1b]0;pwn\x07.weight' "$TMP/esc.txt"; then
  pass inspect-escapes
else fail inspect-escapes "escaped key/name not found"; fi
"$B/qforge-quantize" "$TMP/esc.gguf" "$TMP/x.gguf" Q8_0 --dry-run >"$TMP/dry.txt" 2>&1
if grep -q "$ESC" "$TMP/dry.txt"; then fail dry-run-escapes "raw ESC in the output"
elif grep -qF 'blk.0.attn_q\x1b]0;pwn\x07.weight' "$TMP/dry.txt"; then pass dry-run-escapes
else fail dry-run-escapes "escaped name not found"; fi

# ------------------------------------------------ 10. split GGUF keys
if [ -d "$TMP/hf" ]; then
  mkdir "$TMP/sp" && "$B/qforge-convert" "$TMP/hf" -o "$TMP/sp/m.gguf" --outtype f32 --split-max-size 400K -q >/dev/null 2>&1 ||
    fail split-fixture "convert --split-max-size failed"
  S1=$TMP/sp/m-00001-of-00003.gguf S2=$TMP/sp/m-00002-of-00003.gguf
  "$B/qforge-verify" "$S1" -f "$TEXT" $R >/dev/null 2>&1 && pass split-ok || fail split-ok "the split model does not verify"
  # split.count 0 or a string in shard 1: quantize used to write the first shard's tensors only
  "$T/gguf_edit" "$S1" "$TMP/count0.gguf" --set split.count u32 0
  "$T/gguf_edit" "$S1" "$TMP/countstr.gguf" --set split.count str 3
  "$T/gguf_edit" "$S1" "$TMP/total-1.gguf" --set split.tensors.count i32 -1
  expect_exit split-count-0 1 'count0.gguf: split.count 0 is not in 1..99999' -- "$B/qforge-quantize" "$TMP/count0.gguf" "$TMP/q.gguf" Q8_0
  expect_exit split-count-string 1 'countstr.gguf: split.count has type string; it must be an integer' -- \
    "$B/qforge-quantize" "$TMP/countstr.gguf" "$TMP/q.gguf" Q8_0
  expect_exit split-count-0-verify 1 'split.count 0 is not in 1..99999' -- "$B/qforge-verify" "$TMP/count0.gguf" -f "$TEXT" $R
  expect_exit split-tensors-count-negative 1 'total-1.gguf: split.tensors.count -1 is less than' -- \
    "$B/qforge-quantize" "$TMP/total-1.gguf" "$TMP/q.gguf" Q8_0
  [ -e "$TMP/q.gguf" ] && fail split-no-output "quantize wrote an output from a broken split"
  # a shard of another architecture, a shard that lies about the total, a FIFO as a shard
  cp -r "$TMP/sp" "$TMP/sp-arch"; "$T/gguf_edit" "$S2" "$TMP/sp-arch/m-00002-of-00003.gguf" --set general.architecture str qwen2
  expect_exit split-other-arch 1 "m-00002-of-00003.gguf: architecture 'qwen2', the first shard's is 'llama'" -- \
    "$B/qforge-verify" "$TMP/sp-arch/m-00001-of-00003.gguf" -f "$TEXT" $R
  cp -r "$TMP/sp" "$TMP/sp-total"; "$T/gguf_edit" "$S2" "$TMP/sp-total/m-00002-of-00003.gguf" --set split.tensors.count i32 46
  expect_exit split-total-differs 1 'm-00002-of-00003.gguf: split keys do not say shard 2 of 3' -- \
    "$B/qforge-verify" "$TMP/sp-total/m-00001-of-00003.gguf" -f "$TEXT" $R
  cp -r "$TMP/sp" "$TMP/sp-fifo"; rm "$TMP/sp-fifo/m-00002-of-00003.gguf"; mkfifo "$TMP/sp-fifo/m-00002-of-00003.gguf"
  run_to 20 fifo-split-shard 1 'm-00002-of-00003.gguf: is a FIFO' -- "$B/qforge-verify" "$TMP/sp-fifo/m-00001-of-00003.gguf" -f "$TEXT" $R
fi

# ------------------------------------------------ 11. config values verify would refuse or mis-run
if [ -d "$TMP/hf" ]; then
  rm -f "$TMP/hf/model.gguf"
  # cfg NAME SED: a copy of the checkpoint with config.json edited
  cfg() { rm -rf "$TMP/cfg-$1"; cp -r "$TMP/hf" "$TMP/cfg-$1"; sed -i "$2" "$TMP/cfg-$1/config.json"; }
  cfg theta0 's/"rope_theta": 10000.0/"rope_theta": 0/'
  expect_exit convert-rope-theta-0 1 'config.json: rope_theta must be positive' -- "$B/qforge-convert" "$TMP/cfg-theta0" -o "$TMP/c.gguf"
  cfg noeps '/"rms_norm_eps"/d'
  expect_exit convert-no-rms-norm-eps 1 'config.json: missing rms_norm_eps' -- "$B/qforge-convert" "$TMP/cfg-noeps" -o "$TMP/c.gguf"
  cfg negfactor 's/"rope_scaling": null/"rope_scaling": {"type": "linear", "factor": -2}/'
  expect_exit convert-rope-factor-negative 1 'rope_scaling factor is -2; it must be positive' -- \
    "$B/qforge-convert" "$TMP/cfg-negfactor" -o "$TMP/c.gguf"
  cfg strfactor 's/"rope_scaling": null/"rope_scaling": {"rope_type": "llama3", "factor": 8, "low_freq_factor": "1"}/'
  expect_exit convert-rope-factor-string 1 'low_freq_factor is not a number' -- \
    "$B/qforge-convert" "$TMP/cfg-strfactor" -o "$TMP/c.gguf"
  cfg dupkey 's/"rope_theta": 10000.0,/"rope_theta": 10000.0, "rope_theta": 500000.0,/'
  expect_exit convert-duplicate-key 1 'config.json: invalid json: duplicate key "rope_theta" at line' -- \
    "$B/qforge-convert" "$TMP/cfg-dupkey" -o "$TMP/c.gguf"
  [ -e "$TMP/c.gguf" ] && fail convert-config-no-output "an output was written"
fi
if [ -x "$T/gen_synth_model" ] && command -v perl >/dev/null; then
  "$T/gen_synth_model" --arch qwen2 --out "$TMP/q2" >/dev/null 2>&1 && cp -r "$TMP/q2" "$TMP/q2m" &&
    perl -0pi -e 's/"merges": \[.*?\n    \]/"merges": "a b"/s' "$TMP/q2m/tokenizer.json"
  "$B/qforge-convert" "$TMP/q2" -o "$TMP/q2.gguf" -q >/dev/null 2>&1 && pass convert-bpe-ok || fail convert-bpe-ok "synthetic qwen2 does not convert"
  expect_exit convert-merges-string 1 'tokenizer.json: model.merges is not an array' -- "$B/qforge-convert" "$TMP/q2m" -o "$TMP/q2m.gguf"
else
  skip convert-merges-string "gen_synth_model or perl missing"
fi
finish
