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
#   - --method gptq (2 x 128 calibration tokens) on a 2-block copy of the same
#     shapes, block-scaled FP8, read directly (block by block, no temp GGUF)
#     next to converting it to an F32 GGUF first; bytes compared, and the
#     direct read's --dry-run prediction printed next to its peak RSS
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
BLK2=$OUT_DIR/tinyllama-1b-2l-fp8-block
SYN2=$OUT_DIR/tinyllama-1b-2l
CALF=$QF_DATA/corpus/tinystories-gen/calib.txt
GQ="Q4_K_M --method gptq --calib $CALF --calib-ctx 128 --calib-chunks 2 --threads $THREADS --quiet"
in_bytes=$(bytes_of "$SYNTH_1B"/model-*.safetensors)
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
  "gptq 2-block block-FP8 dir -> Q4_K_M, read directly|$QF_BIN/qforge-quantize $BLK2 $O $GQ"
  "gptq 2-block: convert -> auto (F32) GGUF, then gptq -> Q4_K_M|$QF_BIN/qforge-convert $BLK2 -o $O.f32.gguf --outtype auto --threads $THREADS --quiet && $QF_BIN/qforge-quantize $O.f32.gguf $O $GQ; rc=\$?; rm -f $O.f32.gguf; exit \$rc"
)
CASES=${CASES:-}
if [ -n "$CASES" ]; then
  keep=()
  for c in "${cases[@]}"; do [[ ${c%%|*} =~ $CASES ]] && keep+=("$c"); done
  cases=("${keep[@]}")
fi
need_blk=0 need_blk2=0
for c in "${cases[@]}"; do
  case ${c%%|*} in *2-block*) need_blk2=1 ;; *block-FP8*) need_blk=1 ;; esac
done
if [ $need_blk = 1 ] && [ ! -f "$BLK/.complete" ]; then
  rm -rf "$BLK"
  note "writing the block-scaled FP8 checkpoint $BLK"
  "$FT" blockckpt "$SYNTH_1B" "$BLK" >/dev/null || die "fp8_tool blockckpt failed"
  touch "$BLK/.complete"
fi
# a 2-block copy of the same shapes for GPTQ (its solve dominates at every depth)
if [ $need_blk2 = 1 ] && [ ! -f "$BLK2/.complete" ]; then
  rm -rf "$SYN2" "$BLK2"
  "$QF_TOOLS/gen_synth_model" --arch llama --out "$SYN2" --hidden 2048 --layers 2 --heads 32 --kv-heads 4 \
    --ff 5632 --vocab 32000 --dtype bf16 --ctx 2048 >&2 || die "gen_synth_model failed"
  "$FT" blockckpt "$SYN2" "$BLK2" >/dev/null || die "fp8_tool blockckpt failed"
  touch "$BLK2/.complete"
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
        *"gptq 2-block block-FP8 dir"*) mv "$O" "$O.gdirect" ;;
        *"then gptq -> Q4_K_M"*) mv "$O" "$O.gtwo" ;;
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
gsame=
if [ -f "$O.gdirect" ] && [ -f "$O.gtwo" ]; then
  if cmp -s "$O.gdirect" "$O.gtwo"; then gsame="byte-identical"; else gsame="DIFFERENT"; fi
fi
rm -f "$O.gdirect" "$O.gtwo"
gpred=; [ -d "$BLK2" ] && gpred=$("$QF_BIN/qforge-quantize" "$BLK2" "$O" $GQ --dry-run --json 2>/dev/null | sed -n 's/.*"peak_rss": \([0-9]*\).*/\1/p')

blk_mb=-; [ -d "$BLK" ] && blk_mb=$(awk -v b="$(bytes_of "$BLK"/*.safetensors)" 'BEGIN { printf "%.0f", b / 1e6 }')
echo "### FP8: TinyLlama-1.1B-shaped BF16 ($(awk -v b="$in_bytes" 'BEGIN { printf "%.0f", b / 1e6 }') MB), block-scaled FP8 copy ($blk_mb MB)"
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
  b=$in_bytes; case $name in *2-block*) b=$(bytes_of "$BLK2"/*.safetensors) ;; *block-FP8*) b=$(bytes_of "$BLK"/*.safetensors) ;; esac
  echo "| $name | $(fmt 2 "$w") | $(mib "$r") | $(awk -v b="$b" -v w="$w" 'BEGIN { printf "%.0f", b / 1e6 / w }') |"
done
[ -z "$same" ] || { echo; echo "Q8_0 read directly vs converted first: $same."; }
[ -z "$gsame" ] || { echo; echo "GPTQ Q4_K_M of the 2-block block-FP8 directory read directly vs converted first: $gsame;" \
  "--dry-run predicted peak RSS for the direct read: $(mib $((${gpred:-0} / 1024))) MiB."; }
[ "$KEEP" = 1 ] || rm -rf "$BLK" "$BLK2" "$SYN2"
