#!/usr/bin/env bash
# tests/cli/archs_gemma.sh - Gemma, Gemma 2 and Granite through the tools,
# against llama.cpp's oracles in shared/oracles/llamacpp/archs (made by
# convert_hf_to_gguf.py and the peer binaries at c392e50, PROVENANCE.md):
#  - qforge-convert: byte-identical to llama.cpp's F32 and F16 GGUFs (so the
#    tensor names, types, data and metadata keys are all equal);
#  - qforge-verify: greedy text equal to llama-simple's (F16 KV cache), and
#    perplexity within the measured agreement of llama-perplexity's;
#  - qforge-quantize --method exact: byte-identical to the peer llama-quantize
#    for every preset, with and without an imatrix;
#  - qforge-calibrate: the imatrix of the peer llama-imatrix within tolerance;
#  - --method gptq / awq: run, and lower KL-divergence than exact (gemma, gemma2, granite).
# The perplexity of every arch and file type is also in tests/unit/archs_gemma_test.c.
. tests/lib.sh
CONV=$QF_BIN/qforge-convert
VER=$QF_BIN/qforge-verify
QNT=$QF_BIN/qforge-quantize
CAL=$QF_BIN/qforge-calibrate
CMP=${QF_TOOLS:-build/tools}/imatrix_compare
[ -d "$QF_DATA" ] && QF_DATA=$(cd "$QF_DATA" && pwd) # absolute: the fixture below symlinks into it
A=$QF_DATA/oracles/llamacpp/archs
PEER=$QF_DATA/peers/llama.cpp/bin
TEXT=$QF_DATA/corpus/tinystories-gen/test.txt
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# --- help lists the architectures ------------------------------------------
help=$("$CONV" --help)
for c in "GemmaForCausalLM *-> gemma" "Gemma2ForCausalLM *-> gemma2" "GraniteForCausalLM *-> granite" \
         "LlamaForCausalLM *-> llama" "Qwen3ForCausalLM *-> qwen3"; do
  if printf '%s' "$help" | grep -Eq "^  $c\$"; then pass "help_lists_${c%%ForCausalLM*}"
  else fail "help_lists_${c%%ForCausalLM*}" "qforge-convert --help has no line '$c'"; fi
done

if ! need_data archs oracles/llamacpp/archs/PROVENANCE.md; then finish; exit; fi

# a ref.json value by a python path (empty when python3 is missing)
refval() { command -v python3 >/dev/null 2>&1 && python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval("d"+sys.argv[2]))' "$1" "$2"; }

# --- convert: byte identity --------------------------------------------------
for a in gemma gemma2 gemma2-l46 granite; do
  for t in f32 f16; do
    if ! err=$("$CONV" "$A/$a/hf" -o "$TMP/$a-$t.gguf" --outtype $t --quiet 2>&1); then fail convert_${a}_$t "$err"
    elif cmp -s "$TMP/$a-$t.gguf" "$A/$a/ref-$t.gguf"; then pass convert_${a}_$t
    else fail convert_${a}_$t "differs from ref-$t.gguf: $(cmp "$TMP/$a-$t.gguf" "$A/$a/ref-$t.gguf")"; fi
  done
done

# an F16 checkpoint's norm gets its +1 in F16 (llama.cpp adds it before the
# F32 write, in the source precision): the BF16 norm relabelled as F16
if command -v python3 >/dev/null 2>&1 && [ -x "${QF_TOOLS:-build/tools}/st_edit" ]; then
  mkdir -p "$TMP/g16"
  for f in config.json tokenizer.model tokenizer_config.json; do ln -s "$A/gemma/hf/$f" "$TMP/g16/$f"; done
  if "${QF_TOOLS:-build/tools}/st_edit" "$A/gemma/hf/model.safetensors" "$TMP/g16/model.safetensors" \
       --retype model.norm.weight F16 && "$CONV" "$TMP/g16" -o "$TMP/g16.gguf" --outtype f32 --quiet &&
     "$QF_BIN/qforge-inspect" "$TMP/g16/model.safetensors" --tensors --json >"$TMP/st.json" &&
     "$QF_BIN/qforge-inspect" "$TMP/g16.gguf" --tensors --json >"$TMP/gg.json" &&
     err=$(python3 - "$TMP" <<'PY' 2>&1
import json, struct, sys
d = sys.argv[1]
st = {t["name"]: t for t in json.load(open(d + "/st.json"))["tensors"]}["model.norm.weight"]
gg = {t["name"]: t for t in json.load(open(d + "/gg.json"))["tensors"]}["output_norm.weight"]
raw = open(d + "/g16/model.safetensors", "rb").read()[st["offset"]:st["offset"] + 128]
out = struct.unpack("<64f", open(d + "/g16.gguf", "rb").read()[gg["offset"]:gg["offset"] + 256])
want = [struct.unpack("<e", struct.pack("<e", x + 1.0))[0] for x in struct.unpack("<64e", raw)]
f32 = [struct.unpack("<f", struct.pack("<f", x + 1.0))[0] for x in struct.unpack("<64e", raw)]
assert list(out) == want, "output_norm is not f16(w + 1)"
assert want != f32, "fixture does not tell F16 from F32 addition"
PY
); then pass convert_gemma_f16_norm_plus_one
  else fail convert_gemma_f16_norm_plus_one "${err:-convert or inspect failed}"; fi
