#!/bin/bash
# tests/cli/archs_phi3_mixtral.sh - Phi-3 (fused qkv and gate/up, longrope)
# and Mixtral (MoE) against llama.cpp c392e50 (oracles/llamacpp/archs,
# PROVENANCE.md there):
#   - convert: F32 and F16 files byte-identical to the converter's oracles;
#   - verify: perplexity (c=128, 20 chunks) within 0.1% of llama-perplexity's
#     (ref.json), the HF directories too (phi3; mixtral against its converted
#     BF16 file, and its imatrix), greedy text equal to llama-simple's;
#   - quantize --method exact: byte-identical to llama-quantize on the
#     converted files, and on a synthetic 8-expert model (the n_expert == 8
#     rules: attn_v/attn_k Q8_0, attn_output Q5_K);
#   - calibrate: the imatrix of llama-imatrix (per-expert counts for MoE);
#   - gptq runs on phi3 and beats exact Q4_K_M in KLD; gptq on mixtral
#     (per-expert Hessians) loads in llama-perplexity with a KLD not above
#     search's, and experts without tokens are written as exact; awq on
#     phi3 folds into row ranges of the fused tensors (exact in F32, KLD below
#     search's); awq on mixtral folds exactly (F32) and loads in
#     llama-perplexity, KLD below exact's, awq and awq+gptq not above
#     search's; experts without tokens are written as awq's codec (search);
#   - FP8_DYNAMIC keeps fused qkv and experts in BF16 (listed in "ignore").
. "$(dirname "$0")/../lib.sh"
QF_TOOLS=${QF_TOOLS:-build/tools}
CONV=$QF_BIN/qforge-convert; VER=$QF_BIN/qforge-verify; Q=$QF_BIN/qforge-quantize; CAL=$QF_BIN/qforge-calibrate
PEERS=$QF_DATA/peers/llama.cpp/bin
A=oracles/llamacpp/archs
TXT=$QF_DATA/corpus/tinystories-gen/test.txt

# ref.json value: the perplexity of the F32/F16 file, or the greedy stdout
ref_ppl() { sed -n 's/.*"ppl": \([0-9.]*\).*/\1/p' <(tr ',' '\n' <"$QF_DATA/$A/$1/ref.json") | sed -n "${2}p"; }
# |a/b - 1| <= tol
within() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a / b - 1; if (d < 0) d = -d; exit !(d <= t) }'; }
ppl_of() { "$VER" "$@" --json 2>/dev/null | tr ',' '\n' | sed -n 's/^ *"ppl": \([0-9.]*\)$/\1/p' | head -n 1; }
kld_of() { "$VER" "$@" --json 2>/dev/null | tr -d '\n ' | sed -n 's/.*"kld":{"mean":\([0-9.e-]*\).*/\1/p'; }

for a in phi3 phi3-longrope mixtral; do
  need_data "$a" "$A/$a/hf" || continue
  # convert
  for t in f32 f16; do
    if "$CONV" "$QF_DATA/$A/$a/hf" -o "$TMP/$a-$t.gguf" --outtype "$t" --quiet &&
       cmp -s "$TMP/$a-$t.gguf" "$QF_DATA/$A/$a/ref-$t.gguf"; then
      pass "convert-$a-$t"
    else
      fail "convert-$a-$t" "not byte-identical to $A/$a/ref-$t.gguf"
    fi
  done
  # perplexity: F32 (1st ppl in ref.json) and F16 (2nd) against llama-perplexity
  for t in f32 f16; do
    [ "$t" = f32 ] && k=1 || k=2
    want=$(ref_ppl "$a" "$k"); got=$(ppl_of "$TMP/$a-$t.gguf" -f "$TXT" -c 128 --chunks 20 -t 2)
    if [ -n "$got" ] && within "$got" "$want" 1e-3; then pass "ppl-$a-$t ($got vs llama.cpp $want)"
    else fail "ppl-$a-$t" "qforge $got vs llama-perplexity $want"; fi
  done
  # greedy: llama-simple's stdout (ref.json stdout_hex) is the BOS piece, the text and a newline
  hex=$(grep -o '"stdout_hex": "[0-9a-f]*"' "$QF_DATA/$A/$a/ref.json" | head -n 1 | sed 's/.*: "\(.*\)"/\1/')
  want=$(printf "$(printf '%s' "$hex" | sed 's/../\\x&/g')" | od -An -tx1 | tr -d ' \n')
  got=$( (printf '<s>'; "$VER" "$TMP/$a-f32.gguf" --generate 20 --prompt "Once upon a time" 2>/dev/null | tail -n 1) |
        od -An -tx1 | tr -d ' \n')
  if [ -n "$hex" ] && [ "$got" = "$want" ]; then pass "greedy-$a"; else fail "greedy-$a" "$got vs $want"; fi
