#!/usr/bin/env bash
# awq.sh - qforge-quantize --method awq / awq+gptq end to end:
# exactness of the scale folding (F32 output, logits of the folded model equal
# the original's within 1e-5 relative: stories260K, tinystories-distill-3M,
# synthetic Qwen2 with biases and Qwen3 with q/k norms, both GQA); alpha 0
# without clipping is byte-identical to --method search with the same
# imatrix, and awq+gptq's is gptq's; the chosen scales never raise a group's loss over alpha 0;
# llama.cpp runs the files; 1 and 2 threads give the same bytes; a checkpoint
# directory gives its converted GGUF's bytes; bad inputs.
. "$(dirname "$0")/../lib.sh"
Q=$QF_BIN/qforge-quantize
CALIB=$QF_BIN/qforge-calibrate
DIFF=${QF_TOOLS:-build/tools}/logits_diff
GEN=${QF_TOOLS:-build/tools}/gen_synth_model
PEER=$QF_DATA/peers/llama.cpp/bin/llama-perplexity
CAL=corpus/tinystories-gen/calib.txt
EVAL=corpus/tinystories-gen/test.txt
S260=models/stories260K
TS3M=models/tinystories-distill-3M
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }

need_data s260 "$S260" && need_data calib "$CAL" && need_data eval "$EVAL" || { finish; exit; }
CALF=$QF_DATA/$CAL
A="--calib $CALF --calib-ctx 128 --calib-chunks 4 --quiet"

# ---- exactness: folded scales, no quantization (F32), same logits
exact() { # NAME MODEL_DIR_OR_GGUF
  if ! "$Q" "$2" "$TMP/$1-f32.gguf" F32 --method awq --awq-alpha 0.5 --awq-no-clip --calib "$CALF" --calib-ctx 64 \
       --calib-chunks 2 --quiet -t 2 >/dev/null 2>"$TMP/err"; then
    fail "$1-exact" "$(cat "$TMP/err")"; return
  fi
  local d
  d=$("$DIFF" "$2" "$TMP/$1-f32.gguf" "$QF_DATA/$EVAL" 48 2>"$TMP/err")
  if [ -n "$d" ] && le "$d" 1e-5; then pass "$1-exact"; else fail "$1-exact" "relative logit difference $d $(cat "$TMP/err")"; fi
}
exact s260 "$QF_DATA/$S260"
if need_data ts3m "$TS3M"; then exact ts3m "$QF_DATA/$TS3M"; fi
for arch in qwen2 qwen3; do
  if "$GEN" --arch $arch --out "$TMP/$arch" --hidden 128 --ff 256 --layers 2 --heads 4 --kv-heads 2 --seed 5 >/dev/null 2>&1; then
    exact $arch "$TMP/$arch"
  else
    fail "$arch-exact" "gen_synth_model failed"
  fi
done
# the check can fail: a quantized AWQ file is far from 1e-5
if [ -f "$TMP/s260-f32.gguf" ] && "$Q" "$QF_DATA/$S260" "$TMP/s-q.gguf" Q4_0 --method awq $A -t 2 >/dev/null 2>&1; then
  d=$("$DIFF" "$QF_DATA/$S260" "$TMP/s-q.gguf" "$QF_DATA/$EVAL" 48)
  if [ -n "$d" ] && ! le "$d" 1e-5; then pass exact-check-detects; else fail exact-check-detects "Q4_0 differs by only $d"; fi
fi

# ---- alpha 0, no clipping: --method search's bytes (same imatrix)
if "$QF_BIN/qforge-convert" "$QF_DATA/$S260" -o "$TMP/s.gguf" --outtype f32 >/dev/null 2>&1 &&
   "$CALIB" "$TMP/s.gguf" -f "$CALF" -c 128 --chunks 4 -o "$TMP/im.gguf" -t 2 >/dev/null 2>&1; then
  for ty in Q4_0 Q4_K_M; do
    "$Q" "$TMP/s.gguf" "$TMP/z-awq.gguf" $ty --method awq --awq-alpha 0 --awq-no-clip --imatrix "$TMP/im.gguf" $A -t 2 \
      >/dev/null 2>"$TMP/err" && "$Q" "$TMP/s.gguf" "$TMP/z-auto.gguf" $ty --method search --imatrix "$TMP/im.gguf" --quiet -t 2 >/dev/null 2>>"$TMP/err" &&
      cmp -s "$TMP/z-awq.gguf" "$TMP/z-auto.gguf" && pass "alpha0-$ty-bytes" ||
      fail "alpha0-$ty-bytes" "alpha 0 file differs from --method search's $(cat "$TMP/err")"
  done
else
  fail alpha0-bytes "convert or calibrate failed"
fi

# ---- awq+gptq at alpha 0: plain GPTQ's bytes (distill-3M: no fallback types, whose
# rounding the two pipelines pass on differently)
if [ -s "$TMP/ts3m-f32.gguf" ]; then
  G="--calib $CALF --calib-ctx 64 --calib-chunks 2 --quiet -t 2"
  "$Q" "$QF_DATA/$TS3M" "$TMP/g0-awq.gguf" Q4_0 --method awq+gptq --awq-alpha 0 $G >/dev/null 2>"$TMP/err" &&
    "$Q" "$QF_DATA/$TS3M" "$TMP/g0-gptq.gguf" Q4_0 --method gptq $G >/dev/null 2>>"$TMP/err" &&
    cmp -s "$TMP/g0-awq.gguf" "$TMP/g0-gptq.gguf" && pass alpha0-awq+gptq-is-gptq ||
    fail alpha0-awq+gptq-is-gptq "awq+gptq --awq-alpha 0 differs from gptq $(cat "$TMP/err")"
