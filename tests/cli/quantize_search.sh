#!/usr/bin/env bash
# quantize_search.sh - qforge-quantize --method exact|search|auto.
#   - search writes the same tensor types and file size as exact (and as
#     llama-quantize), on a model full of corner cases (kquant_stress_model),
#     with and without imatrix, for every preset; its bytes do not depend on
#     the thread count;
#   - the default (auto) is search for every tensor of a K-quant preset (the
#     fast search for the K-quant blocks, the full one for the 32-blocks) and
#     for legacy presets with an imatrix (Q4_1/Q5_0 tensors excepted), exact
#     for legacy presets without imatrix (the llama-quantize bytes);
#   - llama.cpp loads and runs a search file, and it is closer to the F32
#     model (mean KLD over the same tokens) than llama-quantize's.
. "$(dirname "$0")/../lib.sh"
QF_TOOLS=${QF_TOOLS:-build/tools}
Q=$QF_BIN/qforge-quantize
PEERS=$QF_DATA/peers/llama.cpp/bin
TEMPLATE=oracles/llamacpp/synth-tinyk-F16.gguf
S260=oracles/llamacpp/stories260K-F32.gguf

types_of() { "$QF_BIN/qforge-inspect" --tensors "$1" | awk '$1 ~ /^[0-9]+$/ {print $2, $3}'; }

if need_data same-types "$TEMPLATE"; then
  if ! "$QF_TOOLS/kquant_stress_model" "$QF_DATA/$TEMPLATE" "$TMP/stress.gguf" "$TMP/stress.dat" 11 2>"$TMP/err"; then
    fail same-types "kquant_stress_model: $(cat "$TMP/err")"
  else
    bad=""
    for t in Q2_K Q3_K_M Q4_K_M Q5_K_M Q6_K Q4_0 Q4_1 Q5_0 Q5_1 Q8_0; do
      for im in "" "--imatrix $TMP/stress.dat"; do
        # shellcheck disable=SC2086
        "$Q" -q "$TMP/stress.gguf" "$TMP/e.gguf" $t $im --method exact >/dev/null 2>"$TMP/err" &&
          "$Q" -q "$TMP/stress.gguf" "$TMP/s.gguf" $t $im --method search --threads 2 >/dev/null 2>>"$TMP/err" &&
          "$Q" -q "$TMP/stress.gguf" "$TMP/s1.gguf" $t $im --method search --threads 1 >/dev/null 2>>"$TMP/err" ||
          { bad="$bad $t${im:+-imat}(failed: $(head -c 200 "$TMP/err"))"; continue; }
        [ "$(stat -c %s "$TMP/e.gguf")" = "$(stat -c %s "$TMP/s.gguf")" ] || bad="$bad $t${im:+-imat}(size)"
        [ "$(types_of "$TMP/e.gguf")" = "$(types_of "$TMP/s.gguf")" ] || bad="$bad $t${im:+-imat}(types)"
        cmp -s "$TMP/e.gguf" "$TMP/s.gguf" && bad="$bad $t${im:+-imat}(search changed nothing)"
        cmp -s "$TMP/s.gguf" "$TMP/s1.gguf" || bad="$bad $t${im:+-imat}(threads)"
      done
    done
    if [ -z "$bad" ]; then pass same-types-size-threads; else fail same-types-size-threads "$bad"; fi
  fi
fi