done

# HF directories: the engine runs phi3 from safetensors (BF16 weights, so
# not the F32 file's number: within 0.1% of it), refuses MoE
for a in phi3 phi3-longrope; do
  need_data "hf-$a" "$A/$a/hf" || continue
  want=$(ref_ppl "$a" 1); got=$(ppl_of "$QF_DATA/$A/$a/hf" -f "$TXT" -c 128 --chunks 20 -t 2)
  if [ -n "$got" ] && within "$got" "$want" 1e-3; then pass "ppl-hf-$a ($got vs $want)"
  else fail "ppl-hf-$a" "qforge $got vs llama-perplexity $want"; fi
done
# Mixtral from its HF directory (separate expert matrices, BF16 router read
# as F32 as the converter writes it): the perplexity of the BF16 GGUF the
# converter makes (only the q/k permutation's summation order differs), and
# the imatrix of that file
if need_data hf-mixtral "$A/mixtral/hf"; then
  "$CONV" "$QF_DATA/$A/mixtral/hf" -o "$TMP/mixtral-bf16.gguf" --outtype bf16 --quiet
  want=$(ppl_of "$TMP/mixtral-bf16.gguf" -f "$TXT" -c 128 --chunks 20 -t 2)
  got=$(ppl_of "$QF_DATA/$A/mixtral/hf" -f "$TXT" -c 128 --chunks 20 -t 2)
  if [ -n "$got" ] && [ -n "$want" ] && within "$got" "$want" 1e-4; then pass "ppl-hf-mixtral ($got vs GGUF $want)"
  else fail "ppl-hf-mixtral" "HF dir '$got' vs converted GGUF '$want'"; fi
  if [ -x "$QF_TOOLS/imatrix_compare" ] &&
     "$CAL" "$QF_DATA/$A/mixtral/hf" -f "$TXT" -c 128 --chunks 8 --quiet -o "$TMP/hf.dat" &&
     "$CAL" "$TMP/mixtral-bf16.gguf" -f "$TXT" -c 128 --chunks 8 --quiet -o "$TMP/gguf.dat" &&
     out=$("$QF_TOOLS/imatrix_compare" "$TMP/hf.dat" "$TMP/gguf.dat" --same-ncall --tol 2e-3 --mean-tol 1e-4); then
    pass "calibrate-hf-mixtral ($out)"
  else
    fail "calibrate-hf-mixtral" "${out:-calibrate failed on the HF directory}"
  fi
fi

# exact quantize against llama-quantize
LQ=$PEERS/llama-quantize
if [ ! -x "$LQ" ]; then
  skip quantize "peer binary $LQ not found"
else
  for a in phi3-longrope mixtral; do
    [ -f "$TMP/$a-f32.gguf" ] || continue
    for T in Q8_0 Q4_0 Q4_K_M Q3_K_M IQ4_NL; do
      "$LQ" "$TMP/$a-f32.gguf" "$TMP/ref.gguf" "$T" 1 >/dev/null 2>&1 &&
        "$Q" "$TMP/$a-f32.gguf" "$TMP/ours.gguf" "$T" --method exact --quiet >/dev/null 2>&1 &&
        cmp -s "$TMP/ref.gguf" "$TMP/ours.gguf" && pass "quantize-$a-$T" || fail "quantize-$a-$T" "differs from llama-quantize"
    done
  done
  # 8 experts, rows of 256 (k-quants apply): the n_expert == 8 rules
  GEN=$QF_TOOLS/gen_synth_model
  if [ -x "$GEN" ] && "$GEN" --arch mixtral --experts 8 --experts-used 2 --hidden 256 --ff 512 --layers 4 --heads 8 \
       --kv-heads 2 --dtype bf16 --out "$TMP/m8" >/dev/null && "$CONV" "$TMP/m8" -o "$TMP/m8.gguf" --outtype f32 --quiet; then
    for T in Q4_K_M Q2_K Q3_K_M IQ4_NL; do
      "$LQ" "$TMP/m8.gguf" "$TMP/ref.gguf" "$T" 1 >/dev/null 2>&1 &&
        "$Q" "$TMP/m8.gguf" "$TMP/ours.gguf" "$T" --method exact --quiet >/dev/null 2>&1 &&
        cmp -s "$TMP/ref.gguf" "$TMP/ours.gguf" && pass "quantize-8x-$T" || fail "quantize-8x-$T" "differs from llama-quantize"
    done
    types=$("$QF_BIN/qforge-inspect" "$TMP/ours.gguf" --tensors | awk '$2 ~ /^blk\.1\.attn_(v|k|output)\.weight$/ { print $2, $3 }')
    if printf '%s\n' "$types" | grep -q "attn_v.weight Q8_0" && printf '%s\n' "$types" | grep -q "attn_output.weight Q5_K"; then
      pass "quantize-8x-rules (IQ4_NL: attn_v Q8_0, attn_output Q5_K)"
    else
      fail "quantize-8x-rules" "$types"
    fi
  else
    fail quantize-8x "could not make the 8-expert model"
  fi
