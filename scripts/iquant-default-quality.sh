#!/usr/bin/env bash
# scripts/iquant-default-quality.sh [WORKDIR] - qforge's default method (auto + the qforge imatrix)
# next to llama.cpp (llama-quantize + llama-imatrix's imatrix) at equal size on
# tinystories-distill-3M for the i-quant presets TYPES, with the set-up of scripts/gptq-quality.sh
# (calibration corpus/tinystories-gen/calib.txt, CHUNKS chunks of 512; mean KLD against the base
# on test.txt, 20 chunks of 512, scored by qforge-verify and llama-perplexity).
# With QF_BIN_BEFORE set, a "before" column from that build's qforge-quantize.
# Environment: QF_BIN (bin), QF_BIN_BEFORE, QF_DATA (../shared), CHUNKS (32), TYPES, THREADS (1).
NAME=iquant-default-quality.sh WDEF=build/gptq-quality THDEF=1
TYPES=${TYPES:-"IQ3_XS IQ3_S IQ3_XXS IQ3_M IQ2_M IQ2_S IQ2_XS IQ2_XXS IQ1_M IQ1_S"}
. "$(dirname "$0")/calib-quality-lib.sh"
BB=${QF_BIN_BEFORE:-}
cols=(lc qf); head="| preset | llama.cpp imatrix | qforge default"
[ -n "$BB" ] && { cols=(lc old qf); head="| preset | llama.cpp imatrix | qforge default before | qforge default"; }
echo "$head | default / llama.cpp | bytes |"
echo "|---|---|$([ -n "$BB" ] && echo "---|")---|---|---|"
for ty in $TYPES; do
  [ -s "$W/lc-$ty.gguf" ] || "$P/llama-quantize" --imatrix "$W/imatrix-lc.dat" "$W/base.gguf" "$W/lc-$ty.gguf" "$ty" 1 >/dev/null 2>&1 || die "llama-quantize $ty"
  [ -z "$BB" ] || [ -s "$W/old-$ty.gguf" ] || "$BB/qforge-quantize" "$W/base.gguf" "$W/old-$ty.gguf" "$ty" --imatrix "$W/imatrix-qf.gguf" -t "$TH" --quiet >/dev/null || die "quantize (before) $ty"
  [ -s "$W/def-$ty.gguf" ] || "$B/qforge-quantize" "$W/base.gguf" "$W/def-$ty.gguf" "$ty" --imatrix "$W/imatrix-qf.gguf" -t "$TH" --quiet >/dev/null || die "quantize $ty"
  [ "$(stat -c %s "$W/lc-$ty.gguf")" = "$(stat -c %s "$W/def-$ty.gguf")" ] || die "$ty: sizes differ"
  row="| $ty"
  for f in "${cols[@]}"; do
    g=$f; [ "$f" = qf ] && g=def
    ab=$(score "$W/$g-$ty.gguf"); a=${ab% / *} b=${ab#* / }
    row+=" | $ab"; eval "a_$f=$a b_$f=$b"
  done
  echo "$row | $(awk -v g="$a_qf" -v l="$a_lc" -v h="$b_qf" -v m="$b_lc" 'BEGIN { printf "%.3f / %.3f", g / l, h / m }') | $(stat -c %s "$W/def-$ty.gguf") |"
done
