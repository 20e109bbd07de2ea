#!/usr/bin/env bash
# scripts/fp8-quality.sh - FP8 checkpoints next to Q8_0 and Q6_K (qforge's and
# llama.cpp's): ppl and mean KLD against the base model on the same chunks of
# tinystories-gen/test.txt, for stories260K and tinystories-distill-3M, each
# file scored twice:
#   qforge-verify FILE --base-logits (the FP8 directory itself; FP8 static
#     with its W8A8 activation emulation)
#   llama-perplexity --kl-divergence on a GGUF holding the same weights (an
#     FP8 directory converted to F32 = scale * e4m3(code) exactly; llama.cpp
#     has no FP8 activations, so FP8 static is scored weights-only there)
# The base is the lossless GGUF of the HF directory (F32 / BF16). Then the
# weights' relative round-trip error per scheme (build/tools/fp8_tool rtn-error).
#
#   scripts/fp8-quality.sh [--work DIR] [--chunks N]
#
# Prints a markdown table and writes it with date, commit and load to
# bench/results/DATE-fp8-quality.md. Environment: QF_BIN (bin), QF_DATA
# (../shared), QF_PEER ($QF_DATA/peers/llama.cpp), THREADS (2), RESULTS
# (bench/results).
set -u -o pipefail
cd "$(dirname "$0")/.."
QF_BIN=${QF_BIN:-bin}
QF_DATA=${QF_DATA:-../shared}
QF_PEER=${QF_PEER:-$QF_DATA/peers/llama.cpp}
QF_TOOLS=${QF_TOOLS:-build/tools}
TH=${THREADS:-2}
RESULTS=${RESULTS:-bench/results}
W=build/fp8-quality
CHUNKS=50
while [ $# -gt 0 ]; do
  case $1 in
    --work) W=$2; shift 2 ;;
    --chunks) CHUNKS=$2; shift 2 ;;
    *) echo "usage: $0 [--work DIR] [--chunks N]" >&2; exit 2 ;;
  esac
