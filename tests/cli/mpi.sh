#!/usr/bin/env bash
# mpi.sh - the MPI builds (make MPI=1: qforge-calibrate-mpi, qforge-quantize-mpi)
# under mpirun -np 2: the imatrix of qforge-calibrate and the GPTQ and AWQ
# files of qforge-quantize are byte-identical to -np 1 (up to 4) and to the plain
# (MPI-free) programs, whose chunk-order sums they share, with GPTQ's solve
# split across the ranks by row tiles (-np 2 and 3: uneven shares), and the
# per-tensor losses too; a rank given a
# missing calibration file, or another text than rank 0's, fails the whole
# job with exit 1, one "error: rank K:" line and no output file, as does a
# rank whose GPTQ setup (here --damp) differs from rank 0's. SKIP when
# mpirun or the MPI programs are absent (make check builds them when mpicc
# exists; run from the repository, this script builds them too).
. "$(dirname "$0")/../lib.sh"
CAL=$QF_BIN/qforge-calibrate
Q=$QF_BIN/qforge-quantize
CALM=$QF_BIN/qforge-calibrate-mpi
QM=$QF_BIN/qforge-quantize-mpi
CALIB=corpus/tinystories-gen/calib.txt
OTHER=corpus/tinystories-gen/test.txt
S260GGUF=oracles/llamacpp/stories260K-F32.gguf
TS3M=models/tinystories-distill-3M
export OMP_NUM_THREADS=1

if ! command -v mpirun >/dev/null 2>&1; then
  skip mpi "mpirun not found (make deps installs openmpi-bin)"; finish; exit
fi
if { [ ! -x "$CALM" ] || [ ! -x "$QM" ]; } && [ "$QF_BIN" = bin ] && [ -f Makefile ] && command -v mpicc >/dev/null 2>&1; then
  make -s MPI=1 "$CALM" "$QM" >/dev/null 2>&1
fi
if [ ! -x "$CALM" ] || [ ! -x "$QM" ]; then
  skip mpi "MPI programs $CALM / $QM not built (make MPI=1)"; finish; exit
fi
need_data s260 "$S260GGUF" && need_data ts3m "$TS3M" && need_data calib "$CALIB" && need_data other "$OTHER" || { finish; exit; }
MPIRUN=(mpirun --oversubscribe)
[ "$(id -u)" = 0 ] && MPIRUN+=(--allow-run-as-root)
CALF=$QF_DATA/$CALIB

# same_bytes NAME REF FILE...: every FILE equals REF
same_bytes() {
  local name=$1 ref=$2 f; shift 2
  for f in "$@"; do
    if [ ! -f "$f" ]; then fail "$name" "$(basename "$f") not written"; return; fi
    if ! cmp -s "$ref" "$f"; then fail "$name" "$(basename "$f") differs from $(basename "$ref")"; return; fi
  done
  pass "$name"
}

# ---- qforge-calibrate: 5 chunks of 128 tokens (an odd count: rank 0 gets one more)
C=(-f "$CALF" -c 128 --chunks 5 --quiet -t 1)
M=$QF_DATA/$S260GGUF
"$CAL" "$M" "${C[@]}" -o "$TMP/cal-plain.gguf" 2>"$TMP/err" || fail calibrate "plain: $(cat "$TMP/err")"
for np in 1 2 3; do
  "${MPIRUN[@]}" -np $np "$CALM" "$M" "${C[@]}" -o "$TMP/cal-np$np.gguf" >/dev/null 2>"$TMP/err" ||
    fail "calibrate-np$np" "$(head -n 3 "$TMP/err")"
done
same_bytes calibrate-np1-np2-np3-plain "$TMP/cal-plain.gguf" "$TMP/cal-np1.gguf" "$TMP/cal-np2.gguf" "$TMP/cal-np3.gguf"
# an untied output (tinystories-distill-3M, HF directory) and the legacy .dat
"$CAL" "$QF_DATA/$TS3M" "${C[@]}" --process-output -o "$TMP/po-plain.dat" 2>/dev/null
"${MPIRUN[@]}" -np 2 "$CALM" "$QF_DATA/$TS3M" "${C[@]}" --process-output -o "$TMP/po-np2.dat" >/dev/null 2>&1
same_bytes calibrate-process-output-dat-np2-plain "$TMP/po-plain.dat" "$TMP/po-np2.dat"

# ---- qforge-quantize: gptq (Q4_K_M of tinystories-distill-3M: q4_K / q6_K grids; stories260K Q4_0), awq+gptq
G=(--calib "$CALF" --calib-ctx 128 --calib-chunks 3 --quiet -t 1)
"$Q" "$QF_DATA/$TS3M" "$TMP/gptq-plain.gguf" Q4_K_M --method gptq "${G[@]}" --json >"$TMP/gptq-plain.json" 2>"$TMP/err" ||
  fail gptq "plain: $(cat "$TMP/err")"
for np in 1 2 3; do
  "${MPIRUN[@]}" -np $np "$QM" "$QF_DATA/$TS3M" "$TMP/gptq-np$np.gguf" Q4_K_M --method gptq "${G[@]}" --json \
    >"$TMP/gptq-np$np.json" 2>"$TMP/err" || fail "gptq-np$np" "$(head -n 3 "$TMP/err")"
