#!/usr/bin/env bash
# tests/cli/convert.sh - qforge-convert end to end: byte identity with the
# llama.cpp converter's files, thread independence, split interop with
# llama-gguf-split, and the converted files running in real llama.cpp.
. tests/lib.sh
CONV=$QF_BIN/qforge-convert
M=$QF_DATA/models/stories260K
M3=$QF_DATA/models/tinystories-distill-3M
O=$QF_DATA/oracles/llamacpp
PEER=$QF_DATA/peers/llama.cpp/bin

if [ ! -x "$CONV" ]; then
  fail build "$CONV not built"
  finish
  exit
fi

# --- usage ---------------------------------------------------------------
if "$CONV" --help | grep -q "peak RSS <= largest output tensor + 64 MiB"; then pass help_states_memory_bound
else fail help_states_memory_bound "--help does not state the memory bound"; fi
expect_exit usage_no_args 2 "missing MODEL_DIR" -- "$CONV"
expect_exit usage_no_out 2 "missing -o" -- "$CONV" "$M"
expect_exit usage_bad_outtype 2 "--outtype: unknown type 'q4_0'" -- "$CONV" "$M" -o "$TMP/x.gguf" --outtype q4_0
expect_exit usage_bad_split 2 "--split-max-size: expected a size" -- "$CONV" "$M" -o "$TMP/x.gguf" --split-max-size 12X
expect_exit usage_bad_threads 2 "--threads: expected an integer from 1 to [0-9]+, not '0'" -- "$CONV" "$M" -o "$TMP/x.gguf" --threads 0

# --- byte identity with convert_hf_to_gguf.py -----------------------------
if need_data identical_f32 models/stories260K && need_data identical_f32 oracles/llamacpp/stories260K-F32.gguf; then
  for t in f32 f16 bf16; do
    T=$(echo $t | tr a-z A-Z)
    err=$("$CONV" "$M" -o "$TMP/s-$t.gguf" --outtype $t 2>&1 >/dev/null); rc=$?
    if [ $rc -ne 0 ]; then fail identical_$t "exit $rc: $err"
    elif ! cmp -s "$TMP/s-$t.gguf" "$O/stories260K-$T.gguf"; then fail identical_$t "differs from $O/stories260K-$T.gguf: $(cmp "$TMP/s-$t.gguf" "$O/stories260K-$T.gguf")"
    elif [ -n "$err" ]; then fail identical_$t "not silent on a non-tty: $err"
    else pass identical_$t; fi
  done
  "$CONV" "$M" -o "$TMP/s-q8_0.gguf" --outtype q8_0 && [ "$(stat -c %s "$TMP/s-q8_0.gguf")" = "$(stat -c %s "$O/stories260K-Q8_0.gguf")" ] \
    && pass q8_0_same_size || fail q8_0_same_size "size differs from $O/stories260K-Q8_0.gguf"

  # thread count does not change a byte
  "$CONV" "$M" -o "$TMP/t1.gguf" --outtype q8_0 --threads 1 && "$CONV" "$M" -o "$TMP/t2.gguf" --outtype q8_0 --threads 2 \
    && cmp -s "$TMP/t1.gguf" "$TMP/t2.gguf" && cmp -s "$TMP/t1.gguf" "$TMP/s-q8_0.gguf" \
    && pass threads_identical || fail threads_identical "--threads 1 and 2 differ"

  # manifest: one line per tensor, one per file
  "$CONV" "$M" -o "$TMP/m.gguf" --outtype f32 --manifest
  if [ "$(grep -c '^tensor [0-9a-f]\{32\} ' "$TMP/m.gguf.xxh")" = 47 ] && [ "$(grep -c '^file [0-9a-f]\{32\} m.gguf$' "$TMP/m.gguf.xxh")" = 1 ]; then
    pass manifest_format
  else fail manifest_format "$(head -3 "$TMP/m.gguf.xxh")"; fi

  # progress on a tty (script(1) gives us one), nothing with --quiet
  if command -v script >/dev/null; then
    out=$(script -qec "$CONV $M -o $TMP/p.gguf --outtype f16" /dev/null 2>&1)
    if printf '%s' "$out" | grep -q "\[47/47\] .*MB/s .*ETA"; then pass progress_on_tty; else fail progress_on_tty "no progress line: $out"; fi
    out=$(script -qec "$CONV $M -o $TMP/p.gguf --outtype f16 --quiet" /dev/null 2>&1)
    if [ -z "$out" ]; then pass quiet_on_tty; else fail quiet_on_tty "output with --quiet: $out"; fi
  else
    skip progress_on_tty "script(1) not installed"
  fi
fi

