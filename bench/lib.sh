# bench/lib.sh - helpers shared by bench/*.sh (sourced, not run).
#
# Environment (all optional):
#   THREADS=2          threads for every tool (qforge and peers alike)
#   WORK=build/bench   work directory (generated models, outputs, logs)
#   REPS=3             runs per measurement; the tables report the median
#   KEEP=1             keep large generated files (default: delete them at the end)
#   QF_BIN=bin  QF_TOOLS=build/tools  QF_DATA=../shared
#   PEER_BIN=$QF_DATA/peers/llama.cpp/bin
#
# Measurements use /usr/bin/time -v (GNU time): wall clock ("Elapsed") and
# peak resident set size ("Maximum resident set size"). The A/B runs of two
# tools are interleaved (A B A B A B) so a burst of load from other
# processes on the machine hits both alike.
set -u
THREADS=${THREADS:-2}
WORK=${WORK:-build/bench}
REPS=${REPS:-3}
KEEP=${KEEP:-0}
QF_BIN=${QF_BIN:-bin}
QF_TOOLS=${QF_TOOLS:-build/tools}
QF_DATA=${QF_DATA:-../shared}
PEER_BIN=${PEER_BIN:-$QF_DATA/peers/llama.cpp/bin}
GNU_TIME=${GNU_TIME:-/usr/bin/time}
export OMP_NUM_THREADS=$THREADS
mkdir -p "$WORK"
BENCH=$(basename "$0" .sh)

note() { echo "$BENCH: $*" >&2; }
die() { echo "$BENCH: error: $*" >&2; exit 1; }

[ -x "$GNU_TIME" ] || die "$GNU_TIME (GNU time) not found: run 'make deps' (Debian package 'time')"

# have_peer NAME: true if the llama.cpp program NAME is there; else says SKIP.
have_peer() {
  if [ -x "$PEER_BIN/$1" ]; then return 0; fi
  note "SKIP peer $1: $PEER_BIN/$1 not found"
  return 1
}
# have_qf NAME: true if bin/NAME is built; else says SKIP.
have_qf() {
  if [ -x "$QF_BIN/$1" ]; then return 0; fi
  note "SKIP $1: $QF_BIN/$1 not found (not built / not on this branch yet)"
  return 1
}

# timed LOG cmd...: run cmd under GNU time; its stdout+stderr go to LOG,
# GNU time's report to LOG.time. Sets T_WALL (seconds) and T_RSS (KiB).
# Returns cmd's exit status.
timed() {
  local log=$1; shift
  "$GNU_TIME" -v -o "$log.time" "$@" >"$log" 2>&1
  local rc=$?
  T_WALL=$(awk -F': ' '/Elapsed \(wall clock\)/ {
      n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$log.time")
  T_RSS=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$log.time")
  if [ $rc -ne 0 ]; then note "command failed (exit $rc): $*"; tail -5 "$log" >&2; fi
  return $rc
}

# median of the arguments (numbers)
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# fmt DIGITS X
fmt() { awk -v d="$1" -v x="$2" 'BEGIN { if (x == "" || x == "-") print "-"; else printf "%.*f\n", d, x }'; }
# ratio A B -> A/B with 2 decimals ("-" when either is missing)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f\n", a / b }'; }
mib() { awk -v k="$1" 'BEGIN { if (k == "" || k == "-") print "-"; else printf "%.0f\n", k / 1024 }'; }
bytes_of() { du -bc "$@" | tail -1 | cut -f1; }

drop_caches() { # 0 if the page cache could be dropped (needs root)
  sync
  { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null
}

machine_header() {
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- machine: $(nproc --all) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo)"
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)')"
  echo "- OpenMP: OMP_NUM_THREADS=$OMP_NUM_THREADS, OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset} (unset: the qforge tools choose the passive wait; llama.cpp's programs, OpenMP builds too, keep libgomp's default: spin, then sleep)"
  echo "- threads: $THREADS, runs per cell: $REPS (median reported), load average at start: $(cut -d' ' -f1-3 /proc/loadavg)$(
    [ -r /proc/pressure/cpu ] && awk '/^some/ { sub("avg60=", "", $3); printf ", CPU pressure (share of the last 60 s some task waited for a CPU): %s%%", $3 }' /proc/pressure/cpu)"
}