# auto: search for every tensor of a K-quant preset (fallbacks included) and
# for legacy presets with an imatrix (but Q4_1/Q5_0 tensors stay exact); exact
# for legacy presets without imatrix (the llama-quantize bytes)
if need_data default-method "$S260" && [ -s "$TMP/stress.gguf" ]; then
  bad=""
  run() { "$Q" -q "$@" >/dev/null 2>&1 || bad="$bad (failed: $*)"; }
  for t in Q4_0 Q5_1 Q8_0; do
    run "$QF_DATA/$S260" "$TMP/a.gguf" $t; run "$QF_DATA/$S260" "$TMP/x.gguf" $t --method exact
    cmp -s "$TMP/a.gguf" "$TMP/x.gguf" || bad="$bad $t-not-exact"
  done
  # (--pure: no Q6_K output tensor, whose K-quant blocks auto searches faster)
  run "$TMP/stress.gguf" "$TMP/a.gguf" Q4_0 --pure --imatrix "$TMP/stress.dat"
  run "$TMP/stress.gguf" "$TMP/x.gguf" Q4_0 --pure --imatrix "$TMP/stress.dat" --method search
  cmp -s "$TMP/a.gguf" "$TMP/x.gguf" || bad="$bad Q4_0-imatrix-not-search"
  for t in Q4_1 Q5_0; do # Q4_1/Q5_0 tensors exact, the rest (output Q6_K) searched
    n_legacy=$("$Q" "$TMP/stress.gguf" "$TMP/a.gguf" $t --imatrix "$TMP/stress.dat" --dry-run 2>/dev/null | grep -ci "$t.* search")
    [ "$n_legacy" = 0 ] || bad="$bad $t-imatrix-searched-$t-tensors($n_legacy)"
    "$Q" "$TMP/stress.gguf" "$TMP/a.gguf" $t --imatrix "$TMP/stress.dat" --dry-run 2>/dev/null | grep -qi "q6_K.* search" ||
      bad="$bad $t-imatrix-output-not-searched"
  done
  for t in Q4_K_M Q2_K Q3_K_M; do # stories260K: only fallbacks (Q5_0/IQ4_NL/Q8_0), all searched
    run "$QF_DATA/$S260" "$TMP/a.gguf" $t; run "$QF_DATA/$S260" "$TMP/x.gguf" $t --method search
    cmp -s "$TMP/a.gguf" "$TMP/x.gguf" || bad="$bad $t-fallbacks-not-search"
  done
  # K-quant blocks: auto is the fast search (QF_SEARCH_EFFORT_FAST), neither
  # exact nor the full search, same types and size, any thread count
  run "$TMP/stress.gguf" "$TMP/a.gguf" Q4_K_M --threads 2; run "$TMP/stress.gguf" "$TMP/a1.gguf" Q4_K_M --threads 1
  run "$TMP/stress.gguf" "$TMP/x.gguf" Q4_K_M --method search; run "$TMP/stress.gguf" "$TMP/e.gguf" Q4_K_M --method exact
  cmp -s "$TMP/a.gguf" "$TMP/x.gguf" && bad="$bad Q4_K_M-auto-is-full-search"
  cmp -s "$TMP/a.gguf" "$TMP/e.gguf" && bad="$bad Q4_K_M-auto-is-exact"
  cmp -s "$TMP/a.gguf" "$TMP/a1.gguf" || bad="$bad Q4_K_M-auto-threads"
  [ "$(types_of "$TMP/a.gguf")" = "$(types_of "$TMP/e.gguf")" ] || bad="$bad Q4_K_M-auto-types"
  [ "$(stat -c %s "$TMP/a.gguf")" = "$(stat -c %s "$TMP/e.gguf")" ] || bad="$bad Q4_K_M-auto-size"
  "$Q" "$TMP/stress.gguf" "$TMP/a.gguf" Q4_K_M --json 2>/dev/null | grep -q '"method": "auto", "tensors_searched": [1-9]' ||
    bad="$bad json"
  if [ -z "$bad" ]; then pass default-method; else fail default-method "$bad"; fi
  expect_exit bad-method 2 "--method 'fast'" -- "$Q" "$QF_DATA/$S260" "$TMP/z.gguf" Q4_0 --method fast
fi

# llama.cpp runs the search file, and it is closer to F32 (stories260K, Q4_0:
# measured mean KLD 0.0644 vs 0.0719 on 100 chunks of 512; here 8 chunks of
# 256 of the test text, deterministic with one thread).
TEXT=corpus/tinystories-gen/test.txt
if need_data peer-kld "$S260" && need_data peer-kld "$TEXT"; then
  if [ ! -x "$PEERS/llama-perplexity" ]; then
    skip peer-kld "peer binary $PEERS/llama-perplexity not found"
  else
    ppl() { "$PEERS/llama-perplexity" -m "$1" -f "$QF_DATA/$TEXT" -c 256 -b 256 --chunks 8 -t 1 -ctk f32 -ctv f32 "${@:2}" 2>&1; }
    ppl "$QF_DATA/$S260" --kl-divergence-base "$TMP/base.kld" >"$TMP/base.log"
    "$Q" -q "$QF_DATA/$S260" "$TMP/e.gguf" Q4_0 --method exact >/dev/null 2>&1
    "$Q" -q "$QF_DATA/$S260" "$TMP/s.gguf" Q4_0 --method search >/dev/null 2>&1
    ke=$(ppl "$TMP/e.gguf" --kl-divergence-base "$TMP/base.kld" --kl-divergence | awk '/^Mean +KLD/ {print $3}')
    ks=$(ppl "$TMP/s.gguf" --kl-divergence-base "$TMP/base.kld" --kl-divergence | awk '/^Mean +KLD/ {print $3}')
    if [ -z "$ke" ] || [ -z "$ks" ]; then fail peer-kld "llama-perplexity failed (exact '$ke', search '$ks')"
    elif awk -v e="$ke" -v s="$ks" 'BEGIN { exit !(s < e) }'; then pass "peer-kld (Q4_0 mean KLD search $ks < exact $ke)"
    else fail peer-kld "search $ks not below exact $ke"; fi
  fi
fi
finish