# --- BF16 untied checkpoint ---------------------------------------------------
if need_data tinystories models/tinystories-distill-3M; then
  if "$CONV" "$M3" -o "$TMP/ts.gguf" --outtype auto; then pass tinystories_auto; else fail tinystories_auto "conversion failed"; fi
fi

# --- real llama.cpp runs the files ---------------------------------------
expected_text() {  # the stories260K-F32 greedy text from the oracle file
  awk '/^== stories260K-F32.gguf/{f=1; next} f && /^text: /{sub(/^text: /, ""); print; exit}' "$O/greedy-from-bos-60.txt"
}
run_simple() {  # model n -> generated text (BOS piece and outer spaces stripped)
  timeout 120 "$PEER/llama-simple" -m "$1" -n "$2" "" 2>/dev/null | sed 's/^<s>//' | tr -d '\n' | sed 's/^ *//; s/ *$//'
}
if [ ! -x "$PEER/llama-simple" ]; then
  skip llama_simple "peer binary $PEER/llama-simple not found"
elif need_data llama_simple oracles/llamacpp/greedy-from-bos-60.txt && [ -f "$TMP/s-f32.gguf" ]; then
  want=$(expected_text | sed 's/^ *//; s/ *$//')
  for t in f32 f16 bf16 q8_0; do
    got=$(run_simple "$TMP/s-$t.gguf" 60)
    if [ -n "$want" ] && [ "$got" = "$want" ]; then pass llama_simple_$t; else fail llama_simple_$t "got '$got', want '$want'"; fi
  done
  if [ -f "$TMP/ts.gguf" ]; then
    # tinystories-distill-3M PROVENANCE: greedy 40 tokens from BOS
    want3="Once upon a time, there was a little girl named Lily. She loved to play with her toys and eat colors. One day, she went"
    got=$(run_simple "$TMP/ts.gguf" 40)
    if [ "$got" = "$want3" ]; then pass llama_simple_tinystories; else fail llama_simple_tinystories "got '$got'"; fi
  fi
fi

# --- splits: the same files llama-gguf-split writes -------------------------
if [ ! -x "$PEER/llama-gguf-split" ]; then
  skip split_interop "peer binary $PEER/llama-gguf-split not found"
elif need_data split_interop oracles/llamacpp/stories260K-F32.gguf; then
  "$PEER/llama-gguf-split" --split --split-max-size 1M "$O/stories260K-F32.gguf" "$TMP/ref" >/dev/null 2>&1
  if "$CONV" "$M" -o "$TMP/ours.gguf" --outtype f32 --split-max-size 1M \
     && cmp -s "$TMP/ours-00001-of-00002.gguf" "$TMP/ref-00001-of-00002.gguf" \
     && cmp -s "$TMP/ours-00002-of-00002.gguf" "$TMP/ref-00002-of-00002.gguf" && [ ! -e "$TMP/ours.gguf" ]; then
    pass split_identical_to_llama_gguf_split
  else
    fail split_identical_to_llama_gguf_split "$(ls "$TMP" | grep -E 'ours|ref' | tr '\n' ' ')"
  fi
  if [ -x "$PEER/llama-simple" ] && [ -f "$TMP/ours-00001-of-00002.gguf" ]; then
    got=$(run_simple "$TMP/ours-00001-of-00002.gguf" 60)
    want=$(expected_text | sed 's/^ *//; s/ *$//')
    if [ "$got" = "$want" ]; then pass split_runs_in_llama; else fail split_runs_in_llama "got '$got'"; fi
  fi
fi

# --- the other rows of the architecture table (synthetic, 3 shards, BF16) ----
GEN=${QF_TOOLS:-build/tools}/gen_synth_model
INSPECT=$QF_BIN/qforge-inspect
if [ ! -x "$GEN" ] || [ ! -x "$INSPECT" ]; then
  skip synthetic_archs "$GEN or $INSPECT not built"
else
  # arch  expected tensor line (inspect --tensors)                  tensors
  while read -r arch want count; do
    d=$TMP/syn-$arch
    "$GEN" --arch $arch --out "$d" --shards 3 --dtype bf16 --rope-scaling llama3 >/dev/null 2>&1
    if ! "$CONV" "$d" -o "$d.gguf" --outtype auto 2>"$TMP/err"; then fail synthetic_$arch "$(cat "$TMP/err")"; continue; fi
    listing=$("$INSPECT" --tensors "$d.gguf")
    n=$(printf '%s\n' "$listing" | sed -n 's/^tensors: \([0-9]*\).*/\1/p')
    if [ "$n" = "$count" ] && printf '%s\n' "$listing" | grep -Eq "$want"; then pass synthetic_$arch
    else fail synthetic_$arch "tensors $n (want $count), no line /$want/"; fi
    # the llama.cpp peer (Feb 2025) predates qwen3
    if [ -x "$PEER/llama-simple" ] && [ $arch != qwen3 ]; then
      if timeout 120 "$PEER/llama-simple" -m "$d.gguf" -n 4 "hello" >/dev/null 2>&1; then pass synthetic_${arch}_loads_in_llama
      else fail synthetic_${arch}_loads_in_llama "llama-simple failed on $d.gguf"; fi
    fi
  done <<'TABLE'
