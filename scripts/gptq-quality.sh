#!/usr/bin/env bash
# scripts/gptq-quality.sh [WORKDIR] - the GPTQ quality table of docs/gptq.md:
# tinystories-distill-3M, calibration corpus/tinystories-gen/calib.txt (CHUNKS chunks of
# 512 tokens for llama-imatrix, qforge-calibrate and GPTQ alike), mean KLD against the
# base on test.txt (20 chunks of 512), scored by qforge-verify and llama-perplexity.
# Rows: llama.cpp imatrix, qforge auto + imatrix, qforge gptq, for TYPES.
# Environment: QF_BIN (bin), QF_DATA (../shared), CHUNKS (32), TYPES, THREADS (1).
set -u -o pipefail
cd "$(dirname "$0")/.."
B=${QF_BIN:-bin}; D=${QF_DATA:-../shared}; P=$D/peers/llama.cpp/bin
W=${1:-build/gptq-quality}; CH=${CHUNKS:-32}; TH=${THREADS:-1}
TYPES=${TYPES:-"Q4_K_M Q4_0 Q3_K_M Q2_K"}
C=$D/corpus/tinystories-gen/calib.txt; T=$D/corpus/tinystories-gen/test.txt
mkdir -p "$W"
die() { echo "gptq-quality.sh: error: $*" >&2; exit 1; }
[ -s "$W/base.gguf" ] || "$B/qforge-convert" "$D/models/tinystories-distill-3M" -o "$W/base.gguf" --outtype auto --quiet || die convert
[ -s "$W/base.logits" ] || "$B/qforge-verify" "$W/base.gguf" -f "$T" -c 512 --chunks 20 -t "$TH" --save-logits "$W/base.logits" >/dev/null || die base
[ -s "$W/base.kld" ] || "$P/llama-perplexity" -m "$W/base.gguf" -f "$T" -c 512 --chunks 20 -ctk f32 -ctv f32 -t "$TH" \
  --kl-divergence-base "$W/base.kld" >"$W/lc-base.log" 2>&1 || die llama-perplexity
[ -s "$W/imatrix-lc.dat" ] || "$P/llama-imatrix" -m "$W/base.gguf" -f "$C" -o "$W/imatrix-lc.dat" -c 512 --chunks "$CH" -t "$TH" \
  >"$W/lc-imatrix.log" 2>&1 || die llama-imatrix
[ -s "$W/imatrix-qf.gguf" ] || "$B/qforge-calibrate" "$W/base.gguf" -f "$C" -o "$W/imatrix-qf.gguf" -c 512 --chunks "$CH" -t "$TH" --quiet || die calibrate
echo "| type | llama.cpp imatrix | qforge auto + imatrix | qforge gptq | gptq / llama.cpp |"
echo "|---|---|---|---|---|"
for ty in $TYPES; do
  [ -s "$W/lc-$ty.gguf" ] || "$P/llama-quantize" --imatrix "$W/imatrix-lc.dat" "$W/base.gguf" "$W/lc-$ty.gguf" "$ty" 1 >/dev/null 2>&1 || die "llama-quantize $ty"
  [ -s "$W/qf-$ty.gguf" ] || "$B/qforge-quantize" "$W/base.gguf" "$W/qf-$ty.gguf" "$ty" --imatrix "$W/imatrix-qf.gguf" -t "$TH" --quiet >/dev/null || die "quantize $ty"
  [ -s "$W/gptq-$ty.gguf" ] || "$B/qforge-quantize" "$W/base.gguf" "$W/gptq-$ty.gguf" "$ty" --method gptq --calib "$C" --calib-chunks "$CH" \
    -t "$TH" --json >"$W/gptq-$ty.json" || die "gptq $ty"
  row="| $ty"
  for f in lc qf gptq; do
    a=$("$B/qforge-verify" "$W/$f-$ty.gguf" -f "$T" -c 512 --chunks 20 -t "$TH" --base-logits "$W/base.logits" | sed -n 's/.*mean KLD: \([0-9.e-]*\).*/\1/p')
    b=$("$P/llama-perplexity" -m "$W/$f-$ty.gguf" -f "$T" -c 512 --chunks 20 -ctk f32 -ctv f32 -t "$TH" --kl-divergence-base "$W/base.kld" \
      --kl-divergence 2>&1 | sed -n 's/^Mean *KLD: *\([0-9.e-]*\).*/\1/p' | head -1)
    row+=" | $a / $b"; eval "a_$f=$a b_$f=$b"
  done
  echo "$row | $(awk -v g="$a_gptq" -v l="$a_lc" -v h="$b_gptq" -v m="$b_lc" 'BEGIN { printf "%.2f / %.2f", g / l, h / m }') |"
done
