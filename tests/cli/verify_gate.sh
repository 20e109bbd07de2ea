#!/usr/bin/env bash
# verify_gate.sh - qforge-verify as a CI gate: gates and exit codes 0/3,
# --json, KLD against itself (exactly 0) and against llama-perplexity
# --kl-divergence (peer; within 2%), --manifest, saved base logits (full:
# identical KLD; top-k: within the documented bound), HF directories as
# model/base, gz/JSONL text, and the bad-input errors.
. "$(dirname "$0")/../lib.sh"
V=$QF_BIN/qforge-verify
CONV=$QF_BIN/qforge-convert
EDIT=${QF_TOOLS:-build/tools}/gguf_edit
PEER=$QF_DATA/peers/llama.cpp/bin/llama-perplexity
O=oracles/llamacpp
F32=$QF_DATA/$O/stories260K-F32.gguf
Q40=$QF_DATA/$O/stories260K-Q4_0.gguf
WIKI=corpus/wikitext-2-raw/wiki.test.raw
HF=$QF_DATA/models/stories260K
HF3M=$QF_DATA/models/tinystories-distill-3M
TS=corpus/tinystories-gen/test.txt
HAVE_PY=0; command -v python3 >/dev/null && HAVE_PY=1

if [ ! -x "$V" ]; then fail build "$V not built"; finish; exit; fi

# usage errors need no data
expect_exit unknown-option 2 "unknown option '--bogus'" -- "$V" x.gguf -f x.txt --bogus
expect_exit missing-text-option 2 'no text given' -- "$V" x.gguf
expect_exit gate-needs-base 2 '--max-kld needs a base' -- "$V" x.gguf -f x.txt --max-kld 0.1
expect_exit top1-not-fraction 2 '--min-top1: 95 is more than 1; give a fraction \(0.95\) or a percentage \(95%\)' -- \
  "$V" x.gguf -f x.txt --base y.gguf --min-top1 95
expect_exit top1-bad-pct 2 '--min-top1: 120% is outside' -- "$V" x.gguf -f x.txt --base y.gguf --min-top1 120%
expect_exit max-kld-negative 2 'negative' -- "$V" x.gguf -f x.txt --base y.gguf --max-kld -1
expect_exit base-and-logits 2 'exclude each other' -- "$V" x.gguf -f x.txt --base y.gguf --base-logits z
expect_exit manifest-dir 2 '--manifest checks a GGUF file' -- "$V" "$TMP" -f x.txt --manifest m.xxh
if "$V" --help | grep -q -- '--max-ppl-increase' && "$V" --help | grep -q '^exit status: 0 ok' &&
   "$V" --help | grep -q '^memory:'; then pass help; else fail help "--help lacks gates/exit status/memory"; fi

need_data all "$O/stories260K-F32.gguf" && need_data all "$O/stories260K-Q4_0.gguf" && need_data all "$WIKI" || { finish; exit; }

# a 60 kB prefix of WikiText-2 (~37k tokens): enough for 20 chunks of 128
TEXT=$TMP/wiki.txt
head -c 60000 "$QF_DATA/$WIKI" >"$TEXT"
R="-c 128 --chunks 20 -t 1"

# json_field FILE KEY: a top-level number (or the "mean" of "kld") from --json output
jnum() { sed -n "s/.*\"$2\": \([-0-9.e]*\).*/\1/p" "$1" | head -1; }
kld_mean() { sed -n 's/.*"kld": {"mean": \([-0-9.e]*\).*/\1/p' "$1"; }
# within A B REL: |A-B| <= REL*|B|
within() { awk -v a="$1" -v b="$2" -v r="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b; exit !(d <= r * m) }'; }

# ---------------------------------------------------------------- gates
"$V" "$Q40" -f "$TEXT" $R --base "$F32" --json >"$TMP/q4.json" 2>"$TMP/err"; rc=$?
if [ $rc -ne 0 ]; then fail kld-run "exit $rc: $(cat "$TMP/err")"; finish; exit; fi
KLD=$(kld_mean "$TMP/q4.json")
if [ $HAVE_PY = 1 ]; then
  if python3 -m json.tool "$TMP/q4.json" >/dev/null; then pass json-parses; else fail json-parses "$(head -c 300 "$TMP/q4.json")"; fi
else
  case $(cat "$TMP/q4.json") in '{'*'"kld": {"mean": '*'"p99.9": '*'"top1": '*'"timings": {'*'}') pass json-parses ;;
    *) fail json-parses "$(head -c 300 "$TMP/q4.json")" ;; esac
