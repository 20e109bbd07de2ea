#!/usr/bin/env bash
# bench/scale70b.sh - the Llama-3-70B widths on one machine: a synthetic
# checkpoint (bench/gen-1b.sh gguf_70b_f16: hidden 8192, FFN 28672, 64/8
# heads, vocab 128256) with each depth in LAYERS70 goes through
#   convert -> calibrate (imatrix) -> quantize --method gptq -> verify (KLD)
# with CHUNKS chunks of CTX tokens of CALIB_TEXT, THREADS threads; for every
# step wall time and peak RSS (GNU time), for gptq also the forward and
# solve seconds (--json), and the disk used by the files. Per-layer cost is
# the difference between two depths divided by the difference in layers.
# The machine's load is recorded (bench/lib.sh): numbers under load are
# labelled so. The 70B-shape files are deleted at the end unless KEEP=1.
#
#   THREADS=2 WORK=/work/bench-cache REPS=1 LAYERS70="2 4" CHUNKS=2 CTX=256 TYPE=Q4_K_M bash bench/scale70b.sh
. "$(dirname "$0")/gen-1b.sh"
LAYERS70=${LAYERS70:-2 4}
CHUNKS=${CHUNKS:-2}
CTX=${CTX:-256}
TYPE=${TYPE:-Q4_K_M}
CALIB_TEXT=${CALIB_TEXT:-$QF_DATA/corpus/wikitext-2-raw/wiki.test.raw}
logs=$WORK/logs-scale70b; mkdir -p "$logs"
have_qf qforge-quantize || exit 0
[ -f "$CALIB_TEXT" ] || die "calibration text $CALIB_TEXT not found (set QF_DATA or CALIB_TEXT)"
jnum() { sed -n "s/.*\"$2\": \([0-9.e+-]*\).*/\1/p" "$1" | head -1; }
gib() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1073741824 }'; }

echo "Model: Llama-3-70B widths (hidden 8192, FFN 28672, 64 heads / 8 KV heads, vocab 128256), random BF16"
echo "weights converted to F16 GGUF; target $TYPE by --method gptq; calibration $(basename "$CALIB_TEXT"):"
echo "$CHUNKS chunks of $CTX tokens; $THREADS threads. Times are under the load recorded above."
echo
echo "| layers | step | wall s | peak RSS MiB | notes |"
echo "|---|---|---|---|---|"
declare -A GW GR
for L in $LAYERS70; do
  gguf_70b_f16 "$L"
  if [ -n "$CONVERT_70B_LOG" ]; then
    echo "| $L | convert (BF16 HF -> F16) | $(fmt 1 "$T_WALL") | $(mib "$T_RSS") | F16 $(gib "$(bytes_of "$GGUF_70B_F16")") GiB |"
  fi
  im=$WORK/llama70b-${L}l-imatrix.gguf; q=$WORK/llama70b-${L}l-$TYPE.gguf; base=$WORK/llama70b-${L}l-base.logits
  rm -f "$im" "$q" "$base"
  if timed "$logs/$L-calibrate.log" "$QF_BIN/qforge-calibrate" "$GGUF_70B_F16" -f "$CALIB_TEXT" -o "$im" -c "$CTX" \
       --chunks "$CHUNKS" -t "$THREADS" --quiet; then
    echo "| $L | calibrate (imatrix) | $(fmt 1 "$T_WALL") | $(mib "$T_RSS") | |"
  fi
  if ! timed "$logs/$L-gptq.log" "$QF_BIN/qforge-quantize" "$GGUF_70B_F16" "$q" "$TYPE" --method gptq --calib "$CALIB_TEXT" \
       --calib-ctx "$CTX" --calib-chunks "$CHUNKS" --threads "$THREADS" --json; then
    echo "| $L | quantize --method gptq | $(fmt 1 "$T_WALL") | $(mib "$T_RSS") | did not finish ($(sed -n 's/^Command terminated by //p;s/^.*Exit status: \([1-9].*\)/exit \1/p' "$logs/$L-gptq.log.time" | head -1)): wall and peak RSS up to the stop |"
  else
    GW[$L]=$T_WALL; GR[$L]=$T_RSS
    echo "| $L | quantize --method gptq | $(fmt 1 "$T_WALL") | $(mib "$T_RSS") | forward $(fmt 1 "$(jnum "$logs/$L-gptq.log" forward_seconds)") s, solve $(fmt 1 "$(jnum "$logs/$L-gptq.log" solve_seconds)") s; output $(gib "$(bytes_of "$q")") GiB |"
    if timed "$logs/$L-verify-base.log" "$QF_BIN/qforge-verify" "$GGUF_70B_F16" -f "$CALIB_TEXT" -c "$CTX" --chunks "$CHUNKS" \
         -t "$THREADS" --save-logits "$base"; then
      echo "| $L | verify F16 (base logits) | $(fmt 1 "$T_WALL") | $(mib "$T_RSS") | |"
      if timed "$logs/$L-verify.log" "$QF_BIN/qforge-verify" "$q" -f "$CALIB_TEXT" -c "$CTX" --chunks "$CHUNKS" -t "$THREADS" \
           --base-logits "$base"; then
        echo "| $L | verify $TYPE (KLD vs F16) | $(fmt 1 "$T_WALL") | $(mib "$T_RSS") | mean KLD $(sed -n 's/.*mean KLD: \([0-9.e-]*\).*/\1/p' "$logs/$L-verify.log" | head -1) |"
      fi
    fi
  fi
  [ "$KEEP" = 1 ] || rm -f "$GGUF_70B_F16" "$im" "$q" "$base"
done
set -- $LAYERS70
if [ $# -ge 2 ] && [ -n "${GW[$1]:-}" ] && [ -n "${GW[$2]:-}" ]; then
  echo
  echo "gptq per layer (depth $1 -> $2): $(awk -v a="${GW[$1]}" -v b="${GW[$2]}" -v l="$1" -v m="$2" 'BEGIN { printf "%.0f", (b - a) / (m - l) }') s;" \
       "peak RSS $(mib "${GR[$1]}") -> $(mib "${GR[$2]}") MiB"
fi
