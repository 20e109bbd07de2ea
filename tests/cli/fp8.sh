#!/usr/bin/env bash
# tests/cli/fp8.sh - FP8 checkpoints end to end: qforge-quantize FP8_DYNAMIC/FP8
# writes compressed-tensors directories (every one checked by fp8_tool check
# against docs/formats.md's rules); verify/calibrate/convert read them and
# block-scaled quant_method "fp8" checkpoints; quantize reads them directly
# (every type, gptq/awq, size budgets) with the bytes of converting first; bad
# FP8 inputs fail cleanly on every path.
. tests/lib.sh
Q=$QF_BIN/qforge-quantize
V=$QF_BIN/qforge-verify
C=$QF_BIN/qforge-convert
CAL=$QF_BIN/qforge-calibrate
TOOLS=${QF_TOOLS:-build/tools}
FT=$TOOLS/fp8_tool
ST_EDIT=$TOOLS/st_edit
GEN=$TOOLS/gen_synth_model
TEXT=$QF_DATA/corpus/tinystories-gen/test.txt
CALIB=$QF_DATA/corpus/tinystories-gen/calib.txt
S=$QF_DATA/models/stories260K
D=$QF_DATA/models/tinystories-distill-3M

for b in "$Q" "$V" "$C" "$CAL" "$FT" "$ST_EDIT" "$GEN"; do
  if [ ! -x "$b" ]; then fail build "$b not built"; finish; exit; fi
done
if ! need_data models models/stories260K || ! need_data models2 models/tinystories-distill-3M ||
   ! need_data text corpus/tinystories-gen/test.txt; then finish; exit; fi

# json_field FILE KEY: the number after "KEY": in a one-line JSON
json_field() { sed -n "s/.*\"$2\": \([-0-9.e+]*\).*/\1/p" "$1"; }

# write NAME IN TYPE [args]: write $TMP/NAME and run the schema checker on it
write() {
  local name=$1 in=$2 type=$3; shift 3
  local out err
  if ! err=$("$Q" "$in" "$TMP/$name" "$type" --quiet "$@" 2>&1 >/dev/null); then fail "write_$name" "$err"; return 1; fi
  if ! out=$("$FT" check "$TMP/$name" 2>&1); then fail "write_$name" "schema: $out"; return 1; fi
  pass "write_$name"
}

# --- writing: both models, every scheme, dynamic and static ---
for m in S D; do
  src=${!m}
  for sch in channel tensor block; do write "${m}_dyn_$sch" "$src" FP8_DYNAMIC --fp8-scheme "$sch"; done
  for sch in channel tensor; do
    write "${m}_static_$sch" "$src" FP8 --fp8-scheme "$sch" --calib "$CALIB" --ctx 128 --chunks 4
  done
done
write D_sharded "$D" FP8_DYNAMIC --max-shard-size 1000000
n=$(ls "$TMP"/D_sharded/model-0000*-of-0000*.safetensors 2>/dev/null | wc -l)
if [ "$n" -gt 1 ] && [ -f "$TMP/D_sharded/model.safetensors.index.json" ]; then pass sharded_files
else fail sharded_files "$n shards"; fi
if cmp -s "$D/tokenizer.json" "$TMP/D_dyn_channel/tokenizer.json" &&
   cmp -s "$D/generation_config.json" "$TMP/D_dyn_channel/generation_config.json"; then pass side_files_copied
else fail side_files_copied "tokenizer/generation files differ"; fi
# same bytes whatever the thread count
if OMP_NUM_THREADS=1 "$Q" "$D" "$TMP/D_dyn_channel_t1" FP8_DYNAMIC --quiet >/dev/null &&
   cmp -s "$TMP/D_dyn_channel/model.safetensors" "$TMP/D_dyn_channel_t1/model.safetensors"; then pass threads_same_bytes
else fail threads_same_bytes "1-thread output differs"; fi

