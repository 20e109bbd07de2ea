#!/usr/bin/env bash
# cli_grammar.sh - the command-line grammar every tool shares: --help on
# stdout with exit 0, --version, --opt=value as well as --opt value, usage
# errors (exit 2) that name the option and its range, the thread bound (-t and
# OMP_NUM_THREADS: a usage error, never a crash), and the same output bytes
# for 1 and 2 threads.
. "$(dirname "$0")/../lib.sh"
TOOLS="convert calibrate quantize verify inspect"
M=oracles/llamacpp/stories260K-F32.gguf
HF=models/stories260K
TEXT=corpus/tinystories-gen/test.txt

# --- help, version, flags given a value, unknown options: every tool ---
for t in $TOOLS; do
  b=$QF_BIN/qforge-$t
  out=$("$b" --help 2>"$TMP/err"); rc=$?
  if [ $rc -eq 0 ] && printf '%s' "$out" | grep -q '^usage: ' && [ ! -s "$TMP/err" ]; then pass "$t-help-stdout"
  else fail "$t-help-stdout" "exit $rc, stdout starts '$(printf '%s' "$out" | head -c 60)', stderr $(head -c 100 "$TMP/err")"; fi
  out=$("$b" --version 2>&1); rc=$?
  if [ $rc -eq 0 ] && printf '%s' "$out" | grep -Eq "^qforge-$t [0-9]+\.[0-9]+\.[0-9]+ \(commit [0-9a-z-]+\)$" \
     && printf '%s' "$out" | grep -q '^built with: ' && printf '%s' "$out" | grep -q '^compiled for: '; then
    pass "$t-version"
  else fail "$t-version" "exit $rc: $out"; fi
  # a bounded spin unless the user chose a policy (qf_cli_wait_policy)
  w1=$(env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT "$b" --version | grep '^openmp wait policy: ')
  w2=$(env -u GOMP_SPINCOUNT OMP_WAIT_POLICY=active "$b" --version | grep '^openmp wait policy: ')
  w3=$(env -u OMP_WAIT_POLICY GOMP_SPINCOUNT=1000 "$b" --version | grep '^openmp wait policy: ')
  if [ "$w1" = "openmp wait policy: libgomp default, GOMP_SPINCOUNT=1000" ] && [ "$w2" = "openmp wait policy: active" ] \
     && [ "$w3" = "openmp wait policy: libgomp default, GOMP_SPINCOUNT=1000" ]; then pass "$t-wait-policy"
  else fail "$t-wait-policy" "unset: '$w1'; OMP_WAIT_POLICY=active: '$w2'; GOMP_SPINCOUNT=1000: '$w3'"; fi
  expect_exit "$t-unknown-option" 2 "^qforge-$t: error: unknown option '--bogus=1'" -- "$b" --bogus=1
  flag=--json; [ "$t" = convert ] && flag=--quiet
  expect_exit "$t-flag-with-value" 2 "^qforge-$t: error: option $flag takes no value" -- "$b" x "$flag=yes"
done

# --- usage errors name the option and the accepted range (exit 2) ---
V=$QF_BIN/qforge-verify C=$QF_BIN/qforge-calibrate Q=$QF_BIN/qforge-quantize K=$QF_BIN/qforge-convert
expect_exit verify-ctx-1 2 "error: -c: expected an integer >= 4, not '1'" -- "$V" m.gguf -f x -c 1
expect_exit verify-ctx-eq 2 "error: --ctx: expected an integer >= 4, not '0'" -- "$V" m.gguf -f x --ctx=0
expect_exit verify-chunks-0 2 "error: --chunks: expected an integer >= 1, not '0'" -- "$V" m.gguf -f x --chunks 0
expect_exit verify-threads-0 2 "error: -t: expected an integer from 1 to [0-9]+, not '0'" -- "$V" m.gguf -f x -t 0
expect_exit verify-batch-0 2 "error: -b: expected an integer >= 1, not '0'" -- "$V" m.gguf -f x -b 0
expect_exit verify-logits-top 2 "error: --logits-top: expected an integer from 0 to 4096, not '5000'" -- "$V" m.gguf -f x --logits-top=5000
expect_exit verify-missing-value 2 "error: option --ctx needs a value" -- "$V" m.gguf -f x --ctx
expect_exit calibrate-chunks-0 2 "error: --chunks: expected an integer >= 1, not '0'" -- "$C" m.gguf -f x --chunks=0
expect_exit calibrate-threads-0 2 "error: --threads: expected an integer from 1 to [0-9]+, not '0'" -- "$C" m.gguf -f x --threads 0
expect_exit quantize-threads-0 2 "error: -t: expected an integer from 1 to [0-9]+, not '0'" -- "$Q" a.gguf b.gguf q8_0 -t 0
expect_exit convert-outtype-eq 2 "error: --outtype: unknown type 'q4_0'" -- "$K" dir -o x.gguf --outtype=q4_0

