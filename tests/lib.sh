# tests/lib.sh - helpers for shell tests in tests/cli/*.sh (sourced).
# Each check prints PASS/FAIL/SKIP lines in the same format as qf_test.h;
# tests/run.sh adds them up. Binaries come from $QF_BIN (default bin/).
QF_BIN=${QF_BIN:-bin}
QF_DATA=${QF_DATA:-../shared}
SUITE=$(basename "$0" .sh)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/qf-$SUITE.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
_np=0; _nf=0; _ns=0
pass() { echo "PASS $SUITE/$1"; _np=$((_np+1)); }
fail() { echo "FAIL $SUITE/$1: $2"; _nf=$((_nf+1)); }
skip() { echo "SKIP $SUITE/$1: $2"; _ns=$((_ns+1)); }
finish() { echo "$_np passed, $_nf failed, $_ns skipped"; [ "$_nf" -eq 0 ]; }
# need_data NAME REL: returns 1 (and SKIPs NAME) if $QF_DATA/REL is missing.
need_data() {
  if [ ! -e "$QF_DATA/$2" ]; then skip "$1" "test data $QF_DATA/$2 not found (set QF_DATA)"; return 1; fi
  return 0
}
# expect_exit NAME CODE STDERR_REGEX -- cmd...: run cmd, check exit code and stderr.
expect_exit() {
  local name=$1 code=$2 re=$3; shift 4
  local out rc
  out=$("$@" 2>&1 >/dev/null); rc=$?
  if [ "$rc" -ne "$code" ]; then fail "$name" "exit $rc, want $code; stderr: $out"; return 1; fi
  if [ -n "$re" ] && ! printf '%s' "$out" | grep -Eq -- "$re"; then fail "$name" "stderr '$out' does not match /$re/"; return 1; fi
  pass "$name"
}