# --- GGUF input: a lossless GGUF of the HF directory gives the same bytes ---
for m in S:f32:channel D:bf16:channel D:bf16:block; do
  IFS=: read -r v ot sch <<<"$m"; src=${!v}
  g=$TMP/${v}_$ot.gguf
  [ -f "$g" ] || "$C" "$src" -o "$g" --outtype "$ot" >/dev/null 2>&1
  [ -d "$TMP/${v}_dyn_$sch" ] || continue
  if err=$("$Q" "$g" "$TMP/${v}_gguf_$sch" FP8_DYNAMIC --fp8-scheme "$sch" --hf-dir "$src" --quiet 2>&1 >/dev/null) &&
     diff -r "$TMP/${v}_dyn_$sch" "$TMP/${v}_gguf_$sch" >/dev/null; then pass "gguf_input_same_bytes_${v}_$sch"
  else fail "gguf_input_same_bytes_${v}_$sch" "$err"; fi
done
# a split GGUF: every shard is read
if [ -d "$TMP/D_dyn_channel" ] && "$C" "$D" -o "$TMP/Dsplit.gguf" --outtype bf16 --split-max-size 1000000 --quiet >/dev/null 2>&1; then
  if err=$("$Q" "$TMP/Dsplit-00001-of-0000"*.gguf "$TMP/D_split_fp8" FP8_DYNAMIC --hf-dir "$D" --quiet 2>&1 >/dev/null) &&
     diff -r "$TMP/D_dyn_channel" "$TMP/D_split_fp8" >/dev/null; then pass gguf_input_split_same_bytes
  else fail gguf_input_split_same_bytes "$err"; fi
fi
# static FP8 calibrates on the GGUF: the same input scales
if [ -d "$TMP/D_static_channel" ] && [ -f "$TMP/D_bf16.gguf" ]; then
  if err=$("$Q" "$TMP/D_bf16.gguf" "$TMP/D_gguf_static" FP8 --hf-dir "$D" --calib "$CALIB" --ctx 128 --chunks 4 --quiet \
       2>&1 >/dev/null) && diff -r "$TMP/D_static_channel" "$TMP/D_gguf_static" >/dev/null; then
    pass gguf_input_same_bytes_D_static
  else fail gguf_input_same_bytes_D_static "$err"; fi
fi

# --- round trip: FP8 dir -> F32 GGUF holds scale * e4m3(code); same ppl ---
for m in S_dyn_channel D_dyn_tensor D_dyn_block; do
  [ -d "$TMP/$m" ] || continue
  if ! err=$("$C" "$TMP/$m" -o "$TMP/$m.gguf" --outtype f32 2>&1 >/dev/null); then fail "convert_$m" "$err"; continue; fi
  if out=$("$FT" compare "$TMP/$m" "$TMP/$m.gguf" 2>&1); then pass "dequantized_equal_$m"; else fail "dequantized_equal_$m" "$out"; fi
  "$V" "$TMP/$m" -f "$TEXT" -c 128 --chunks 4 --act f32 --json >"$TMP/$m.dir.json" 2>/dev/null
  "$V" "$TMP/$m.gguf" -f "$TEXT" -c 128 --chunks 4 --act f32 --json >"$TMP/$m.gguf.json" 2>/dev/null
  # the HF directory runs NEOX RoPE on HF-ordered Q/K, the GGUF normal RoPE on
  # permuted rows: the same math, summed in another order (1e-8 in mean NLL,
  # as for any HF directory vs its F32 GGUF)
  a=$(json_field "$TMP/$m.dir.json" mean_nll); b=$(json_field "$TMP/$m.gguf.json" mean_nll)
  if [ -n "$a" ] && [ -n "$b" ] && awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; exit !(d < 1e-6 && d > -1e-6) }'; then
    pass "same_ppl_dir_gguf_$m"; else fail "same_ppl_dir_gguf_$m" "nll '$a' vs '$b'"; fi
done

# --- quality sanity: FP8 close to the original (KLD gate) ---
if [ -d "$TMP/D_static_channel" ]; then
  if "$V" "$TMP/D_static_channel" -f "$TEXT" -c 128 --chunks 4 --base "$D" --max-kld 0.01 >/dev/null 2>&1; then
    pass static_fp8_kld_gate; else fail static_fp8_kld_gate "KLD above 0.01 or verify failed"; fi
  # the W8A8 emulation is on by default with input scales: plain F32 activations differ
  "$V" "$TMP/D_static_channel" -f "$TEXT" -c 128 --chunks 2 --json >"$TMP/act1.json" 2>/dev/null
  "$V" "$TMP/D_static_channel" -f "$TEXT" -c 128 --chunks 2 --json --act f32 >"$TMP/act0.json" 2>/dev/null
  a=$(json_field "$TMP/act1.json" mean_nll); b=$(json_field "$TMP/act0.json" mean_nll)
  if [ -n "$a" ] && [ -n "$b" ] && [ "$a" != "$b" ]; then pass act_fp8_emulated; else fail act_fp8_emulated "nll '$a' vs '$b'"; fi
