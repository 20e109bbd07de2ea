#!/usr/bin/env bash
# calibrate.sh - qforge-calibrate end to end: usage, output formats, thread
# count invariance (byte-identical files), text input variants (.gz, JSONL),
# bad inputs (exit 1, nothing left behind), and the peer llama.cpp (c392e50):
#   - the 64 x 512 oracle .dat of llama-imatrix: same 35 entries and ncall,
#     weights within 5e-4 relative, 2e-5 on average (measured 1.70e-4 and
#     1.10e-5; an F32 KV cache instead of llama.cpp's F16 one gives 3.3e-5 on
#     average, no BOS at chunk starts 1.7e-2);
#   - fresh llama-imatrix runs (-c 128 --chunks 8 -t 1) on stories260K-F32
#     and synth-tinyk-F16 (F16 weights: activations rounded like ggml), and
#     we read llama-imatrix's .dat: max within 1e-3, mean within 3e-5
#     (measured max 2.4e-4 / 4.8e-5, mean 1.1e-5 / 1.7e-6; an F32 KV cache
#     gives a mean of 1.0e-4 on stories260K). The max over 1024 tokens is
#     noisy (small columns): the mean is the discriminating check;
#   - --process-output on an untied model (tinystories-distill-3M): 29
#     entries with output.weight (measured max 1.5e-4, mean 4.9e-6);
#   - llama-quantize --imatrix reads our .dat: Q4_K_M of stories260K-F32 (its
#     imatrix-weighted tensors are Q5_0; stock llama-quantize refuses Q4_0 for
#     this model, see the oracles' PROVENANCE.md) loads 35 entries and differs
#     from the oracle made with llama-imatrix's .dat in a handful of bytes.
. "$(dirname "$0")/../lib.sh"
QF_TOOLS=${QF_TOOLS:-build/tools}
CAL=$QF_BIN/qforge-calibrate
CMP=$QF_TOOLS/imatrix_compare
MODEL=oracles/llamacpp/stories260K-F32.gguf
SYNTH=oracles/llamacpp/synth-tinyk-F16.gguf
WIKI=corpus/wikitext-2-raw/wiki.test.raw
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# absolute paths: the oracle run changes directory
[ -d "$QF_DATA" ] && QF_DATA=$(cd "$QF_DATA" && pwd)
CAL=$(cd "$(dirname "$CAL")" && pwd)/$(basename "$CAL")
PEERS=$QF_DATA/peers/llama.cpp/bin

# --- usage ------------------------------------------------------------------
if "$CAL" --help | grep -q "Memory:"; then pass help; else fail help "no memory bound in --help"; fi
expect_exit no-args 2 "no model" -- "$CAL"
expect_exit no-text 2 "no calibration text" -- "$CAL" model.gguf
expect_exit bad-format 2 "gguf or dat" -- "$CAL" model.gguf -f x --output-format bin
expect_exit bad-ctx 2 "-c: expected an integer >= 1, not '0'" -- "$CAL" model.gguf -f x -c 0