fi

# imatrix against llama-imatrix (-c 128, 8 chunks)
IMAT=$PEERS/llama-imatrix
if [ ! -x "$IMAT" ] || [ ! -x "$QF_TOOLS/imatrix_compare" ]; then
  skip imatrix "llama-imatrix or imatrix_compare not found"
else
  for a in phi3 mixtral; do
    [ -f "$TMP/$a-f32.gguf" ] || continue
    if "$IMAT" -m "$TMP/$a-f32.gguf" -f "$TXT" -c 128 --chunks 8 -t 1 -o "$TMP/peer.dat" >"$TMP/peer.log" 2>&1 &&
       "$CAL" "$TMP/$a-f32.gguf" -f "$TXT" -c 128 --chunks 8 --quiet -o "$TMP/ours.dat" &&
       out=$("$QF_TOOLS/imatrix_compare" "$TMP/ours.dat" "$TMP/peer.dat" --same-ncall --tol 1e-3 --mean-tol 3e-5); then
      pass "imatrix-$a ($out)"
    else
      fail "imatrix-$a" "${out:-run failed: $(tail -n 1 "$TMP/peer.log")}"
    fi
  done
fi

# GPTQ on phi3: lower KLD than exact Q4_K_M; AWQ and MoE refuse
if [ -f "$TMP/phi3-f32.gguf" ]; then
  CALIB=$QF_DATA/corpus/tinystories-gen/train.txt
  "$Q" "$TMP/phi3-f32.gguf" "$TMP/exact.gguf" Q4_K_M --method exact --quiet >/dev/null 2>&1
  if "$Q" "$TMP/phi3-f32.gguf" "$TMP/gptq.gguf" Q4_K_M --method gptq --calib "$CALIB" --calib-ctx 128 \
       --calib-chunks 8 --quiet >/dev/null 2>"$TMP/gptq.err"; then
    ke=$(kld_of "$TMP/exact.gguf" -f "$TXT" -c 128 --chunks 20 -t 2 --base "$TMP/phi3-f32.gguf")
    kg=$(kld_of "$TMP/gptq.gguf" -f "$TXT" -c 128 --chunks 20 -t 2 --base "$TMP/phi3-f32.gguf")
    if [ -n "$ke" ] && [ -n "$kg" ] && awk -v g="$kg" -v e="$ke" 'BEGIN { exit !(g < e) }'; then
      pass "gptq-phi3 (KLD $kg vs exact $ke)"
    else
      fail "gptq-phi3" "KLD gptq '$kg' vs exact '$ke'"
    fi
  else
    fail "gptq-phi3" "$(cat "$TMP/gptq.err")"
  fi
fi
# AWQ on phi3: o's scale folds into the v rows of attn_qkv, down's into the up
# half of gate_up; folded but not quantized (F32, no clipping) the logits
# equal the original's within 1e-5 relative, and the folds did change the file
for a in phi3 phi3-longrope; do
  [ -f "$TMP/$a-f32.gguf" ] || continue
  CALIB=$QF_DATA/corpus/tinystories-gen/train.txt
  if "$Q" "$TMP/$a-f32.gguf" "$TMP/$a-awqx.gguf" F32 --method awq --awq-alpha 0.5 --awq-no-clip --calib "$CALIB" \
       --calib-ctx 64 --calib-chunks 2 --quiet >/dev/null 2>"$TMP/err" && ! cmp -s "$TMP/$a-f32.gguf" "$TMP/$a-awqx.gguf"; then
    head -c 4000 "$TXT" >"$TMP/text.txt"
    d=$("$QF_TOOLS/logits_diff" "$TMP/$a-f32.gguf" "$TMP/$a-awqx.gguf" "$TMP/text.txt" 48 2>"$TMP/err")
    if [ -n "$d" ] && awk -v d="$d" 'BEGIN { exit !(d <= 1e-5) }'; then pass "awq-exact-$a (rel. logit diff $d)"
    else fail "awq-exact-$a" "relative logit difference '$d' > 1e-5 $(cat "$TMP/err")"; fi
  else
    fail "awq-exact-$a" "awq F32 failed or left the file unchanged: $(cat "$TMP/err")"
  fi