done
die() { echo "fp8-quality.sh: error: $*" >&2; exit 1; }
TEXT=$QF_DATA/corpus/tinystories-gen/test.txt
CALIB=$QF_DATA/corpus/tinystories-gen/calib.txt
P=$QF_PEER/bin
[ -x "$P/llama-perplexity" ] && [ -x "$P/llama-quantize" ] || die "llama.cpp tools not found in $P"
mkdir -p "$W"
START=$(date -u '+%Y-%m-%d %H:%M UTC'); STAMP=$(date -u '+%Y-%m-%d-%H%M'); LOAD0=$(uptime | sed 's/^ *//')
out=$W/table.md
{
echo "| model | file | bytes | ppl (qforge) | KLD (qforge) | top-1 (qforge) | ppl (llama.cpp) | KLD (llama.cpp) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for m in stories260K tinystories-distill-3M; do
  src=$QF_DATA/models/$m
  d=$W/$m
  rm -rf "$d"; mkdir -p "$d"
  ot=f32; [ $m = tinystories-distill-3M ] && ot=bf16
  "$QF_BIN/qforge-convert" "$src" -o "$d/base.gguf" --outtype $ot --quiet >/dev/null || die "convert $m"
  "$QF_BIN/qforge-verify" "$d/base.gguf" -f "$TEXT" -c 512 --chunks "$CHUNKS" -t "$TH" --save-logits "$d/base.logits" \
    >/dev/null || die "verify base $m"
  "$P/llama-perplexity" -m "$d/base.gguf" -f "$TEXT" -c 512 --chunks "$CHUNKS" -ctk f32 -ctv f32 -t "$TH" \
    --kl-divergence-base "$d/base.kld" >"$d/lc-base.log" 2>&1 || die "llama-perplexity base $m"
  files=()
  for sch in channel tensor; do
    "$QF_BIN/qforge-quantize" "$src" "$d/fp8-dynamic-$sch" FP8_DYNAMIC --fp8-scheme $sch >/dev/null || die fp8
    "$QF_BIN/qforge-quantize" "$src" "$d/fp8-static-$sch" FP8 --fp8-scheme $sch --calib "$CALIB" --chunks 100 \
      -t "$TH" >/dev/null || die fp8
    files+=("$d/fp8-dynamic-$sch" "$d/fp8-static-$sch")
  done
  "$QF_BIN/qforge-quantize" "$src" "$d/fp8-dynamic-channel-amax" FP8_DYNAMIC --fp8-scale amax >/dev/null || die fp8
  files+=("$d/fp8-dynamic-channel-amax")
  "$QF_BIN/qforge-quantize" "$src" "$d/fp8-dynamic-block" FP8_DYNAMIC --fp8-scheme block >/dev/null || die fp8
  files+=("$d/fp8-dynamic-block")
  # llama.cpp's Q6_K with token_embd and output kept in the base precision, as the FP8 files keep them
  "$P/llama-quantize" --output-tensor-type $ot --token-embedding-type $ot "$d/base.gguf" "$d/llamacpp-Q6_K-embd-$ot.gguf" \
    Q6_K "$TH" >"$d/lq-Q6_K-embd.log" 2>&1 && files+=("$d/llamacpp-Q6_K-embd-$ot.gguf")
  for t in Q8_0 Q6_K; do
    "$QF_BIN/qforge-quantize" "$d/base.gguf" "$d/qforge-$t.gguf" $t -t "$TH" --quiet >/dev/null || die "quantize $t"
    files+=("$d/qforge-$t.gguf")
    # llama-quantize refuses some shapes (stories260K's 172-wide rows for Q8_0): no row then
    "$P/llama-quantize" "$d/base.gguf" "$d/llamacpp-$t.gguf" $t "$TH" >"$d/lq-$t.log" 2>&1 &&
      files+=("$d/llamacpp-$t.gguf")
  done
  for f in "${files[@]}"; do
    j=$("$QF_BIN/qforge-verify" "$f" -f "$TEXT" -c 512 --chunks "$CHUNKS" -t "$TH" --base-logits "$d/base.logits" --json \
      2>/dev/null | tr '\n' ' ') || die "verify $f"
    ppl=$(printf '%s' "$j" | sed -n 's/^[^{]*{"model[^}]*"ppl": \([0-9.e+-]*\).*/\1/p')
    kld=$(printf '%s' "$j" | sed -n 's/.*"kld": {"mean": \([0-9.e+-]*\),.*/\1/p')
    top1=$(printf '%s' "$j" | sed -n 's/.*"top1": \([0-9.e+-]*\).*/\1/p')
    g=$f
    if [ -d "$f" ]; then
      bytes=$(cat "$f"/*.safetensors | wc -c)
      g=$f.f32.gguf
      "$QF_BIN/qforge-convert" "$f" -o "$g" --outtype f32 --quiet >/dev/null || die "convert $f"
    else
      bytes=$(wc -c <"$f")
    fi
    l=$("$P/llama-perplexity" -m "$g" -f "$TEXT" -c 512 --chunks "$CHUNKS" -ctk f32 -ctv f32 -t "$TH" \
      --kl-divergence-base "$d/base.kld" --kl-divergence 2>&1)
    lppl=$(printf '%s\n' "$l" | sed -n 's/^Mean PPL(Q) *: *\([0-9.e+-]*\).*/\1/p' | head -1)
    lkld=$(printf '%s\n' "$l" | sed -n 's/^Mean *KLD: *\([0-9.e+-]*\).*/\1/p' | head -1)
    printf '| %s | %s | %s | %.4f | %.6f | %.2f%% | %s | %s |\n' "$m" "$(basename "$f")" "$bytes" "$ppl" "$kld" \
      "$(awk -v x="$top1" 'BEGIN { print 100 * x }')" "${lppl:--}" "${lkld:--}"
  done
done
echo
echo "Relative squared round-trip error sum (w - q(w))^2 / sum w^2 over the *_proj weights whose rows Q8_0 blocks"
echo "(build/tools/fp8_tool rtn-error; E4M3 32-group is no vLLM layout, for comparison):"
echo
for m in stories260K tinystories-distill-3M; do
  "$QF_TOOLS/fp8_tool" rtn-error "$QF_DATA/models/$m" >"$W/$m.rtn" || die "fp8_tool rtn-error $m"
  if [ $m = stories260K ]; then
    echo "| model | E4M3 tensor amax | tensor mse | channel amax | channel mse | 128x128 block mse | 32-group mse | Q8_0 | Q6_K |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  fi
  printf '| %s |' "$m"; grep '^all that q8_0' "$W/$m.rtn" | awk '{ for (i = NF - 7; i <= NF; i++) printf " %s |", $i; print "" }'
done
} | tee "$out"
mkdir -p "$RESULTS"
{
  echo "# fp8-quality, $START"
  echo
  echo "- date: $START to $(date -u '+%H:%M UTC')"
  echo "- commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (+ uncommitted changes)')"
  echo "- load at start: $LOAD0"
  echo "- load at end: $(uptime | sed 's/^ *//')"
  echo "- command: \`THREADS=$TH scripts/fp8-quality.sh --chunks $CHUNKS\`"
  echo
  cat "$out"
} >"$RESULTS/$STAMP-fp8-quality.md"
echo "fp8-quality.sh: record: $RESULTS/$STAMP-fp8-quality.md" >&2