fi
for key in '"ppl": ' '"ppl_err": ' '"n_tokens": ' '"n_chunks": 20' '"ctx": 128' '"base_ppl": ' '"ppl_ratio": ' \
           '"median": ' '"p0.1": ' '"min": ' '"max": ' '"top1": ' '"tokens_per_second": ' '"total_s": '; do
  grep -q "$key" "$TMP/q4.json" || fail json-fields "missing $key"
done
pass json-fields

"$V" "$Q40" -f "$TEXT" $R --base "$F32" --max-kld 1 --min-top1 50% --max-ppl-increase 20 --max-ppl 1000 \
  >"$TMP/pass.out" 2>"$TMP/err"; rc=$?
if [ $rc -eq 0 ] && [ ! -s "$TMP/err" ] && [ "$(grep -c ' pass$' "$TMP/pass.out")" -eq 4 ]; then pass gate-pass
else fail gate-pass "exit $rc, stderr '$(cat "$TMP/err")', $(grep '^gate' "$TMP/pass.out" | tr '\n' ';')"; fi
# the one-line reason, and every figure still on stdout
out=$("$V" "$Q40" -f "$TEXT" $R --base "$F32" --max-kld 0.05 --json 2>"$TMP/err"); rc=$?
if [ $rc -eq 3 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] &&
   grep -Eq '^qforge-verify: gate failed: mean KLD 0\.1[0-9]+ > 0\.05$' "$TMP/err" &&
   printf '%s' "$out" | grep -q '"gates": \[{"gate": "max-kld", "limit": 0.05, "value": 0.1[0-9]*, "pass": false}\], "gates_pass": false'; then
  pass gate-fail-kld
else
  fail gate-fail-kld "exit $rc, stderr '$(cat "$TMP/err")', json '$(printf '%s' "$out" | grep -o '"gates.*gates_pass": [a-z]*')'"
fi
expect_exit gate-fail-top1 3 '^qforge-verify: gate failed: top-1 agreement [0-9.]+% < 95%$' -- \
  "$V" "$Q40" -f "$TEXT" $R --base "$F32" --min-top1 0.95
expect_exit gate-fail-ppl 3 '^qforge-verify: gate failed: perplexity [0-9.]+ > 50$' -- "$V" "$Q40" -f "$TEXT" $R --max-ppl 50
expect_exit gate-fail-increase 3 'gate failed: perplexity increase [0-9.]+% > 1% \(' -- \
  "$V" "$Q40" -f "$TEXT" $R --base "$F32" --max-ppl-increase 1
expect_exit gate-fail-two 3 'gate failed: mean KLD [0-9.]+ > 0.01; top-1 agreement [0-9.]+% < 99%$' -- \
  "$V" "$Q40" -f "$TEXT" $R --base "$F32" --max-kld 0.01 --min-top1 99%
a=$("$V" "$Q40" -f "$TEXT" $R --base "$F32" --min-top1 0.7 --json | grep -o '"gates": \[[^]]*\]')
b=$("$V" "$Q40" -f "$TEXT" $R --base "$F32" --min-top1 70% --json | grep -o '"gates": \[[^]]*\]')
if [ -n "$a" ] && [ "$a" = "$b" ] && printf '%s' "$a" | grep -q '"limit": 0.7,'; then pass top1-fraction-eq-percent
else fail top1-fraction-eq-percent "'$a' vs '$b'"; fi