done
# and quantized: every group folded, KLD below search's at Q4_0
if [ -f "$TMP/phi3-f32.gguf" ]; then
  CALIB=$QF_DATA/corpus/tinystories-gen/train.txt
  if out=$("$Q" "$TMP/phi3-f32.gguf" "$TMP/awq.gguf" Q4_0 --method awq --calib "$CALIB" --calib-ctx 128 --calib-chunks 8 \
             --json 2>/dev/null) && "$Q" "$TMP/phi3-f32.gguf" "$TMP/search.gguf" Q4_0 --method search --quiet >/dev/null 2>&1; then
    ka=$(kld_of "$TMP/awq.gguf" -f "$TXT" -c 128 --chunks 20 -t 2 --base "$TMP/phi3-f32.gguf")
    ks=$(kld_of "$TMP/search.gguf" -f "$TXT" -c 128 --chunks 20 -t 2 --base "$TMP/phi3-f32.gguf")
    nf=$(printf '%s' "$out" | grep -c '"folded": false')
    if [ "$nf" = 0 ] && [ -n "$ka" ] && [ -n "$ks" ] && awk -v a="$ka" -v s="$ks" 'BEGIN { exit !(a < s) }'; then
      pass "awq-phi3 (KLD $ka vs search $ks, every group folded)"
    else
      fail "awq-phi3" "KLD awq '$ka' vs search '$ks', $nf groups not folded"
    fi
  else
    fail "awq-phi3" "quantize failed"
  fi
