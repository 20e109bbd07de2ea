#!/usr/bin/env bash
# bench/verify.sh - perplexity throughput: qforge-verify vs llama-perplexity,
# same GGUF files, same text, same threads, same context, one run on one
# machine (runs interleaved A B A B ...). Goal: qforge >= 0.9x llama.cpp.
#
# Models: stories260K (llama.cpp's oracle files F32/F16/Q8_0/Q4_0/Q4_K_M),
# tinystories-distill-3M (qforge-convert -> F32/BF16/F16, llama-quantize
# F32 -> Q8_0/Q4_0/Q4_K_M), and the TinyLlama-1.1B-shaped synthetic model
# (bench/gen-1b.sh; qforge-convert -> F16, llama-quantize F16 -> Q8_0/Q4_0/
# Q4_K_M; random weights, so its perplexity is near the vocabulary size).
# KV cache F32 (llama.cpp -ctk f32 -ctv f32, qforge default); the F16 files
# also with llama.cpp's default F16 KV cache (qforge --kv f16).
#
# "eval tok/s" is what each tool reports for its forward passes alone
# (llama.cpp: "prompt eval time"; qforge: tokens_per_second of --json);
# wall is the whole process (load + tokenize + score) from /usr/bin/time.
#
# Decoding (DECODE=1): the 1.1B shape's F16, Q8_0, Q4_0, Q4_K_M and Q6_K
# files with batch 1 (one token per forward call, as generation runs) at
# context DECODE_CTX, DECODE_CHUNKS chunks: the matrix-vector path.
#
# IQ_1B (e.g. "IQ2_XS IQ3_S"): i-quant files of the 1.1B shape, made by
# llama-quantize with the shape's importance matrix (imatrix_1b in
# bench/gen-1b.sh), scored like the QTYPES_1B files (and batch 1 with
# DECODE=1).
#
# The peer is the llama.cpp build for the instruction set the qforge tools
# were compiled for (bench/lib.sh); bench/pairs.sh runs both ISA pairs.
# BATCHED=0 leaves out the batched 1.1B rows (decoding rows only). QF_BIN_B
# (optional): a second qforge build (e.g. a copy of the previous one) timed
# in the same interleaving, reported in a second table against the peer.
#
#   THREADS=2 WORK=build/bench REPS=3 KEEP=0 CHUNKS_SMALL=4 CHUNKS_1B=1 \
#   KV16_1B=0 DECODE=1 DECODE_CTX=64 DECODE_CHUNKS=1 IQ_1B= \
#   QTYPES_1B="Q8_0 Q4_0 Q4_K_M Q6_K" \
#   MODELS="stories260K ts3m 1b" bash bench/verify.sh
. "$(dirname "$0")/gen-1b.sh"
CTX=${CTX:-512}
CHUNKS_SMALL=${CHUNKS_SMALL:-4}
CHUNKS_1B=${CHUNKS_1B:-1}
KV16_1B=${KV16_1B:-0}
DECODE=${DECODE:-1}
DECODE_CTX=${DECODE_CTX:-64}
DECODE_CHUNKS=${DECODE_CHUNKS:-1}
IQ_1B=${IQ_1B:-}
QTYPES_1B=${QTYPES_1B-Q8_0 Q4_0 Q4_K_M Q6_K}   # llama-quantize types of the 1.1B shape (Q6_K: decoding rows only; "" for none)
BATCHED=${BATCHED:-1}
QF_BIN_B=${QF_BIN_B:-}
MODELS=${MODELS:-stories260K ts3m 1b}   # which sections to run
TEXT=${TEXT:-$QF_DATA/corpus/tinystories-gen/test.txt}
ORACLES=$QF_DATA/oracles/llamacpp
TS3M=$QF_DATA/models/tinystories-distill-3M
logs=$WORK/logs-verify; rm -rf "$logs"
mkdir -p "$logs"

have_qf qforge-verify || exit 0
peer=1; have_peer llama-perplexity || peer=0
quant=1; have_peer llama-quantize || quant=0
[ -f "$TEXT" ] || die "text $TEXT not found (set QF_DATA or TEXT)"

# cases: "model|type|kv|file|chunks[|ctx|batch]" (default ctx = batch = CTX)
cases=()
want() { [[ " $MODELS " == *" $1 "* ]]; }
want stories260K && for t in F32 F16 Q8_0 Q4_0 Q4_K_M; do
  f=$ORACLES/stories260K-$t.gguf
  if [ -f "$f" ]; then cases+=("stories260K|$t|f32|$f|$CHUNKS_SMALL")
  else note "SKIP stories260K $t: $f not found"; fi