# ---------------------------------------------------------------- KLD invariants
"$V" "$F32" -f "$TEXT" $R --base "$F32" --json >"$TMP/self.json"
if grep -q '"kld": {"mean": 0.00000000, "err": 0.00000000, "max": 0.00000000' "$TMP/self.json" &&
   grep -q '"top1": 1.00000000,' "$TMP/self.json" && grep -q '"ppl_ratio": 1.00000000,' "$TMP/self.json"; then
  pass kld-self-zero
else
  fail kld-self-zero "$(grep -o '"kld": {[^}]*}, "top1": [0-9.]*' "$TMP/self.json")"
fi

# llama-perplexity --kl-divergence on the same text and chunks (peer flags per its PROVENANCE)
if [ -x "$PEER" ]; then
  "$PEER" -m "$F32" -f "$TEXT" -t 1 -b 128 -c 128 --chunks 20 -ctk f32 -ctv f32 --kl-divergence-base "$TMP/peer.kld" \
    >"$TMP/peer-base.log" 2>&1
  "$PEER" -m "$Q40" -f "$TEXT" -t 1 -b 128 -c 128 --chunks 20 -ctk f32 -ctv f32 --kl-divergence-base "$TMP/peer.kld" \
    --kl-divergence >"$TMP/peer.log" 2>&1
  PK=$(sed -n 's/^Mean *KLD: *\([0-9.]*\).*/\1/p' "$TMP/peer.log")
  PT=$(sed -n 's/^Same top p: *\([0-9.]*\).*/\1/p' "$TMP/peer.log")
  if [ -z "$PK" ]; then fail kld-vs-llama-perplexity "no 'Mean KLD' in $(tail -3 "$TMP/peer.log")"
  elif within "$KLD" "$PK" 0.02; then pass kld-vs-llama-perplexity
  else fail kld-vs-llama-perplexity "mean KLD $KLD, llama-perplexity $PK (more than 2% apart)"; fi
  QT=$(awk -v t="$(jnum "$TMP/q4.json" top1)" 'BEGIN { printf "%.3f", 100 * t }')
  if [ -n "$PT" ] && within "$QT" "$PT" 0.02; then pass top1-vs-llama-perplexity
  else fail top1-vs-llama-perplexity "same top $QT%, llama-perplexity $PT%"; fi
else
  skip kld-vs-llama-perplexity "peer binary $PEER not found"
fi

# ---------------------------------------------------------------- saved base logits
"$V" "$F32" -f "$TEXT" $R --save-logits "$TMP/full.qfl" --logits-top 0 -q >/dev/null &&
"$V" "$F32" -f "$TEXT" $R --save-logits "$TMP/top.qfl" -q >/dev/null &&
"$V" "$F32" -f "$TEXT" $R --save-logits "$TMP/top16.qfl" --logits-top 16 -q >/dev/null || fail save-logits "failed"
"$V" "$Q40" -f "$TEXT" $R --base-logits "$TMP/full.qfl" --json >"$TMP/full.json" &&
"$V" "$Q40" -f "$TEXT" $R --base-logits "$TMP/top.qfl" --json >"$TMP/top.json" &&
"$V" "$Q40" -f "$TEXT" $R --base-logits "$TMP/top16.qfl" --json >"$TMP/top16.json" || fail base-logits "failed"
fig() { grep -o '"ppl": .*"dp_rms": [-0-9.e]*' "$1"; }
if [ -n "$(fig "$TMP/full.json")" ] && [ "$(fig "$TMP/full.json")" = "$(fig "$TMP/q4.json")" ]; then
  pass saved-full-identical
else
  fail saved-full-identical "$(fig "$TMP/full.json" | head -c 200) vs $(fig "$TMP/q4.json" | head -c 200)"
