#!/usr/bin/env bash
# gptq.sh - qforge-quantize --method gptq end to end: stories260K (HF directory
# and GGUF input) and tinystories-distill-3M with TinyStories calibration text;
# llama.cpp loads and runs the files; bytes identical for 1 and 2 threads;
# KL-divergence against the base below the default method's; a checkpoint
# directory (also synthetic Mixtral and Qwen2) gives its converted GGUF's
# bytes; --dry-run's peak RSS at most 15% above and 5% below the measured one for GGUF and
# directory inputs (gptq, awq, awq+gptq); bad inputs.
. "$(dirname "$0")/../lib.sh"
Q=$QF_BIN/qforge-quantize
V=$QF_BIN/qforge-verify
PEER=$QF_DATA/peers/llama.cpp/bin/llama-perplexity
CAL=corpus/tinystories-gen/calib.txt
EVAL=corpus/tinystories-gen/test.txt
S260=models/stories260K
TS3M=models/tinystories-distill-3M
kld_mean() { sed -n 's/.*"kld": {"mean": \([-0-9.e]*\).*/\1/p' "$1"; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }

need_data s260 "$S260" && need_data calib "$CAL" && need_data eval "$EVAL" || { finish; exit; }
CALF=$QF_DATA/$CAL
G="--method gptq --calib $CALF --calib-ctx 128 --calib-chunks 4 --quiet"

# ---- files that llama.cpp runs, thread-count determinism
for ty in Q4_0 Q4_K_M; do
  if ! "$Q" "$QF_DATA/$S260" "$TMP/s-$ty-t1.gguf" $ty $G -t 1 >/dev/null 2>"$TMP/err"; then
    fail "s260-$ty" "$(cat "$TMP/err")"; continue
  fi
  pass "s260-$ty"
  "$Q" "$QF_DATA/$S260" "$TMP/s-$ty-t2.gguf" $ty $G -t 2 >/dev/null 2>"$TMP/err" &&
    cmp -s "$TMP/s-$ty-t1.gguf" "$TMP/s-$ty-t2.gguf" && pass "s260-$ty-threads" ||
    fail "s260-$ty-threads" "1 and 2 threads differ $(cat "$TMP/err")"
  if [ -x "$PEER" ]; then
    out=$("$PEER" -m "$TMP/s-$ty-t1.gguf" -f "$QF_DATA/$EVAL" -t 1 -b 128 -c 128 --chunks 4 -ctk f32 -ctv f32 2>&1)
    case $out in *"Final estimate: PPL = "*) pass "s260-$ty-llamacpp" ;;
      *) fail "s260-$ty-llamacpp" "llama-perplexity: $(printf '%s' "$out" | tail -n 2)" ;; esac
  else
    skip "s260-$ty-llamacpp" "peer binary $PEER not found"
  fi
done

# ---- the same sizes as the default method, and a lower KL-divergence against the base
if [ -f "$TMP/s-Q4_0-t1.gguf" ]; then
  "$Q" "$QF_DATA/$S260" "$TMP/s-auto.gguf" Q4_0 --quiet -t 2 >/dev/null 2>&1
  [ "$(stat -c %s "$TMP/s-auto.gguf")" = "$(stat -c %s "$TMP/s-Q4_0-t1.gguf")" ] && pass s260-same-size ||
    fail s260-same-size "gptq and auto files differ in size"
  R="-f $QF_DATA/$EVAL -c 128 --chunks 20 -t 2 --base $QF_DATA/$S260 --json"
  "$V" "$TMP/s-Q4_0-t1.gguf" $R >"$TMP/g.json" 2>"$TMP/err" && "$V" "$TMP/s-auto.gguf" $R >"$TMP/a.json" 2>>"$TMP/err"
  kg=$(kld_mean "$TMP/g.json"); ka=$(kld_mean "$TMP/a.json")
  if [ -n "$kg" ] && [ -n "$ka" ] && lt "$kg" "$ka"; then pass s260-q4_0-kld; else fail s260-q4_0-kld "gptq $kg, auto $ka $(cat "$TMP/err")"; fi
