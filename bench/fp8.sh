#!/usr/bin/env bash
# bench/fp8.sh - FP8 checkpoints on the TinyLlama-1.1B-shaped BF16 model
# (bench/gen-1b.sh): wall time and peak RSS of
#   - qforge-quantize IN OUT FP8_DYNAMIC (the FP8 writer: channel scales, mse
#     and amax scale choice)
#   - qforge-convert of a synthetic 128x128 block-scaled quant_method "fp8"
#     checkpoint (written from the same model by build/tools/fp8_tool
#     blockckpt) -> BF16 GGUF, next to qforge-convert of the
#     BF16 original -> BF16 (the same output bytes without FP8 dequantization)
#   - qforge-quantize reading that block-scaled checkpoint directly -> Q8_0
#     (streamed, no GGUF written in between) next to the two steps it
#     replaces (qforge-convert --outtype auto, FP8 weights as F32, then
#     qforge-quantize of that GGUF -> Q8_0; the bytes are compared) and to
#     qforge-quantize of the BF16 original directory -> Q8_0; and the same
#     direct read -> Q4_K_M (the K-quant search costs more CPU per byte)
# CASES=REGEX runs only the cases whose name matches (default: all).
# Runs are interleaved (case order rotated every repetition); tables give the
# median. The generated model is kept (it may be a shared cache); outputs go
# to $OUT_DIR and are deleted at the end unless KEEP=1.
#
#   THREADS=2 WORK=build/bench REPS=3 OUT_DIR=build/bench-fp8 bash bench/fp8.sh
. "$(dirname "$0")/gen-1b.sh"
gen_1b
OUT_DIR=${OUT_DIR:-build/bench-fp8}
have_qf qforge-quantize && have_qf qforge-convert || exit 0
FT=$QF_TOOLS/fp8_tool
[ -x "$FT" ] || die "$FT not built (run make)"
mkdir -p "$OUT_DIR"
logs=$OUT_DIR/logs; rm -rf "$logs"; mkdir -p "$logs"
BLK=$OUT_DIR/tinyllama-1b-fp8-block
if [ ! -f "$BLK/.complete" ]; then
  rm -rf "$BLK"
  note "writing the block-scaled FP8 checkpoint $BLK"
  "$FT" blockckpt "$SYNTH_1B" "$BLK" >/dev/null || die "fp8_tool blockckpt failed"
  touch "$BLK/.complete"
fi
in_bytes=$(bytes_of "$SYNTH_1B"/model-*.safetensors)
blk_bytes=$(bytes_of "$BLK"/*.safetensors)
O=$OUT_DIR/out
cases=(
  "quantize FP8_DYNAMIC channel, mse scales|$QF_BIN/qforge-quantize $SYNTH_1B $O FP8_DYNAMIC --quiet"
  "quantize FP8_DYNAMIC channel, amax scales|$QF_BIN/qforge-quantize $SYNTH_1B $O FP8_DYNAMIC --fp8-scale amax --quiet"
  "convert block-FP8 -> BF16|$QF_BIN/qforge-convert $BLK -o $O --outtype bf16 --threads $THREADS --quiet"
  "convert BF16 original -> BF16|$QF_BIN/qforge-convert $SYNTH_1B -o $O --outtype bf16 --threads $THREADS --quiet"
  "quantize block-FP8 dir -> Q8_0, read directly|$QF_BIN/qforge-quantize $BLK $O Q8_0 --threads $THREADS --quiet"
  "convert block-FP8 -> auto (F32) GGUF, then quantize -> Q8_0|$QF_BIN/qforge-convert $BLK -o $O.f32.gguf --outtype auto --threads $THREADS --quiet && $QF_BIN/qforge-quantize $O.f32.gguf $O Q8_0 --threads $THREADS --quiet; rc=\$?; rm -f $O.f32.gguf; exit \$rc"
  "quantize block-FP8 dir -> Q4_K_M, read directly|$QF_BIN/qforge-quantize $BLK $O Q4_K_M --threads $THREADS --quiet"
  "quantize BF16 original dir -> Q8_0|$QF_BIN/qforge-quantize $SYNTH_1B $O Q8_0 --threads $THREADS --quiet"
)
CASES=${CASES:-}
if [ -n "$CASES" ]; then
  keep=()
  for c in "${cases[@]}"; do [[ ${c%%|*} =~ $CASES ]] && keep+=("$c"); done
  cases=("${keep[@]}")
fi
declare -A WALL RSS
for rep in $(seq 1 "$REPS"); do
  n=${#cases[@]}
  for k in $(seq 0 $((n - 1))); do
    c=${cases[$(( (k + rep - 1) % n ))]}
    name=${c%%|*}; cmd=${c#*|}
    rm -rf "$O"
    if timed "$logs/$rep-${name//[^A-Za-z0-9_]/_}.log" bash -c "$cmd"; then
      WALL[$name]+="$T_WALL "; RSS[$name]+="$T_RSS "
      note "$name run $rep: ${T_WALL}s, ${T_RSS} KiB"
      case $name in # the Q8_0 files of the direct and the two-step runs, compared once both exist
        *"Q8_0, read directly"*) mv "$O" "$O.direct" ;;
        *"then quantize -> Q8_0"*) mv "$O" "$O.two" ;;
      esac
    fi
  done
done
rm -rf "$O"
same=
if [ -f "$O.direct" ] && [ -f "$O.two" ]; then
  if cmp -s "$O.direct" "$O.two"; then same="byte-identical"; else same="DIFFERENT"; fi
fi
rm -f "$O.direct" "$O.two"

echo "### FP8: TinyLlama-1.1B-shaped BF16 ($(awk -v b="$in_bytes" 'BEGIN { printf "%.0f", b / 1e6 }') MB), block-scaled FP8 copy ($(awk -v b="$blk_bytes" 'BEGIN { printf "%.0f", b / 1e6 }') MB)"
echo
machine_header
echo "- threads: $THREADS (the FP8 writer is single-threaded), repetitions: $REPS (median), warm page cache"
echo
echo "| run | wall s | peak RSS MiB | input MB/s |"
echo "| --- | ---: | ---: | ---: |"
for c in "${cases[@]}"; do
  name=${c%%|*}
  if [ -z "${WALL[$name]:-}" ]; then echo "| $name | failed | - | - |"; continue; fi
  w=$(median ${WALL[$name]}); r=$(median ${RSS[$name]})
  b=$in_bytes; case $name in *block-FP8*) b=$blk_bytes ;; esac
  echo "| $name | $(fmt 2 "$w") | $(mib "$r") | $(awk -v b="$b" -v w="$w" 'BEGIN { printf "%.0f", b / 1e6 / w }') |"
done
[ -z "$same" ] || { echo; echo "Q8_0 read directly vs converted first: $same."; }
[ "$KEEP" = 1 ] || rm -rf "$BLK"