llama ^\s+0\s+rope_freqs\.weight\s+F32\s+\[8\] 22
mistral ^\s+0\s+rope_freqs\.weight\s+F32\s+\[8\] 22
qwen2 blk\.1\.attn_k\.bias\s+F32\s+\[32\] 27
qwen3 blk\.1\.attn_q_norm\.weight\s+F32\s+\[16\] 25
TABLE
fi

# --- chunked read()/convert/write: same bytes for any --threads, with --fsync, --manifest ---
# 2 input shards, llama3 rope (a generated tensor first), Q/K permutation, and
# tensors of several 256 KiB chunks
if [ ! -x "$GEN" ]; then
  skip pipeline_identical "$GEN not built"
else
  "$GEN" --arch llama --out "$TMP/pipe" --hidden 512 --ff 1536 --layers 2 --heads 8 --kv-heads 2 --vocab 4096 \
    --dtype bf16 --shards 2 --rope-scaling llama3 >/dev/null 2>&1
  for t in f16 q8_0; do
    ok=1; why=""
    "$CONV" "$TMP/pipe" -o "$TMP/pipe-1.gguf" --outtype $t --threads 1 || { ok=0; why="threads 1 failed"; }
    "$CONV" "$TMP/pipe" -o "$TMP/pipe-2.gguf" --outtype $t --threads 2 --manifest || { ok=0; why="threads 2 failed"; }
    "$CONV" "$TMP/pipe" -o "$TMP/pipe-s.gguf" --outtype $t --threads 2 --fsync || { ok=0; why="--fsync failed"; }
    "$CONV" "$TMP/pipe" -o "$TMP/pipe-d.gguf" --outtype $t || { ok=0; why="default threads failed"; }
    for x in 2 s d; do
      cmp -s "$TMP/pipe-1.gguf" "$TMP/pipe-$x.gguf" || { ok=0; why="$why; pipe-$x differs from --threads 1"; }
    done
    # the manifest's tensor hashes do not depend on --threads either
    if [ $ok = 1 ]; then
      "$CONV" "$TMP/pipe" -o "$TMP/pipe-m1.gguf" --outtype $t --threads 1 --manifest
      diff <(grep '^tensor' "$TMP/pipe-2.gguf.xxh") <(grep '^tensor' "$TMP/pipe-m1.gguf.xxh") >/dev/null ||
        { ok=0; why="manifest tensor hashes differ between --threads 1 and 2"; }
    fi
    [ $ok = 1 ] && pass pipeline_identical_$t || fail pipeline_identical_$t "$why"
    rm -f "$TMP"/pipe-*.gguf "$TMP"/pipe-*.xxh
  done
  rm -rf "$TMP/pipe"
fi

# --- memory: streaming keeps the peak RSS below even the largest tensor ---------
if [ -n "${QF_ASAN:-}" ]; then
  skip peak_rss "RSS is not meaningful under ASan"
elif [ ! -x "$GEN" ] || [ ! -x /usr/bin/time ]; then
  skip peak_rss "$GEN or /usr/bin/time missing"
else
  # one layer, hidden 2048, ffn 8192: ffn tensors are 8192 x 2048 = 67 MB in F32,
  # the F32 output is 252 MB
  "$GEN" --arch llama --out "$TMP/big" --hidden 2048 --ff 8192 --layers 1 --heads 16 --kv-heads 4 --dtype bf16 >/dev/null 2>&1
  /usr/bin/time -f "%M" -o "$TMP/rss" "$CONV" "$TMP/big" -o "$TMP/big.gguf" --outtype f32 --threads 2 2>/dev/null
  rss_kb=$(tail -1 "$TMP/rss")
  largest_kb=$((8192 * 2048 * 4 / 1024))
  if [ -n "$rss_kb" ] && [ "$rss_kb" -lt $((largest_kb + 65536)) ] && [ "$rss_kb" -lt $((48 * 1024)) ]; then
    pass peak_rss
  else
    fail peak_rss "peak RSS ${rss_kb} kB (largest tensor ${largest_kb} kB; want < 48 MiB)"
  fi
  rm -rf "$TMP/big" "$TMP/big.gguf"
fi
finish
