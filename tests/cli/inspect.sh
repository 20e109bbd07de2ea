#!/usr/bin/env bash
# tests/cli/inspect.sh - qforge-inspect on llama.cpp's GGUF files and the
# stories260K / tinystories safetensors checkpoints: text, --tensors, --json
# (parsed with python3 when present), usage errors.
. tests/lib.sh
inspect=$QF_BIN/qforge-inspect
if [ ! -x "$inspect" ]; then fail setup "$inspect not built"; finish; exit; fi

# json_get FILE EXPR: evaluate a python expression on the parsed object `d`
have_py=0; command -v python3 >/dev/null 2>&1 && have_py=1
json_get() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

# usage
expect_exit usage-none 2 'qforge-inspect: error: no input file given' -- "$inspect"
expect_exit usage-bad-option 2 "qforge-inspect: error: unknown option '--bogus'" -- "$inspect" --bogus x.gguf
expect_exit usage-two-inputs 2 'more than one input' -- "$inspect" a.gguf b.gguf
if "$inspect" --help | grep -q '^usage: qforge-inspect FILE|DIR'; then pass help; else fail help "no usage on --help"; fi
expect_exit missing-file 1 'qforge-inspect: error: .*nonexistent\.gguf: cannot open: No such file' -- "$inspect" "$TMP/nonexistent.gguf"
printf 'hello world, not a model' >"$TMP/junk.bin"
expect_exit junk-file 1 'qforge-inspect: error: ' -- "$inspect" "$TMP/junk.bin"

O=$QF_DATA/oracles/llamacpp
if need_data gguf-text oracles/llamacpp/stories260K-Q4_0.gguf; then
  "$inspect" "$O/stories260K-Q4_0.gguf" >"$TMP/t.txt" 2>&1; rc=$?
  if [ $rc -eq 0 ] && grep -q '^format: gguf$' "$TMP/t.txt" && grep -q '^version: 3$' "$TMP/t.txt" &&
     grep -q '^alignment: 32$' "$TMP/t.txt" && grep -q '^  llama.block_count: uint32 5$' "$TMP/t.txt" &&
     grep -q '^  tokenizer.ggml.tokens: \[string x 512\] "<unk>", "<s>", "</s>", ' "$TMP/t.txt" &&
     grep -q '^total: 47 tensors, 260032 parameters, ' "$TMP/t.txt"; then pass gguf-text
  else fail gguf-text "unexpected output (exit $rc): $(head -c 600 "$TMP/t.txt")"; fi

  "$inspect" "$O/stories260K-Q4_0.gguf" --tensors >"$TMP/t.txt"
  rows=$(grep -cE '^  [0-9]+ +[a-z_.0-9]+ +[A-Z0-9_]+ +\[' "$TMP/t.txt")
  if [ "$rows" -eq 47 ] && grep -qE '^  [0-9]+ +blk\.0\.attn_q\.weight +Q4_0 +\[64, 64\] +[0-9]+ +2304$' "$TMP/t.txt" &&
     grep -qE '^  [0-9]+ +blk\.0\.ffn_down\.weight +F16 +\[172, 64\] ' "$TMP/t.txt"; then pass gguf-tensors
  else fail gguf-tensors "$rows tensor rows; $(grep attn_q "$TMP/t.txt" | head -2)"; fi
fi

# every oracle GGUF: valid JSON with the right tensor count
if need_data gguf-json oracles/llamacpp; then
  nbad=0; nfiles=0
  for f in "$O"/*.gguf "$QF_DATA"/oracles/tokenizers/*.gguf; do
    [ -f "$f" ] || continue
    nfiles=$((nfiles+1))
    case $(basename "$f") in stories260K*) want=47 ;; synth-tinyk*) want=11 ;; *) want=0 ;; esac
    if ! "$inspect" "$f" --json --tensors >"$TMP/j.json" 2>"$TMP/err"; then
      nbad=$((nbad+1)); fail "gguf-json/$(basename "$f")" "$(cat "$TMP/err")"; continue
    fi
    if [ $have_py -eq 1 ]; then
      got=$(json_get "$TMP/j.json" 'd["tensor_count"], len(d["tensors"]), d["format"]' 2>&1)
      [ "$got" = "$want $want gguf" ] || { nbad=$((nbad+1)); fail "gguf-json/$(basename "$f")" "got '$got', want $want tensors"; }
    else
      grep -q "\"tensor_count\": $want," "$TMP/j.json" || { nbad=$((nbad+1)); fail "gguf-json/$(basename "$f")" "tensor_count"; }
    fi
  done
  [ $nbad -eq 0 ] && pass "gguf-json ($nfiles files)"
fi

if need_data gguf-json-values oracles/llamacpp/stories260K-Q4_0.gguf && [ $have_py -eq 1 ]; then
  "$inspect" "$O/stories260K-Q4_0.gguf" --json >"$TMP/j.json"
  got=$(json_get "$TMP/j.json" 'd["version"], d["alignment"], d["kv_count"], d["parameters"], d["metadata"]["llama.block_count"]["value"], d["metadata"]["llama.embedding_length"]["value"], d["metadata"]["tokenizer.ggml.tokens"]["value"]["count"], d["metadata"]["tokenizer.ggml.tokens"]["value"]["head"][1], [d["types"][k]["tensors"] for k in ("Q4_0", "Q8_0", "F16", "F32")], "tensors" in d')
  # per oracles/llamacpp/PROVENANCE.md: token_embd Q8_0, ffn_down F16 fallback, 11 F32 norms
  want='3 32 28 260032 5 64 512 <s> [30, 1, 5, 11] False'
  [ "$got" = "$want" ] && pass gguf-json-values || fail gguf-json-values "got '$got', want '$want'"
fi

# safetensors: directory, single file; tensor count and parameters agree with the GGUF
if need_data st-dir models/stories260K/model.safetensors; then
  "$inspect" "$QF_DATA/models/stories260K" >"$TMP/s.txt" 2>&1 && grep -q '^format: safetensors$' "$TMP/s.txt" &&
    grep -q '^total: 47 tensors, 260032 parameters, 1040128 data bytes, 32.0000 bits per weight$' "$TMP/s.txt" &&
    pass st-dir || fail st-dir "$(head -c 600 "$TMP/s.txt")"
  "$inspect" "$QF_DATA/models/stories260K/model.safetensors" --tensors >"$TMP/s.txt" 2>&1 &&
    grep -qE '^  [0-9]+ +model\.layers\.0\.mlp\.down_proj\.weight +F32 +\[64, 172\] ' "$TMP/s.txt" &&
    pass st-tensors || fail st-tensors "$(grep down_proj "$TMP/s.txt" | head -2)"
  if [ $have_py -eq 1 ]; then
    "$inspect" "$QF_DATA/models/stories260K/model.safetensors" --json --tensors >"$TMP/s.json" 2>&1
    got=$(json_get "$TMP/s.json" 'd["format"], d["tensor_count"], len(d["tensors"]), d["parameters"], d["tensors"][0]["shape"]' 2>&1)
    [ "$got" = "safetensors 47 47 260032 [512, 64]" ] && pass st-json || fail st-json "got '$got'"
  fi
fi
if need_data st-3M models/tinystories-distill-3M/model.safetensors && [ $have_py -eq 1 ]; then
  "$inspect" "$QF_DATA/models/tinystories-distill-3M" --json >"$TMP/s.json" 2>&1
  got=$(json_get "$TMP/s.json" 'd["tensor_count"] > 0, d["bits_per_weight"]' 2>&1)
  [ "$got" = "True 16.0" ] && pass st-3M || fail st-3M "got '$got'"
fi
finish