fi
# top-k: merging the tokens outside the top k into one outcome never raises a
# divergence, and top-16's partition is a coarsening of top-128's, so
# KLD_16 <= KLD_128 <= KLD_full (up to the fp16 rounding of the stored log-probs).
# The deficit is documented in docs/verify.md: top-128 within 0.5% here (WikiText
# is far out of domain for this 512-token model: the flattest distributions we
# have); base ppl and top-1 are exact.
TK=$(kld_mean "$TMP/top.json"); TK16=$(kld_mean "$TMP/top16.json")
if awk -v t="$TK" -v s="$TK16" -v f="$KLD" 'BEGIN { exit !(s <= t * 1.0001 && t <= f * 1.0001 && t >= f * 0.995) }' &&
   [ "$(jnum "$TMP/top.json" base_ppl)" = "$(jnum "$TMP/q4.json" base_ppl)" ] &&
   [ "$(jnum "$TMP/top.json" top1)" = "$(jnum "$TMP/q4.json" top1)" ]; then
  pass saved-topk-bound
else
  fail saved-topk-bound "full $KLD, top-128 $TK, top-16 $TK16; base ppl $(jnum "$TMP/top.json" base_ppl)"
fi
# saving while running --base gives the same file as saving from the base alone
"$V" "$Q40" -f "$TEXT" $R --base "$F32" --save-logits "$TMP/full2.qfl" --logits-top 0 -q >/dev/null
if cmp -s "$TMP/full.qfl" "$TMP/full2.qfl"; then pass save-during-kld; else fail save-during-kld "files differ"; fi
# the file's bytes do not depend on the thread count
"$V" "$F32" -f "$TEXT" -c 128 --chunks 20 -t 2 --save-logits "$TMP/top-t2.qfl" -q >/dev/null
if cmp -s "$TMP/top.qfl" "$TMP/top-t2.qfl"; then pass saved-threads-identical; else fail saved-threads-identical "-t 1 and -t 2 files differ"; fi
# sizes: header 128 + tokens 20*128*4 (=10240, 64-aligned) + rows
sz() { wc -c <"$1" | tr -d ' '; }
if [ "$(sz "$TMP/full.qfl")" -eq $((128 + 10240 + 20 * 64 * 512 * 4)) ] &&
   [ "$(sz "$TMP/top.qfl")" -eq $((128 + 10240 + 20 * 63 * (16 + 6 * 128))) ]; then pass saved-sizes
else fail saved-sizes "full $(sz "$TMP/full.qfl"), top $(sz "$TMP/top.qfl")"; fi
# mismatches are refused
expect_exit saved-other-ctx 1 'full.qfl: saved with a context of 128 tokens, this run uses 64 \(use -c 128\)' -- \
  "$V" "$Q40" -f "$TEXT" -c 64 --chunks 20 -t 1 --base-logits "$TMP/full.qfl"
expect_exit saved-more-chunks 1 'full.qfl: holds 20 chunks, this run needs 25 \(use --chunks 20\)' -- \
  "$V" "$Q40" -f "$TEXT" -c 128 --chunks 25 -t 1 --base-logits "$TMP/full.qfl"
tail -c 50000 "$QF_DATA/$WIKI" >"$TMP/other.txt"
expect_exit saved-other-text 1 'full.qfl: saved for a different text: token [0-9]+ is [0-9]+ in the file, [0-9]+ here' -- \
  "$V" "$Q40" -f "$TMP/other.txt" $R --base-logits "$TMP/full.qfl"
head -c 20000 "$TMP/top.qfl" >"$TMP/trunc.qfl"
expect_exit saved-truncated 1 'trunc.qfl: 20000 bytes, the header describes [0-9]+ \(truncated\?\)' -- \
  "$V" "$Q40" -f "$TEXT" $R --base-logits "$TMP/trunc.qfl"