done
want stories260K && [ -f "$ORACLES/stories260K-F16.gguf" ] && cases+=("stories260K|F16|f16|$ORACLES/stories260K-F16.gguf|$CHUNKS_SMALL")

made=()
if ! want ts3m; then
  :
elif [ -f "$TS3M/config.json" ] && [ -x "$QF_BIN/qforge-convert" ]; then
  d=$WORK/ts3m; mkdir -p "$d"
  for t in F32 BF16 F16; do
    f=$d/ts3m-$t.gguf
    [ -f "$f" ] || "$QF_BIN/qforge-convert" "$TS3M" -o "$f" --outtype "${t,,}" --quiet || die "qforge-convert $TS3M failed"
    cases+=("tinystories-distill-3M|$t|f32|$f|$CHUNKS_SMALL")
  done
  cases+=("tinystories-distill-3M|F16|f16|$d/ts3m-F16.gguf|$CHUNKS_SMALL")
  if [ $quant = 1 ]; then
    for t in Q8_0 Q4_0 Q4_K_M; do
      peer_quantize "$d/ts3m-F32.gguf" "$d/ts3m-$t.gguf" "$t" && cases+=("tinystories-distill-3M|$t|f32|$d/ts3m-$t.gguf|$CHUNKS_SMALL")
    done
  fi
  made+=("$d")
else
  note "SKIP tinystories-distill-3M: $TS3M or qforge-convert missing"
fi

if want 1b && [ "$CHUNKS_1B" -gt 0 ]; then
  gguf_1b_f16
  [ "$BATCHED" = 1 ] && cases+=("TinyLlama-1.1B-shape|F16|f32|$GGUF_1B_F16|$CHUNKS_1B")
  [ "$BATCHED" = 1 ] && [ "$KV16_1B" = 1 ] && cases+=("TinyLlama-1.1B-shape|F16|f16|$GGUF_1B_F16|$CHUNKS_1B")
  [ "$DECODE" = 1 ] && cases+=("TinyLlama-1.1B-shape|F16|f32|$GGUF_1B_F16|$DECODE_CHUNKS|$DECODE_CTX|1")
  if [ $quant = 1 ]; then
    for t in $QTYPES_1B; do
      f=$WORK/tinyllama-1b-$t.gguf
      peer_quantize "$GGUF_1B_F16" "$f" "$t" || continue
      [ $t != Q6_K ] && [ "$BATCHED" = 1 ] && cases+=("TinyLlama-1.1B-shape|$t|f32|$f|$CHUNKS_1B")
      [ "$DECODE" = 1 ] && cases+=("TinyLlama-1.1B-shape|$t|f32|$f|$DECODE_CHUNKS|$DECODE_CTX|1")
      made+=("$f" "$f.log")
    done
    for t in $IQ_1B; do
      f=$WORK/tinyllama-1b-$t.gguf
      im=; needs_imatrix "$t" && { imatrix_1b; im=$IMATRIX_1B; }
      peer_quantize "$GGUF_1B_F16" "$f" "$t" "$im" || continue
      [ "$BATCHED" = 1 ] && cases+=("TinyLlama-1.1B-shape|$t|f32|$f|$CHUNKS_1B")
      [ "$DECODE" = 1 ] && cases+=("TinyLlama-1.1B-shape|$t|f32|$f|$DECODE_CHUNKS|$DECODE_CTX|1")
      made+=("$f" "$f.log")
    done
    [ -n "${IMATRIX_1B:-}" ] && [ "$IMATRIX_1B" = "$WORK/tinyllama-1b-imatrix.dat" ] && made+=("$IMATRIX_1B" "$IMATRIX_1B.log")
  fi
  made+=("$GGUF_1B_F16" "$SYNTH_1B")
fi

declare -A E W R P   # eval tok/s, wall s, peak RSS KiB, ppl; key "tool|case index"
run_peer() { # idx kv file chunks ctx batch
  local kvf=(-ctk f32 -ctv f32); [ "$2" = f16 ] && kvf=()
  local log=$logs/$rep-peer-$1.log
  timed "$log" "$PEER_BIN/llama-perplexity" -m "$3" -f "$TEXT" -t "$THREADS" -c "$5" -b "$6" \
    --chunks "$4" "${kvf[@]}" || return
  E["peer|$1"]+="$(sed -n 's/.*prompt eval time = *\([0-9.]*\) ms \/ *\([0-9]*\) tokens.*/\2 \1/p' "$log" |
    awk '{ printf "%.3f", $1 / ($2 / 1000) }') "
  W["peer|$1"]+="$T_WALL "; R["peer|$1"]+="$T_RSS "
  P["peer|$1"]=$(sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "$log")
}
run_qf() { # idx kv file chunks ctx batch [key bin]
  local key=${7:-qf} bin=${8:-$QF_BIN}
  local log=$logs/$rep-$key-$1.log
  timed "$log" "$bin/qforge-verify" "$3" -f "$TEXT" -t "$THREADS" -c "$5" -b "$6" \
    --chunks "$4" --kv "$2" --json || return
  E["$key|$1"]+="$(grep -o '"tokens_per_second": [0-9.]*' "$log" | awk '{ print $2 }') "
  W["$key|$1"]+="$T_WALL "; R["$key|$1"]+="$T_RSS "
  P["$key|$1"]=$(grep -o '"ppl": [0-9.]*' "$log" | awk '{ print $2 }')
}

