#!/usr/bin/env bash
# bench/busy.sh - threads on a busy machine: 1 vs N threads of qforge-verify,
# qforge-calibrate and qforge-quantize, with the machine as it is ("quiet")
# and with one extra CPU-bound process per core ("loaded", HOGS busy loops),
# for each OpenMP wait policy in POLICIES: "default" (the tools' own choice,
# a bounded spin), "passive" (idle threads sleep at once) and "spinN" (idle
# threads spin N rounds before sleeping; spin300000 is libgomp's default).
# Goal: N threads never much slower than 1 (ratio t1/tN >= 0.8) under load,
# and the quiet machine as fast as with libgomp's default.
#
# Each repetition runs every cell once, quiet cells first, then the loaded
# ones (hogs started and stopped around them), so a burst of outside load
# hits all cells alike; the table reports the median wall time. The record
# (date, commit, machine, load, commands, table) goes to
# bench/results/DATE-HHMM-busy.md and to stdout.
#
#   REPS=3 N=2 HOGS=$(nproc) VERIFY_CHUNKS=10 CALIB_CHUNKS=8 \
#     POLICIES="default passive spin300000" bash bench/busy.sh
. "$(dirname "$0")/lib.sh"
N=${N:-2}
HOGS=${HOGS:-$(nproc)}
VERIFY_CHUNKS=${VERIFY_CHUNKS:-10}
CALIB_CHUNKS=${CALIB_CHUNKS:-8}
ORACLES=$QF_DATA/oracles/llamacpp
MODEL=$ORACLES/stories260K-F32.gguf
TS3M=$QF_DATA/models/tinystories-distill-3M
TEXT=${TEXT:-$QF_DATA/corpus/tinystories-gen/test.txt}
logs=$WORK/logs-busy; rm -rf "$logs"; mkdir -p "$logs"
for p in qforge-verify qforge-calibrate qforge-quantize qforge-convert; do have_qf $p || exit 0; done
[ -f "$MODEL" ] || die "$MODEL not found (set QF_DATA)"
[ -f "$TEXT" ] || die "text $TEXT not found (set QF_DATA or TEXT)"

# quantize needs a model big enough for its threads: tinystories-distill-3M as F32 GGUF
QIN=$WORK/ts3m-F32.gguf
if [ ! -f "$QIN" ]; then
  [ -f "$TS3M/config.json" ] || die "$TS3M not found (set QF_DATA)"
  "$QF_BIN/qforge-convert" "$TS3M" -o "$QIN" --outtype f32 --quiet || die "qforge-convert $TS3M failed"
fi

# tool -> command (the thread count is appended as -t T)
# verify-260K is the smallest case (stories260K, ctx 128: milliseconds per
# parallel region, the worst for waking threads); the others run on
# tinystories-distill-3M as F32.
declare -A CMD=(
  [verify-260K]="$QF_BIN/qforge-verify $MODEL -f $TEXT --ctx 128 --chunks $VERIFY_CHUNKS"
  [verify-3M]="$QF_BIN/qforge-verify $QIN -f $TEXT --ctx 512 --chunks $VERIFY_CHUNKS"
  [calibrate]="$QF_BIN/qforge-calibrate $QIN -f $TEXT --ctx 512 --chunks $CALIB_CHUNKS --quiet -o $WORK/busy-imatrix.gguf"
  [quantize]="$QF_BIN/qforge-quantize $QIN $WORK/busy-q4km.gguf Q4_K_M --quiet"
)
TOOLS="verify-260K verify-3M calibrate quantize"
POLICIES=${POLICIES:-default passive spin300000}

hog_pids=()
start_hogs() { for _ in $(seq "$HOGS"); do (while :; do :; done) & hog_pids+=($!); done; }
stop_hogs() { [ ${#hog_pids[@]} -gt 0 ] && kill "${hog_pids[@]}" 2>/dev/null; wait "${hog_pids[@]}" 2>/dev/null; hog_pids=(); }
trap stop_hogs EXIT

# run_cell LOAD TOOL POLICY T REP: one timed run, wall time into W[...]
declare -A W
run_cell() {
  local load=$1 tool=$2 pol=$3 t=$4 rep=$5 log=$logs/$1-$2-$3-t$4-$5
  local envs=(-u OMP_WAIT_POLICY -u GOMP_SPINCOUNT)
  case $pol in
    passive) envs=(-u GOMP_SPINCOUNT OMP_WAIT_POLICY=passive) ;;
    spin*) envs=(-u OMP_WAIT_POLICY GOMP_SPINCOUNT=${pol#spin}) ;;
  esac
  env "${envs[@]}" $GNU_TIME -v -o "$log.time" ${CMD[$tool]} -t "$t" >"$log" 2>&1 ||
    { note "failed: $tool -t $t ($load, $pol): $(tail -2 "$log")"; return; }
  local w
  w=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$log.time")
  W[$load,$tool,$pol,$t]+="$w "
}

uptime_start=$(uptime)
header=$(machine_header)
for rep in $(seq "$REPS"); do
  for load in quiet loaded; do
    [ $load = loaded ] && start_hogs
    for tool in $TOOLS; do for pol in $POLICIES; do for t in 1 "$N"; do
      run_cell $load $tool $pol "$t" "$rep"
    done; done; done
    [ $load = loaded ] && stop_hogs
  done
  note "repetition $rep of $REPS done"
done
uptime_end=$(uptime)

mkdir -p bench/results
rec=bench/results/$(date -u +%Y-%m-%d-%H%M)-busy.md
{
  echo "# busy machine: 1 vs $N threads, quiet and loaded"
  echo
  echo "$header"
  echo "- uptime at start: $uptime_start"
  echo "- uptime at end: $uptime_end"
  echo "- loaded: $HOGS extra busy loops (bash \`while :; do :; done\`), one per core"
  echo "- policies: default = the tools' own choice (environment without OMP_WAIT_POLICY/GOMP_SPINCOUNT;"
  echo "  $($QF_BIN/qforge-verify --version | grep 'wait policy' | sed 's/^openmp //')); passive = OMP_WAIT_POLICY=passive;"
  echo "  spinN = GOMP_SPINCOUNT=N (spin300000 is libgomp's default)"
  echo
  echo "commands (each with -t 1 and -t $N):"
  echo
  for tool in $TOOLS; do echo "    ${CMD[$tool]}"; done
  echo
  echo "median wall seconds of $REPS runs; ratio = t1 / t$N (> 1: $N threads faster; goal >= 0.8)"
  echo
  echo "| tool | machine | policy | 1 thread s | $N threads s | ratio |"
  echo "|---|---|---|---:|---:|---:|"
  for tool in $TOOLS; do for load in quiet loaded; do for pol in $POLICIES; do
    a=$(median ${W[$load,$tool,$pol,1]:-}); b=$(median ${W[$load,$tool,$pol,$N]:-})
    echo "| $tool | $load | $pol | $(fmt 2 "$a") | $(fmt 2 "$b") | $(ratio "$a" "$b") |"
  done; done; done
} | tee "$rec"
note "record written to $rec"