expect_exit saved-not-logits 1 'not a qforge logits file' -- "$V" "$Q40" -f "$TEXT" $R --base-logits "$TEXT"

# ---------------------------------------------------------------- manifest
if [ -x "$CONV" ] && need_data manifest models/stories260K; then
  "$CONV" "$HF" -o "$TMP/s.gguf" --outtype f32 --manifest -q >/dev/null 2>&1
  if "$V" "$TMP/s.gguf" -f "$TEXT" -c 128 --chunks 2 -t 1 --manifest "$TMP/s.gguf.xxh" >/dev/null 2>"$TMP/err" &&
     [ ! -s "$TMP/err" ]; then pass manifest-ok; else fail manifest-ok "$(cat "$TMP/err")"; fi
  # flip one byte inside blk.0.attn_q.weight (absolute offset from qforge-inspect)
  cp "$TMP/s.gguf" "$TMP/bad.gguf"
  off=$("$QF_BIN/qforge-inspect" "$TMP/s.gguf" --tensors 2>/dev/null | awk '$2 == "blk.0.attn_q.weight" { print $(NF-1) }')
  if [ -n "$off" ]; then
    printf '\x55' | dd of="$TMP/bad.gguf" bs=1 seek=$((off + 40)) conv=notrunc 2>/dev/null
    # the manifest is checked first: even a missing text file is not reached
    expect_exit manifest-tensor-mismatch 1 \
      "^qforge-verify: error: .*bad.gguf: tensor 'blk.0.attn_q.weight' does not match the manifest$" -- \
      "$V" "$TMP/bad.gguf" -f "$TMP/no-such-text" --manifest "$TMP/s.gguf.xxh"
  else
    fail manifest-tensor-mismatch "cannot find the tensor offset with qforge-inspect"
  fi
  sed 's/^tensor \([0-9a-f]*\) blk.1.ffn_up.weight$/tensor \1 blk.9.ffn_up.weight/' "$TMP/s.gguf.xxh" >"$TMP/unknown.xxh"
  expect_exit manifest-unknown-tensor 1 "tensor 'blk.9.ffn_up.weight' \(.*unknown.xxh line [0-9]+\) is not in the file" -- \
    "$V" "$TMP/s.gguf" -f "$TEXT" --manifest "$TMP/unknown.xxh"
  { head -2 "$TMP/s.gguf.xxh"; echo "tensor not-hex blk.0.attn_k.weight"; } >"$TMP/badhex.xxh"
  expect_exit manifest-bad-hex 1 "badhex.xxh: line 3: bad hash 'not-hex'" -- \
    "$V" "$TMP/s.gguf" -f "$TEXT" --manifest "$TMP/badhex.xxh"
  printf 'hello world\n' >"$TMP/garbage.xxh"
  expect_exit manifest-bad-line 1 "garbage.xxh: line 1: expected 'tensor <hash> <name>'" -- \
    "$V" "$TMP/s.gguf" -f "$TEXT" --manifest "$TMP/garbage.xxh"
  expect_exit manifest-missing 1 "nope.xxh: " -- "$V" "$TMP/s.gguf" -f "$TEXT" --manifest "$TMP/nope.xxh"
  # a split model: every shard the manifest lists is checked
  mkdir -p "$TMP/split"
  "$CONV" "$HF" -o "$TMP/split/m.gguf" --outtype f32 --split-max-size 300K --manifest -q >/dev/null 2>&1
  first=$(ls "$TMP"/split/m-00001-of-*.gguf 2>/dev/null | head -1)
  last=$(ls "$TMP"/split/m-0000*-of-*.gguf 2>/dev/null | tail -1)
  if [ -n "$first" ] && [ "$first" != "$last" ]; then
    if "$V" "$first" -f "$TEXT" -c 128 --chunks 2 -t 1 --manifest "$TMP/split/m.gguf.xxh" >/dev/null 2>"$TMP/err"; then
      pass manifest-split-ok; else fail manifest-split-ok "$(cat "$TMP/err")"; fi
    name=$("$QF_BIN/qforge-inspect" "$last" --tensors 2>/dev/null | awk '$3 == "F32" && $2 ~ /weight$/ { print $2; exit }')
    off=$("$QF_BIN/qforge-inspect" "$last" --tensors 2>/dev/null | awk -v n="$name" '$2 == n { print $(NF-1) }')
    printf '\x55' | dd of="$last" bs=1 seek=$((off + 8)) conv=notrunc 2>/dev/null
    expect_exit manifest-split-mismatch 1 "$(basename "$last"): tensor '$name' does not match the manifest" -- \
      "$V" "$first" -f "$TEXT" --manifest "$TMP/split/m.gguf.xxh"
  else
    fail manifest-split "qforge-convert --split-max-size wrote no split model"
  fi
