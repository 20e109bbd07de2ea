#!/usr/bin/env bash
# tokenizer_json.sh - checkpoints as people download them: a Llama whose
# tokenizer ships only as tokenizer.json (SentencePiece-style BPE: Prepend +
# Replace normalizer, byte_fallback, no tokenizer.model), tied embeddings
# stored only as lm_head.weight, and tokenizer.json layouts that are refused.
# Oracle: the same checkpoint with its tokenizer.model (stories260K ships
# both), converted and scored by the same tools, and llama.cpp's
# llama-tokenize on both GGUF files. (The hand-made fixture with an
# independent HF BPE reference is tests/unit/hf_spbpe_test.c.)
. "$(dirname "$0")/../lib.sh"
C=$QF_BIN/qforge-convert
V=$QF_BIN/qforge-verify
HF=models/stories260K
TXT=corpus/tinystories-gen/test.txt
LT=$QF_DATA/peers/llama.cpp/bin/llama-tokenize

ppl_of() { # MODEL: the perplexity qforge-verify prints for $TMP/t.txt
  "$V" "$1" -f "$TMP/t.txt" -c 128 --chunks 8 --json --quiet -t 1 2>>"$TMP/verr" | grep -o '"ppl": [0-9.]*'
}

if need_data json-only "$HF" && need_data json-only "$TXT"; then
  src=$(cd "$QF_DATA/$HF" && pwd)
  mkdir -p "$TMP/json"
  for f in config.json generation_config.json model.safetensors special_tokens_map.json tokenizer.json tokenizer_config.json; do
    ln -s "$src/$f" "$TMP/json/$f"
  done
  head -c 20000 "$QF_DATA/$TXT" >"$TMP/t.txt"

  # --- convert accepts it and writes a llama vocabulary
  # (no warning: a vocabulary converted from SentencePiece has a merge line for every pair)
  if "$C" "$TMP/json" -o "$TMP/json.gguf" 2>"$TMP/e" && "$C" "$src" -o "$TMP/spm.gguf" --quiet 2>>"$TMP/e" &&
     [ ! -s "$TMP/e" ]; then
    pass json-only-convert
  else
    fail json-only-convert "$(cat "$TMP/e")"
  fi

  # --- verify: the HF directory without tokenizer.model tokenizes like the one with it
  # (same weights, same HF path: equal perplexity means equal token ids), and
  # the two GGUF files agree the same way
  a=$(ppl_of "$TMP/json"); b=$(ppl_of "$src"); g1=$(ppl_of "$TMP/json.gguf"); g2=$(ppl_of "$TMP/spm.gguf")
  if [ -n "$a" ] && [ "$a" = "$b" ] && [ -n "$g1" ] && [ "$g1" = "$g2" ]; then pass json-only-verify
  else fail json-only-verify "HF dirs: '$a' vs '$b'; GGUFs: '$g1' vs '$g2'; $(head -3 "$TMP/verr")"; fi

  # --- llama.cpp tokenizes the tokenizer.json-only GGUF like the tokenizer.model one
  if [ ! -x "$LT" ]; then
    skip json-only-llamacpp "llama-tokenize not found under $QF_DATA/peers"
  elif "$LT" -m "$TMP/json.gguf" -f "$TMP/t.txt" --ids --no-bos --log-disable >"$TMP/j.ids" 2>/dev/null &&
       "$LT" -m "$TMP/spm.gguf" -f "$TMP/t.txt" --ids --no-bos --log-disable >"$TMP/s.ids" 2>/dev/null &&
       [ -s "$TMP/j.ids" ] && cmp -s "$TMP/j.ids" "$TMP/s.ids"; then
    pass json-only-llamacpp
  else
    fail json-only-llamacpp "llama-tokenize ids differ between the two GGUF files"
  fi

  # --- a merge line removed: "▁t" is still a token, so ▁ + t is a pair llama.cpp merges and
  # HF does not; convert warns (and still writes the file)
  mkdir -p "$TMP/gap"
  for f in config.json model.safetensors tokenizer_config.json; do ln -s "$src/$f" "$TMP/gap/$f"; done
  sed 's/"▁ t",//' "$src/tokenizer.json" >"$TMP/gap/tokenizer.json"
  if cmp -s "$src/tokenizer.json" "$TMP/gap/tokenizer.json"; then
    skip unmerged-warning "stories260K's tokenizer.json has no merge line \"▁ t\""
  elif "$C" "$TMP/gap" -o "$TMP/gap.gguf" 2>"$TMP/e3" && [ -s "$TMP/gap.gguf" ] &&
       grep -Eq '^qforge-convert: warning: .*tokenizer\.json: [1-9][0-9]* token pairs' "$TMP/e3" &&
       "$C" "$TMP/gap" -o "$TMP/gap2.gguf" --quiet 2>"$TMP/e4" && [ ! -s "$TMP/e4" ]; then
    pass unmerged-warning
  else
    fail unmerged-warning "stderr: $(cat "$TMP/e3" "$TMP/e4" 2>/dev/null | head -3)"
  fi

  # --- no <0xXX> byte tokens (renamed, byte_fallback off): convert warns that llama.cpp aborts
  # on unknown characters; qforge-verify on the directory gives unk as HF does and runs
  if command -v python3 >/dev/null 2>&1; then
    mkdir -p "$TMP/nob"
    for f in config.json model.safetensors tokenizer_config.json; do ln -s "$src/$f" "$TMP/nob/$f"; done
    python3 - "$src/tokenizer.json" "$TMP/nob/tokenizer.json" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1], encoding='utf-8'))