fi
if need_data ts3m "$TS3M"; then
  G3="--method gptq --calib $CALF --calib-ctx 128 --calib-chunks 8 --quiet -t 2"
  if "$Q" "$QF_DATA/$TS3M" "$TMP/t-g.gguf" Q4_K_M $G3 >/dev/null 2>"$TMP/err" &&
     "$Q" "$QF_DATA/$TS3M" "$TMP/t-a.gguf" Q4_K_M --quiet -t 2 >/dev/null 2>>"$TMP/err"; then
    R="-f $QF_DATA/$EVAL -c 128 --chunks 10 -t 2 --base $QF_DATA/$TS3M --json"
    "$V" "$TMP/t-g.gguf" $R >"$TMP/g.json" 2>"$TMP/err" && "$V" "$TMP/t-a.gguf" $R >"$TMP/a.json" 2>>"$TMP/err"
    kg=$(kld_mean "$TMP/g.json"); ka=$(kld_mean "$TMP/a.json")
    if [ -n "$kg" ] && [ -n "$ka" ] && lt "$kg" "$ka"; then pass ts3m-q4_k_m-kld; else fail ts3m-q4_k_m-kld "gptq $kg, auto $ka $(cat "$TMP/err")"; fi
  else
    fail ts3m-q4_k_m-kld "$(cat "$TMP/err")"
  fi
fi

# ---- the i-quant grids (IQ4_XS levels, IQ2_XS codebook): GPTQ on their tensors, bytes identical
# for 1 and 2 threads, llama.cpp runs the file, KL-divergence below the default method's (both
# with the imatrix of the same calibration text, which IQ2_XS requires)
if need_data ts3m "$TS3M"; then
  G3="--method gptq --calib $CALF --calib-ctx 128 --calib-chunks 8 --quiet"
  "$QF_BIN/qforge-calibrate" "$QF_DATA/$TS3M" -f "$CALF" -o "$TMP/im.gguf" -c 128 --chunks 8 -t 2 --quiet >/dev/null 2>&1
  for ty in IQ4_XS IQ2_XS; do
    if ! "$Q" "$QF_DATA/$TS3M" "$TMP/iq-$ty-t1.gguf" $ty $G3 --imatrix "$TMP/im.gguf" -t 1 --json >"$TMP/iq.json" 2>"$TMP/err"; then
      fail "ts3m-$ty" "$(cat "$TMP/err")"; continue
    fi
    n=$(grep -c "\"type\": \"${ty,,}\", \"loss\": " "$TMP/iq.json") # tensors GPTQ solved in that type
    if [ "$n" -ge 20 ]; then pass "ts3m-$ty-gptq-tensors"; else fail "ts3m-$ty-gptq-tensors" "$n ${ty,,} tensors by gptq"; fi
    "$Q" "$QF_DATA/$TS3M" "$TMP/iq-$ty-t2.gguf" $ty $G3 --imatrix "$TMP/im.gguf" -t 2 >/dev/null 2>"$TMP/err" &&
      cmp -s "$TMP/iq-$ty-t1.gguf" "$TMP/iq-$ty-t2.gguf" && pass "ts3m-$ty-threads" ||
      fail "ts3m-$ty-threads" "1 and 2 threads differ $(cat "$TMP/err")"
    if [ -x "$PEER" ]; then
      out=$("$PEER" -m "$TMP/iq-$ty-t1.gguf" -f "$QF_DATA/$EVAL" -t 2 -b 128 -c 128 --chunks 4 -ctk f32 -ctv f32 2>&1)
      case $out in *"Final estimate: PPL = "*) pass "ts3m-$ty-llamacpp" ;;
        *) fail "ts3m-$ty-llamacpp" "llama-perplexity: $(printf '%s' "$out" | tail -n 2)" ;; esac
    fi
    "$Q" "$QF_DATA/$TS3M" "$TMP/iq-$ty-a.gguf" $ty --imatrix "$TMP/im.gguf" --quiet -t 2 >/dev/null 2>"$TMP/err"
    R="-f $QF_DATA/$EVAL -c 128 --chunks 10 -t 2 --base $QF_DATA/$TS3M --json"
    "$V" "$TMP/iq-$ty-t1.gguf" $R >"$TMP/g.json" 2>"$TMP/err" && "$V" "$TMP/iq-$ty-a.gguf" $R >"$TMP/a.json" 2>>"$TMP/err"
    kg=$(kld_mean "$TMP/g.json"); ka=$(kld_mean "$TMP/a.json")
    if [ -n "$kg" ] && [ -n "$ka" ] && lt "$kg" "$ka"; then pass "ts3m-$ty-kld"; else fail "ts3m-$ty-kld" "gptq $kg, auto $ka $(cat "$TMP/err")"; fi
  done
fi

