#!/usr/bin/env bash
# interrupt.sh - a signal mid-write leaves no temp file and no output:
# convert, quantize (the FP8 writer too) and verify --save-logits are stopped (SIGSTOP) once their
# temp file exists, sent SIGINT/SIGTERM/SIGHUP, resumed, and must die of that
# signal with nothing left next to the output. A later run removes the temp
# files of dead processes and keeps those of live ones.
. "$(dirname "$0")/../lib.sh"
GEN=${QF_TOOLS:-build/tools}/gen_synth_model
C=$QF_BIN/qforge-convert
Q=$QF_BIN/qforge-quantize
V=$QF_BIN/qforge-verify
TEXT=corpus/wikitext-2-raw/wiki.test.raw

# interrupt NAME SIG OUT -- cmd...: run cmd in the background, wait for a
# "OUT.tmp.*" file, stop it, send SIG, resume; check the death and the leftovers.
interrupt() {
  local name=$1 sig=$2 out=$3; shift 4
  rm -f "$out" "$out".tmp.*
  # a script's background jobs ignore SIGINT, and under nohup every process
  # ignores SIGHUP (the tools keep an inherited "ignore"): restore the defaults
  env --default-signal=INT,HUP "$@" >/dev/null 2>"$TMP/$name.err" &
  local pid=$! seen=0
  for _ in $(seq 1 3000); do
    if compgen -G "$out.tmp.$pid.*" >/dev/null; then seen=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.01
  done
  if [ "$seen" = 0 ]; then
    wait "$pid"
    skip "$name" "the run ended before its temp file was seen (machine too fast for this model)"
    return
  fi
  kill -STOP "$pid"
  kill -"$sig" "$pid"
  kill -CONT "$pid"
  wait "$pid" 2>/dev/null
  local rc=$? want=$((128 + $(kill -l "$sig")))
  local left
  left=$(ls "$out".tmp.* "$out" 2>/dev/null)
  if [ "$rc" -ne "$want" ]; then
    fail "$name" "exit $rc, want $want (killed by SIG$sig); stderr: $(head -c 300 "$TMP/$name.err")"
  elif [ -n "$left" ]; then
    fail "$name" "left behind: $left"
  else
    pass "$name"
  fi
}

if [ ! -x "$GEN" ]; then
  skip setup "$GEN not built"
  finish
  exit
fi
if ! env --default-signal=INT true 2>/dev/null; then
  skip setup "env --default-signal (coreutils >= 8.31) is needed to send SIGINT to a background job"
  finish
  exit
fi
# ~100 MB of F32 weights: each tool writes for long enough to be caught mid-write
if ! "$GEN" --arch llama --out "$TMP/big" --hidden 512 --ff 1536 --layers 6 --heads 8 --kv-heads 8 \
     --vocab 8000 --ctx 256 >/dev/null 2>"$TMP/gen.err"; then
  fail setup "gen_synth_model: $(cat "$TMP/gen.err")"
  finish
  exit
fi

interrupt convert-int INT "$TMP/c.gguf" -- "$C" "$TMP/big" -o "$TMP/c.gguf" --outtype f32 -t 1
interrupt convert-hup HUP "$TMP/c.gguf" -- "$C" "$TMP/big" -o "$TMP/c.gguf" --outtype f32 -t 1

# the FP8 writer's temp directory OUT.tmp.PID.N goes with its files
interrupt fp8-int INT "$TMP/f8" -- "$Q" "$TMP/big" "$TMP/f8" FP8_DYNAMIC
interrupt fp8-term TERM "$TMP/f8" -- "$Q" "$TMP/big" "$TMP/f8" FP8_DYNAMIC --fp8-scheme block

if "$C" "$TMP/big" -o "$TMP/big.gguf" --outtype f32 --quiet >/dev/null 2>"$TMP/conv.err"; then
  interrupt quantize-int INT "$TMP/q.gguf" -- "$Q" "$TMP/big.gguf" "$TMP/q.gguf" Q6_K -t 1 --quiet
  interrupt quantize-term TERM "$TMP/q.gguf" -- "$Q" "$TMP/big.gguf" "$TMP/q.gguf" Q6_K -t 1 --quiet
  # an HF directory input is read directly: only OUT's temp file exists, removed too
  interrupt quantize-hf-int INT "$TMP/q2.gguf" -- "$Q" "$TMP/big" "$TMP/q2.gguf" Q6_K -t 1 --quiet
  if compgen -G "$TMP/q2.gguf.convert.tmp.*" >/dev/null; then fail quantize-hf-no-convert-tmp "a converted temp GGUF was written"
  else pass quantize-hf-no-convert-tmp; fi
else
  fail quantize-int "setup convert failed: $(cat "$TMP/conv.err")"
fi

if need_data verify-save-logits "$TEXT"; then
  interrupt verify-save-logits INT "$TMP/l.bin" -- "$V" "$TMP/big.gguf" -f "$QF_DATA/$TEXT" -c 128 --chunks 40 \
    -t 1 --save-logits "$TMP/l.bin"
fi

# stale temp files: a dead process's is removed by the next run, a live one's is kept
sh -c 'exit 0' & dead=$!
wait "$dead"
printf 'partial' >"$TMP/s.gguf.tmp.$dead.0"
printf 'partial' >"$TMP/s.gguf.convert.tmp.$dead.gguf"
printf 'live' >"$TMP/s.gguf.tmp.$$.0"
if kill -0 "$dead" 2>/dev/null; then
  skip stale-sweep "pid $dead was reused"
elif "$Q" "$TMP/big.gguf" "$TMP/s.gguf" Q8_0 --quiet >/dev/null 2>"$TMP/s.err"; then
  if [ -e "$TMP/s.gguf.tmp.$dead.0" ] || [ -e "$TMP/s.gguf.convert.tmp.$dead.gguf" ]; then
    fail stale-sweep "a dead process's temp file was kept"
  elif [ ! -e "$TMP/s.gguf.tmp.$$.0" ]; then
    fail stale-sweep "a live process's temp file was removed"
  else
    pass stale-sweep
  fi
else
  fail stale-sweep "quantize failed: $(cat "$TMP/s.err")"
fi
finish