done
same_bytes gptq-np1-np2-np3-plain "$TMP/gptq-plain.gguf" "$TMP/gptq-np1.gguf" "$TMP/gptq-np2.gguf" "$TMP/gptq-np3.gguf"
# the per-tensor losses (rank 0's report after the split solve) equal the plain run's
grep -o '"name": [^}]*"loss": [^}]*' "$TMP/gptq-plain.json" > "$TMP/loss-plain"
grep -o '"name": [^}]*"loss": [^}]*' "$TMP/gptq-np3.json" > "$TMP/loss-np3"
if [ ! -s "$TMP/loss-plain" ]; then fail gptq-np3-losses "no per-tensor losses in the plain --json"
elif cmp -s "$TMP/loss-plain" "$TMP/loss-np3"; then pass gptq-np3-losses
else fail gptq-np3-losses "$(diff "$TMP/loss-plain" "$TMP/loss-np3" | head -n 3)"; fi
# more ranks than chunks: rank 3 holds none and still takes part
"$Q" "$M" "$TMP/s-plain.gguf" Q4_0 --method gptq "${G[@]}" >/dev/null 2>&1
"${MPIRUN[@]}" -np 4 "$QM" "$M" "$TMP/s-np4.gguf" Q4_0 --method gptq "${G[@]}" >/dev/null 2>&1
same_bytes gptq-np4-3-chunks-plain "$TMP/s-plain.gguf" "$TMP/s-np4.gguf"
for method in awq+gptq awq; do
  "$Q" "$M" "$TMP/$method-plain.gguf" Q4_0 --method $method "${G[@]}" >/dev/null 2>&1
  nps="1 2 3"; [ $method = awq ] && nps=2
  for np in $nps; do
    "${MPIRUN[@]}" -np $np "$QM" "$M" "$TMP/$method-np$np.gguf" Q4_0 --method $method "${G[@]}" >/dev/null 2>&1
  done
  same_bytes "$method-np${nps// /-np}-plain" "$TMP/$method-plain.gguf" $(for np in $nps; do echo "$TMP/$method-np$np.gguf"; done)
done
left=$(ls -A "$TMP" | grep -E 'tmp|probe' || true)
[ -z "$left" ] && pass no-temp-files-left || fail no-temp-files-left "$left"

# ---- failures: rank 1 given another text, a missing calibration file (then rank 0), a missing model
# expect_job_fail NAME RANK REGEX OUT -- mpirun args: exit 1, one error line naming RANK, OUT not written
expect_job_fail() {
  local name=$1 rank=$2 re=$3 out=$4 rc; shift 5
  "${MPIRUN[@]}" "$@" >/dev/null 2>"$TMP/err"; rc=$?
  local n; n=$(grep -c ': error: ' "$TMP/err")
  if [ $rc -ne 1 ]; then fail "$name" "exit $rc, want 1: $(head -n 3 "$TMP/err")"
  elif [ "$n" -ne 1 ] || ! grep -Eq -- ": error: rank $rank: $re" "$TMP/err"; then fail "$name" "want one 'error: rank $rank: $re' line: $(head -n 3 "$TMP/err")"
  elif [ -e "$out" ] || ls "$out".* >/dev/null 2>&1; then fail "$name" "$(basename "$out") (or a temp file) written"
  else pass "$name"; fi
}
expect_job_fail calibrate-rank1-other-text 1 "the calibration text differs from rank 0" "$TMP/f2.gguf" -- \
  -np 1 "$CALM" "$M" "${C[@]}" -o "$TMP/f2.gguf" : -np 1 "$CALM" "$M" -f "$QF_DATA/$OTHER" -c 128 --chunks 5 --quiet -t 1 -o "$TMP/f2.gguf"
expect_job_fail gptq-rank1-missing-calib 1 ".*nope.txt: cannot open" "$TMP/f3.gguf" -- \
  -np 1 "$QM" "$M" "$TMP/f3.gguf" Q4_0 --method gptq "${G[@]}" : \
  -np 1 "$QM" "$M" "$TMP/f3.gguf" Q4_0 --method gptq --calib "$TMP/nope.txt" --calib-ctx 128 --calib-chunks 3 --quiet -t 1
expect_job_fail gptq-rank0-missing-calib 0 ".*nope.txt: cannot open" "$TMP/f4.gguf" -- \
  -np 1 "$QM" "$M" "$TMP/f4.gguf" Q4_0 --method gptq --calib "$TMP/nope.txt" --calib-ctx 128 --calib-chunks 3 --quiet -t 1 : \
  -np 1 "$QM" "$M" "$TMP/f4.gguf" Q4_0 --method gptq "${G[@]}"
# rank 1's rows would go into rank 0's file: its solve setup must be rank 0's
expect_job_fail gptq-rank1-other-damp 1 "the gptq setup .*differs from rank 0" "$TMP/f6.gguf" -- \
  -np 1 "$QM" "$M" "$TMP/f6.gguf" Q4_0 --method gptq "${G[@]}" : \
  -np 1 "$QM" "$M" "$TMP/f6.gguf" Q4_0 --method gptq "${G[@]}" --damp 0.02
expect_job_fail gptq-rank1-missing-model 1 ".*nope.gguf: cannot open" "$TMP/f5.gguf" -- \
  -np 1 "$QM" "$M" "$TMP/f5.gguf" Q4_0 --method gptq "${G[@]}" : \
  -np 1 "$QM" "$TMP/nope.gguf" "$TMP/f5.gguf" Q4_0 --method gptq "${G[@]}"
finish
