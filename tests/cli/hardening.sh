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
finish