fi
if [ -f "$TMP/mixtral-f32.gguf" ]; then
  CALIB=$QF_DATA/corpus/tinystories-gen/train.txt
  # GPTQ with per-expert Hessians: llama-perplexity loads the file, and its
  # KLD (llama.cpp's own) is not above search's at the same type and size
  LP=$QF_DATA/peers/llama.cpp/bin-avx512/llama-perplexity
  grep -q avx512f /proc/cpuinfo || LP=$PEERS/llama-perplexity
  lp_kld() { "$LP" -m "$1" -f "$TXT" -c 128 -b 128 -t 2 -ctk f32 -ctv f32 --chunks 20 --kl-divergence-base "$TMP/mx-base.kld" \
               --kl-divergence 2>/dev/null | sed -n 's/^Mean *KLD: *\([0-9.]*\).*/\1/p'; }
  if [ ! -x "$LP" ]; then
    skip gptq-mixtral "peer llama-perplexity not found"
  elif "$Q" "$TMP/mixtral-f32.gguf" "$TMP/mx-gptq.gguf" Q4_0 --method gptq --calib "$CALIB" --calib-ctx 128 \
         --calib-chunks 8 --quiet >/dev/null 2>"$TMP/gptq.err" &&
       "$Q" "$TMP/mixtral-f32.gguf" "$TMP/mx-search.gguf" Q4_0 --method search --quiet >/dev/null 2>&1 &&
       "$LP" -m "$TMP/mixtral-f32.gguf" -f "$TXT" -c 128 -b 128 -t 2 -ctk f32 -ctv f32 --chunks 20 \
         --kl-divergence-base "$TMP/mx-base.kld" >/dev/null 2>&1; then
    kg=$(lp_kld "$TMP/mx-gptq.gguf"); ks=$(lp_kld "$TMP/mx-search.gguf")
    if [ -n "$kg" ] && [ -n "$ks" ] && awk -v g="$kg" -v s="$ks" 'BEGIN { exit !(g <= s) }'; then
      pass "gptq-mixtral (llama-perplexity KLD $kg vs search $ks)"
    else
      fail "gptq-mixtral" "llama-perplexity KLD gptq '$kg' vs search '$ks'"
    fi
  else
    fail "gptq-mixtral" "$(cat "$TMP/gptq.err")"
  fi
  # one calibration token: the experts it is not routed to have no H and are
  # written as the usual path (exact rounding under gptq) writes them
  slice() { # FILE TENSOR EXPERT -> checksum of that expert's bytes (4 experts)
    "$QF_BIN/qforge-inspect" "$1" --tensors | awk -v t="$2" '$2 == t { print $(NF-1), $NF }' | {
      read -r off n; tail -c +$((off + $3 * n / 4 + 1)) "$1" | head -c $((n / 4)) | cksum; }
  }
  if out=$("$Q" "$TMP/mixtral-f32.gguf" "$TMP/mx-one.gguf" Q4_0 --method gptq --calib "$CALIB" --calib-ctx 1 \
             --calib-chunks 1 --json 2>/dev/null) &&
     "$Q" "$TMP/mixtral-f32.gguf" "$TMP/mx-exact.gguf" Q4_0 --method exact --quiet >/dev/null 2>&1; then
    n=$(printf '%s' "$out" | sed -n 's/.*"experts_without_tokens": \([0-9]*\).*/\1/p')
    bad=""; same=0
    for t in ffn_gate_exps ffn_up_exps ffn_down_exps; do
      for e in 0 1 2 3; do
        if printf '%s\n' "$out" | grep -q "\"blk.0.$t.weight\", \"expert\": $e, \"no_tokens\": true"; then
          [ "$(slice "$TMP/mx-one.gguf" blk.0.$t.weight $e)" = "$(slice "$TMP/mx-exact.gguf" blk.0.$t.weight $e)" ] &&
            same=$((same + 1)) || bad="$bad $t/$e"
        fi
      done
    done
    if [ "${n:-0}" -gt 0 ] && [ "$same" -gt 0 ] && [ -z "$bad" ]; then
      pass "gptq-mixtral-no-tokens ($n expert matrices reported; block 0's $same equal to exact's)"
    else
      fail "gptq-mixtral-no-tokens" "reported '$n', equal $same, differing:$bad"
    fi
  else
    fail "gptq-mixtral-no-tokens" "quantize failed"
  fi
  # AWQ on MoE: attention and each expert's down fold (exact in F32), expert
  # gate/up are clipped only; llama-perplexity loads the files
  if "$Q" "$TMP/mixtral-f32.gguf" "$TMP/mx-awqx.gguf" F32 --method awq --awq-alpha 0.5 --awq-no-clip --calib "$CALIB" \
       --calib-ctx 64 --calib-chunks 2 --quiet >/dev/null 2>"$TMP/err" && ! cmp -s "$TMP/mixtral-f32.gguf" "$TMP/mx-awqx.gguf"; then
    head -c 4000 "$TXT" >"$TMP/text.txt"
    d=$("$QF_TOOLS/logits_diff" "$TMP/mixtral-f32.gguf" "$TMP/mx-awqx.gguf" "$TMP/text.txt" 48 2>"$TMP/err")
    if [ -n "$d" ] && awk -v d="$d" 'BEGIN { exit !(d <= 1e-5) }'; then pass "awq-exact-mixtral (rel. logit diff $d)"
    else fail "awq-exact-mixtral" "relative logit difference '$d' > 1e-5 $(cat "$TMP/err")"; fi
  else
    fail "awq-exact-mixtral" "awq F32 failed or left the file unchanged: $(cat "$TMP/err")"
  fi
  if [ -x "$LP" ] && [ -f "$TMP/mx-base.kld" ] &&
     "$Q" "$TMP/mixtral-f32.gguf" "$TMP/mx-awq.gguf" Q4_0 --method awq --calib "$CALIB" --calib-ctx 128 --calib-chunks 8 \
       --quiet >/dev/null 2>"$TMP/err" &&
     "$Q" "$TMP/mixtral-f32.gguf" "$TMP/mx-awqg.gguf" Q4_0 --method awq+gptq --calib "$CALIB" --calib-ctx 128 \
       --calib-chunks 8 --quiet >/dev/null 2>>"$TMP/err"; then
    ka=$(lp_kld "$TMP/mx-awq.gguf"); kag=$(lp_kld "$TMP/mx-awqg.gguf"); ke=$(lp_kld "$TMP/mx-exact.gguf")
    if [ -n "$ka" ] && [ -n "$kag" ] && [ -n "$ke" ] && [ -n "$ks" ] &&
       awk -v a="$ka" -v e="$ke" -v ag="$kag" -v s="$ks" 'BEGIN { exit !(a < e && a <= s && ag <= s) }'; then
      pass "awq-mixtral (llama-perplexity KLD awq $ka < exact $ke, <= search $ks; awq+gptq $kag <= search)"
    else
      fail "awq-mixtral" "KLD awq '$ka' exact '$ke' awq+gptq '$kag' search '$ks'"
    fi
  else
    fail "awq-mixtral" "$(cat "$TMP/err")"
  fi
  if out=$("$Q" "$TMP/mixtral-f32.gguf" "$TMP/mx-awq1.gguf" Q4_0 --method awq --calib "$CALIB" --calib-ctx 1 \
             --calib-chunks 1 --json 2>/dev/null); then
    n=$(printf '%s\n' "$out" | grep -c '"no_tokens": true')
    bad=""; same=0
    for e in 0 1 2 3; do
      if printf '%s\n' "$out" | grep -q "\"blk.0.ffn_in.expert$e\", .*\"no_tokens\": true"; then
        for t in ffn_gate_exps ffn_up_exps ffn_down_exps; do
          [ "$(slice "$TMP/mx-awq1.gguf" blk.0.$t.weight $e)" = "$(slice "$TMP/mx-search.gguf" blk.0.$t.weight $e)" ] &&
            same=$((same + 1)) || bad="$bad $t/$e"
        done
      fi
    done
    if [ "$n" -gt 0 ] && [ "$same" -gt 0 ] && [ -z "$bad" ]; then
      pass "awq-mixtral-no-tokens ($n expert groups reported; block 0's $same matrices equal to search's, awq's codec)"
    else
      fail "awq-mixtral-no-tokens" "reported '$n', equal $same, differing:$bad"
    fi
  else
    fail "awq-mixtral-no-tokens" "quantize failed"
  fi
