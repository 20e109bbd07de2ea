#!/usr/bin/env bash
# scripts/gptq-quality.sh [WORKDIR] - the gptq column of docs/quality.md "Calibrated methods", alone:
# tinystories-distill-3M, calibration corpus/tinystories-gen/calib.txt (CHUNKS chunks of
# 512 tokens for llama-imatrix, qforge-calibrate and GPTQ alike), mean KLD against the
# base on test.txt (20 chunks of 512), scored by qforge-verify and llama-perplexity.
# Rows: llama.cpp imatrix, qforge auto + imatrix, qforge gptq (with the qforge imatrix only for
# the types that require one: IQ2_XXS, IQ2_XS, IQ1_*), for TYPES.
# Environment: QF_BIN (bin), QF_DATA (../shared), CHUNKS (32), TYPES, THREADS (1).
# Set-up (base, scorers, imatrices): scripts/calib-quality-lib.sh.
NAME=gptq-quality.sh WDEF=build/gptq-quality THDEF=1
. "$(dirname "$0")/calib-quality-lib.sh"
echo "| type | llama.cpp imatrix | qforge auto + imatrix | qforge gptq | gptq / llama.cpp |"
echo "|---|---|---|---|---|"
for ty in $TYPES; do
  [ -s "$W/lc-$ty.gguf" ] || "$P/llama-quantize" --imatrix "$W/imatrix-lc.dat" "$W/base.gguf" "$W/lc-$ty.gguf" "$ty" 1 >/dev/null 2>&1 || die "llama-quantize $ty"
  [ -s "$W/qf-$ty.gguf" ] || "$B/qforge-quantize" "$W/base.gguf" "$W/qf-$ty.gguf" "$ty" --imatrix "$W/imatrix-qf.gguf" -t "$TH" --quiet >/dev/null || die "quantize $ty"
  GQ=("$B/qforge-quantize" "$W/base.gguf" "$W/gptq-$ty.gguf" "$ty" --method gptq --calib "$C" --calib-chunks "$CH" -t "$TH" --json)
  if [ ! -s "$W/gptq-$ty.gguf" ] && ! "${GQ[@]}" >"$W/gptq-$ty.json" 2>"$W/gptq-$ty.err"; then
    grep -q "needs an importance matrix" "$W/gptq-$ty.err" || die "gptq $ty: $(cat "$W/gptq-$ty.err")"
    "${GQ[@]}" --imatrix "$W/imatrix-qf.gguf" >"$W/gptq-$ty.json" || die "gptq $ty" # types that require one
  fi
  row="| $ty"
  for f in lc qf gptq; do
    ab=$(score "$W/$f-$ty.gguf"); a=${ab% / *} b=${ab#* / }
    row+=" | $ab"; eval "a_$f=$a b_$f=$b"
  done
  echo "$row | $(awk -v g="$a_gptq" -v l="$a_lc" -v h="$b_gptq" -v m="$b_lc" 'BEGIN { printf "%.2f / %.2f", g / l, h / m }') |"
done