fi

# the whole CI step: quantize with a manifest, then verify integrity + quality in one call
QUANT=$QF_BIN/qforge-quantize
if [ -x "$QUANT" ]; then
  "$QUANT" "$F32" "$TMP/q.gguf" Q4_0 --manifest >/dev/null 2>&1
  "$V" "$TMP/q.gguf" --manifest "$TMP/q.gguf.xxh" -f "$TEXT" $R --base "$F32" --max-kld 1 --min-top1 0.5 -q >/dev/null 2>"$TMP/err"
  rc=$?
  "$V" "$TMP/q.gguf" --manifest "$TMP/q.gguf.xxh" -f "$TEXT" $R --base "$F32" --max-kld 0.01 -q >/dev/null 2>"$TMP/err2"
  rc2=$?
  if [ $rc -eq 0 ] && [ $rc2 -eq 3 ] && grep -q 'gate failed: mean KLD' "$TMP/err2"; then pass quantize-manifest-gate
  else fail quantize-manifest-gate "exit $rc ($(cat "$TMP/err")), then $rc2 ($(cat "$TMP/err2"))"; fi
else
  skip quantize-manifest-gate "$QUANT not built"
fi

# ---------------------------------------------------------------- HF directories
if need_data hf models/stories260K; then
  # HF layout (rotate-half Q/K, NEOX RoPE) vs the converter's permuted rows: same numbers
  "$V" "$HF" -f "$TEXT" $R --json >"$TMP/hf.json" 2>"$TMP/err"
  "$V" "$F32" -f "$TEXT" $R --json >"$TMP/gguf.json"
  a=$(jnum "$TMP/hf.json" ppl); b=$(jnum "$TMP/gguf.json" ppl)
  if [ -n "$a" ] && within "$a" "$b" 1e-4; then pass hf-dir-f32-ppl; else fail hf-dir-f32-ppl "HF $a, GGUF $b $(cat "$TMP/err")"; fi
  # the HF directory as the base
  "$V" "$Q40" -f "$TEXT" $R --base "$HF" --json >"$TMP/hfbase.json"
  a=$(kld_mean "$TMP/hfbase.json")
  if [ -n "$a" ] && within "$a" "$KLD" 1e-3; then pass hf-dir-as-base; else fail hf-dir-as-base "KLD $a vs $KLD"; fi
fi
if [ -x "$CONV" ] && need_data hf-bf16 models/tinystories-distill-3M && need_data hf-bf16 "$TS"; then
  head -c 40000 "$QF_DATA/$TS" >"$TMP/ts.txt"
  "$CONV" "$HF3M" -o "$TMP/ts.gguf" -q >/dev/null 2>&1   # auto: BF16 stays BF16
  for act in f32 llamacpp; do
    a=$("$V" "$HF3M" -f "$TMP/ts.txt" -c 128 --chunks 10 -t 1 --act $act --json | sed -n 's/.*"ppl": \([0-9.]*\),.*/\1/p')
    b=$("$V" "$TMP/ts.gguf" -f "$TMP/ts.txt" -c 128 --chunks 10 -t 1 --act $act --json | sed -n 's/.*"ppl": \([0-9.]*\),.*/\1/p')
    # llamacpp rounds activations to BF16 (8-bit mantissa): a last-bit difference from
    # the different Q.K summation order can flip a rounding, hence the looser bound
    tol=1e-4; [ $act = llamacpp ] && tol=1e-3
    if [ -n "$a" ] && within "$a" "$b" $tol; then pass hf-dir-bf16-ppl-act-$act
    else fail hf-dir-bf16-ppl-act-$act "HF $a, GGUF $b"; fi
  done
