# scripts/calib-quality-lib.sh - the set-up shared by scripts/awq-quality.sh and
# scripts/gptq-quality.sh (sourced, not run). The caller sets NAME (for messages), WDEF (its
# default work directory) and THDEF (its default thread count) and passes its arguments.
# Afterwards: B, D, P (programs, data, llama.cpp), W (work directory), CH (calibration
# chunks), TH (threads), TYPES, C / T (calibration / test text) are set; W holds base.gguf
# (tinystories-distill-3M, qforge-convert --outtype auto), base.logits (qforge-verify
# --save-logits) and base.kld (llama-perplexity --kl-divergence-base) over 20 chunks of 512
# of T, and imatrix-lc.dat / imatrix-qf.gguf (llama-imatrix / qforge-calibrate, CH chunks of
# 512 of C); `score FILE` prints "qforge-verify KLD / llama-perplexity KLD" (F32 KV cache).
# Environment: QF_BIN (bin), QF_DATA (../shared), CHUNKS (32), TYPES, THREADS.
set -u -o pipefail
cd "$(dirname "$0")/.."
B=${QF_BIN:-bin}; D=${QF_DATA:-../shared}; P=$D/peers/llama.cpp/bin
W=${1:-$WDEF}; CH=${CHUNKS:-32}; TH=${THREADS:-$THDEF}
TYPES=${TYPES:-"Q4_K_M Q4_0 Q3_K_M Q2_K"}
C=$D/corpus/tinystories-gen/calib.txt; T=$D/corpus/tinystories-gen/test.txt
die() { echo "$NAME: error: $*" >&2; exit 1; }
[ -d "$D/models/tinystories-distill-3M" ] || { echo "SKIP: $D/models/tinystories-distill-3M not found"; exit 0; }
mkdir -p "$W"
[ -s "$W/base.gguf" ] || "$B/qforge-convert" "$D/models/tinystories-distill-3M" -o "$W/base.gguf" --outtype auto --quiet || die convert
[ -s "$W/base.logits" ] || "$B/qforge-verify" "$W/base.gguf" -f "$T" -c 512 --chunks 20 -t "$TH" --save-logits "$W/base.logits" >/dev/null || die base
[ -s "$W/base.kld" ] || "$P/llama-perplexity" -m "$W/base.gguf" -f "$T" -c 512 --chunks 20 -ctk f32 -ctv f32 -t "$TH" \
  --kl-divergence-base "$W/base.kld" >"$W/lc-base.log" 2>&1 || die llama-perplexity
[ -s "$W/imatrix-lc.dat" ] || "$P/llama-imatrix" -m "$W/base.gguf" -f "$C" -o "$W/imatrix-lc.dat" -c 512 --chunks "$CH" -t "$TH" \
  >"$W/lc-imatrix.log" 2>&1 || die llama-imatrix
[ -s "$W/imatrix-qf.gguf" ] || "$B/qforge-calibrate" "$W/base.gguf" -f "$C" -o "$W/imatrix-qf.gguf" -c 512 --chunks "$CH" -t "$TH" --quiet || die calibrate
score() { # FILE -> "qforge-verify KLD / llama-perplexity KLD"
  local a b
  a=$("$B/qforge-verify" "$1" -f "$T" -c 512 --chunks 20 -t "$TH" --base-logits "$W/base.logits" | sed -n 's/.*mean KLD: \([0-9.e-]*\).*/\1/p')
  b=$("$P/llama-perplexity" -m "$1" -f "$T" -c 512 --chunks 20 -ctk f32 -ctv f32 -t "$TH" --kl-divergence-base "$W/base.kld" \
    --kl-divergence 2>&1 | sed -n 's/^Mean *KLD: *\([0-9.e-]*\).*/\1/p' | head -1)
  echo "$a / $b"
}
