#!/usr/bin/env bash
# kquant_peer.sh - qforge's quantizers against llama-quantize itself (the peer
# binary, llama.cpp c392e50) on a model full of corner cases, with and
# without an imatrix. Covers what the stored oracles do not: the imatrix
# paths of Q2_K..Q6_K, Q4_1 and Q5_1, zero rows/sub-blocks, zero importance,
# outliers, ties, tiny values. The imatrix is written by qforge's .dat writer,
# so this also checks that llama-quantize reads our files.
. "$(dirname "$0")/../lib.sh"
QF_TOOLS=${QF_TOOLS:-build/tools}
PEER=$QF_DATA/peers/llama.cpp/bin/llama-quantize
TEMPLATE=oracles/llamacpp/synth-tinyk-F16.gguf

if need_data stress "$TEMPLATE"; then
  if [ ! -x "$PEER" ]; then
    skip stress "peer binary $PEER not found"
  elif ! "$QF_TOOLS/kquant_stress_model" "$QF_DATA/$TEMPLATE" "$TMP/stress.gguf" "$TMP/stress.dat" 7 2>"$TMP/err"; then
    fail stress "kquant_stress_model: $(cat "$TMP/err")"
  else
    for t in Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K Q4_0 Q4_1 Q5_0 Q5_1 Q8_0; do
      for mode in plain imatrix; do
        if [ $mode = imatrix ]; then args=(--imatrix "$TMP/stress.dat"); im=$TMP/stress.dat; else args=(); im=; fi
        if ! "$PEER" "${args[@]}" "$TMP/stress.gguf" "$TMP/out.gguf" $t 1 >"$TMP/q.log" 2>&1; then
          fail "$t-$mode" "llama-quantize failed: $(tail -n 1 "$TMP/q.log")"
          continue
        fi
        if out=$("$QF_TOOLS/kquant_compare" "$TMP/stress.gguf" "$TMP/out.gguf" $im 2>&1); then
          pass "$t-$mode"
        else
          fail "$t-$mode" "$(printf '%s' "$out" | head -n 3 | tr '\n' ' ')"
        fi
      done
    done
  fi
fi

# stories260K (rows of 64 and 172): Q2_K and Q3_K fall back to IQ4_NL there
# (ffn_down, 172, to F16), so these files are mostly IQ4_NL. qforge-quantize
# --method exact must write llama-quantize's bytes, with and without the
# oracle imatrix (same path given to both, so the recorded KVs agree too).
F32=oracles/llamacpp/stories260K-F32.gguf
IMAT=oracles/llamacpp/stories260K-imatrix-wiki64x512.dat
if need_data stories-iq4nl "$F32" && need_data stories-iq4nl-imatrix "$IMAT"; then
  if [ ! -x "$PEER" ]; then
    skip stories-iq4nl "peer binary $PEER not found"
  else
    for t in Q2_K Q3_K_M; do
      for mode in plain imatrix; do
        if [ $mode = imatrix ]; then args=(--imatrix "$QF_DATA/$IMAT"); else args=(); fi
        name=stories260K-$t-$mode
        if ! "$PEER" "${args[@]}" "$QF_DATA/$F32" "$TMP/peer.gguf" $t 1 >"$TMP/q.log" 2>&1; then
          fail "$name" "llama-quantize failed: $(tail -n 1 "$TMP/q.log")"
          continue
        fi
        n_iq4=$(grep -c 'converting to iq4_nl' "$TMP/q.log")
        if ! "$QF_BIN/qforge-quantize" --method exact "${args[@]}" "$QF_DATA/$F32" "$TMP/ours.gguf" $t >"$TMP/o.log" 2>&1; then
          fail "$name" "qforge-quantize failed: $(tail -n 1 "$TMP/o.log")"
        elif [ "$n_iq4" -lt 20 ]; then
          fail "$name" "llama-quantize wrote only $n_iq4 iq4_nl tensors (expected the Q2_K/Q3_K fallback)"
        elif cmp -s "$TMP/peer.gguf" "$TMP/ours.gguf"; then
          pass "$name"
        else
          fail "$name" "output differs from llama-quantize's ($(cmp "$TMP/peer.gguf" "$TMP/ours.gguf" 2>&1 | head -n 1))"
        fi
      done
    done
  fi
fi
finish