fi

# llama3 rope scaling in an HF directory: verify computes the rope_freqs divisors the
# converter writes, so the directory and its GGUF agree; without them the numbers change
GEN=${QF_TOOLS:-build/tools}/gen_synth_model
if [ -x "$GEN" ] && [ -x "$CONV" ]; then
  "$GEN" --arch llama --out "$TMP/l3" --dtype f32 --rope-scaling llama3 >/dev/null 2>&1
  "$GEN" --arch llama --out "$TMP/l3plain" --dtype f32 >/dev/null 2>&1
  "$CONV" "$TMP/l3" -o "$TMP/l3.gguf" -q >/dev/null 2>&1
  # the random model barely depends on position, so compare distributions (KLD), not ppl
  kld3() { "$V" "$TMP/l3" -f "$TEXT" -c 128 --chunks 3 -t 1 --act f32 --base "$1" --json 2>"$TMP/err" |
             sed -n 's/.*"kld": {"mean": \([0-9.e-]*\),.*/\1/p'; }
  a=$(kld3 "$TMP/l3.gguf"); c=$(kld3 "$TMP/l3plain")
  if [ -n "$a" ] && [ -n "$c" ] && awk -v a="$a" -v c="$c" 'BEGIN { exit !(a <= 1e-8 && c >= 1e-7) }'; then
    pass hf-dir-llama3-rope
  else fail hf-dir-llama3-rope "KLD vs its GGUF $a (want <= 1e-8), vs the unscaled model $c (want >= 1e-7) $(cat "$TMP/err")"; fi
else
  skip hf-dir-llama3-rope "$GEN or $CONV not built"
fi

# ---------------------------------------------------------------- text formats
gzip -c "$TEXT" >"$TMP/wiki.gz"
a=$("$V" "$F32" -f "$TMP/wiki.gz" -c 128 --chunks 4 -t 1); b=$("$V" "$F32" -f "$TEXT" -c 128 --chunks 4 -t 1)
if [ -n "$a" ] && [ "$a" = "$b" ]; then pass text-gz; else fail text-gz "'$a' vs '$b'"; fi
# JSONL: lines of the wiki text as records, joined back with blank lines
awk 'NF { gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); gsub(/\t/, "\\t"); printf "{\"id\": %d, \"text\": \"%s\"}\n", NR, $0 }' \
  "$TEXT" >"$TMP/wiki.jsonl"
