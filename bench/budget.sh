#!/usr/bin/env bash
# bench/budget.sh - size budgets (qforge-quantize --target-size):
#   1. measuring the sensitivities of tinystories-distill-3M (per method, with
#      the imatrix from qforge-calibrate), and the role-weight probes (--calib);
#   2. planning from cached sensitivities of the TinyLlama-1.1B-shaped model
#      (bench/gen-1b.sh): the sidecar is written by tests/tools/budget_synth_cache
#      (real candidates and bytes, synthetic errors: the planning work does not
#      depend on their values), then --dry-run plans are timed.
# Writes bench/results/<date>-budget.md (and prints it).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/gen-1b.sh"
Q=$QF_BIN/qforge-quantize
TS3M=$QF_DATA/models/tinystories-distill-3M
CALIB_TEXT=$QF_DATA/corpus/tinystories-gen/calib.txt
logs=$WORK/budget-logs
mkdir -p "$logs" bench/results
out=bench/results/$(date -u +%Y-%m-%d-%H%M)-budget.md
made=()
{
  echo "# size budgets"
  machine_header
  echo
  echo "## measuring the sensitivities (tinystories-distill-3M, 12 candidate types)"
  echo
  "$QF_BIN/qforge-convert" "$TS3M" -o "$WORK/ts3m.gguf" --outtype auto --quiet || die "convert failed"
  "$QF_BIN/qforge-calibrate" "$WORK/ts3m.gguf" -f "$CALIB_TEXT" -o "$WORK/ts3m-imat.gguf" -c 256 --chunks 100 \
    --process-output --quiet -t "$THREADS" || die "calibrate failed"
  made+=("$WORK/ts3m.gguf" "$WORK/ts3m-imat.gguf")
  echo "| method | role weights | wall s (median of $REPS) | RSS MiB |"
  echo "| --- | --- | ---: | ---: |"
  for method in exact auto search; do
    for cal in no yes; do
      ws=(); rs=()
      for rep in $(seq "$REPS"); do
        rm -f "$WORK/ts3m.qfsens"
        args=()
        [ $cal = yes ] && args=(--calib "$CALIB_TEXT")
        timed "$logs/measure-$method-$cal-$rep.log" "$Q" "$WORK/ts3m.gguf" "$WORK/b.gguf" --target-size 2M \
          --imatrix "$WORK/ts3m-imat.gguf" --method "$method" "${args[@]}" --sensitivity-cache "$WORK/ts3m.qfsens" \
          --dry-run --threads "$THREADS" --quiet && { ws+=("$T_WALL"); rs+=("$T_RSS"); }
      done
      echo "| $method | $cal | $(fmt 2 "$(median "${ws[@]}")") | $(mib "$(median "${rs[@]}")") |"
    done
  done
  rm -f "$WORK/ts3m.qfsens"
  echo
  echo "## planning from cached sensitivities (TinyLlama-1.1B shape, $((22 * 7 + 2)) quantizable tensors)"
  echo
  gguf_1b_f16
  [ "$KEEP" = 1 ] || made+=("$GGUF_1B_F16")
  "$QF_TOOLS/budget_synth_cache" "$GGUF_1B_F16" "$WORK/1b.qfsens" >/dev/null || die "budget_synth_cache failed"
  made+=("$WORK/1b.qfsens")
  echo "| target | wall s (median of $REPS) | RSS MiB |"
  echo "| --- | ---: | ---: |"
  for target in 2.5G 1G 700M; do
    ws=(); rs=()
    for rep in $(seq "$REPS"); do
      timed "$logs/plan-$target-$rep.log" "$Q" "$GGUF_1B_F16" "$WORK/b.gguf" --target-size "$target" \
        --sensitivity-cache "$WORK/1b.qfsens" --dry-run --json --quiet &&
        grep -q '"sensitivity_cached": true' "$logs/plan-$target-$rep.log" && { ws+=("$T_WALL"); rs+=("$T_RSS"); }
    done
    echo "| $target | $(fmt 3 "$(median "${ws[@]}")") | $(mib "$(median "${rs[@]}")") |"
  done
  echo
  echo "Planning wall time includes opening the input, hashing its first MiB for the cache key, reading"
  echo "the sidecar, the allocation and printing the plan."
} | tee "$out"
if [ "$KEEP" != 1 ]; then rm -rf "${made[@]}"; fi
