#!/bin/bash
# download_layouts.sh - checkpoints as people download them:
#  - the Hugging Face hub cache as huggingface_hub writes it (snapshots/<rev>/
#    files are relative symlinks into blobs/ named by content hash), sharded,
#    through convert, verify, calibrate, quantize and inspect;
#  - PyTorch-only checkpoints (pytorch_model.bin, sharded .bin + index): one
#    line naming safetensors, exit 1, in every tool that takes a directory;
#  - tokenizer.json pre-tokenizers tekken and deepseek-v3: the converted GGUF
#    names them, and llama.cpp's llama-tokenize ids score exactly like ours;
#  - chat templates and model card metadata copied as llama.cpp's converter does.
. "$(dirname "$0")/../lib.sh"
GEN=${QF_TOOLS:-build/tools}/gen_synth_model
C=$QF_BIN/qforge-convert V=$QF_BIN/qforge-verify Q=$QF_BIN/qforge-quantize
CAL=$QF_BIN/qforge-calibrate I=$QF_BIN/qforge-inspect
PEER_TOK=$QF_DATA/peers/llama.cpp/bin/llama-tokenize

if [ ! -x "$GEN" ]; then
  skip all "$GEN not built (make)"
  finish; exit
fi

# the tensor data of a GGUF file (everything after the data offset)
data_of() { tail -c +$(( $("$I" "$1" | sed -n 's/^data offset: //p') + 1 )) "$1"; }

# a small sharded Llama and a byte-level BPE Qwen2 checkpoint
"$GEN" --arch llama --out "$TMP/llama" --shards 2 --seed 3 >/dev/null || fail gen "gen_synth_model llama"
"$GEN" --arch qwen2 --out "$TMP/qwen" --seed 4 >/dev/null || fail gen "gen_synth_model qwen2"
awk 'BEGIN { for (i = 0; i < 400; i++) printf "Once upon a time %d there was a little model that read %d words.\n", i, i * 7 }' \
  >"$TMP/text.txt"