if need_data model "$MODEL" && need_data text "$WIKI"; then
  M=$QF_DATA/$MODEL
  head -c 60000 "$QF_DATA/$WIKI" >"$TMP/wiki.txt"
  run() { "$CAL" "$M" -f "$TMP/wiki.txt" -c 128 --chunks 4 --quiet "$@"; }

  # --- formats and determinism ----------------------------------------------
  if OMP_NUM_THREADS=1 run -o "$TMP/t1.gguf" && OMP_NUM_THREADS=2 run -o "$TMP/t2.gguf" &&
     OMP_NUM_THREADS=1 run -o "$TMP/t1.dat" && OMP_NUM_THREADS=2 run -o "$TMP/t2.dat"; then
    if cmp -s "$TMP/t1.gguf" "$TMP/t2.gguf" && cmp -s "$TMP/t1.dat" "$TMP/t2.dat"; then
      pass threads-1-vs-2-identical
    else
      fail threads-1-vs-2-identical "outputs differ between 1 and 2 threads"
    fi
    [ "$(head -c 4 "$TMP/t1.gguf")" = GGUF ] && [ "$(od -An -tu4 -N4 "$TMP/t1.dat" | tr -d ' ')" = 35 ] &&
      pass format-by-extension || fail format-by-extension "unexpected file headers"
    if out=$("$CMP" "$TMP/t1.gguf" "$TMP/t1.dat" --tol 3e-7); then pass gguf-vs-dat; else fail gguf-vs-dat "$out"; fi
    run -o "$TMP/forced.gguf" --output-format dat &&
      [ "$(od -An -tu4 -N4 "$TMP/forced.gguf" | tr -d ' ')" = 35 ] && pass format-option || fail format-option "--output-format dat ignored"
  else
    fail threads-1-vs-2-identical "qforge-calibrate failed"
  fi
  json=$("$CAL" "$M" -f "$TMP/wiki.txt" -c 128 --chunks 4 -o "$TMP/j.gguf" --json 2>&1)
  case "$json" in *'"n_chunks": 4, "n_tokens": 512, "entries": 35,'*) pass json ;; *) fail json "$json" ;; esac

  # --- input variants: gzip and JSON Lines give the same statistics ---------
  gzip -c "$TMP/wiki.txt" >"$TMP/wiki.txt.gz"
  # one JSONL record holding the text without its final newline (which -f drops)
  awk 'BEGIN { ORS = "" } { gsub(/\\/, "\\\\"); gsub(/"/, "\\\""); gsub(/\t/, "\\t"); gsub(/\r/, "\\r");
       s = s (NR > 1 ? "\\n" : "") $0 } END { print "{\"text\": \"" s "\"}\n" }' "$TMP/wiki.txt" >"$TMP/wiki.jsonl"
  if "$CAL" "$M" -f "$TMP/wiki.txt.gz" -c 128 --chunks 4 --quiet -o "$TMP/gz.gguf" &&
     "$CAL" "$M" -f "$TMP/wiki.jsonl" -c 128 --chunks 4 --quiet -o "$TMP/jl.gguf"; then
    if out=$("$CMP" "$TMP/t1.gguf" "$TMP/gz.gguf") && out2=$("$CMP" "$TMP/t1.gguf" "$TMP/jl.gguf"); then
      pass gz-and-jsonl-input
    else
      fail gz-and-jsonl-input "$out $out2"
    fi
  else
    fail gz-and-jsonl-input "qforge-calibrate failed on .gz/.jsonl"
  fi

  # --- bad inputs: exit 1, clear message, nothing left behind ---------------
  mkdir -p "$TMP/out"
  printf 'Once upon a time.\n' >"$TMP/short.txt"
  expect_exit short-text 1 "fewer than one chunk" -- "$CAL" "$M" -f "$TMP/short.txt" -o "$TMP/out/a.gguf"
  expect_exit missing-model 1 "nope.gguf" -- "$CAL" "$TMP/nope.gguf" -f "$TMP/wiki.txt" -o "$TMP/out/b.gguf"
  expect_exit missing-text 1 "nope.txt" -- "$CAL" "$M" -f "$TMP/nope.txt" -o "$TMP/out/c.gguf"
  expect_exit unwritable-output 1 "cannot write" -- "$CAL" "$M" -f "$TMP/wiki.txt" -c 128 --chunks 1 -o "$TMP/nodir/x.gguf"
  expect_exit output-is-a-directory 1 "is a directory" -- "$CAL" "$M" -f "$TMP/wiki.txt" -c 128 --chunks 1 -o "$TMP/out"
  touch "$TMP/out/file"
  expect_exit output-under-a-file 1 "cannot write" -- "$CAL" "$M" -f "$TMP/wiki.txt" -c 128 --chunks 1 -o "$TMP/out/file/x.dat"
  left=$(ls -A "$TMP/out" | grep -v '^file$')
  [ -z "$left" ] && [ ! -e "$TMP/nodir" ] && pass nothing-left-behind || fail nothing-left-behind "left: $left"

  # --- the peer ---------------------------------------------------------------
  ORACLE=oracles/llamacpp/stories260K-imatrix-wiki64x512.dat
  if need_data oracle-64x512 "$ORACLE"; then
    mkdir -p "$TMP/q"
    # -f named as in the oracle (its dataset is "wiki.test.raw"), same file name
    if (cd "$QF_DATA/corpus/wikitext-2-raw" &&
        "$CAL" "$M" -f wiki.test.raw -c 512 --chunks 64 --quiet -o "$TMP/q/stories260K-imatrix-wiki64x512.dat"); then
      if out=$("$CMP" "$TMP/q/stories260K-imatrix-wiki64x512.dat" "$QF_DATA/$ORACLE" --same-ncall --tol 5e-4 --mean-tol 2e-5); then
        pass "oracle-64x512 ($out)"
      else
        fail oracle-64x512 "$out"
      fi
      Q=$PEERS/llama-quantize
      QREF=$QF_DATA/oracles/llamacpp/stories260K-Q4_K_M-imat.gguf
      if [ ! -x "$Q" ]; then
        skip llama-quantize-reads-ours "peer binary $Q not found"
      elif ! need_data llama-quantize-reads-ours oracles/llamacpp/stories260K-Q4_K_M-imat.gguf; then
        :
      elif ! (cd "$TMP/q" && "$Q" --imatrix stories260K-imatrix-wiki64x512.dat "$M" ours.gguf Q4_K_M 2) >"$TMP/q/log" 2>&1; then
        fail llama-quantize-reads-ours "llama-quantize failed: $(tail -n 2 "$TMP/q/log" | tr '\n' ' ')"
      elif ! grep -q "loaded 35 importance matrix entries" "$TMP/q/log"; then
        fail llama-quantize-reads-ours "llama-quantize did not load 35 entries"
      else
        # the harness: llama-imatrix's own .dat gives the oracle byte for byte
        mkdir -p "$TMP/q/ref" && cp "$QF_DATA/$ORACLE" "$TMP/q/ref/"
        (cd "$TMP/q/ref" && "$Q" --imatrix stories260K-imatrix-wiki64x512.dat "$M" ref.gguf Q4_K_M 2) >/dev/null 2>&1
        if cmp -s "$TMP/q/ref/ref.gguf" "$QREF"; then pass llama-quantize-harness; else fail llama-quantize-harness "not the oracle"; fi
        ndiff=$(cmp -l "$TMP/q/ours.gguf" "$QREF" | wc -l)
        size_ok=$([ "$(stat -c %s "$TMP/q/ours.gguf")" = "$(stat -c %s "$QREF")" ] && echo 1)
        if [ "$size_ok" = 1 ] && [ "$ndiff" -lt 200 ]; then
          pass "llama-quantize-reads-ours (Q4_K_M: $ndiff of $(stat -c %s "$QREF") bytes differ from the oracle)"
        else
          fail llama-quantize-reads-ours "$ndiff bytes differ from the oracle"
        fi
      fi
    else
      fail oracle-64x512 "qforge-calibrate failed"
    fi
  fi

  IMAT=$PEERS/llama-imatrix
  if [ ! -x "$IMAT" ]; then
    skip peer-imatrix "peer binary $IMAT not found"
  else
    for mrel in "$MODEL" "$SYNTH"; do
      name=fresh-$(basename "$mrel" .gguf)
      need_data "$name" "$mrel" || continue
      if ! "$IMAT" -m "$QF_DATA/$mrel" -f "$TMP/wiki.txt" -c 128 --chunks 8 -t 1 -o "$TMP/peer.dat" >"$TMP/peer.log" 2>&1; then
        fail "$name" "llama-imatrix failed: $(tail -n 1 "$TMP/peer.log")"
        continue
      fi
      if ! "$CAL" "$QF_DATA/$mrel" -f "$TMP/wiki.txt" -c 128 --chunks 8 --quiet -o "$TMP/ours.dat"; then
        fail "$name" "qforge-calibrate failed"
        continue
      fi
      # and we read llama-imatrix's own .dat
      if out=$("$CMP" "$TMP/ours.dat" "$TMP/peer.dat" --same-ncall --tol 1e-3 --mean-tol 3e-5); then
        pass "$name ($out)"
      else
        fail "$name" "$out"
      fi
    done
    # an untied output.weight with --process-output (tinystories-distill-3M,
    # converted to F32 by qforge-convert): 28 block entries + output.weight
    CONV=$(dirname "$CAL")/qforge-convert
    if [ -x "$CONV" ] && need_data process-output models/tinystories-distill-3M; then
      if ! "$CONV" "$QF_DATA/models/tinystories-distill-3M" -o "$TMP/ts3m.gguf" --outtype f32 >"$TMP/log" 2>&1; then
        fail process-output "qforge-convert: $(tail -n 1 "$TMP/log")"
      elif ! "$IMAT" -m "$TMP/ts3m.gguf" -f "$TMP/wiki.txt" -c 128 --chunks 8 -t 1 --process-output -o "$TMP/peer.dat" >"$TMP/peer.log" 2>&1; then
        fail process-output "llama-imatrix failed: $(tail -n 1 "$TMP/peer.log")"
      elif ! "$CAL" "$TMP/ts3m.gguf" -f "$TMP/wiki.txt" -c 128 --chunks 8 --process-output --quiet -o "$TMP/ours.dat"; then
        fail process-output "qforge-calibrate failed"
      elif out=$("$CMP" "$TMP/ours.dat" "$TMP/peer.dat" --same-ncall --tol 1e-3 --mean-tol 3e-5) && case "$out" in "entries 29/29,"*) true ;; *) false ;; esac; then
        pass "process-output ($out)"
      else
        fail process-output "$out"
      fi
    fi
  fi
fi
finish