awk 'NF { if (n++) printf "\n\n"; printf "%s", $0 }' "$TEXT" >"$TMP/joined.txt"
gzip -c "$TMP/wiki.jsonl" >"$TMP/wiki.jsonl.gz"
a=$("$V" "$F32" -f "$TMP/wiki.jsonl" -c 128 --chunks 4 -t 1); b=$("$V" "$F32" -f "$TMP/joined.txt" -c 128 --chunks 4 -t 1)
c=$("$V" "$F32" -f "$TMP/wiki.jsonl.gz" -c 128 --chunks 4 -t 1)
if [ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" = "$c" ]; then pass text-jsonl; else fail text-jsonl "'$a' / '$b' / '$c'"; fi
{ head -3 "$TMP/wiki.jsonl"; echo '{"id": 4, "txt": "no text field"}'; } >"$TMP/bad.jsonl"
expect_exit jsonl-no-text 1 'bad.jsonl: line 4: not a json object with a string "text" field' -- "$V" "$F32" -f "$TMP/bad.jsonl"
{ head -2 "$TMP/wiki.jsonl"; echo '{"text": "unterminated}'; } >"$TMP/bad2.jsonl"
expect_exit jsonl-bad-json 1 'bad2.jsonl: line 3' -- "$V" "$F32" -f "$TMP/bad2.jsonl"
head -c 3000 "$TMP/wiki.gz" >"$TMP/trunc.gz"
expect_exit gz-truncated 1 'trunc.gz: ' -- "$V" "$F32" -f "$TMP/trunc.gz"

# ---------------------------------------------------------------- bad inputs
: >"$TMP/empty.txt"
expect_exit empty-file 1 '^qforge-verify: error: .*empty.txt: empty file$' -- "$V" "$F32" -f "$TMP/empty.txt"
head -c 300 "$TEXT" >"$TMP/short.txt"
expect_exit text-too-short 1 'short.txt: need at least 256 tokens for a context of 128; the text has [0-9]+ tokens' -- \
  "$V" "$F32" -f "$TMP/short.txt" -c 128
expect_exit missing-text 1 '^qforge-verify: error: .*nope.txt: ' -- "$V" "$F32" -f "$TMP/nope.txt"
if [ -x "$EDIT" ]; then
  "$EDIT" "$F32" "$TMP/small-vocab.gguf" --rows token_embd.weight 256
  expect_exit ids-beyond-vocab 1 "small-vocab.gguf: token [0-9]+ of the text has id [0-9]+, but the model's vocabulary has 256 tokens" -- \
    "$V" "$TMP/small-vocab.gguf" -f "$TEXT" $R
  expect_exit base-vocab-mismatch 1 'small-vocab.gguf has a vocabulary of 256 tokens, .*stories260K-F32.gguf has 512' -- \
    "$V" "$F32" -f "$TEXT" $R --base "$TMP/small-vocab.gguf"
  "$EDIT" "$F32" "$TMP/iq.gguf" --retype blk.0.attn_q.weight mxfp4
  expect_exit unsupported-type 1 "iq.gguf: tensor 'blk.0.attn_q.weight' has type mxfp4, which verify cannot compute with" -- \
    "$V" "$TMP/iq.gguf" -f "$TEXT" $R
  # saved logits for another vocabulary (ids < 256 so that the small model can take them)
  seq 0 255 | awk '{ print $1 % 200 + 3 }' | tr '\n' ' ' >"$TMP/ids.txt"
  "$V" "$F32" --tokens "$TMP/ids.txt" -c 64 -t 1 --save-logits "$TMP/ids.qfl" -q >/dev/null
  expect_exit saved-other-vocab 1 'ids.qfl: saved for a vocabulary of 512 tokens, the model has 256' -- \
    "$V" "$TMP/small-vocab.gguf" --tokens "$TMP/ids.txt" -c 64 -t 1 --base-logits "$TMP/ids.qfl"
else
  skip bad-models "$EDIT not built"
fi

# ---------------------------------------------------------------- progress
if command -v script >/dev/null; then
  script -qc "$V $F32 -f $TEXT -c 128 --chunks 3 -t 1" /dev/null >"$TMP/tty.out" 2>&1
  script -qc "$V $F32 -f $TEXT -c 128 --chunks 3 -t 1 --quiet" /dev/null >"$TMP/tty-q.out" 2>&1
  if grep -q 'chunk 3/3  [0-9]* tok/s  ppl [0-9.]*' "$TMP/tty.out" && ! grep -q 'chunk' "$TMP/tty-q.out"; then
    pass tty-progress
  else
    fail tty-progress "tty: $(head -c 200 "$TMP/tty.out" | tr '\r' '|'); quiet: $(head -c 100 "$TMP/tty-q.out")"
  fi
else
  skip tty-progress "no script(1)"
fi
finish