# --- hub cache: blobs named by sha256, snapshot files are relative symlinks
R=$TMP/hub/models--synth-org--tiny-llama
rev=89abcdef0123456789abcdef0123456789abcdef
mkdir -p "$R/blobs" "$R/refs" "$R/snapshots/$rev"
printf '%s' "$rev" >"$R/refs/main"
for f in "$TMP/llama"/*; do
  h=$(sha256sum "$f" | cut -c1-64)
  cp "$f" "$R/blobs/$h"
  ln -s "../../blobs/$h" "$R/snapshots/$rev/$(basename "$f")"
done
S=$R/snapshots/$rev
if [ -L "$S/model-00001-of-00002.safetensors" ] && [ -L "$S/model.safetensors.index.json" ] && [ -L "$S/config.json" ]; then
  pass cache-fixture-symlinks
else fail cache-fixture-symlinks "snapshot files are not symlinks"; fi

if "$C" "$TMP/llama" -o "$TMP/plain.gguf" --quiet --model-name tiny 2>"$TMP/c.err" &&
   "$C" "$S" -o "$TMP/snap.gguf" --quiet --model-name tiny 2>>"$TMP/c.err" &&
   "$C" "$R" -o "$TMP/root.gguf" --quiet --model-name tiny 2>>"$TMP/c.err"; then
  # same tensors as the plain directory; the repo id only adds general.organization
  t1=$(data_of "$TMP/plain.gguf" | md5sum)
  t2=$(data_of "$TMP/snap.gguf" | md5sum)
  if [ "$t1" = "$t2" ] && cmp -s "$TMP/snap.gguf" "$TMP/root.gguf"; then pass cache-convert
  else fail cache-convert "snapshot conversion differs from the plain directory's"; fi
  org=$("$I" "$TMP/snap.gguf" | sed -n 's/^ *general.organization: string "\(.*\)"$/\1/p')
  if [ "$org" = "Synth Org" ]; then pass cache-repo-organization; else fail cache-repo-organization "organization '$org'"; fi
else
  fail cache-convert "$(cat "$TMP/c.err")"
fi
gen_plain=$("$V" "$TMP/llama" --generate 6 -t 1 2>&1)
gen_cache=$(HF_HUB_CACHE=$TMP/hub "$V" synth-org/tiny-llama --generate 6 -t 1 2>&1)
if [ -n "$gen_plain" ] && [ "$gen_plain" = "$gen_cache" ]; then pass cache-verify
else fail cache-verify "'$gen_cache' vs '$gen_plain'"; fi
if HF_HUB_CACHE=$TMP/hub "$CAL" synth-org/tiny-llama -f "$TMP/text.txt" -c 64 --chunks 2 -t 1 -o "$TMP/c.imatrix" --quiet 2>"$TMP/cal.err" &&
   "$CAL" "$TMP/llama" -f "$TMP/text.txt" -c 64 --chunks 2 -t 1 -o "$TMP/p.imatrix" --quiet 2>>"$TMP/cal.err" &&
   cmp -s "$TMP/c.imatrix" "$TMP/p.imatrix"; then pass cache-calibrate
else fail cache-calibrate "$(cat "$TMP/cal.err")"; fi
if "$Q" "$S" "$TMP/q8c.gguf" Q8_0 --quiet 2>"$TMP/q.err" >/dev/null &&
   "$Q" "$TMP/llama" "$TMP/q8p.gguf" Q8_0 --quiet 2>>"$TMP/q.err" >/dev/null; then
  a=$(data_of "$TMP/q8c.gguf" | md5sum)
  b=$(data_of "$TMP/q8p.gguf" | md5sum)
  if [ "$a" = "$b" ]; then pass cache-quantize; else fail cache-quantize "tensors differ"; fi
else fail cache-quantize "$(cat "$TMP/q.err")"; fi
# an output path that is one of the snapshot's own symlinks is refused, the link left in place
for o in "$S/model-00001-of-00002.safetensors" "$S/config.json"; do
  expect_exit "cache-output-is-input-$(basename "$o")" 1 "input" -- "$C" "$S" -o "$o"
  if [ -L "$o" ]; then pass "cache-link-kept-$(basename "$o")"; else fail "cache-link-kept-$(basename "$o")" "the snapshot link was replaced"; fi
done
h=$(sha256sum "$TMP/llama/model-00001-of-00002.safetensors" | cut -c1-64)
if cmp -s "$R/blobs/$h" "$TMP/llama/model-00001-of-00002.safetensors"; then pass cache-blob-untouched
else fail cache-blob-untouched "a blob changed"; fi

# --- PyTorch-only checkpoints
mkdir -p "$TMP/pt1" "$TMP/pt2"
for d in pt1 pt2; do cp "$TMP/llama/config.json" "$TMP/llama/tokenizer.model" "$TMP/llama/tokenizer_config.json" "$TMP/$d/"; done
printf 'PK\003\004pytorch-zip' >"$TMP/pt1/pytorch_model.bin"
printf 'PK\003\004a' >"$TMP/pt2/pytorch_model-00001-of-00002.bin"
printf 'PK\003\004b' >"$TMP/pt2/pytorch_model-00002-of-00002.bin"
printf '{"metadata": {}, "weight_map": {}}' >"$TMP/pt2/pytorch_model.bin.index.json"
RE='PyTorch checkpoint \(pytorch_model[^)]*\.bin\) and no safetensors; qforge reads safetensors only'
for d in pt1 pt2; do
  expect_exit "$d-convert" 1 "$RE" -- "$C" "$TMP/$d" -o "$TMP/x.gguf"
  expect_exit "$d-verify" 1 "$RE" -- "$V" "$TMP/$d" --generate 2
  expect_exit "$d-calibrate" 1 "$RE" -- "$CAL" "$TMP/$d" -f "$TMP/text.txt" -o "$TMP/x.imatrix"
  expect_exit "$d-quantize" 1 "$RE" -- "$Q" "$TMP/$d" "$TMP/x.gguf" Q8_0
  expect_exit "$d-inspect" 1 "$RE" -- "$I" "$TMP/$d"
  if [ -e "$TMP/x.gguf" ] || [ -e "$TMP/x.imatrix" ]; then fail "$d-no-output" "an output was written"; else pass "$d-no-output"; fi
done
# the .bin file itself named where a GGUF or checkpoint is expected
F=$TMP/pt1/pytorch_model.bin
expect_exit pt-file-quantize 1 "looks like a PyTorch checkpoint: give a GGUF file or a safetensors" -- "$Q" "$F" "$TMP/x.gguf" Q8_0
expect_exit pt-file-verify 1 "looks like a PyTorch checkpoint: give a GGUF file or a safetensors" -- "$V" "$F" --generate 2
expect_exit pt-file-inspect 1 "a PyTorch checkpoint, not safetensors; qforge reads safetensors only" -- "$I" "$F"
# the error lines: exactly one "error:" line per tool
n=$("$C" "$TMP/pt1" -o "$TMP/x.gguf" 2>&1 | grep -c 'error:')
if [ "$n" = 1 ]; then pass pt-one-line; else fail pt-one-line "$n error lines"; fi
# safetensors next to a .bin: safetensors wins
cp "$TMP/pt1/pytorch_model.bin" "$TMP/llama/"
if "$C" "$TMP/llama" -o "$TMP/both.gguf" --quiet --model-name tiny && cmp -s "$TMP/both.gguf" "$TMP/plain.gguf"; then
  pass pt-and-safetensors
else fail pt-and-safetensors "a directory with both did not convert to the same file"; fi
rm -f "$TMP/llama/pytorch_model.bin"

# --- tokenizer.json pre-tokenizers: tekken and deepseek-v3
# Split objects as Mistral Nemo and DeepSeek V3 ship them (deepseek's third
# regex has real CR/LF characters, written as JSON \r\n)
cat >"$TMP/tekken.rx" <<'EOF'
{"type": "Split", "pattern": {"Regex": "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false}
EOF
cat >"$TMP/deepseek-v3.rx" <<'EOF'
{"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated", "invert": false}, {"type": "Split", "pattern": {"Regex": "[一-龥\u3040-ゟ゠-ヿ]+"}, "behavior": "Isolated", "invert": false}, {"type": "Split", "pattern": {"Regex": "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false}
EOF
for i in $(seq 1 25); do
  printf "iPhone HELLOworld don't McDonald's \303\204BC path/to//file\n2024 x/y \303\234BER caf\303\251 e\314\201x 12345 ~\303\251 (x)!!\n"
  printf "\346\227\245\346\234\254\350\252\236\343\203\206\343\202\255\343\202\271\343\203\210 3.14159 a.\303\251 The QUICK brownFox.\n"
done >"$TMP/pre.txt"
for pre in tekken deepseek-v3; do
  d=$TMP/qwen-$pre
  cp -r "$TMP/qwen" "$d"
  NEWRX=$TMP/$pre.rx perl -0pi -e 'BEGIN { open F, "<", $ENV{NEWRX}; local $/; $n = <F>; chomp $n }
    s/\{"type": "Split", "pattern": \{"Regex": "(?:[^"\\]|\\.)*"\}[^}]*\}/$n/' "$d/tokenizer.json"
  if [ "$pre" = tekken ]; then
    # whole-word tokens (ids 500..507 renamed): tekken skips BPE for a piece that is a token, so
    # its cuts show in the ids ("iPhone" is i|Phone, " brownFox" is " brown"|Fox, " ÄBC" is " Ä"|BC)
    perl -pi -e 's/^(\s*)"(?:[^"\\]|\\.)*": (50[0-7]),/$1 . {500 => q("iPhone"), 501 => q("\\u0120HELLOworld"),
      502 => q("\\u0120\\u00c3\\u0126BC"), 503 => q("Phone"), 504 => q("\\u0120QUICK"), 505 => q("\\u0120brownFox"),
      506 => q("Fox"), 507 => q("\\u0120brown")}->{$2} . ": $2,"/e' "$d/tokenizer.json"
  fi
  if ! "$C" "$d" -o "$TMP/$pre.gguf" --quiet 2>"$TMP/pre.err"; then fail "$pre-convert" "$(cat "$TMP/pre.err")"; continue; fi
  got=$("$I" "$TMP/$pre.gguf" | sed -n 's/^ *tokenizer.ggml.pre: string "\(.*\)"$/\1/p')
  if [ "$got" = "$pre" ]; then pass "$pre-convert"; else fail "$pre-convert" "tokenizer.ggml.pre '$got'"; continue; fi
  if [ ! -x "$PEER_TOK" ]; then skip "$pre-peer" "$PEER_TOK not found"; continue; fi
  # llama.cpp's ids for the text, scored as given, against our own tokenization of it
  "$PEER_TOK" -m "$TMP/$pre.gguf" -f "$TMP/pre.txt" --ids --log-disable 2>/dev/null | tr -d '[],' >"$TMP/$pre.ids"
  a=$("$V" "$TMP/$pre.gguf" --tokens "$TMP/$pre.ids" -c 64 -t 1 2>&1 | grep '^perplexity')
  b=$("$V" "$TMP/$pre.gguf" -f "$TMP/pre.txt" -c 64 -t 1 2>&1 | grep '^perplexity')
  if [ -n "$a" ] && [ "$a" = "$b" ]; then pass "$pre-peer-tokens"; else fail "$pre-peer-tokens" "llama.cpp ids '$a', ours '$b'"; fi
  # verify on the Hugging Face directory itself tokenizes the same way
  a=$("$V" "$d" --tokens "$TMP/$pre.ids" -c 64 -t 1 2>&1 | grep '^perplexity')
  b=$("$V" "$d" -f "$TMP/pre.txt" -c 64 -t 1 2>&1 | grep '^perplexity')
  if [ -n "$a" ] && [ "$a" = "$b" ]; then pass "$pre-hf-dir-tokens"; else fail "$pre-hf-dir-tokens" "llama.cpp ids '$a', ours '$b'"; fi
done

# --- model card and named chat templates (gguf-py Metadata, GGUFWriter.add_chat_template)
d=$TMP/qwen-card
cp -r "$TMP/qwen" "$d"
cat >"$d/README.md" <<'CARD'
---
license: apache-2.0
language:
- en
- fr
tags:
  - text-generation
pipeline_tag: text-generation
datasets: [HuggingFaceFW/fineweb-edu]
base_model: Qwen/Qwen2.5-0.5B-Instruct
model_creator: Jane Doe
---
# Tiny
CARD
perl -0pi -e 's/"chat_template": "(?:[^"\\]|\\.)*"/"chat_template": [{"name": "default", "template": "{{ d }}"}, {"name": "tool_use", "template": "{{ t }}"}, {"name": "rag v2", "template": "{{ r }}"}]/' \
  "$d/tokenizer_config.json"
if "$C" "$d" -o "$TMP/card.gguf" --quiet 2>"$TMP/card.err"; then
  "$I" "$TMP/card.gguf" --json >"$TMP/card.json"
  kv() { grep -F "\"$1\": " "$TMP/card.json" | head -1 | sed 's/^ *"[^"]*": //; s/,$//'; }
  ok=1 why=
  while IFS='|' read -r k v; do
    got=$(kv "$k")
    if [ "$got" != "$v" ]; then ok=0 why="$why $k='$got'"; fi
  done <<'WANT'
general.author|{"type": "string", "value": "Jane Doe"}
general.license|{"type": "string", "value": "apache-2.0"}
general.base_model.count|{"type": "uint32", "value": 1}
general.base_model.0.name|{"type": "string", "value": "Qwen2.5 0.5B Instruct"}
general.base_model.0.organization|{"type": "string", "value": "Qwen"}
general.base_model.0.repo_url|{"type": "string", "value": "https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct"}
general.dataset.count|{"type": "uint32", "value": 1}
general.dataset.0.name|{"type": "string", "value": "Fineweb Edu"}
general.tags|{"type": "array", "value": {"type": "array", "elem_type": "string", "count": 2, "head": ["text-generation", "text-generation"]}}
general.languages|{"type": "array", "value": {"type": "array", "elem_type": "string", "count": 2, "head": ["en", "fr"]}}
tokenizer.chat_template.tool_use|{"type": "string", "value": "{{ t }}"}
tokenizer.chat_template.rag_v2|{"type": "string", "value": "{{ r }}"}
tokenizer.chat_templates|{"type": "array", "value": {"type": "array", "elem_type": "string", "count": 2, "head": ["tool_use", "rag_v2"]}}
tokenizer.chat_template|{"type": "string", "value": "{{ d }}"}
WANT
  if [ $ok = 1 ]; then pass card-metadata; else fail card-metadata "$why"; fi
  # gguf-py's key order: the named templates, their list, then the default template
  order=$(grep -oE '"tokenizer\.chat_template[s.a-z_0-9]*"' "$TMP/card.json" | tr -d '"' | tr '\n' ' ')
  if [ "$order" = "tokenizer.chat_template.tool_use tokenizer.chat_template.rag_v2 tokenizer.chat_templates tokenizer.chat_template " ]; then
    pass chat-template-order
  else fail chat-template-order "$order"; fi
  # general.* order: author right after name, the card's keys after size_label
  gorder=$(grep -oE '"general\.[a-z_.0-9]*"' "$TMP/card.json" | tr -d '"' | head -8 | tr '\n' ' ')
  if [ "$gorder" = "general.architecture general.type general.name general.author general.size_label general.license general.base_model.count general.base_model.0.name " ]; then
    pass card-key-order
  else fail card-key-order "$gorder"; fi
else
  fail card-metadata "$(cat "$TMP/card.err")"
fi
# no README and a plain template: none of these keys
if "$I" "$TMP/plain.gguf" --json | grep -qE '"general\.(author|license|tags|languages|base_model)|chat_templates'; then
  fail card-absent "keys written without a model card"
else pass card-absent; fi
finish