else skip convert_gemma_f16_norm_plus_one "python3 or st_edit not found"; fi

# --- verify: greedy text and perplexity ----------------------------------------
# llama-simple -n 20 "Once upon a time" prints the BOS piece first; --generate does not
for a in gemma gemma2 gemma2-l46 granite; do
  want=$(refval "$A/$a/ref.json" '["greedy"]["f32"]["stdout"]')
  if [ -z "$want" ]; then skip greedy_$a "python3 not found"; continue; fi
  got=$("$VER" "$TMP/$a-f32.gguf" --generate 20 --prompt "Once upon a time" --kv f16 2>/dev/null)
  want=${want#<bos>}; want=${want#<s>}
  if [ "$got" = "$want" ]; then pass greedy_$a; else fail greedy_$a "got '$got', llama-simple '$want'"; fi
done
# perplexity: 20 chunks of 128 as llama-perplexity (-ctk f32 -ctv f32); rel.
# agreement measured 1e-6 (gemma, granite) to 9e-5 (gemma2 F16, fp16 GELU table)
for a in gemma gemma2 granite; do
  for t in f32 f16; do
    want=$(refval "$A/$a/ref.json" "[\"perplexity\"][\"$t\"][\"ppl\"]")
    [ -n "$want" ] || { skip ppl_${a}_$t "python3 not found"; continue; }
    got=$("$VER" "$TMP/$a-$t.gguf" -f "$TEXT" -c 128 --chunks 20 --json 2>/dev/null | grep -o '"ppl": [0-9.]*' | head -1 | cut -d' ' -f2)
    if awk -v g="$got" -v w="$want" 'BEGIN { r = g / w - 1; exit !(g > 0 && r < 2e-4 && r > -2e-4) }'; then
      pass "ppl_${a}_$t ($got vs llama.cpp $want)"
    else fail ppl_${a}_$t "ppl '$got' vs llama-perplexity $want"; fi
  done
done

# --- quantize --method exact: byte identity with llama-quantize ------------------
PRESETS="Q8_0 Q6_K Q5_K_M Q5_K_S Q5_1 Q5_0 Q4_K_M Q4_K_S Q4_1 Q4_0 IQ4_NL Q3_K_L Q3_K_M Q3_K_S Q2_K"
if [ ! -x "$PEER/llama-quantize" ]; then
  skip quantize_exact "peer $PEER/llama-quantize not found"
else
  for a in gemma gemma2 granite; do
    bad=""; n=0
    for p in $PRESETS; do
      "$PEER/llama-quantize" "$TMP/$a-f32.gguf" "$TMP/peer.gguf" $p 1 >"$TMP/log" 2>&1 || { bad="$bad $p(peer failed)"; continue; }
      "$QNT" "$TMP/$a-f32.gguf" "$TMP/ours.gguf" $p --method exact --quiet >"$TMP/log" 2>&1 || { bad="$bad $p(failed: $(tail -n 1 "$TMP/log"))"; continue; }
      if cmp -s "$TMP/peer.gguf" "$TMP/ours.gguf"; then n=$((n+1)); else bad="$bad $p"; fi
    done
    if [ -z "$bad" ]; then pass "quantize_exact_$a ($n presets byte-identical)"; else fail quantize_exact_$a "differ:$bad"; fi
  done
fi

# --- calibrate: imatrix vs llama-imatrix, then quantize with it -----------------
head -c 40000 "$TEXT" >"$TMP/cal.txt"
if [ ! -x "$PEER/llama-imatrix" ] || [ ! -x "$PEER/llama-quantize" ]; then
  skip imatrix "peer llama-imatrix / llama-quantize not found"
else
  for a in gemma gemma2 granite; do
    # Gemma 2: 26 layers of fp16-table GELU and an F16 KV cache; an input one
    # float32 ulp away can round to the neighbouring fp16 value, and the inputs
    # of ffn_down (the GELU outputs) differ in a few columns by up to 2.4e-3
    # (mean 8e-5; 6e-4 / 2.6e-5 with an F32 KV cache, checked below)
    tol="--tol 1e-3 --mean-tol 3e-5"; [ $a = gemma2 ] && tol="--tol 5e-3 --mean-tol 2e-4"
    if ! "$PEER/llama-imatrix" -m "$TMP/$a-f32.gguf" -f "$TMP/cal.txt" -c 128 --chunks 8 -t 1 -o "$TMP/$a-peer.dat" >"$TMP/log" 2>&1; then
      fail imatrix_$a "llama-imatrix failed: $(tail -n 1 "$TMP/log")"; continue
    fi
    if ! "$CAL" "$TMP/$a-f32.gguf" -f "$TMP/cal.txt" -c 128 --chunks 8 --quiet -o "$TMP/$a-ours.dat"; then
      fail imatrix_$a "qforge-calibrate failed"; continue
    fi
    if out=$("$CMP" "$TMP/$a-ours.dat" "$TMP/$a-peer.dat" --same-ncall $tol); then pass "imatrix_$a ($out)"
    else fail imatrix_$a "$out"; fi
    if [ $a = gemma2 ]; then # with an F32 KV cache (no fp16 rounding of q, k, v, p) the usual tolerance holds
      if "$PEER/llama-imatrix" -m "$TMP/$a-f32.gguf" -f "$TMP/cal.txt" -c 128 --chunks 8 -t 1 -ctk f32 -ctv f32 \
           -o "$TMP/peer32.dat" >"$TMP/log" 2>&1 &&
         "$CAL" "$TMP/$a-f32.gguf" -f "$TMP/cal.txt" -c 128 --chunks 8 --kv f32 --quiet -o "$TMP/ours32.dat" &&
         out=$("$CMP" "$TMP/ours32.dat" "$TMP/peer32.dat" --same-ncall --tol 1e-3 --mean-tol 3e-5); then
        pass "imatrix_${a}_kv_f32 ($out)"
      else fail imatrix_${a}_kv_f32 "${out:-$(tail -n 1 "$TMP/log")}"; fi
    fi
    bad=""
    for p in Q4_K_M IQ4_NL Q4_0; do
      "$PEER/llama-quantize" --imatrix "$TMP/$a-peer.dat" "$TMP/$a-f32.gguf" "$TMP/peer.gguf" $p 1 >"$TMP/log" 2>&1 || { bad="$bad $p(peer failed)"; continue; }
      "$QNT" "$TMP/$a-f32.gguf" "$TMP/ours.gguf" $p --method exact --imatrix "$TMP/$a-peer.dat" --quiet >"$TMP/log" 2>&1 || { bad="$bad $p(failed)"; continue; }
      cmp -s "$TMP/peer.gguf" "$TMP/ours.gguf" || bad="$bad $p"
    done
    if [ -z "$bad" ]; then pass quantize_imatrix_$a; else fail quantize_imatrix_$a "differ:$bad"; fi
  done
fi

# --- AWQ's folds are exact on these archs (F32 output, no clipping) ------------
# Gemma's post-norms and GELU gate leave every fold exact in real arithmetic;
# the logits still move by the fp16 GELU table (a gate input one ulp away picks
# the neighbouring entry): measured 1.5e-6 granite, 4.2e-5 gemma, 1.7e-3 gemma2.
for a in gemma gemma2 granite; do
  lim=1e-5; [ $a = gemma ] && lim=2e-4; [ $a = gemma2 ] && lim=5e-3
  if ! "$QNT" "$TMP/$a-f32.gguf" "$TMP/$a-awqx.gguf" F32 --method awq --awq-alpha 0.5 --awq-no-clip --calib "$TMP/cal.txt" \
       --calib-ctx 64 --calib-chunks 2 --quiet >/dev/null 2>"$TMP/err"; then
    fail awq_exact_$a "$(cat "$TMP/err")"; continue
  fi
  d=$("${QF_TOOLS:-build/tools}/logits_diff" "$TMP/$a-f32.gguf" "$TMP/$a-awqx.gguf" "$TEXT" 48 2>"$TMP/err")
  if [ -n "$d" ] && awk -v d="$d" -v l="$lim" 'BEGIN { exit !(d <= l) }'; then pass "awq_exact_$a (rel. logit diff $d)"
  else fail awq_exact_$a "relative logit difference '$d' > $lim $(cat "$TMP/err")"; fi
done

# --- GPTQ and AWQ run and beat exact on KL-divergence ---------------------------
kld() { "$VER" "$1" --base "$2" -f "$TEXT" -c 128 --chunks 8 --json 2>/dev/null | grep -o '"kld": {"mean": [0-9.]*' | grep -o '[0-9.]*$'; }
for a in gemma gemma2 granite; do
  "$QNT" "$TMP/$a-f32.gguf" "$TMP/$a-exact.gguf" Q4_0 --method exact --quiet >/dev/null 2>&1
  k0=$(kld "$TMP/$a-exact.gguf" "$TMP/$a-f32.gguf")
  for m in gptq awq; do
    if ! "$QNT" "$TMP/$a-f32.gguf" "$TMP/$a-$m.gguf" Q4_0 --method $m --calib "$TMP/cal.txt" --calib-ctx 128 --calib-chunks 8 --quiet >"$TMP/log" 2>&1; then
      fail ${m}_$a "$(tail -n 1 "$TMP/log")"; continue
    fi
    k=$(kld "$TMP/$a-$m.gguf" "$TMP/$a-f32.gguf")
    if [ -n "$k" ] && [ -n "$k0" ] && awk -v k="$k" -v k0="$k0" 'BEGIN { exit !(k < k0) }'; then pass "${m}_$a (KLD $k vs exact $k0)"
    else fail ${m}_$a "KLD '$k' not below exact '$k0'"; fi
  done
done
finish
