#!/usr/bin/env bash
# bench/quantize.sh - qforge-quantize vs llama-quantize on the
# TinyLlama-1.1B-shaped F16 GGUF (bench/gen-1b.sh + qforge-convert): wall
# time, input MB/s, peak RSS, for Q4_0, Q4_K_M, Q6_K, both with qforge's
# default (--method auto: the fast search for K-quant blocks, exact for
# legacy types without imatrix) and with --method exact, which must be
# byte-identical to llama-quantize's output. Goal: qforge throughput >= 1.0x
# llama.cpp. The i-quant types of IMAT_TYPES (e.g. TYPES="IQ2_XS IQ3_S") are
# quantized by all three with the same importance matrix (imatrix_1b in
# bench/gen-1b.sh: IMATRIX_1B, or one made by llama-imatrix).
# Then calibration: qforge-calibrate vs llama-imatrix tokens/s on stories260K
# and tinystories-distill-3M (F32 GGUF), calib.txt, ctx 512, F16 KV cache
# (both tools' default).
#
# METHODS="auto" times the default alone (no exact column, no byte check).
#
#   THREADS=2 WORK=build/bench REPS=3 KEEP=0 TYPES="Q4_0 Q4_K_M Q6_K" \
#   METHODS="auto exact" CALIB_CHUNKS=8 SECTIONS="quantize calibrate" bash bench/quantize.sh
. "$(dirname "$0")/gen-1b.sh"
TYPES=${TYPES:-Q4_0 Q4_K_M Q6_K}
CALIB_CHUNKS=${CALIB_CHUNKS:-8}
CALIB_TEXT=${CALIB_TEXT:-$QF_DATA/corpus/tinystories-gen/calib.txt}
SECTIONS=${SECTIONS:-quantize calibrate}
METHODS=${METHODS:-auto exact}
has_method() { [[ " $METHODS " == *" $1 "* ]]; }
logs=$WORK/logs-quantize; rm -rf "$logs"
mkdir -p "$logs"
made=()
med() { [ -n "${1// /}" ] && median $1 || echo -; }

# ------------------------------------------------------------- quantize
if [[ " $SECTIONS " == *" quantize "* ]] && have_qf qforge-quantize; then
  peer=1; have_peer llama-quantize || peer=0
  gguf_1b_f16
  made+=("$GGUF_1B_F16" "$SYNTH_1B")
  in_bytes=$(bytes_of "$GGUF_1B_F16")
  outp=$WORK/quant-peer.gguf outq=$WORK/quant-qf.gguf
  declare -A QW QR SAME
  declare -A IM=()
  for t in $TYPES; do
    needs_imatrix "$t" || continue
    imatrix_1b
    IM[$t]=$IMATRIX_1B
    [ -n "${IMATRIX_1B_MADE:-}" ] || { IMATRIX_1B_MADE=1; [ "$IMATRIX_1B" = "$WORK/tinyllama-1b-imatrix.dat" ] && made+=("$IMATRIX_1B" "$IMATRIX_1B.log"); }
  done
  for rep in $(seq 1 "$REPS"); do
    for t in $TYPES; do
      rm -f "$outp" "$outq"
      im=(); [ -n "${IM[$t]:-}" ] && im=(--imatrix "${IM[$t]}")
      if [ $peer = 1 ] && timed "$logs/$rep-peer-$t.log" "$PEER_BIN/llama-quantize" "${im[@]}" "$GGUF_1B_F16" "$outp" "$t" "$THREADS"; then
        QW["peer|$t"]+="$T_WALL "; QR["peer|$t"]+="$T_RSS "
      fi
      if has_method exact && timed "$logs/$rep-qf-$t.log" "$QF_BIN/qforge-quantize" "$GGUF_1B_F16" "$outq" "$t" "${im[@]}" --method exact --threads "$THREADS" --quiet; then
        QW["qf|$t"]+="$T_WALL "; QR["qf|$t"]+="$T_RSS "
      fi
      if has_method auto && timed "$logs/$rep-qa-$t.log" "$QF_BIN/qforge-quantize" "$GGUF_1B_F16" "$outq.auto" "$t" "${im[@]}" --threads "$THREADS" --quiet; then
        QW["qa|$t"]+="$T_WALL "; QR["qa|$t"]+="$T_RSS "
      fi
      rm -f "$outq.auto"
      if [ -f "$outp" ] && [ -f "$outq" ]; then
        if cmp -s "$outp" "$outq"; then SAME[$t]=yes; else SAME[$t]=no; fi
      fi
      note "run $rep $t: llama-quantize $(echo ${QW["peer|$t"]:-} | awk '{print $NF}')s, qforge-quantize exact $(echo ${QW["qf|$t"]:-} | awk '{print $NF}')s (identical ${SAME[$t]:-?}), default $(echo ${QW["qa|$t"]:-} | awk '{print $NF}')s"
    done
  done
  rm -f "$outp" "$outq"
  echo "### quantize: TinyLlama-1.1B-shaped F16 GGUF ($(awk -v b="$in_bytes" 'BEGIN { printf "%.0f", b / 1e6 }') MB), qforge-quantize vs llama-quantize"
  echo
  machine_header
  [ $peer = 0 ] && echo "- llama-quantize not found: peer columns skipped"
  for t in $TYPES; do [ -n "${IM[$t]:-}" ] && echo "- $t: all three with --imatrix $(basename "${IM[$t]}")"; done
  echo
  echo "| type | qforge method | llama.cpp wall s | qforge wall s | llama.cpp MB/s | qforge MB/s | ratio | llama.cpp RSS MiB | qforge RSS MiB | byte-identical |"
  echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
  for t in $TYPES; do
    pw=$(med "${QW["peer|$t"]:-}")
    pm=$(awk -v b="$in_bytes" -v w="$pw" 'BEGIN { if (w == "-") print "-"; else printf "%.1f", b / 1e6 / w }')
    for k in qa qf; do
      { [ $k = qa ] && has_method auto; } || { [ $k = qf ] && has_method exact; } || continue
      qw=$(med "${QW["$k|$t"]:-}")
      qm=$(awk -v b="$in_bytes" -v w="$qw" 'BEGIN { if (w == "-") print "-"; else printf "%.1f", b / 1e6 / w }')
      if [ $k = qa ]; then m="default (auto)"; same="-"; else m="exact"; same=${SAME[$t]:--}; fi
      echo "| $t | $m | $(fmt 2 "$pw") | $(fmt 2 "$qw") | $pm | $qm | $(ratio "$qm" "$pm") | $(mib "$(med "${QR["peer|$t"]:-}")") | $(mib "$(med "${QR["$k|$t"]:-}")") | $same |"
    done
  done
  echo
  echo "MB/s = input file bytes / wall time (the whole process: read, quantize, write); ratio = qforge MB/s / llama.cpp MB/s."
  echo