# ---- --json: per-tensor loss next to round-to-nearest's
"$Q" "$QF_DATA/$S260" "$TMP/j.gguf" Q4_0 $G --json >"$TMP/j.json" 2>"$TMP/err"
n=$(grep -c '"loss": ' "$TMP/j.json")
if [ "$n" -ge 30 ] && grep -q '"loss_rtn": ' "$TMP/j.json"; then pass json-losses; else fail json-losses "$n tensors: $(cat "$TMP/err")"; fi

# ---- --dry-run's predicted peak RSS against GNU time's measured one: for the
# calibrated methods at most PRED_OVER above it and never more than
# PRED_UNDER below; for exact (the writer) within WRITER_MARGIN of the
# prediction; and the predicted output size against the file written
PRED_OVER=0.15 PRED_UNDER=0.05 WRITER_MARGIN=0.35
pred_check() { # NAME IN METHOD-ARGS...
  local name=$1 in=$2; shift 2
  local pj pred out meas lo=$PRED_UNDER hi=$PRED_OVER
  case " $* " in *" --method exact "*) lo=$WRITER_MARGIN hi=$WRITER_MARGIN ;; esac
  pj=$("$Q" "$in" "$TMP/p.gguf" Q4_K_M "$@" -t 2 --dry-run --json 2>/dev/null)
  pred=$(printf '%s' "$pj" | sed -n 's/.*"peak_rss": \([0-9]*\).*/\1/p')
  out=$(printf '%s' "$pj" | sed -n 's/.*"output_bytes": \([0-9]*\), "temp.*/\1/p')
  if ! /usr/bin/time -v -o "$TMP/p.time" "$Q" "$in" "$TMP/p.gguf" Q4_K_M "$@" -t 2 --quiet >/dev/null 2>"$TMP/err"; then
    fail "$name" "run failed: $(cat "$TMP/err")"; return
  fi
  meas=$(awk -F': ' '/Maximum resident set size/ { print $2 * 1024 }' "$TMP/p.time")
  if [ -n "$pred" ] && awk -v p="$pred" -v m="$meas" -v lo="$lo" -v hi="$hi" 'BEGIN { exit !(p >= m * (1 - lo) && p <= m * (1 + hi)) }' &&
     awk -v p="$out" -v m="$(stat -c %s "$TMP/p.gguf")" 'BEGIN { exit !(m <= p && m >= p * 0.99) }'; then
    pass "$name"
  else
    fail "$name" "predicted peak RSS $pred B, measured $meas B (-$lo/+$hi of it); output predicted $out B, written $(stat -c %s "$TMP/p.gguf") B"
  fi
  rm -f "$TMP/p.gguf"
}
if [ -x /usr/bin/time ] && [ -f "$TMP/s-Q4_0-t1.gguf" ]; then
  "$QF_BIN/qforge-convert" "$QF_DATA/$S260" -o "$TMP/s260.gguf" --outtype auto --quiet
  pred_check predict-rss-s260-gptq "$TMP/s260.gguf" --method gptq --calib "$CALF" --calib-ctx 256 --calib-chunks 8
  pred_check predict-rss-s260-exact "$TMP/s260.gguf" --method exact
  if [ -d "$QF_DATA/$TS3M" ]; then
    "$QF_BIN/qforge-convert" "$QF_DATA/$TS3M" -o "$TMP/ts3m.gguf" --outtype auto --quiet
    pred_check predict-rss-ts3m-gptq "$TMP/ts3m.gguf" --method gptq --calib "$CALF" --calib-ctx 256 --calib-chunks 8
    pred_check predict-rss-ts3m-exact "$TMP/ts3m.gguf" --method exact
  fi
  # a directory input: the model is read block by block (no temp GGUF), the same bytes as its GGUF
  pred_check predict-rss-s260-gptq-dir "$QF_DATA/$S260" --method gptq --calib "$CALF" --calib-ctx 256 --calib-chunks 8
  if [ -d "$QF_DATA/$TS3M" ]; then
    pred_check predict-rss-ts3m-gptq-dir "$QF_DATA/$TS3M" --method gptq --calib "$CALF" --calib-ctx 256 --calib-chunks 8
    pred_check predict-rss-ts3m-awq "$TMP/ts3m.gguf" --method awq --calib "$CALF" --calib-ctx 256 --calib-chunks 8
    pred_check predict-rss-ts3m-awq-gptq "$TMP/ts3m.gguf" --method awq+gptq --calib "$CALF" --calib-ctx 256 --calib-chunks 8
  fi