fi
if [ -d "$TMP/D_dyn_channel" ] && "$CAL" "$TMP/D_dyn_channel" -f "$CALIB" -o "$TMP/im.gguf" -c 128 --chunks 2 >/dev/null 2>&1
then pass calibrate_reads_fp8; else fail calibrate_reads_fp8 "qforge-calibrate failed on an FP8 directory"; fi

# --- block-scaled quant_method "fp8" input (128x128, partial edge blocks) ---
if "$GEN" --arch llama --out "$TMP/syn" --hidden 256 --ff 320 --layers 2 --heads 4 --kv-heads 2 --dtype bf16 >/dev/null &&
   "$FT" blockckpt "$TMP/syn" "$TMP/synblk" >/dev/null; then
  if "$C" "$TMP/synblk" -o "$TMP/synblk.gguf" --outtype f32 >/dev/null 2>&1 &&
     out=$("$FT" compare "$TMP/synblk" "$TMP/synblk.gguf" 2>&1); then pass block_fp8_convert_exact
  else fail block_fp8_convert_exact "$out"; fi
  if "$V" "$TMP/synblk.gguf" -f "$TEXT" -c 128 --chunks 4 --base "$TMP/syn" --max-ppl-increase 1 >/dev/null 2>&1; then
    pass block_fp8_ppl_near_bf16; else fail block_fp8_ppl_near_bf16 "ppl more than 1% above the BF16 original"; fi
  if "$C" "$TMP/synblk" -o "$TMP/synblk-q8.gguf" --outtype q8_0 >/dev/null 2>&1 &&
     "$Q" "$TMP/synblk" "$TMP/synblk-q4km.gguf" Q4_K_M --quiet >/dev/null 2>&1 && [ -s "$TMP/synblk-q4km.gguf" ]; then
    pass block_fp8_to_quant_types; else fail block_fp8_to_quant_types "Q8_0 / Q4_K_M from FP8 failed"; fi
else
  fail block_fp8_fixture "could not build the block-scaled fixture"
fi

# --- quantize reads FP8 directories directly: the bytes of converting first ---
# (tensor and channel scales, 128x128 block-scaled quant_method "fp8"; the
# two-step input is convert --outtype auto, which keeps FP8 weights as F32)
CALF=$QF_DATA/corpus/tinystories-gen/calib.txt
for m in S_dyn_channel D_dyn_tensor D_dyn_block synblk; do
  [ -d "$TMP/$m" ] || continue
  if ! err=$("$C" "$TMP/$m" -o "$TMP/$m.auto.gguf" --outtype auto 2>&1 >/dev/null); then fail "direct_$m" "convert: $err"; continue; fi
  types="Q4_K_M Q6_K Q8_0 IQ4_NL Q5_0 BF16"
  for ty in $types; do
    if err=$("$Q" "$TMP/$m" "$TMP/$m.$ty.direct.gguf" "$ty" --quiet 2>&1 >/dev/null) &&
       "$Q" "$TMP/$m.auto.gguf" "$TMP/$m.$ty.two.gguf" "$ty" --quiet >/dev/null 2>&1 &&
       cmp -s "$TMP/$m.$ty.direct.gguf" "$TMP/$m.$ty.two.gguf"; then pass "direct_same_bytes_${m}_$ty"
    else fail "direct_same_bytes_${m}_$ty" "$err"; fi
    rm -f "$TMP/$m.$ty.two.gguf"
  done
  # the quantized tensors do not depend on how the F32 values arrive: an F32 GGUF gives them too
  if [ "$m" = D_dyn_block ] && "$C" "$TMP/$m" -o "$TMP/$m.f32.gguf" --outtype f32 >/dev/null 2>&1 &&
     "$Q" "$TMP/$m.f32.gguf" "$TMP/$m.q4f32.gguf" Q4_K_M --quiet >/dev/null 2>&1 &&
     cmp -s "$TMP/$m.Q4_K_M.direct.gguf" "$TMP/$m.q4f32.gguf"; then pass direct_same_bytes_as_f32_gguf
  elif [ "$m" = D_dyn_block ]; then fail direct_same_bytes_as_f32_gguf "Q4_K_M from the F32 GGUF differs"; fi
