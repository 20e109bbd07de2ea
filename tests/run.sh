#!/usr/bin/env bash
# tests/run.sh - run every unit test binary and every shell test, add up the
# PASS/FAIL/SKIP lines, and end with "N passed, N failed, N skipped".
# Usage: tests/run.sh [BUILD_DIR [VARIANT_DIR...]] (default build); QF_BIN selects
# the tools, QF_CLI_TESTS (a glob, default tests/cli/*.sh) the shell tests. A line
# per test group (binary or script) is printed as each finishes. Each VARIANT_DIR holds unit tests built for another instruction set
# (make check: the AVX2 and plain x86-64 paths of the kernels); they are run
# too, their lines tagged with the directory name.
set -u
build=${1:-build}
shift $(( $# > 0 ? 1 : 0 ))
export QF_BIN=${QF_BIN:-bin}
export QF_DATA=${QF_DATA:-../shared}
# The tools choose a bounded OpenMP spin themselves (qf_cli_wait_policy): the
# shell tests run them with the environment as given. The unit test binaries
# do not, so they get the passive wait here (on a busy machine spinning idle
# threads slow the multi-thread tests down several-fold; outputs do not change).
unit_wait=${OMP_WAIT_POLICY:-passive}
if [ ! -d "$QF_DATA" ]; then
  echo "note: test data directory $QF_DATA not found: tests that need it will SKIP"
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
out=$(mktemp)
trap 'rm -f "$log" "$out"' EXIT
# One line per test group as it finishes: its counts and seconds.
group_line() { # NAME SECONDS FILE
  printf '%-32s %3d passed, %d failed, %d skipped  %4ds\n' "$1" "$(grep -c '^PASS ' "$3")" \
    "$(grep -c '^FAIL ' "$3")" "$(grep -c '^SKIP ' "$3")" "$2"
}
# Show everything but PASS lines and per-binary totals; keep all for counting.
run_one() {
  local t0=$SECONDS
  "$@" >"$out" 2>&1 || status=1
  cat "$out" >>"$log"
  grep -Ev '^(PASS |[0-9]+ passed, )' "$out"
  group_line "$(basename "${@: -1}")" $((SECONDS - t0)) "$out"
}
for t in "$build"/tests/*_test; do
  [ -x "$t" ] || continue
  run_one env OMP_WAIT_POLICY="$unit_wait" "$t"
done
for v in "$@"; do
  tag=$(basename "$v")
  for t in "$v"/tests/*_test; do
    [ -x "$t" ] || continue
    t0=$SECONDS
    OMP_WAIT_POLICY="$unit_wait" "$t" >"$out" 2>&1 || status=1
    sed -E "s/^(PASS|FAIL|SKIP) /\1 $tag:/" "$out" >>"$log"
    sed -E "s/^(PASS|FAIL|SKIP) /\1 $tag:/" "$out" | grep -Ev '^(PASS |[0-9]+ passed, )'
    group_line "$tag/$(basename "$t")" $((SECONDS - t0)) "$out"
  done
done
for s in ${QF_CLI_TESTS:-tests/cli/*.sh}; do
  [ -f "$s" ] || continue
  run_one bash "$s"
done
np=$(grep -c '^PASS ' "$log"); nf=$(grep -c '^FAIL ' "$log"); ns=$(grep -c '^SKIP ' "$log")
[ "$nf" -gt 0 ] && status=1
echo "$np passed, $nf failed, $ns skipped"
exit $status
