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
finish