done
# the same bytes for any thread count
if [ -f "$TMP/D_dyn_block.Q4_K_M.direct.gguf" ] &&
   OMP_NUM_THREADS=1 "$Q" "$TMP/D_dyn_block" "$TMP/D_blk_t1.gguf" Q4_K_M --quiet >/dev/null 2>&1 &&
   "$Q" "$TMP/D_dyn_block" "$TMP/D_blk_t3.gguf" Q4_K_M --threads 3 --quiet >/dev/null 2>&1 &&
   cmp -s "$TMP/D_blk_t1.gguf" "$TMP/D_dyn_block.Q4_K_M.direct.gguf" && cmp -s "$TMP/D_blk_t3.gguf" "$TMP/D_blk_t1.gguf"; then
  pass direct_threads_same_bytes
else fail direct_threads_same_bytes "1, 3 and default threads differ"; fi
# gptq / awq / awq+gptq read the directory block by block (no temp GGUF): the
# same bytes as the two steps; per-tensor, per-channel and 128x128 block scales
for mm in S_dyn_channel:gptq D_dyn_tensor:gptq D_dyn_block:gptq synblk:gptq S_dyn_channel:awq synblk:awq+gptq; do
  IFS=: read -r m meth <<<"$mm"
  [ -f "$TMP/$m.auto.gguf" ] || continue
  G="--method $meth --calib $CALF --calib-ctx 64 --calib-chunks 2 --quiet"
  if err=$("$Q" "$TMP/$m" "$TMP/$m.$meth.direct.gguf" Q4_K_M $G 2>&1 >/dev/null) &&
     "$Q" "$TMP/$m.auto.gguf" "$TMP/$m.$meth.two.gguf" Q4_K_M $G >/dev/null 2>&1 &&
     cmp -s "$TMP/$m.$meth.direct.gguf" "$TMP/$m.$meth.two.gguf"; then pass "direct_same_bytes_${m}_$meth"
  else fail "direct_same_bytes_${m}_$meth" "${err:-the files differ}"; fi
  rm -f "$TMP/$m.$meth.two.gguf"
done
# size budgets read the directory too (measured, and probed with --calib): the same plan and bytes
for mm in S_dyn_channel:40 D_dyn_block:35 synblk:30:calib; do
  IFS=: read -r m pct cal <<<"$mm"
  [ -f "$TMP/$m.auto.gguf" ] || continue
  sz=$(($(stat -c %s "$TMP/$m.auto.gguf") * pct / 100))
  B="--target-size $sz --quiet"
  [ -n "$cal" ] && B="$B --calib $CALF --calib-ctx 64 --calib-chunks 2"
  if err=$("$Q" "$TMP/$m" "$TMP/$m.budget.direct.gguf" $B --sensitivity-cache "$TMP/$m.d.qfsens" 2>&1 >/dev/null) &&
     "$Q" "$TMP/$m.auto.gguf" "$TMP/$m.budget.two.gguf" $B --sensitivity-cache "$TMP/$m.t.qfsens" >/dev/null 2>&1 &&
     cmp -s "$TMP/$m.budget.direct.gguf" "$TMP/$m.budget.two.gguf" && [ "$(stat -c %s "$TMP/$m.budget.direct.gguf")" -le "$sz" ]
  then pass "direct_same_bytes_${m}_budget${cal:+_calib}"
  else fail "direct_same_bytes_${m}_budget${cal:+_calib}" "${err:-the files differ or exceed $sz bytes}"; fi
