# bench/lib.sh - helpers shared by bench/*.sh (sourced, not run).
#
# Environment (all optional):
#   THREADS=2          threads for every tool (qforge and peers alike)
#   WORK=build/bench   work directory (generated models, outputs, logs)
#   REPS=3             runs per measurement; the tables report the median
#   KEEP=1             keep large generated files (default: delete them at the end)
#   QF_BIN=bin  QF_TOOLS=build/tools  QF_DATA=../shared
#   PEER_BIN=$QF_DATA/peers/llama.cpp/bin (default: the build matching the tools' ISA)
#   RECORD=1           write the run record (below); RECORD=0: stdout only
#   RESULTS=bench/results  where run records go
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
# qf_isa: avx512 when QF_BIN's tools were compiled with AVX-512, else avx2.
qf_isa() { "$QF_BIN/qforge-verify" --version 2>/dev/null | grep -q '^compiled for:.* avx512f' && echo avx512 || echo avx2; }
# The peer is llama.cpp built for the same instruction set: bin-avx512 for an
# AVX-512 qforge build when present, else the portable AVX2 build in bin.
if [ -z "${PEER_BIN:-}" ]; then
  PEER_BIN=$QF_DATA/peers/llama.cpp/bin
  [ "$(qf_isa)" = avx512 ] && [ -d "$QF_DATA/peers/llama.cpp/bin-avx512" ] && PEER_BIN=$QF_DATA/peers/llama.cpp/bin-avx512
fi
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
  record_cmd "$@"
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
bytes_of() { du -bcD "$@" | tail -1 | cut -f1; }

drop_caches() { # 0 if the page cache could be dropped (needs root)
  sync
  { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null
}

machine_header() {
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- machine: $(nproc --all) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo)"
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)')"
  echo "- OpenMP: OMP_NUM_THREADS=$OMP_NUM_THREADS, OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset} (unset: the qforge tools choose a bounded spin, GOMP_SPINCOUNT=$("$QF_BIN/qforge-verify" --version 2>/dev/null | sed -n 's/.*GOMP_SPINCOUNT=//p'); llama.cpp's programs, OpenMP builds too, keep libgomp's default: spin 300000 rounds, then sleep)"
  echo "- instruction sets: qforge $QF_BIN built for $(qf_isa) ($("$QF_BIN/qforge-verify" --version 2>/dev/null | sed -n 's/^compiled for: //p')); peer $PEER_BIN"
  echo "- threads: $THREADS, runs per cell: $REPS (median reported), load average at start: $(cut -d' ' -f1-3 /proc/loadavg)$(
    [ -r /proc/pressure/cpu ] && awk '/^some/ { sub("avg60=", "", $3); printf ", CPU pressure (share of the last 60 s some task waited for a CPU): %s%%", $3 }' /proc/pressure/cpu)"
}

# Run record. Everything a bench script prints on stdout is held back and,
# when the script exits, printed and also written with a header (date,
# commit, machine, load at start and end, the invocation with every knob's
# value) and the list of distinct commands it timed to
# $RESULTS/<YYYY-MM-DD-HHMM>-<bench>.md (a -2, -3 suffix if that exists).
# A script that printed nothing writes no record.
REC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS=${RESULTS:-$REC_ROOT/bench/results}
RECORD=${RECORD:-1}
REC_DIR=

# record_cmd cmd...: remember a timed command for the record.
record_cmd() { [ -n "$REC_DIR" ] && printf '%s\n' "$*" >>"$REC_DIR/commands"; return 0; }

# record_knobs: NAME=value for every ${NAME:-default} knob of this script and
# its libraries that is set, i.e. the invocation that repeats the run.
record_knobs() {
  local name out=
  for name in $(cat "$0" "$REC_ROOT/bench/lib.sh" "$REC_ROOT/bench/gen-1b.sh" 2>/dev/null |
                grep -o '\${[A-Z][A-Z0-9_]*:\{0,1\}-' | tr -d '${:-' | awk '!seen[$0]++'); do
    case $name in RESULTS|RECORD|GNU_TIME) continue ;; esac
    [ -n "${!name+x}" ] || continue
    case ${!name} in *[[:space:]]*) out+="$name=\"${!name}\" " ;; *) out+="$name=${!name} " ;; esac
  done
  printf '%s' "$out"
}

# sched_note: a line on the record when the run's autogroup had a raised
# priority (root: echo -19 >/proc/self/autogroup in a new session), so other
# work on the machine got little CPU while it ran and the load average
# counts that work too.
sched_note() {
  local n
  n=$(sed -n 's/.* nice \(-*[0-9]*\)$/\1/p' /proc/self/autogroup 2>/dev/null)
  [ -n "$n" ] && [ "$n" != 0 ] && echo "- scheduling: run at autogroup nice $n; other work on the machine ran at nice 0, so the load average above includes it while this run got most of the CPU"
  return 0
}

record_finish() {
  local rc=$?
  exec 1>&3 3>&-
  cat "$REC_DIR/stdout"
  if [ -s "$REC_DIR/stdout" ]; then
    mkdir -p "$RESULTS"
    local f=$RESULTS/$REC_STAMP-$BENCH.md n=2
    while [ -e "$f" ]; do f=$RESULTS/$REC_STAMP-$BENCH-$n.md; n=$((n + 1)); done
    {
      echo "# $BENCH benchmark, $REC_DATE"
      echo
      echo "- date: $REC_DATE to $(date -u '+%H:%M UTC')"
      echo "- commit: $(git -C "$REC_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$REC_ROOT" diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)')"
      echo "- machine: $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), nproc $(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc) of $(nproc --all) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo)"
      echo "- load at start: $REC_LOAD0"
      echo "- load at end: $(uptime | sed 's/^ *//')"
      echo "- command: \`$(record_knobs)bash bench/$BENCH.sh\`"
      sched_note
      [ "$rc" = 0 ] || echo "- exit status: $rc (the run did not finish; tables may be missing)"
      echo
      cat "$REC_DIR/stdout"
      if [ -s "$REC_DIR/commands" ]; then
        echo
        echo "Commands timed (each run \`REPS\` times, interleaved):"
        echo
        echo '```'
        awk '!seen[$0]++' "$REC_DIR/commands"
        echo '```'
      fi
    } >"$f.tmp" && mv "$f.tmp" "$f" && note "run record: ${f#"$REC_ROOT"/}"
  fi
  rm -rf "$REC_DIR"
  exit "$rc"
}

# gen-1b.sh run alone is a generator, not a benchmark: no record.
if [ "$RECORD" = 1 ] && [ "$BENCH" != lib ] && [ "$BENCH" != gen-1b ]; then
  REC_DIR=$(mktemp -d "${TMPDIR:-/tmp}/qf-bench.XXXXXX") || die "mktemp failed"
  REC_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
  REC_STAMP=$(date -u '+%Y-%m-%d-%H%M')
  REC_LOAD0=$(uptime | sed 's/^ *//')
  exec 3>&1 >"$REC_DIR/stdout"
  trap record_finish EXIT
fi