for rep in $(seq 1 "$REPS"); do
  for i in "${!cases[@]}"; do
    IFS='|' read -r model type kv file chunks ctx batch <<<"${cases[$i]}"
    [ $peer = 1 ] && run_peer "$i" "$kv" "$file" "$chunks" "${ctx:-$CTX}" "${batch:-$CTX}"
    run_qf "$i" "$kv" "$file" "$chunks" "${ctx:-$CTX}" "${batch:-$CTX}"
    [ -n "$QF_BIN_B" ] && run_qf "$i" "$kv" "$file" "$chunks" "${ctx:-$CTX}" "${batch:-$CTX}" qfb "$QF_BIN_B"
    note "run $rep: $model $type kv=$kv: llama $(echo ${E["peer|$i"]:-} | awk '{print $NF}') tok/s, qforge $(echo ${E["qf|$i"]:-} | awk '{print $NF}') tok/s"
  done
done

med() { [ -n "${1// /}" ] && median $1 || echo -; }
echo "### verify: perplexity throughput, qforge-verify vs llama-perplexity"
echo
machine_header
echo "- text: $(basename "$(dirname "$TEXT")")/$(basename "$TEXT"), ctx $CTX (batch = ctx), chunks: $CHUNKS_SMALL for the small models, $CHUNKS_1B for the 1.1B shape; decoding rows: ctx $DECODE_CTX, batch 1, $DECODE_CHUNKS chunk(s)"
[ $peer = 0 ] && echo "- llama-perplexity not found: peer columns skipped"
echo
echo "| model | type | KV | ctx / batch | llama.cpp eval tok/s | qforge eval tok/s | ratio | llama.cpp wall s | qforge wall s | wall ratio | llama.cpp RSS MiB | qforge RSS MiB | llama.cpp ppl | qforge ppl |"
echo "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for i in "${!cases[@]}"; do
  IFS='|' read -r model type kv file chunks ctx batch <<<"${cases[$i]}"
  pe=$(med "${E["peer|$i"]:-}"); qe=$(med "${E["qf|$i"]:-}")
  pw=$(med "${W["peer|$i"]:-}"); qw=$(med "${W["qf|$i"]:-}")
  pr=$(med "${R["peer|$i"]:-}"); qr=$(med "${R["qf|$i"]:-}")
  echo "| $model | $type | ${kv^^} | ${ctx:-$CTX} / ${batch:-$CTX} | $(fmt 1 "$pe") | $(fmt 1 "$qe") | $(ratio "$qe" "$pe") | $(fmt 2 "$pw") | $(fmt 2 "$qw") | $(ratio "$pw" "$qw") | $(mib "$pr") | $(mib "$qr") | ${P["peer|$i"]:--} | ${P["qf|$i"]:--} |"
done
echo
echo "ratio = qforge eval tok/s / llama.cpp eval tok/s; wall ratio = llama.cpp wall / qforge wall (both > 1 = qforge faster)."
if [ -n "$QF_BIN_B" ]; then
  echo
  echo "Second qforge build $QF_BIN_B, timed in the same interleaving:"
  echo
  echo "| model | type | KV | ctx / batch | llama.cpp eval tok/s | $QF_BIN eval tok/s | $QF_BIN_B eval tok/s | ratio $QF_BIN | ratio $QF_BIN_B | $QF_BIN_B ppl |"
  echo "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  for i in "${!cases[@]}"; do
    IFS='|' read -r model type kv file chunks ctx batch <<<"${cases[$i]}"
    pe=$(med "${E["peer|$i"]:-}"); qe=$(med "${E["qf|$i"]:-}"); be=$(med "${E["qfb|$i"]:-}")
    echo "| $model | $type | ${kv^^} | ${ctx:-$CTX} / ${batch:-$CTX} | $(fmt 1 "$pe") | $(fmt 1 "$qe") | $(fmt 1 "$be") | $(ratio "$qe" "$pe") | $(ratio "$be" "$pe") | ${P["qfb|$i"]:--} |"
  done
fi

if [ "$KEEP" != 1 ]; then rm -rf "${made[@]}"; fi