done
# the sensitivity cache of a directory is reused, and keyed by its files
if [ -f "$TMP/S_dyn_channel.d.qfsens" ]; then
  j=$("$Q" "$TMP/S_dyn_channel" "$TMP/sc.gguf" --target-size 300K --sensitivity-cache "$TMP/S_dyn_channel.d.qfsens" --dry-run --json 2>/dev/null)
  rm -rf "$TMP/S_touch"; cp -r "$TMP/S_dyn_channel" "$TMP/S_touch"; cp "$TMP/S_dyn_channel.d.qfsens" "$TMP/S_touch.qfsens"
  "$FT" poke "$TMP/S_touch" model.layers.0.mlp.up_proj.weight_scale 0 0.5
  j2=$("$Q" "$TMP/S_touch" "$TMP/sc.gguf" --target-size 300K --sensitivity-cache "$TMP/S_touch.qfsens" --dry-run --json 2>/dev/null)
  if printf '%s' "$j" | grep -q '"sensitivity_cached": true' && printf '%s' "$j2" | grep -q '"sensitivity_cached": false'; then
    pass budget_dir_cache_keyed
  else fail budget_dir_cache_keyed "$(printf '%s %s' "$j" "$j2" | grep -o '"sensitivity_cached": [a-z]*' | tr '\n' ' ')"; fi
