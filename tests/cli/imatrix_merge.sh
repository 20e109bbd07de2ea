#!/usr/bin/env bash
# imatrix_merge.sh - qforge-calibrate --in-file (merge imatrix files, each
# weighted by its tokens) and --save-every N (the partial result written every
# N chunks). Oracles: llama-imatrix --in-file merging the same two .dat files
# (the peer, c392e50: the merged weights must be equal), the GGUF inputs of
# the same runs (token counts instead of call counts: the same weights), and
# a run of exactly the saved number of chunks (byte-identical file).
. "$(dirname "$0")/../lib.sh"
QF_TOOLS=${QF_TOOLS:-build/tools}
CAL=$QF_BIN/qforge-calibrate
CMP=$QF_TOOLS/imatrix_compare
MODEL=oracles/llamacpp/stories260K-F32.gguf
WIKI=corpus/wikitext-2-raw/wiki.test.raw
PEER=$QF_DATA/peers/llama.cpp/bin/llama-imatrix
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

expect_exit merge-model-without-text 2 "a model without -f TEXT" -- "$CAL" m.gguf --in-file a.gguf
expect_exit save-every-merge-only 2 "--save-every needs a calibration pass" -- "$CAL" --in-file a.gguf --save-every 2
expect_exit save-every-bad 2 "--save-every: expected an integer >= 1" -- "$CAL" m.gguf -f x --save-every 0
expect_exit merge-missing-input 1 "nope.gguf" -- "$CAL" --in-file nope.gguf -o "$TMP/x.gguf"

if need_data merge "$MODEL" && need_data merge "$WIKI"; then
  M=$QF_DATA/$MODEL
  head -c 60000 "$QF_DATA/$WIKI" >"$TMP/a.txt"
  tail -c 30000 "$QF_DATA/$WIKI" >"$TMP/b.txt"
  ok=1
  for ext in dat gguf; do
    "$CAL" "$M" -f "$TMP/a.txt" -c 128 --chunks 4 -o "$TMP/A.$ext" --quiet &&
      "$CAL" "$M" -f "$TMP/b.txt" -c 128 --chunks 2 -o "$TMP/B.$ext" --quiet || ok=0
  done
  if [ "$ok" = 0 ]; then
    fail merge "calibrate failed"
  else
    "$CAL" --in-file "$TMP/A.dat" --in-file "$TMP/B.dat" -c 128 -o "$TMP/merged.dat" --quiet &&
      "$CAL" --in-file "$TMP/A.gguf" --in-file "$TMP/B.gguf" -o "$TMP/merged.gguf" --json >"$TMP/m.json"
    # GGUF inputs (token counts) and .dat inputs (call counts): the same weights
    if out=$("$CMP" "$TMP/merged.gguf" "$TMP/merged.dat" --tol 1e-6); then pass merge-gguf-vs-dat
    else fail merge-gguf-vs-dat "$out"; fi
    # weighted by tokens: 4 chunks of A, 2 of B -> not the unweighted mean, not A
    if "$CMP" "$TMP/merged.gguf" "$TMP/A.gguf" --tol 1e-3 >/dev/null; then fail merge-weighted "merged = A"
    elif grep -q '"entries": 35, "n_chunks": 6' "$TMP/m.json"; then pass merge-weighted
    else fail merge-weighted "json: $(cat "$TMP/m.json")"; fi
    # merging a file with itself changes no weight, doubles the token counts
    "$CAL" --in-file "$TMP/A.gguf" --in-file "$TMP/A.gguf" -o "$TMP/AA.gguf" --quiet
    out=$("$CMP" "$TMP/AA.gguf" "$TMP/A.gguf" 2>&1)
    if printf '%s' "$out" | grep -q 'max rel diff 0.000e+00' &&
       [ "$(printf '%s\n' "$out" | grep -c 'counts 1024 vs 512$')" = 35 ]; then pass merge-self
    else fail merge-self "$(printf '%s' "$out" | tail -2)"; fi
    # the peer merges the same two .dat files
    if [ ! -x "$PEER" ]; then
      skip merge-peer "peer binary $PEER not found"
    elif ! "$PEER" -m "$M" --in-file "$TMP/A.dat" --in-file "$TMP/B.dat" -c 128 -o "$TMP/peer.dat" >"$TMP/peer.log" 2>&1; then
      fail merge-peer "llama-imatrix failed: $(tail -3 "$TMP/peer.log")"
    elif out=$("$CMP" "$TMP/merged.gguf" "$TMP/peer.dat" --tol 1e-6); then pass merge-peer
    else fail merge-peer "$out"; fi
    # a pass plus an input: the pass's statistics and the input's added
    "$CAL" "$M" -f "$TMP/b.txt" -c 128 --chunks 2 --in-file "$TMP/A.gguf" -o "$TMP/passplus.gguf" --quiet
    if out=$("$CMP" "$TMP/passplus.gguf" "$TMP/merged.gguf" --tol 1e-6); then pass merge-with-pass
    else fail merge-with-pass "$out"; fi
  fi

  # --save-every: stop the run once a partial file exists; it is the file of
  # a run of that many chunks, byte for byte
  rm -f "$TMP/part.gguf"
  env --default-signal=INT "$CAL" "$M" -f "$TMP/a.txt" -c 128 --chunks 60 --save-every 2 -o "$TMP/part.gguf" --quiet &
  pid=$!
  for _ in $(seq 1 3000); do
    [ -e "$TMP/part.gguf" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.01
  done
  if [ -e "$TMP/part.gguf" ] && kill -STOP "$pid" 2>/dev/null; then
    cp "$TMP/part.gguf" "$TMP/snap.gguf"
    kill -INT "$pid"; kill -CONT "$pid"; wait "$pid" 2>/dev/null
    n=$("$QF_BIN/qforge-inspect" "$TMP/snap.gguf" | sed -n 's/^ *imatrix.chunk_count: uint32 \([0-9]*\)$/\1/p')
    if [ -z "$n" ] || [ $((n % 2)) != 0 ]; then
      fail save-every "partial file has chunk_count '$n'"
    elif "$CAL" "$M" -f "$TMP/a.txt" -c 128 --chunks "$n" -o "$TMP/ref.gguf" --quiet && cmp -s "$TMP/snap.gguf" "$TMP/ref.gguf"; then
      if compgen -G "$TMP/part.gguf.tmp.*" >/dev/null; then fail save-every "temp file left after SIGINT"
      else pass save-every; fi
    else
      fail save-every "the partial file of $n chunks differs from a $n-chunk run"
    fi
  else
    wait "$pid"
    skip save-every "the run ended before a partial file was seen"
  fi
fi
finish
