#!/usr/bin/env bash
# tests/cli/bad_inputs.sh - every malformed file in tests/bad-inputs/<format>/
# that has a sidecar regex (F.expect, or NAME.expect for NAME.ext) must make
# qforge-inspect fail cleanly: exit 1 (never a crash, exit >= 128 is a signal
# or a sanitizer abort), nothing on stdout, and one stderr line
# "qforge-inspect: error: ..." matching the regex.
. tests/lib.sh
inspect=$QF_BIN/qforge-inspect
if [ ! -x "$inspect" ]; then fail setup "$inspect not built"; finish; exit; fi
n=0
for f in tests/bad-inputs/*/*; do
  [ -f "$f" ] || continue
  case $f in *.expect) continue ;; esac
  if [ -f "$f.expect" ]; then exp=$f.expect
  elif [ -f "${f%.*}.expect" ]; then exp=${f%.*}.expect
  else continue; fi
  n=$((n+1))
  name=$(basename "$(dirname "$f")")/$(basename "$f")
  re=$(head -n 1 "$exp")
  "$inspect" "$f" >"$TMP/out" 2>"$TMP/err"; rc=$?
  err=$(cat "$TMP/err")
  if [ "$rc" -ge 128 ]; then fail "$name" "crashed (exit $rc): $err"
  elif [ "$rc" -ne 1 ]; then fail "$name" "exit $rc, want 1; stderr: $err"
  elif [ -s "$TMP/out" ]; then fail "$name" "printed to stdout before failing"
  elif [ "$(wc -l <"$TMP/err")" -ne 1 ] || ! grep -q '^qforge-inspect: error: ' "$TMP/err"; then
    fail "$name" "stderr is not one 'qforge-inspect: error:' line: $err"
  elif ! grep -Eq -- "$re" "$TMP/err"; then fail "$name" "stderr '$err' does not match /$re/"
  else pass "$name"; fi
done
[ "$n" -gt 0 ] || fail cases "no bad inputs with .expect sidecars found under tests/bad-inputs/"
finish
