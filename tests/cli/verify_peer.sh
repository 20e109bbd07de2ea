#!/usr/bin/env bash
# verify_peer.sh - qforge-verify's perplexity against llama-perplexity itself
# (the peer binary, llama.cpp c392e50) on the same GGUF files and text:
# |ppl_qforge - ppl_llama| / ppl_llama < 0.1%.
#
# Flags per shared/peers/llama.cpp/PROVENANCE.md: -t 1 -b <ctx> -ctk f32 -ctv f32.
# F32: 4 chunks of 128 tokens (the numbers agree to all printed digits).
# Quantized files: llama.cpp rounds each matmul's activations to Q8_0/Q8_K/F16
# (we emulate that, see docs/verify.md), so a last-bit difference in an
# activation can flip one rounding step; those flips are random and average
# out, so these files are compared over 100 chunks (12,800 tokens, < 2 s each).
. "$(dirname "$0")/../lib.sh"
PEER=$QF_DATA/peers/llama.cpp/bin/llama-perplexity
TEXT=corpus/wikitext-2-raw/wiki.test.raw

peer_ppl() { # model chunks -> ppl on stdout
  "$PEER" -m "$1" -f "$QF_DATA/$TEXT" -t 1 -b 128 -c 128 --chunks "$2" -ctk f32 -ctv f32 2>&1 |
    sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p'
}

check() { # name file chunks (file relative to $QF_DATA/oracles/llamacpp, or an absolute path)
  local name=$1 rel=oracles/llamacpp/$2 chunks=$3 path
  case $2 in
    /*) path=$2 ;;
    *) need_data "$name" "$rel" || return; path=$QF_DATA/$rel ;;
  esac
  local a b
  a=$(peer_ppl "$path" "$chunks")
  b=$("$QF_BIN/qforge-verify" "$path" -f "$QF_DATA/$TEXT" -c 128 --chunks "$chunks" -t 1 2>"$TMP/err" |
    sed -n 's/^perplexity: \([0-9.]*\) .*/\1/p')
  if [ -z "$a" ]; then fail "$name" "llama-perplexity printed no estimate"; return; fi
  if [ -z "$b" ]; then fail "$name" "qforge-verify: $(cat "$TMP/err")"; return; fi
  if awk -v a="$a" -v b="$b" 'BEGIN { d = (a > b ? a - b : b - a) / a; exit !(d < 0.001) }'; then
    pass "$name"
  else
    fail "$name" "ppl $b, llama-perplexity $a (more than 0.1% apart)"
  fi
}

if ! need_data peer "$TEXT"; then
  :
elif [ ! -x "$PEER" ]; then
  skip peer "peer binary $PEER not found"
else
  check f32-4x128 stories260K-F32.gguf 4
  check q8_0-100x128 stories260K-Q8_0.gguf 100
  check q4_0-100x128 stories260K-Q4_0.gguf 100
  check q4_k_m-100x128 stories260K-Q4_K_M.gguf 100
  check synth-q4_k_m-100x128 synth-tinyk-Q4_K_M.gguf 100
  # IQ4_NL (activations rounded to Q8_0): llama-quantize's stories260K Q2_K
  # (31 of 47 tensors IQ4_NL: the Q2_K/Q3_K shape fallback), plain and with
  # the oracle imatrix
  QUANT=$QF_DATA/peers/llama.cpp/bin/llama-quantize
  for mode in plain imatrix; do
    [ -x "$QUANT" ] || { skip "iq4_nl-$mode" "peer binary $QUANT not found"; continue; }
    need_data "iq4_nl-$mode" oracles/llamacpp/stories260K-F32.gguf || continue
    args=()
    [ $mode = imatrix ] && args=(--imatrix "$QF_DATA/oracles/llamacpp/stories260K-imatrix-wiki64x512.dat")
    if "$QUANT" "${args[@]}" "$QF_DATA/oracles/llamacpp/stories260K-F32.gguf" "$TMP/q2k-$mode.gguf" Q2_K 1 >"$TMP/log" 2>&1; then
      check "iq4_nl-q2_k-$mode-100x128" "$TMP/q2k-$mode.gguf" 100
    else
      fail "iq4_nl-$mode" "llama-quantize: $(tail -n 1 "$TMP/log")"
    fi
  done
  # models written by qforge-convert: tinystories-distill-3M (BF16 weights kept as
  # BF16) and a synthetic qwen2 checkpoint (Q/K/V biases, NEOX RoPE)
  QF_TOOLS=${QF_TOOLS:-build/tools}
  if [ -x "$QF_BIN/qforge-convert" ] && need_data ts3m models/tinystories-distill-3M; then
    if "$QF_BIN/qforge-convert" "$QF_DATA/models/tinystories-distill-3M" -o "$TMP/ts3m.gguf" --outtype auto >"$TMP/log" 2>&1; then
      check ts3m-bf16-40x128 "$TMP/ts3m.gguf" 40
    else
      fail ts3m-bf16-40x128 "qforge-convert: $(tail -n 1 "$TMP/log")"
    fi
  fi
  if [ -x "$QF_BIN/qforge-convert" ] && [ -x "$QF_TOOLS/gen_synth_model" ]; then
    if "$QF_TOOLS/gen_synth_model" --arch qwen2 --out "$TMP/q2" --hidden 128 --ff 256 --layers 2 --heads 4 --kv-heads 2 --seed 3 >"$TMP/log" 2>&1 &&
       "$QF_BIN/qforge-convert" "$TMP/q2" -o "$TMP/q2.gguf" --outtype f32 >"$TMP/log" 2>&1; then
      check synth-qwen2-f32-20x128 "$TMP/q2.gguf" 20
    else
      fail synth-qwen2-f32-20x128 "$(tail -n 1 "$TMP/log")"
    fi
  fi
fi
finish