j['model']['vocab'] = {('<b%s>' % k[3:5] if k.startswith('<0x') and len(k) == 6 else k): i
                       for k, i in j['model']['vocab'].items()}
j['model']['byte_fallback'] = False
json.dump(j, open(sys.argv[2], 'w', encoding='utf-8'), ensure_ascii=False)
EOF
    for i in $(seq 1 400); do printf 'Lily saw \xe6\x9d\xb1\xe4\xba\xac and a \xf0\x9f\x98\x80 dog.\n'; done >"$TMP/u.txt"
    if "$C" "$TMP/nob" -o "$TMP/nob.gguf" 2>"$TMP/e5" &&
       grep -Eq '^qforge-convert: warning: .*tokenizer\.json: 256 of the 256 <0xXX> byte tokens are missing' "$TMP/e5" &&
       "$V" "$TMP/nob" -f "$TMP/u.txt" -c 64 --chunks 1 --quiet >/dev/null 2>"$TMP/e6"; then
      pass no-byte-tokens
    else
      fail no-byte-tokens "$(cat "$TMP/e5" "$TMP/e6" 2>/dev/null | head -3)"
    fi
  else
    skip no-byte-tokens "python3 not found (used to edit tokenizer.json)"
  fi

  # --- tied embeddings stored only as lm_head.weight
  if ! command -v python3 >/dev/null 2>&1; then
    skip tied-lm-head "python3 not found (used to rename a safetensors tensor)"
  else
    mkdir -p "$TMP/tied"
    for f in config.json tokenizer.json tokenizer_config.json; do ln -s "$src/$f" "$TMP/tied/$f"; done
    python3 - "$src/model.safetensors" "$TMP/tied/model.safetensors" <<'EOF'
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
h['lm_head.weight'] = h.pop('model.embed_tokens.weight')
s = json.dumps(h).encode()
s += b' ' * (-len(s) % 8)
open(sys.argv[2], 'wb').write(struct.pack('<Q', len(s)) + s + b[8 + n:])
EOF
    if "$C" "$TMP/tied" -o "$TMP/tied.gguf" --quiet 2>"$TMP/e2"; then
      names=$("$QF_BIN/qforge-inspect" "$TMP/tied.gguf" --tensors 2>&1 | grep -Eo ' (token_embd|output)\.weight' | tr -d ' ' | sort -u | tr '\n' ' ')
      t1=$(ppl_of "$TMP/tied"); t2=$(ppl_of "$TMP/tied.gguf")
      if [ "$names" = "token_embd.weight " ] && [ -n "$t1" ] && [ "$t1" = "$a" ] && [ "$t2" = "$g1" ]; then pass tied-lm-head
      else fail tied-lm-head "tensors '$names'; ppl HF $t1 (want $a), GGUF $t2 (want $g1)"; fi
    else
      fail tied-lm-head "$(cat "$TMP/e2")"
    fi
  fi

  # --- refused layouts: one line naming tokenizer.json, exit 1, no output
  mkdir -p "$TMP/bad"
  for f in config.json model.safetensors; do ln -s "$src/$f" "$TMP/bad/$f"; done
  sed 's/"type": *"Prepend"/"type": "NFKC_X"/' "$src/tokenizer.json" >"$TMP/bad/tokenizer.json"
  if grep -q NFKC_X "$TMP/bad/tokenizer.json"; then
    expect_exit refused-normalizer 1 '^qforge-convert: error: .*tokenizer\.json.*(normalizer|pre-tokenizer)' -- \
      "$C" "$TMP/bad" -o "$TMP/bad.gguf"
    if [ -e "$TMP/bad.gguf" ]; then fail refused-no-output "bad.gguf was written"; else pass refused-no-output; fi
    expect_exit refused-normalizer-verify 1 'tokenizer\.json' -- "$V" "$TMP/bad" -f "$TMP/t.txt" -c 128 --chunks 1
  else
    skip refused-normalizer "stories260K's tokenizer.json has no Prepend normalizer to alter"
  fi
fi
finish
