#!/usr/bin/env bash
# awq-quality.sh - mean KLD against the base of tinystories-distill-3M quantized by
# search (the default with an imatrix), awq, gptq, awq+gptq and llama.cpp with its
# imatrix, at equal size; scored by qforge-verify --base on held-out text.
#
#   scripts/awq-quality.sh [TYPES...]     (default: Q4_0 Q3_K_M Q4_K_M Q2_K)
#
# Calibration: CAL chunks of 512 tokens of corpus/tinystories-gen/calib.txt (the same
# chunks for both imatrices and for GPTQ/AWQ); evaluation: EVAL chunks of 512 of
# test.txt. Prints one table row per type; work files in $WORK (build/awq-quality).
set -u
QF_BIN=${QF_BIN:-bin}
QF_DATA=${QF_DATA:-../shared}
PEER=${QF_PEER:-$QF_DATA/peers/llama.cpp/bin}
W=${WORK:-build/awq-quality}
CAL=${CAL:-8}
EVAL=${EVAL:-20}
T=${THREADS:-2}
TYPES=${*:-Q4_0 Q3_K_M Q4_K_M Q2_K}
CALF=$QF_DATA/corpus/tinystories-gen/calib.txt
EVALF=$QF_DATA/corpus/tinystories-gen/test.txt
mkdir -p "$W"
die() { echo "awq-quality.sh: error: $*" >&2; exit 1; }
[ -s "$W/base.gguf" ] || "$QF_BIN/qforge-convert" "$QF_DATA/models/tinystories-distill-3M" -o "$W/base.gguf" --outtype auto \
  >/dev/null 2>&1 || die "convert failed"
[ -s "$W/im.gguf" ] || "$QF_BIN/qforge-calibrate" "$W/base.gguf" -f "$CALF" -c 512 --chunks "$CAL" -o "$W/im.gguf" \
  -t "$T" --process-output --quiet >/dev/null || die "qforge-calibrate failed"
[ -s "$W/im-lc.dat" ] || "$PEER/llama-imatrix" -m "$W/base.gguf" -f "$CALF" -c 512 --chunks "$CAL" -o "$W/im-lc.dat" \
  -t "$T" >"$W/im-lc.log" 2>&1 || die "llama-imatrix failed"
C="--calib $CALF --calib-ctx 512 --calib-chunks $CAL"
kld() { # FILE -> mean KLD
  "$QF_BIN/qforge-verify" "$1" -f "$EVALF" -c 512 --chunks "$EVAL" -t "$T" --base "$W/base.gguf" --json 2>/dev/null |
    sed -n 's/.*"kld": {"mean": \([-0-9.e]*\).*/\1/p'
}
echo "| type | search | awq | gptq | awq+gptq | llama.cpp imatrix | bytes (qforge / llama.cpp) |"
echo "|---|---|---|---|---|---|---|"
for ty in $TYPES; do
  row="| $ty"
  for m in search awq gptq awq+gptq; do
    f=$W/$m-$ty.gguf
    case $m in search) extra=() ;; *) extra=($C) ;; esac
    [ -s "$f" ] || "$QF_BIN/qforge-quantize" "$W/base.gguf" "$f" "$ty" --method "$m" --imatrix "$W/im.gguf" "${extra[@]}" \
      -t "$T" --quiet --json >"$W/$m-$ty.json" 2>"$W/$m-$ty.err" || { row="$row | failed"; continue; }
    row="$row | $(kld "$f")"
  done
  f=$W/lc-$ty.gguf
  [ -s "$f" ] || "$PEER/llama-quantize" --imatrix "$W/im-lc.dat" "$W/base.gguf" "$f" "$ty" "$T" >"$W/lc-$ty.log" 2>&1
  row="$row | $(kld "$f") | $(stat -c %s "$W/awq-$ty.gguf" 2>/dev/null) / $(stat -c %s "$f" 2>/dev/null) |"
  echo "$row"
done
