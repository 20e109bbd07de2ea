#!/usr/bin/env bash
# visibility.sh - what the tools show while they work: quantize --dry-run ends
# with totals (sizes, bits per weight, tensors per type) that match a real
# run; tests/run.sh prints a line per test group; the demo summarises the
# per-tensor fallback lines of quantize in one line.
. "$(dirname "$0")/../lib.sh"
Q=$QF_BIN/qforge-quantize
M=oracles/llamacpp/stories260K-F32.gguf

if need_data dry-run-totals "$M"; then
  dry=$("$Q" "$QF_DATA/$M" "$TMP/d.gguf" Q4_K_M --dry-run --quiet 2>/dev/null)
  "$Q" "$QF_DATA/$M" "$TMP/r.gguf" Q4_K_M --json >"$TMP/r.json" 2>/dev/null
  bpw=$(sed -n 's/.*"bits_per_weight": \([0-9.]*\).*/\1/p' "$TMP/r.json")
  outb=$(sed -n 's/.*"output_tensor_bytes": \([0-9]*\).*/\1/p' "$TMP/r.json")
  want_total=$(awk -v b="$bpw" -v o="$outb" 'BEGIN { printf "total: 47 tensors, 260032 weights: tensor data 1.04 MB -> %.2f MB (%.1f%%), %.3f bits per weight", o / 1e6, 100 * o / 1040128, b }')
  if [ -e "$TMP/d.gguf" ]; then fail dry-run-totals "--dry-run wrote a file"
  elif ! printf '%s\n' "$dry" | grep -qxF "$want_total"; then
    fail dry-run-totals "want '$want_total', got '$(printf '%s\n' "$dry" | grep '^total:')'"
  elif ! printf '%s\n' "$dry" | grep -qx 'types: f32 11 f16 5 q5_0 28 q8_0 3 (36 converted, 11 copied, 35 fallbacks)'; then
    fail dry-run-totals "types line: $(printf '%s\n' "$dry" | grep '^types:')"
  else
    pass dry-run-totals
  fi
fi

# tests/run.sh: a line per group (name, counts, seconds) as each finishes,
# then the grand total; run on a fake build directory and fake shell tests
mkdir -p "$TMP/fake/tests" "$TMP/cli"
printf '#!/bin/sh\necho "PASS a/one"\necho "PASS a/two"\necho "2 passed, 0 failed, 0 skipped"\n' >"$TMP/fake/tests/a_test"
chmod +x "$TMP/fake/tests/a_test"
printf 'echo "PASS s/x"\necho "SKIP s/y: no data"\necho "1 passed, 0 failed, 1 skipped"\n' >"$TMP/cli/s.sh"
out=$(QF_CLI_TESTS="$TMP/cli/*.sh" bash tests/run.sh "$TMP/fake" 2>&1)
if printf '%s\n' "$out" | sed -n 1p | grep -Eq '^a_test +2 passed, 0 failed, 0 skipped +[0-9]+s$' &&
   printf '%s\n' "$out" | grep -Eq '^s\.sh +1 passed, 0 failed, 1 skipped +[0-9]+s$' &&
   [ "$(printf '%s\n' "$out" | tail -1)" = "3 passed, 0 failed, 1 skipped" ]; then
  pass run-group-lines
else
  fail run-group-lines "output: $out"
fi

# the demo: no per-tensor fallback lines, one summary line per quantization
if need_data demo models/stories260K; then
  if DEMO_OUT=$TMP/demo bash scripts/demo.sh "$QF_DATA/models/stories260K" >"$TMP/demo.log" 2>&1; then
    nper=$(grep -c ': fallback: ' "$TMP/demo.log")
    nsum=$(grep -c '^qforge-quantize: [0-9]* tensors fell back to another type' "$TMP/demo.log")
    if [ "$nper" = 0 ] && [ "$nsum" = 2 ] && grep -q 'q4_K->q5_0 28' "$TMP/demo.log"; then pass demo-fallback-summary
    else fail demo-fallback-summary "$nper per-tensor lines, $nsum summaries: $(grep -i fall "$TMP/demo.log" | head -3)"; fi
  else
    fail demo-fallback-summary "demo failed: $(tail -5 "$TMP/demo.log")"
  fi
fi
finish
