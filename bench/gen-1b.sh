#!/usr/bin/env bash
# bench/gen-1b.sh - generate (once) a TinyLlama-1.1B-shaped synthetic BF16
# checkpoint in 2 safetensors shards, cached in $WORK/tinyllama-1b-synth.
# Sourced by the other benchmarks (which then see SYNTH_1B), or run alone.
# Random weights, real config.json and a SentencePiece tokenizer with 32000
# pieces (tests/tools/gen_synth_model.c). About 2.2 GB.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SYNTH_1B=$WORK/tinyllama-1b-synth
gen_1b() {
  if [ -f "$SYNTH_1B/.complete" ]; then return 0; fi
  local gen=$QF_TOOLS/gen_synth_model
  [ -x "$gen" ] || die "$gen not built (run make)"
  rm -rf "$SYNTH_1B" "$SYNTH_1B.tmp"
  note "generating $SYNTH_1B (TinyLlama-1.1B shape, BF16, 2 shards)"
  "$gen" --arch llama --out "$SYNTH_1B.tmp" --hidden 2048 --layers 22 --heads 32 --kv-heads 4 \
    --ff 5632 --vocab 32000 --dtype bf16 --shards 2 --ctx 2048 >&2 || die "gen_synth_model failed"
  touch "$SYNTH_1B.tmp/.complete"
  mv "$SYNTH_1B.tmp" "$SYNTH_1B"
}
# gguf_1b_f16: $WORK/tinyllama-1b-F16.gguf, converted (once) by qforge-convert;
# sets GGUF_1B_F16. Used by quantize.sh and verify.sh.
gguf_1b_f16() {
  GGUF_1B_F16=$WORK/tinyllama-1b-F16.gguf
  [ -f "$GGUF_1B_F16" ] && return 0
  [ -x "$QF_BIN/qforge-convert" ] || die "$QF_BIN/qforge-convert not built"
  gen_1b
  note "converting to $GGUF_1B_F16"
  "$QF_BIN/qforge-convert" "$SYNTH_1B" -o "$GGUF_1B_F16" --outtype f16 --threads "$THREADS" --quiet ||
    die "qforge-convert failed"
}
# peer_quantize IN OUT TYPE [IMATRIX]: llama-quantize (once; cached in WORK).
peer_quantize() {
  [ -f "$2" ] && return 0
  local im=(); [ -n "${4:-}" ] && im=(--imatrix "$4")
  note "llama-quantize $(basename "$1") -> $(basename "$2") ($3${4:+, imatrix $(basename "$4")})"
  "$PEER_BIN/llama-quantize" "${im[@]}" "$1" "$2.tmp" "$3" "$THREADS" >"$2.log" 2>&1 || { tail -3 "$2.log" >&2; rm -f "$2.tmp"; return 1; }
  mv "$2.tmp" "$2"
}
# The i-quant types benchmarked with an importance matrix (llama-quantize
# refuses IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S without one; the others are
# quantized with one in practice).
IMAT_TYPES=${IMAT_TYPES:-IQ1_S IQ1_M IQ2_XXS IQ2_XS IQ2_S IQ2_M IQ3_XXS IQ3_XS IQ3_S IQ3_M}
needs_imatrix() { [[ " $IMAT_TYPES " == *" $1 "* ]]; }
# imatrix_1b: the importance matrix of the 1.1B shape's F16 GGUF, in
# llama.cpp's .dat format (both llama-quantize and qforge-quantize read it):
# $IMATRIX_1B if set, else $WORK/tinyllama-1b-imatrix.dat made (once) by
# llama-imatrix on IMATRIX_1B_CHUNKS chunks of 512 of calib.txt. Sets IMATRIX_1B.
imatrix_1b() {
  gguf_1b_f16
  IMATRIX_1B=${IMATRIX_1B:-$WORK/tinyllama-1b-imatrix.dat}
  [ -f "$IMATRIX_1B" ] && return 0
  [ -x "$PEER_BIN/llama-imatrix" ] || die "$PEER_BIN/llama-imatrix not found (set IMATRIX_1B to an imatrix .dat)"
  local chunks=${IMATRIX_1B_CHUNKS:-2}
  note "llama-imatrix $(basename "$GGUF_1B_F16") -> $(basename "$IMATRIX_1B") ($chunks chunks of 512)"
  "$PEER_BIN/llama-imatrix" -m "$GGUF_1B_F16" -f "$QF_DATA/corpus/tinystories-gen/calib.txt" -o "$IMATRIX_1B.tmp.dat" \
    -c 512 -b 512 --chunks "$chunks" -t "$THREADS" >"$IMATRIX_1B.log" 2>&1 ||
    { tail -3 "$IMATRIX_1B.log" >&2; rm -f "$IMATRIX_1B.tmp.dat"; die "llama-imatrix failed"; }
  mv "$IMATRIX_1B.tmp.dat" "$IMATRIX_1B"
}
# gguf_70b_f16 L: a Llama-3-70B-shaped synthetic model with L layers (hidden
# 8192, FFN 28672, 64 heads / 8 KV heads, vocab 128256; random BF16
# weights, SentencePiece tokenizer) converted to $WORK/llama70b-${L}l-F16.gguf
# (once); the HF directory is deleted after conversion. Sets GGUF_70B_F16 and
# CONVERT_70B_LOG (the convert run's GNU time log, empty when cached).
# Disk: about 2 * (2.1 + 1.7 L) GB while converting, 2.1 + 1.7 L GB after.
gguf_70b_f16() {
  local L=$1 hf=$WORK/llama70b-${1}l
  GGUF_70B_F16=$WORK/llama70b-${L}l-F16.gguf
  CONVERT_70B_LOG=
  [ -f "$GGUF_70B_F16" ] && return 0
  if [ ! -f "$hf/.complete" ]; then
    note "generating $hf (Llama-3-70B widths, $L layers, BF16)"
    rm -rf "$hf" "$hf.tmp"
    "$QF_TOOLS/gen_synth_model" --arch llama --out "$hf.tmp" --hidden 8192 --layers "$L" --heads 64 --kv-heads 8 \
      --ff 28672 --vocab 128256 --dtype bf16 --shards 2 --ctx 8192 >&2 || die "gen_synth_model failed"
    touch "$hf.tmp/.complete"
    mv "$hf.tmp" "$hf"
  fi
  note "converting to $GGUF_70B_F16"
  CONVERT_70B_LOG=$WORK/llama70b-${L}l-convert.log
  timed "$CONVERT_70B_LOG" "$QF_BIN/qforge-convert" "$hf" -o "$GGUF_70B_F16" --outtype f16 --threads "$THREADS" --quiet ||
    die "qforge-convert $hf failed"
  [ "$KEEP" = 1 ] || rm -rf "$hf"
}
if [ "${BASH_SOURCE[0]}" = "$0" ]; then   # run alone: generate and show it
  gen_1b
  du -sh "$SYNTH_1B"
fi