# --- the thread bound: a usage error naming the option, no crash, no thread storm ---
expect_exit verify-threads-huge 2 "error: -t: expected an integer from 1 to [0-9]+, not '100000'" -- "$V" m.gguf -f x -t 100000
expect_exit calibrate-threads-huge 2 "error: -t: expected an integer from 1 to [0-9]+, not '100000'" -- "$C" m.gguf -f x -t 100000
expect_exit quantize-threads-huge 2 "error: --threads: expected an integer from 1 to [0-9]+, not '20000'" -- "$Q" a.gguf b.gguf q8_0 --threads=20000
expect_exit convert-threads-huge 2 "error: -t: expected an integer from 1 to [0-9]+, not '100000'" -- "$K" dir -o x.gguf -t 100000
if need_data omp-num-threads "$M"; then
  OMP_NUM_THREADS=100000 expect_exit verify-omp-num-threads 2 "error: OMP_NUM_THREADS=100000: expected an integer from 1 to [0-9]+" -- \
    "$V" "$QF_DATA/$M" -f "$QF_DATA/$M" -c 16 --chunks 1
  OMP_NUM_THREADS=100000 expect_exit quantize-omp-num-threads 2 "error: OMP_NUM_THREADS=100000: expected an integer from 1 to [0-9]+" -- \
    "$Q" "$QF_DATA/$M" "$TMP/omp.gguf" q8_0
  if ls "$TMP"/omp.gguf* >/dev/null 2>&1; then fail quantize-omp-no-file "left $(ls "$TMP"/omp.gguf*)"; else pass quantize-omp-no-file; fi
  OMP_NUM_THREADS=0 expect_exit calibrate-omp-zero 2 "error: OMP_NUM_THREADS=0: expected an integer from 1 to [0-9]+" -- \
    "$C" "$QF_DATA/$M" -f "$QF_DATA/$M" -o "$TMP/x.gguf"
fi

# --- --opt=value gives what --opt value gives; 1 and 2 threads give the same bytes ---
if need_data opt-eq-verify "$M" && need_data opt-eq-verify "$TEXT"; then
  a=$("$V" "$QF_DATA/$M" -f "$QF_DATA/$TEXT" --ctx 128 --chunks 3 --threads 1 --kv f16 2>&1)
  b=$("$V" "$QF_DATA/$M" --file="$QF_DATA/$TEXT" --ctx=128 --chunks=3 --threads=2 --kv=f16 2>&1)
  if [ -n "$a" ] && [ "$a" = "$b" ]; then pass opt-eq-verify; else fail opt-eq-verify "'$a' vs '$b'"; fi
fi
if need_data opt-eq-calibrate "$M" && need_data opt-eq-calibrate "$TEXT"; then
  "$C" "$QF_DATA/$M" -f "$QF_DATA/$TEXT" -c 64 --chunks 3 -t 1 -o "$TMP/c1.gguf" --quiet \
    && "$C" "$QF_DATA/$M" --file="$QF_DATA/$TEXT" --ctx=64 --chunks=3 --threads=2 --output="$TMP/c2.gguf" --quiet \
    && cmp -s "$TMP/c1.gguf" "$TMP/c2.gguf" && pass opt-eq-calibrate || fail opt-eq-calibrate "outputs differ or a run failed"
fi
if need_data opt-eq-quantize "$M"; then
  "$Q" "$QF_DATA/$M" "$TMP/q1.gguf" Q4_K_M -t 1 --method search --quiet >/dev/null \
    && "$Q" "$QF_DATA/$M" "$TMP/q2.gguf" Q4_K_M --threads=2 --method=search --quiet >/dev/null \
    && cmp -s "$TMP/q1.gguf" "$TMP/q2.gguf" && pass opt-eq-quantize || fail opt-eq-quantize "outputs differ or a run failed"
fi
if need_data opt-eq-convert "$HF"; then
  "$K" "$QF_DATA/$HF" -o "$TMP/k1.gguf" --outtype q8_0 --quiet \
    && "$K" "$QF_DATA/$HF" --outfile="$TMP/k2.gguf" --outtype=q8_0 --quiet \
    && cmp -s "$TMP/k1.gguf" "$TMP/k2.gguf" && pass opt-eq-convert || fail opt-eq-convert "outputs differ or a run failed"
fi
finish
