#!/usr/bin/env bash
# bench/scale.sh - qforge-quantize --method gptq of the TinyLlama-1.1B-shaped
# synthetic model (LAYERS blocks; the 22-block model is the cached F16 GGUF,
# others are generated and converted once into WORK) as one process and as
# an MPI job (bin/qforge-quantize-mpi, make MPI=1), CHUNKS chunks of CTX
# tokens: wall, forward and solve seconds, peak RSS of rank 0, and whether
# the output is byte-identical to the one-process file. CELLS lists
# "ranks x threads" runs; the default puts both cores to work each way:
# 1x2 (one process, 2 threads), 2x1 (2 ranks, 1 thread each), 2x2. CPU s is
# user + system time of all ranks (GNU time of mpirun counts its children):
# the work done, which a loaded machine does not inflate as it does wall time.
# The machine's load is recorded (bench/lib.sh): label the numbers with it.
#
#   WORK=/work/bench-cache KEEP=1 REPS=1 LAYERS=2 CHUNKS=4 CTX=256 TYPE=Q4_K_M \
#   CELLS="1x2 2x1 2x2" bash bench/scale.sh
. "$(dirname "$0")/gen-1b.sh"
LAYERS=${LAYERS:-2}
CHUNKS=${CHUNKS:-4}
CTX=${CTX:-256}
TYPE=${TYPE:-Q4_K_M}
CELLS=${CELLS:-1x2 2x1 2x2}
CALIB_TEXT=${CALIB_TEXT:-$QF_DATA/corpus/wikitext-2-raw/wiki.test.raw}
logs=$WORK/logs-scale; rm -rf "$logs"
mkdir -p "$logs"
jnum() { sed -n "s/.*\"$2\": \([0-9.e+-]*\).*/\1/p" "$1" | head -1; }

have_qf qforge-quantize || exit 0
have_qf qforge-quantize-mpi || exit 0
command -v mpirun >/dev/null || { note "SKIP: mpirun not found (make deps)"; exit 0; }
[ -f "$CALIB_TEXT" ] || die "calibration text $CALIB_TEXT not found (set QF_DATA or CALIB_TEXT)"
MPIRUN=(mpirun --oversubscribe --bind-to none)
[ "$(id -u)" = 0 ] && MPIRUN+=(--allow-run-as-root)

# the F16 GGUF of the 1.1B shape with LAYERS blocks -> MODEL
if [ "$LAYERS" = 22 ]; then gguf_1b_f16; MODEL=$GGUF_1B_F16
else
  MODEL=$WORK/tinyllama-1b-${LAYERS}l-F16.gguf
  if [ ! -f "$MODEL" ]; then
    hf=$WORK/tinyllama-1b-${LAYERS}l
    note "generating $hf (1.1B shape, $LAYERS layers)"
    rm -rf "$hf"
    "$QF_TOOLS/gen_synth_model" --arch llama --out "$hf" --hidden 2048 --layers "$LAYERS" --heads 32 --kv-heads 4 \
      --ff 5632 --vocab 32000 --dtype bf16 --shards 1 --ctx 2048 >&2 || die "gen_synth_model failed"
    "$QF_BIN/qforge-convert" "$hf" -o "$MODEL" --outtype f16 --threads "$THREADS" --quiet || die "qforge-convert failed"
    rm -rf "$hf"
  fi
fi

declare -A W R FW SW SAME CPU
ref=$WORK/scale-1x.gguf
for rep in $(seq 1 "$REPS"); do
  for c in $CELLS; do
    np=${c%x*}; t=${c#*x}; out=$WORK/scale-$c.gguf
    rm -f "$out"
    if [ "$np" = 1 ]; then cmd=("$QF_BIN/qforge-quantize")
    else cmd=("${MPIRUN[@]}" -np "$np" -x OMP_NUM_THREADS="$t" "$QF_BIN/qforge-quantize-mpi"); fi
    if OMP_NUM_THREADS=$t timed "$logs/$rep-$c.log" "${cmd[@]}" "$MODEL" "$out" "$TYPE" --method gptq \
         --calib "$CALIB_TEXT" --calib-ctx "$CTX" --calib-chunks "$CHUNKS" --threads "$t" --json; then
      W[$c]+="$T_WALL "; R[$c]+="$T_RSS "
      CPU[$c]+="$(awk -F': ' '/User time|System time/ { s += $2 } END { print s }' "$logs/$rep-$c.log.time") "
      FW[$c]+="$(jnum "$logs/$rep-$c.log" forward_seconds) "
      SW[$c]+="$(jnum "$logs/$rep-$c.log" solve_seconds) "
      [ -f "$ref" ] || cp "$out" "$ref"
      cmp -s "$out" "$ref" && SAME[$c]=yes || SAME[$c]=NO
    fi
    rm -f "$out"
  done
done
rm -f "$ref"

med() { [ -n "${1// /}" ] && median $1 || echo -; }
first=${CELLS%% *}
echo "Model: the TinyLlama-1.1B-shaped synthetic model with $LAYERS blocks (hidden 2048, ff 5632, 32/4 heads,"
echo "vocab 32000, F16 GGUF), --method gptq to $TYPE, $(basename "$CALIB_TEXT"): $CHUNKS chunks of $CTX tokens,"
echo "median of $REPS run(s). ranks x threads; peak RSS is mpirun's children's largest (GNU time of mpirun"
echo "reports the largest descendant); 'same bytes': the file equals the first cell's."
echo
echo "| ranks x threads | wall s | speedup vs $first | forward s | solve s | CPU s | peak RSS MiB | same bytes |"
echo "|---|---|---|---|---|---|---|---|"
w0=$(med "${W[$first]:-}")
for c in $CELLS; do
  [ -n "${W[$c]:-}" ] || continue
  w=$(med "${W[$c]}")
  echo "| $c | $(fmt 1 "$w") | $(ratio "$w0" "$w") | $(fmt 1 "$(med "${FW[$c]}")") | $(fmt 1 "$(med "${SW[$c]}")") | $(fmt 1 "$(med "${CPU[$c]}")") | $(mib "$(med "${R[$c]}")") | ${SAME[$c]} |"
done