fi

# FP8 (compressed-tensors): the fused phi3 qkv and the experts/router stay
# BF16 and are listed in "ignore"; the phi3 result runs as an HF directory
for a in phi3 mixtral; do
  need_data "fp8-$a" "$A/$a/hf" || continue
  if "$Q" "$QF_DATA/$A/$a/hf" "$TMP/fp8-$a" FP8_DYNAMIC --quiet >/dev/null 2>&1; then
    [ $a = phi3 ] && kept=model.layers.1.self_attn.qkv_proj || kept=model.layers.1.block_sparse_moe.experts.3.w2
    types=$("$QF_BIN/qforge-inspect" "$TMP/fp8-$a" --tensors)
    if grep -q "\"$kept\"" "$TMP/fp8-$a/config.json" && printf '%s\n' "$types" | grep -q "$kept.weight  *BF16" &&
       printf '%s\n' "$types" | grep -q "layers.1.self_attn.o_proj.weight  *F8_E4M3"; then
      pass "fp8-$a ($kept kept and ignored)"
    else
      fail "fp8-$a" "$kept not kept in BF16 / not in ignore, or o_proj not FP8"
    fi
  else
    fail "fp8-$a" "FP8_DYNAMIC failed"
  fi
done
if [ -d "$TMP/fp8-phi3" ]; then
  k=$(kld_of "$TMP/fp8-phi3" -f "$TXT" -c 128 --chunks 20 -t 2 --base "$QF_DATA/$A/phi3/ref-f32.gguf")
  if [ -n "$k" ] && awk -v k="$k" 'BEGIN { exit !(k < 0.01) }'; then pass "fp8-phi3-kld ($k)"; else fail fp8-phi3-kld "KLD '$k'"; fi
fi

# a Mixtral checkpoint with an expert missing: one line naming the block
if need_data missing-expert "$A/mixtral/hf" && [ -x "$QF_TOOLS/st_edit" ]; then
  mkdir -p "$TMP/mx" && cp "$QF_DATA/$A/mixtral/hf/"* "$TMP/mx/"
  sed -i '/layers.0.block_sparse_moe.experts.3.w2.weight/d' "$TMP/mx/model.safetensors.index.json"
  "$QF_TOOLS/st_edit" "$QF_DATA/$A/mixtral/hf/model-00001-of-00002.safetensors" "$TMP/mx/model-00001-of-00002.safetensors" \
    --drop model.layers.0.block_sparse_moe.experts.3.w2.weight >/dev/null 2>&1
  expect_exit missing-expert 1 "block 0 has 11 of its 12 expert matrices" -- "$CONV" "$TMP/mx" -o "$TMP/mx.gguf"
  expect_exit missing-expert-verify 1 "missing expert 3 of tensor 'blk.0.ffn_down_exps.weight'" -- \
    "$VER" "$TMP/mx" -f "$TXT" -c 128
  [ -e "$TMP/mx.gguf" ] && fail missing-expert-output "a partial output was left" || pass missing-expert-output
fi
finish