else
  skip predict-rss "GNU time (/usr/bin/time) or the stories260K run is missing"
fi
# ---- a checkpoint directory gives the bytes of its converted GGUF (convert --outtype auto);
# also a synthetic Mixtral (experts stacked from per-expert tensors) and Qwen2 (Q/K/V biases)
GEN=${QF_TOOLS:-build/tools}/gen_synth_model
for a in mixtral qwen2; do
  ex=; [ $a = mixtral ] && ex="--experts 4 --experts-used 2"
  "$GEN" --arch $a --out "$TMP/gen-$a" --hidden 128 --ff 256 --layers 2 --heads 4 --kv-heads 2 --vocab 512 $ex \
    >/dev/null 2>&1 || fail "gen-$a" "gen_synth_model failed"
done
for nm in s260:$QF_DATA/$S260 ts3m:$QF_DATA/$TS3M mixtral:$TMP/gen-mixtral qwen2:$TMP/gen-qwen2; do
  IFS=: read -r n d <<<"$nm"
  [ -d "$d" ] || continue
  [ -f "$TMP/$n.gguf" ] || "$QF_BIN/qforge-convert" "$d" -o "$TMP/$n.gguf" --outtype auto --quiet
  if "$Q" "$d" "$TMP/$n-dir.gguf" Q4_K_M $G >/dev/null 2>"$TMP/err" &&
     "$Q" "$TMP/$n.gguf" "$TMP/$n-two.gguf" Q4_K_M $G >/dev/null 2>>"$TMP/err" &&
     cmp -s "$TMP/$n-dir.gguf" "$TMP/$n-two.gguf"; then pass "$n-dir-same-bytes"
  else fail "$n-dir-same-bytes" "$(cat "$TMP/err") (or the files differ)"; fi
done

# ---- bad inputs: one line, exit 1 (2 for usage), no output file
head -c 200 "$CALF" >"$TMP/short.txt"
expect_exit short-calib 1 'fewer than one chunk' -- "$Q" "$QF_DATA/$S260" "$TMP/bad.gguf" Q4_0 --method gptq --calib "$TMP/short.txt" --quiet
[ ! -e "$TMP/bad.gguf" ] && pass short-calib-no-output || fail short-calib-no-output "output left behind"
expect_exit damp-zero 2 'damp' -- "$Q" "$QF_DATA/$S260" "$TMP/bad.gguf" Q4_0 --method gptq --calib "$CALF" --damp 0
expect_exit damp-negative 2 'damp' -- "$Q" "$QF_DATA/$S260" "$TMP/bad.gguf" Q4_0 --method gptq --calib "$CALF" --damp -1
expect_exit no-calib 2 'needs --calib' -- "$Q" "$QF_DATA/$S260" "$TMP/bad.gguf" Q4_0 --method gptq
expect_exit calib-without-gptq 2 'need --method gptq' -- "$Q" "$QF_DATA/$S260" "$TMP/bad.gguf" Q4_0 --calib "$CALF"
expect_exit unknown-type 2 'unknown type' -- "$Q" "$QF_DATA/$S260" "$TMP/bad.gguf" Q9_X --method gptq --calib "$CALF"
expect_exit missing-calib 1 'nope.txt' -- "$Q" "$QF_DATA/$S260" "$TMP/bad.gguf" Q4_0 --method gptq --calib "$TMP/nope.txt" --quiet
# a NaN in blk.2.ffn_up.weight of an F32 GGUF
if "$QF_BIN/qforge-convert" "$QF_DATA/$S260" -o "$TMP/f32.gguf" --outtype f32 >/dev/null 2>&1; then
  off=$("$QF_BIN/qforge-inspect" "$TMP/f32.gguf" --tensors | awk '$2 == "blk.2.ffn_up.weight" { print $(NF-1) }')
  printf '\000\000\300\177' | dd of="$TMP/f32.gguf" bs=1 seek=$((off + 40)) conv=notrunc 2>/dev/null
  expect_exit nan-weight 1 'blk.2.ffn_up.weight.*non-finite' -- "$Q" "$TMP/f32.gguf" "$TMP/bad.gguf" Q4_0 $G
  [ ! -e "$TMP/bad.gguf" ] && pass nan-no-output || fail nan-no-output "output left behind"
else
  fail nan-weight "qforge-convert failed"
fi
finish