fi

# ------------------------------------------------------------ calibrate
if [[ " $SECTIONS " == *" calibrate "* ]]; then
  echo "### calibrate: qforge-calibrate vs llama-imatrix"
  echo
  if ! have_qf qforge-calibrate; then
    echo "Pending: qforge-calibrate is not built on this branch."
  else
    peer=1; have_peer llama-imatrix || peer=0
    [ -f "$CALIB_TEXT" ] || die "calibration text $CALIB_TEXT not found"
    models=()
    f=$QF_DATA/oracles/llamacpp/stories260K-F32.gguf
    if [ -f "$f" ]; then models+=("stories260K|$f"); else note "SKIP stories260K: $f not found"; fi
    TS3M=$QF_DATA/models/tinystories-distill-3M
    if [ -f "$TS3M/config.json" ] && [ -x "$QF_BIN/qforge-convert" ]; then
      f=$WORK/calib-ts3m-F32.gguf
      [ -f "$f" ] || "$QF_BIN/qforge-convert" "$TS3M" -o "$f" --outtype f32 --quiet || die "qforge-convert failed"
      models+=("tinystories-distill-3M|$f"); made+=("$f")
    else
      note "SKIP tinystories-distill-3M: $TS3M or qforge-convert missing"
    fi
    declare -A CE CW CR
    for rep in $(seq 1 "$REPS"); do
      for m in "${models[@]}"; do
        name=${m%%|*} f=${m#*|}
        if [ $peer = 1 ] && timed "$logs/$rep-imatrix-$name.log" "$PEER_BIN/llama-imatrix" -m "$f" -f "$CALIB_TEXT" \
             -o "$WORK/imatrix-peer.dat" -t "$THREADS" -c 512 -b 512 --chunks "$CALIB_CHUNKS"; then
          CE["peer|$name"]+="$(sed -n 's/.*prompt eval time = *\([0-9.]*\) ms \/ *\([0-9]*\) tokens.*/\2 \1/p' "$logs/$rep-imatrix-$name.log" |
            awk '{ printf "%.3f", $1 / ($2 / 1000) }') "
          CW["peer|$name"]+="$T_WALL "; CR["peer|$name"]+="$T_RSS "
        fi
        if timed "$logs/$rep-calib-$name.log" "$QF_BIN/qforge-calibrate" "$f" -f "$CALIB_TEXT" -o "$WORK/imatrix-qf.gguf" \
             -t "$THREADS" -c 512 --chunks "$CALIB_CHUNKS" --json; then
          CE["qf|$name"]+="$(grep -o '"tokens_per_second": [0-9.]*' "$logs/$rep-calib-$name.log" | awk '{ print $2 }') "
          CW["qf|$name"]+="$T_WALL "; CR["qf|$name"]+="$T_RSS "
        fi
        note "run $rep $name: llama-imatrix $(echo ${CE["peer|$name"]:-} | awk '{print $NF}') tok/s, qforge-calibrate $(echo ${CE["qf|$name"]:-} | awk '{print $NF}') tok/s"
      done
    done
    rm -f "$WORK/imatrix-peer.dat" "$WORK/imatrix-qf.gguf"
    machine_header
    echo "- text: $(basename "$CALIB_TEXT"), ctx 512, $CALIB_CHUNKS chunks ($((CALIB_CHUNKS * 512)) tokens), F16 KV cache"
    [ $peer = 0 ] && echo "- llama-imatrix not found: peer columns skipped"
    echo
    echo "| model | llama.cpp tok/s | qforge tok/s | ratio | llama.cpp wall s | qforge wall s | wall ratio | llama.cpp RSS MiB | qforge RSS MiB |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for m in "${models[@]}"; do
      name=${m%%|*}
      pe=$(med "${CE["peer|$name"]:-}"); qe=$(med "${CE["qf|$name"]:-}")
      pw=$(med "${CW["peer|$name"]:-}"); qw=$(med "${CW["qf|$name"]:-}")
      echo "| $name | $(fmt 1 "$pe") | $(fmt 1 "$qe") | $(ratio "$qe" "$pe") | $(fmt 2 "$pw") | $(fmt 2 "$qw") | $(ratio "$pw" "$qw") | $(mib "$(med "${CR["peer|$name"]:-}")") | $(mib "$(med "${CR["qf|$name"]:-}")") |"
    done
    echo
    echo "tok/s: llama.cpp's \"prompt eval time\" (forward passes with the statistics callback), qforge's tokens_per_second (--json)."
  fi
  echo
fi

if [ "$KEEP" != 1 ]; then rm -rf "${made[@]}"; fi