fi
# --json says how the input was read; --dry-run plans a directory without converting it
if [ -d "$TMP/synblk" ]; then
  j=$("$Q" "$TMP/synblk" "$TMP/rd.gguf" Q8_0 --json 2>/dev/null)
  jd=$("$Q" "$TMP/synblk" "$TMP/rd2.gguf" Q4_K_M --dry-run --json 2>/dev/null)
  jg=$("$Q" "$TMP/synblk" "$TMP/rd3.gguf" Q4_K_M --method gptq --calib "$CALF" --calib-ctx 64 --calib-chunks 1 --json 2>/dev/null)
  if printf '%s' "$j" | grep -q '"input_read": "directory"' && printf '%s' "$jd" | grep -q '"input_read": "directory"' &&
     printf '%s' "$jg" | grep -q '"input_read": "directory"' && [ ! -e "$TMP/rd2.gguf" ]; then pass json_input_read
  else fail json_input_read "$(printf '%s' "$j$jd$jg" | grep -o '"input_read": "[^"]*"' | tr '\n' ' ')"; fi
fi
# no file but the output is created: every openat with O_CREAT is OUT's temp file
if ! command -v strace >/dev/null 2>&1; then skip direct_no_temp_file "strace not installed"
elif [ -d "$TMP/synblk" ]; then
  mkdir -p "$TMP/nt"; rm -f "$TMP/nt/"*
  if strace -f -qq -e trace=openat,open,creat -o "$TMP/nt.trace" "$Q" "$TMP/synblk" "$TMP/nt/out.gguf" Q4_K_M --quiet >/dev/null 2>&1; then
    created=$(grep -E 'O_CREAT|creat\(' "$TMP/nt.trace" | grep -v '= -1' | sed -n 's/.*"\([^"]*\)".*/\1/p' | sort -u)
    others=$(printf '%s\n' "$created" | grep -v "^$TMP/nt/out\.gguf\.tmp\." | grep -v '^$')
    if [ -n "$created" ] && [ -z "$others" ] && [ "$(ls "$TMP/nt")" = out.gguf ]; then pass direct_no_temp_file
    else fail direct_no_temp_file "created: $(printf '%s ' $created)"; fi
  else fail direct_no_temp_file "quantize under strace failed"; fi
  # gptq: besides OUT's temp file only the pipeline's scratch files in $TMPDIR
  # (hidden states, F32 weights of a block, finished tensors, one part of the
  # model), none a GGUF, all unlinked
  mkdir -p "$TMP/ntd"; rm -f "$TMP/nt/"* "$TMP/ntd/"*
  if TMPDIR=$TMP/ntd strace -f -qq -e trace=openat,open,creat -o "$TMP/ntg.trace" "$Q" "$TMP/synblk" "$TMP/nt/out.gguf" \
       Q4_K_M --method gptq --calib "$CALF" --calib-ctx 64 --calib-chunks 1 --quiet >/dev/null 2>&1; then
    created=$(grep -E 'O_CREAT|creat\(' "$TMP/ntg.trace" | grep -v '= -1' | sed -n 's/.*"\([^"]*\)".*/\1/p' | sort -u)
    others=$(printf '%s\n' "$created" | grep -v "^$TMP/nt/out\.gguf\.tmp\." | grep -v "^$TMP/ntd/qforge-[a-z]*-......$" | grep -v '^$')
    if [ -n "$created" ] && [ -z "$others" ] && [ "$(ls "$TMP/nt")" = out.gguf ] && [ -z "$(ls -A "$TMP/ntd")" ]; then
      pass direct_gptq_no_temp_gguf
    else fail direct_gptq_no_temp_gguf "created: $(printf '%s ' $created)"; fi
  else fail direct_gptq_no_temp_gguf "quantize under strace failed"; fi
fi

# --- bad FP8 inputs: one error line naming the file, exit 1, no output ---
# bad NAME REGEX DIR: convert, verify and quantize (reading DIR directly: the
# usual path, --method gptq and --target-size) all refuse DIR with one line
# matching REGEX, exit 1, nothing written
bad() {
  local name=$1 re=$2 dir=$3 err rc
  rm -rf "$TMP/bo"; mkdir -p "$TMP/bo"
  err=$("$C" "$dir" -o "$TMP/bo/x.gguf" --outtype f32 2>&1 >/dev/null); rc=$?
  if [ $rc -ne 1 ] || [ "$(printf '%s\n' "$err" | wc -l)" -ne 1 ] || ! printf '%s' "$err" | grep -Eq -- "$re" ||
     [ -n "$(ls -A "$TMP/bo")" ]; then fail "bad_$name" "convert: exit $rc: $err"; return; fi
  err=$("$V" "$dir" -f "$TEXT" -c 128 --chunks 1 2>&1 >/dev/null); rc=$?
  if [ $rc -ne 1 ] || ! printf '%s' "$err" | grep -Eq -- "$re"; then fail "bad_$name" "verify: exit $rc: $err"; return; fi
  local how
  for how in "Q4_K_M" "Q4_K_M --method gptq --calib $CALIB --calib-ctx 64 --calib-chunks 1" \
             "--target-size 200K --sensitivity-cache $TMP/bo.qfsens"; do
    err=$("$Q" "$dir" "$TMP/bo/q.gguf" $how --quiet 2>&1 >/dev/null); rc=$?
    if [ $rc -ne 1 ] || [ "$(printf '%s\n' "$err" | wc -l)" -ne 1 ] || ! printf '%s' "$err" | grep -Eq -- "$re" ||
       [ -n "$(ls -A "$TMP/bo")" ]; then fail "bad_$name" "quantize ${how%% --calib*}: exit $rc: $err"; return; fi
  done
  pass "bad_$name"
}
F=$TMP/S_dyn_channel
W=model.layers.1.self_attn.q_proj.weight
if [ -d "$F" ]; then
  fx() { rm -rf "$TMP/$1"; cp -r "$F" "$TMP/$1"; echo "$TMP/$1"; }
  d=$(fx missing_scale); "$ST_EDIT" "$F/model.safetensors" "$d/model.safetensors" --drop "${W}_scale"
  bad missing_scale "(model.safetensors|missing_scale): missing scale tensor '${W}_scale' of FP8 weight" "$d"
  d=$(fx misshaped_scale); "$FT" reshape "$F/model.safetensors" "$d/model.safetensors" "${W}_scale" 1 64
  bad misshaped_scale "scale tensor '${W}_scale' has shape \[1, 64\], expected" "$d"
  for v in nan 0 -0.5; do
    d=$(fx "scale_$v"); "$FT" poke "$d" "${W}_scale" 7 "$v"
    bad "scale_$v" "scale tensor '${W}_scale' element 7 is .* \(scales must be finite and > 0\)" "$d"
  done
  d=$(fx scale_i32); "$ST_EDIT" "$F/model.safetensors" "$d/model.safetensors" --retype "${W}_scale" I32
  bad scale_dtype "scale tensor '${W}_scale' has dtype I32 \(want F32, F16 or BF16\)" "$d"
  d=$(fx scale_inf); "$FT" poke "$d" "${W}_scale" 3 inf
  bad scale_inf "scale tensor '${W}_scale' element 3 is inf \(scales must be finite and > 0\)" "$d"
  d=$(fx truncated); truncate -s $(($(stat -c %s "$d/model.safetensors") - 1000)) "$d/model.safetensors"
  bad truncated_shard "truncated/model.safetensors: tensor '.*': data range .* exceeds the .* byte data area" "$d"
  d=$(fx weight_e5m2); "$ST_EDIT" "$F/model.safetensors" "$d/model.safetensors" --retype "$W" F8_E5M2
  bad weight_e5m2 "tensor '($W|blk.1.attn_q.weight)' has (dtype|type) F8_E5M2" "$d"
  d=$(fx qc_string); sed -i 's/"quantization_config": {/"quantization_config": "fp8", "x": {/' "$d/config.json"
  bad qc_not_object "qc_string/config.json: quantization_config is not an object" "$d"
  d=$(fx qc_4bit); sed -i 's/"num_bits": 8/"num_bits": 4/g' "$d/config.json"
  bad qc_4bit "qc_4bit/config.json: quantization_config: only 8-bit float weights are supported" "$d"
  d=$(fx unknown_qc); sed -i 's/"quant_method": "compressed-tensors"/"quant_method": "bitsandbytes"/' "$d/config.json"
  bad unknown_quant_method "unknown_qc/config.json: quantization_config: unknown quant_method 'bitsandbytes'" "$d"
  d=$(fx unknown_format); sed -i 's/"format": "float-quantized"/"format": "pack-quantized"/' "$d/config.json"
  bad unknown_format "unknown_format/config.json: .*format must be \"float-quantized\"" "$d"
  d=$(fx no_qc); sed -i '/"quantization_config"/,$d' "$d/config.json"; sed -i '$ s/,$//' "$d/config.json"; echo "}" >>"$d/config.json"
  bad fp8_without_config "tensor '.*' is F8_E4M3 but config.json has no quantization_config" "$d"
fi
if [ -d "$TMP/synblk" ]; then
  d=$TMP/blk_bad_scale; rm -rf "$d"; cp -r "$TMP/synblk" "$d"
  "$FT" poke "$d" model.layers.0.mlp.down_proj.weight_scale_inv 1 0
  bad block_zero_scale "weight_scale_inv' element 1 is 0" "$d"
  B=model.layers.1.self_attn.k_proj.weight
  d=$TMP/blk_missing; rm -rf "$d"; cp -r "$TMP/synblk" "$d"
  "$ST_EDIT" "$TMP/synblk/model.safetensors" "$d/model.safetensors" --drop "${B}_scale_inv"
  bad block_missing_scale "missing scale tensor '${B}_scale_inv' of FP8 weight" "$d"
  d=$TMP/blk_misshaped; rm -rf "$d"; cp -r "$TMP/synblk" "$d"
  "$FT" reshape "$TMP/synblk/model.safetensors" "$d/model.safetensors" "${B}_scale_inv" 2 1
  bad block_misshaped_scale "scale tensor '${B}_scale_inv' has shape \[2, 1\], expected" "$d"
  d=$TMP/blk_neg; rm -rf "$d"; cp -r "$TMP/synblk" "$d"; "$FT" poke "$d" "${B}_scale_inv" 0 -1
  bad block_negative_scale "weight_scale_inv' element 0 is -1" "$d"
  d=$TMP/blk_nosize; rm -rf "$d"; cp -r "$TMP/synblk" "$d"; sed -i 's/"weight_block_size": \[128, 128\]/"weight_block_size": null/' "$d/config.json"
  bad block_no_block_size "blk_nosize/config.json: quantization_config" "$d"
fi
if [ -d "$TMP/S_static_channel" ]; then
  IS=model.layers.0.mlp.up_proj.input_scale
  for v in nan 0; do
    d=$TMP/is_$v; rm -rf "$d"; cp -r "$TMP/S_static_channel" "$d"; "$FT" poke "$d" "$IS" 0 "$v"
    bad "input_scale_$v" "scale tensor '$IS' element 0 is .* \(scales must be finite and > 0\)" "$d"
  done
  d2=$TMP/unknown_strategy; rm -rf "$d2"; cp -r "$TMP/S_static_channel" "$d2"
  sed -i 's/"strategy": "channel"/"strategy": "attn_head"/' "$d2/config.json"
  bad unknown_strategy "unknown_strategy/config.json: quantization_config" "$d2"
fi

# --- fuzz: random bytes in the safetensors header, the scale values and config.json's
# quantization_config of an FP8 directory; quantize (reading it directly) must exit 0
# or 1 with at most one stderr line, never crash, and leave nothing on failure ---
if [ -d "$F" ] && command -v python3 >/dev/null 2>&1; then
  bad_fuzz= n_refused=0
  for i in $(seq 1 40); do
    d=$TMP/fz; rm -rf "$d" "$TMP/fo"; cp -r "$F" "$d"; mkdir -p "$TMP/fo"
    python3 - "$d" "$i" <<'PY'
import json, random, struct, sys
d, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
p = d + "/model.safetensors"
b = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
hdr = json.loads(b[8:8 + n])
kind = seed % 3
if kind == 0:    # header bytes
    for _ in range(rng.randint(1, 3)):
        b[8 + rng.randrange(n)] = rng.randrange(256)
elif kind == 1:  # the bytes of a scale tensor
    names = sorted(k for k in hdr if k.endswith("_scale"))
    o0, o1 = hdr[rng.choice(names)]["data_offsets"]
    for _ in range(rng.randint(1, 4)):
        b[8 + n + rng.randrange(o0, o1)] = rng.randrange(256)
else:            # config.json's quantization_config text
    c = open(d + "/config.json").read()
    k = c.index('"quantization_config"')
    i = rng.randrange(k, len(c) - 1)
    c = c[:i] + rng.choice('{}[]":,0-9e ax') + c[i + 1:]
    open(d + "/config.json", "w").write(c)
open(p, "wb").write(b)
PY
    err=$("$Q" "$d" "$TMP/fo/q.gguf" Q4_K_M --quiet 2>&1 >/dev/null); rc=$?
    nl=$(printf '%s' "$err" | grep -c .)
    if { [ $rc -ne 0 ] && [ $rc -ne 1 ]; } || [ "$nl" -gt 1 ] || { [ $rc -eq 1 ] && [ -n "$(ls -A "$TMP/fo")" ]; }; then
      bad_fuzz="seed $i: exit $rc, $nl lines: $err"; break
    fi
    [ $rc -eq 1 ] && n_refused=$((n_refused + 1))
  done
  # most corruptions must be caught (a few land in JSON whitespace or give valid scales)
  [ -z "$bad_fuzz" ] && [ $n_refused -lt 20 ] && bad_fuzz="only $n_refused of 40 corrupted inputs refused"
  if [ -z "$bad_fuzz" ]; then pass fuzz_fp8_dir_quantize; else fail fuzz_fp8_dir_quantize "$bad_fuzz"; fi
  echo "# fuzz: $n_refused of 40 corrupted FP8 directories refused, the rest quantized" >&2
fi

# --- writer refusals ---
d=$TMP/nan_weight; rm -rf "$d"; cp -r "$S" "$d"; "$FT" poke "$d" model.layers.2.mlp.up_proj.weight 200 nan
expect_exit writer_nan_weight 1 "tensor 'model.layers.2.mlp.up_proj.weight' element \[3, 8\] is NaN" -- "$Q" "$d" "$TMP/nan_out" FP8_DYNAMIC
if [ -e "$TMP/nan_out" ] || ls "$TMP" | grep -q '^nan_out.tmp'; then fail writer_no_partial_output "output left"; else pass writer_no_partial_output; fi
expect_exit writer_existing_dir 1 "already exists" -- "$Q" "$D" "$TMP/D_dyn_channel" FP8_DYNAMIC
expect_exit writer_static_needs_calib 2 "needs --calib" -- "$Q" "$D" "$TMP/x1" FP8
expect_exit writer_bad_scheme 2 "--fp8-scheme" -- "$Q" "$D" "$TMP/x2" FP8_DYNAMIC --fp8-scheme row
expect_exit writer_gguf_needs_hf_dir 2 "needs --hf-dir" -- "$Q" "$TMP/S_dyn_channel.gguf" "$TMP/x3" FP8_DYNAMIC
if "$C" "$S" -o "$TMP/S_q8.gguf" --outtype q8_0 >/dev/null 2>&1; then
  expect_exit writer_gguf_quantized 1 "tensor '.*' is q8_0 \(FP8 output needs an F32, F16 or BF16 GGUF\)" -- \
    "$Q" "$TMP/S_q8.gguf" "$TMP/x5" FP8_DYNAMIC --hf-dir "$S"
fi
expect_exit writer_already_quantized 1 "already quantized" -- "$Q" "$TMP/S_dyn_channel" "$TMP/x4" FP8_DYNAMIC
finish