fi

# ---- files llama.cpp runs; 1 vs 2 threads; --json losses never above alpha 0
for m in "awq Q4_0" "awq Q4_K_M" "awq+gptq Q3_K_M"; do
  set -- $m
  n="$1-$2"
  if ! "$Q" "$QF_DATA/$S260" "$TMP/$n-t1.gguf" $2 --method $1 $A -t 1 --json >"$TMP/$n.json" 2>"$TMP/err"; then
    fail "$n" "$(cat "$TMP/err")"; continue
  fi
  pass "$n"
  "$Q" "$QF_DATA/$S260" "$TMP/$n-t2.gguf" $2 --method $1 $A -t 2 >/dev/null 2>"$TMP/err" &&
    cmp -s "$TMP/$n-t1.gguf" "$TMP/$n-t2.gguf" && pass "$n-threads" || fail "$n-threads" "1 and 2 threads differ $(cat "$TMP/err")"
  bad=$(sed -n 's/.*"loss_alpha0": \([-0-9.e+]*\), "loss": \([-0-9.e+]*\),.*/\1 \2/p' "$TMP/$n.json" |
        awk '$2 > $1 { b++ } END { print NR " " b + 0 }')
  case $bad in "20 0") pass "$n-loss-not-above-alpha0" ;; *) fail "$n-loss-not-above-alpha0" "groups, worse: $bad" ;; esac
  if [ -x "$PEER" ]; then
    out=$("$PEER" -m "$TMP/$n-t1.gguf" -f "$QF_DATA/$EVAL" -t 1 -b 128 -c 128 --chunks 4 -ctk f32 -ctv f32 2>&1)
    case $out in *"Final estimate: PPL = "*) pass "$n-llamacpp" ;;
      *) fail "$n-llamacpp" "llama-perplexity: $(printf '%s' "$out" | tail -n 2)" ;; esac
  else
    skip "$n-llamacpp" "peer binary $PEER not found"
  fi
done

# ---- bad inputs: one line, exit 1 (2 for usage), no output file
expect_exit no-calib 2 'needs --calib' -- "$Q" "$QF_DATA/$S260" "$TMP/bad.gguf" Q4_0 --method awq
expect_exit alpha-range 2 'awq-alpha' -- "$Q" "$QF_DATA/$S260" "$TMP/bad.gguf" Q4_0 --method awq --calib "$CALF" --awq-alpha 1
expect_exit alpha-without-awq 2 'need --method awq' -- "$Q" "$QF_DATA/$S260" "$TMP/bad.gguf" Q4_0 --awq-alpha 0.5
expect_exit damp-without-gptq 2 'damp' -- "$Q" "$QF_DATA/$S260" "$TMP/bad.gguf" Q4_0 --method awq --calib "$CALF" --damp 0.1
expect_exit missing-calib 1 'nope.txt' -- "$Q" "$QF_DATA/$S260" "$TMP/bad.gguf" Q4_0 --method awq --calib "$TMP/nope.txt" --quiet
head -c 200 "$CALF" >"$TMP/short.txt"
expect_exit short-calib 1 'fewer than one chunk' -- "$Q" "$QF_DATA/$S260" "$TMP/bad.gguf" Q4_0 --method awq+gptq --calib "$TMP/short.txt" --quiet
[ ! -e "$TMP/bad.gguf" ] && pass bad-no-output || fail bad-no-output "output left behind"
# ---- a directory is read block by block as the GGUF convert --outtype auto
# writes: the bytes of converting first (stories260K awq; qwen3's q/k norms and
# tinystories-distill-3M with awq+gptq)
for mm in s260:awq:$QF_DATA/$S260 qwen3:awq+gptq:$TMP/qwen3 ts3m:awq+gptq:$QF_DATA/$TS3M; do
  IFS=: read -r n meth dir <<<"$mm"
  [ -d "$dir" ] || continue
  B="--method $meth --calib $CALF --calib-ctx 64 --calib-chunks 2 --quiet"
  if "$QF_BIN/qforge-convert" "$dir" -o "$TMP/$n-auto.gguf" --outtype auto --quiet >/dev/null 2>"$TMP/err" &&
     "$Q" "$dir" "$TMP/$n-dir.gguf" Q4_K_M $B >/dev/null 2>>"$TMP/err" &&
     "$Q" "$TMP/$n-auto.gguf" "$TMP/$n-two.gguf" Q4_K_M $B >/dev/null 2>>"$TMP/err" &&
     cmp -s "$TMP/$n-dir.gguf" "$TMP/$n-two.gguf"; then pass "$n-dir-same-bytes-$meth"
  else fail "$n-dir-same-bytes-$meth" "$(cat "$TMP/err") (or the files differ)"; fi
done
finish
