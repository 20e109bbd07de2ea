#!/usr/bin/env bash
# scripts/awq-quality.sh [WORKDIR] - the distill-3M table of docs/quality.md "Calibrated methods":
# tinystories-distill-3M, calibration corpus/tinystories-gen/calib.txt (CHUNKS chunks of 512
# tokens for llama-imatrix, qforge-calibrate, GPTQ and AWQ alike), mean KLD against the base on
# test.txt (20 chunks of 512), scored by qforge-verify and by llama-perplexity --kl-divergence
# (F32 KV cache). Columns: qforge search (the default with an imatrix), awq, gptq, awq+gptq (every
# qforge method with the qforge imatrix of the same chunks) and llama.cpp with its own imatrix;
# every file of a row has the same size (checked). Writes the table and the command to
# bench/results/DATE-awq-quality.md (RECORD=0: stdout only).
# Environment: QF_BIN (bin), QF_DATA (../shared), CHUNKS (32), TYPES, THREADS (2).
# Set-up (base, scorers, imatrices): scripts/calib-quality-lib.sh.
NAME=awq-quality.sh WDEF=build/awq-quality THDEF=2
START=$(date -u '+%Y-%m-%d %H:%M'); L0=$(cut -d' ' -f1-3 /proc/loadavg)
. "$(dirname "$0")/calib-quality-lib.sh"
TAB=$W/table.md
{
  echo "| type | search | awq | gptq | awq+gptq | llama.cpp imatrix | awq+gptq / llama.cpp | bytes |"
  echo "|---|---|---|---|---|---|---|---|"
} >"$TAB"
for ty in $TYPES; do
  [ -s "$W/lc-$ty.gguf" ] || "$P/llama-quantize" --imatrix "$W/imatrix-lc.dat" "$W/base.gguf" "$W/lc-$ty.gguf" "$ty" "$TH" \
    >"$W/lc-$ty.log" 2>&1 || die "llama-quantize $ty"
  row="| $ty"; sizes=""
  for m in search awq gptq awq+gptq; do
    f=$W/$m-$ty.gguf
    case $m in search) extra=() ;; *) extra=(--calib "$C" --calib-ctx 512 --calib-chunks "$CH") ;; esac
    [ -s "$f" ] || "$B/qforge-quantize" "$W/base.gguf" "$f" "$ty" --method "$m" --imatrix "$W/imatrix-qf.gguf" "${extra[@]}" \
      -t "$TH" --quiet --json >"$W/$m-$ty.json" || die "qforge-quantize --method $m $ty"
    s=$(score "$f"); row+=" | $s"; eval "s_${m//[+]/_}=\"\$s\""
    sizes+=" $(stat -c %s "$f")"
  done
  s=$(score "$W/lc-$ty.gguf"); sizes+=" $(stat -c %s "$W/lc-$ty.gguf")"
  [ "$(echo $sizes | tr ' ' '\n' | sort -u | wc -l)" = 1 ] || die "$ty: file sizes differ:$sizes"
  r=$(awk -v g="$s_awq_gptq" -v l="$s" 'BEGIN { split(g, x, " / "); split(l, y, " / "); printf "%.2f / %.2f", x[1] / y[1], x[2] / y[2] }')
  echo "$row | $s | $r | ${sizes##* } |" | tee -a "$TAB"
done
[ "${RECORD:-1}" = 1 ] || exit 0
R=bench/results/$(date -u '+%Y-%m-%d-%H%M')-awq-quality.md
{
  echo "# awq-quality.sh record"
  echo "- date: $START - $(date -u '+%H:%M') UTC, commit $(git rev-parse --short HEAD 2>/dev/null), load average $L0 at start, $(cut -d' ' -f1-3 /proc/loadavg) at end ($(nproc) CPUs)"
  echo "- command: CHUNKS=$CH THREADS=$TH TYPES=\"$TYPES\" scripts/awq-quality.sh"
  echo "- cells: mean KLD against the base, qforge-verify / llama-perplexity --kl-divergence (-ctk f32 -ctv f32); lower is better"
  echo
  cat "$TAB"
} >"$R"
echo "record: $R"
