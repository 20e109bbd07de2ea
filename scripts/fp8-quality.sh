#!/usr/bin/env bash
# scripts/fp8-quality.sh - FP8 checkpoints next to Q8_0 and Q6_K: mean KLD, ppl
# and top-1 against the original (F32/BF16 HF directory), every file scored by
# qforge-verify on the same chunks of tinystories-gen/test.txt.
#
#   scripts/fp8-quality.sh [--work DIR] [--chunks N]    (prints a markdown table)
#
# Files: qforge-quantize FP8_DYNAMIC / FP8 (static input scales, 100 calibration
# chunks of calib.txt) with tensor and channel weight scales; qforge-quantize
# Q8_0 and Q6_K (default method) from the base GGUF; llama-quantize Q6_K from
# the same base GGUF (the peer, $QF_PEER/bin, default $QF_DATA/peers/llama.cpp).
set -u
QF_BIN=${QF_BIN:-bin}
QF_DATA=${QF_DATA:-../shared}
QF_PEER=${QF_PEER:-$QF_DATA/peers/llama.cpp}
W=build/fp8-quality
CHUNKS=100
while [ $# -gt 0 ]; do
  case $1 in
    --work) W=$2; shift 2 ;;
    --chunks) CHUNKS=$2; shift 2 ;;
    *) echo "usage: $0 [--work DIR] [--chunks N]" >&2; exit 2 ;;
  esac
done
TEXT=$QF_DATA/corpus/tinystories-gen/test.txt
CALIB=$QF_DATA/corpus/tinystories-gen/calib.txt
mkdir -p "$W"
echo "| model | file | size | ppl | base ppl | mean KLD | top-1 |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for m in stories260K tinystories-distill-3M; do
  src=$QF_DATA/models/$m
  d=$W/$m
  rm -rf "$d"; mkdir -p "$d"
  ot=f32; [ $m = tinystories-distill-3M ] && ot=bf16
  "$QF_BIN/qforge-convert" "$src" -o "$d/base.gguf" --outtype $ot >/dev/null || exit 1
  files=()
  for sch in channel tensor; do
    "$QF_BIN/qforge-quantize" "$src" "$d/fp8-dynamic-$sch" FP8_DYNAMIC --fp8-scheme $sch --quiet >/dev/null || exit 1
    "$QF_BIN/qforge-quantize" "$src" "$d/fp8-static-$sch" FP8 --fp8-scheme $sch --calib "$CALIB" --chunks 100 \
      --quiet >/dev/null || exit 1
    files+=("$d/fp8-dynamic-$sch" "$d/fp8-static-$sch")
  done
  for t in Q8_0 Q6_K; do
    "$QF_BIN/qforge-quantize" "$d/base.gguf" "$d/qforge-$t.gguf" $t --quiet >/dev/null || exit 1
    files+=("$d/qforge-$t.gguf")
  done
  if [ -x "$QF_PEER/bin/llama-quantize" ]; then
    "$QF_PEER/bin/llama-quantize" "$d/base.gguf" "$d/llamacpp-Q6_K.gguf" Q6_K >/dev/null 2>&1 && files+=("$d/llamacpp-Q6_K.gguf")
  fi
  for f in "${files[@]}"; do
    j=$("$QF_BIN/qforge-verify" "$f" -f "$TEXT" -c 512 --chunks "$CHUNKS" --base "$src" --json 2>/dev/null) || continue
    get() { printf '%s' "$j" | tr '\n' ' ' | sed -n "s/^[^{]*{\"model.*\"$1\": \([-0-9.e+]*\)[,}].*/\1/p" | head -n 1; }
    kld=$(printf '%s' "$j" | tr '\n' ' ' | sed -n 's/.*"kld": {"mean": \([0-9.e+-]*\),.*/\1/p')
    if [ -d "$f" ]; then
      bytes=$(cat "$f"/*.safetensors | wc -c)
    else
      bytes=$(wc -c <"$f")
    fi
    printf '| %s | %s | %s | %.4f | %.4f | %.6f | %.2f%% |\n' "$m" "$(basename "$f")" "$bytes B" "$(get ppl)" \
      "$(get base_ppl)" "$kld" "$(awk -v x="$(get top1)" 'BEGIN{print 100*x}')"
  done
done
