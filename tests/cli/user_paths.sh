#!/usr/bin/env bash
# user_paths.sh - what a new user runs first: calibrate on a Hugging Face
# directory (the same imatrix as on its GGUF), no "(null)" in any message, a
# context longer than the model's refused (or run with --allow-long-ctx and a
# warning), the --base-logits line on a quantized model worded as a model
# difference, and Hugging Face cache paths (models--org--name, org/name under
# $HF_HOME/hub) with general.name from the repo, --model-name to set it.
. "$(dirname "$0")/../lib.sh"
QF_TOOLS=${QF_TOOLS:-build/tools}
CAL=$QF_BIN/qforge-calibrate
V=$QF_BIN/qforge-verify
C=$QF_BIN/qforge-convert
Q=$QF_BIN/qforge-quantize
I=$QF_BIN/qforge-inspect
CMP=$QF_TOOLS/imatrix_compare
HF=models/stories260K
GG=oracles/llamacpp/stories260K-F32.gguf
WIKI=corpus/wikitext-2-raw/wiki.test.raw
PEER=$QF_DATA/peers/llama.cpp/bin/llama-perplexity

no_null() { # NAME FILE...: no "(null)" in the files
  if cat "${@:2}" | grep -q '(null)'; then fail "$1" "prints (null): $(grep -h '(null)' "${@:2}" | head -2)"; else pass "$1"; fi
}

if need_data hf-calibrate "$HF" && need_data hf-calibrate "$GG" && need_data hf-calibrate "$WIKI"; then
  head -c 60000 "$QF_DATA/$WIKI" >"$TMP/wiki.txt"
  # --- calibrate takes an HF directory: the imatrix of its GGUF (float rounding apart)
  if "$CAL" "$QF_DATA/$HF" -f "$TMP/wiki.txt" -c 128 --chunks 4 -o "$TMP/hf.gguf" --quiet 2>"$TMP/e1" &&
     "$CAL" "$QF_DATA/$GG" -f "$TMP/wiki.txt" -c 128 --chunks 4 -o "$TMP/gg.gguf" --quiet 2>>"$TMP/e1"; then
    if out=$("$CMP" "$TMP/hf.gguf" "$TMP/gg.gguf" --tol 1e-3 --mean-tol 1e-5); then pass hf-calibrate
    else fail hf-calibrate "HF-dir imatrix differs from the GGUF one: $out"; fi
  else
    fail hf-calibrate "$(cat "$TMP/e1")"
  fi
  # --- no (null) in the messages of odd inputs
  mkdir -p "$TMP/empty" "$TMP/cfgonly"
  cp "$QF_DATA/$HF/config.json" "$TMP/cfgonly/"
  for t in "$TMP/empty" "$TMP/cfgonly" "$QF_DATA/$HF/config.json" /dev/null; do
    "$CAL" "$t" -f "$TMP/wiki.txt" -o "$TMP/x.gguf" >>"$TMP/nulls" 2>&1
    "$V" "$t" -f "$TMP/wiki.txt" >>"$TMP/nulls" 2>&1
    "$V" "$t" --generate 2 >>"$TMP/nulls" 2>&1
    "$Q" "$t" "$TMP/x.gguf" Q8_0 >>"$TMP/nulls" 2>&1
    "$C" "$t" -o "$TMP/x.gguf" >>"$TMP/nulls" 2>&1
    "$I" "$t" >>"$TMP/nulls" 2>&1
  done
  "$CAL" "$QF_DATA/$HF" -f "$TMP/wiki.txt" -c 128 --chunks 1 -o "$TMP/x.gguf" >>"$TMP/nulls" 2>&1
  no_null no-null-messages "$TMP/nulls"

  # --- a context longer than the model's (512): refused, or run with a warning
  expect_exit calibrate-long-ctx 2 "exceeds .*training context of 512.*--allow-long-ctx" -- \
    "$CAL" "$QF_DATA/$GG" -f "$TMP/wiki.txt" -c 100000 -o "$TMP/long.gguf"
  [ -e "$TMP/long.gguf" ] && fail calibrate-long-ctx-nothing-written "output written" || pass calibrate-long-ctx-nothing-written
  expect_exit verify-long-ctx 2 "exceeds .*training context of 512.*--allow-long-ctx" -- \
    "$V" "$QF_DATA/$GG" -f "$TMP/wiki.txt" -c 1024
  expect_exit verify-long-ctx-base 2 "exceeds .*training context of 512" -- \
    "$V" "$QF_DATA/$GG" -f "$TMP/wiki.txt" -c 1024 --base "$QF_DATA/$HF"
  if out=$("$V" "$QF_DATA/$GG" -f "$TMP/wiki.txt" -c 1024 --chunks 1 --allow-long-ctx 2>&1 >/dev/null) &&
     printf '%s' "$out" | grep -q "warning: a context of 1024 tokens exceeds"; then pass verify-allow-long-ctx
  else fail verify-allow-long-ctx "no warning or failure: $out"; fi
  if out=$("$CAL" "$QF_DATA/$GG" -f "$TMP/wiki.txt" -c 600 --chunks 1 --allow-long-ctx -o "$TMP/l.gguf" 2>&1 >/dev/null) &&
     printf '%s' "$out" | grep -q "warning: a context of 600 tokens exceeds" && [ -s "$TMP/l.gguf" ]; then
    pass calibrate-allow-long-ctx
  else fail calibrate-allow-long-ctx "no warning or failure: $out"; fi
  "$CAL" --help | grep -q -- "--allow-long-ctx" && "$V" --help | grep -q -- "--allow-long-ctx" &&
    pass long-ctx-help || fail long-ctx-help "--allow-long-ctx not in --help"

  # --- --base-logits from llama-perplexity: agreement on the same model, a
  # model difference (not an error) on a quantized one
  if [ ! -x "$PEER" ]; then
    skip base-logits-wording "peer binary $PEER not found"
  elif ! "$PEER" -m "$QF_DATA/$GG" -f "$QF_DATA/$WIKI" -t 1 -b 128 -c 128 --chunks 1 -ctk f32 -ctv f32 \
       --kl-divergence-base "$TMP/base.kld" >"$TMP/peer.log" 2>&1; then
    fail base-logits-wording "llama-perplexity failed: $(tail -3 "$TMP/peer.log")"
  elif ! "$Q" "$QF_DATA/$GG" "$TMP/q2.gguf" Q2_K --quiet >/dev/null 2>&1; then
    fail base-logits-wording "quantize failed"
  else
    same=$("$V" "$QF_DATA/$GG" -f "$QF_DATA/$WIKI" -c 128 --chunks 1 --base-logits "$TMP/base.kld" 2>&1)
    quant=$("$V" "$TMP/q2.gguf" -f "$QF_DATA/$WIKI" -c 128 --chunks 1 --base-logits "$TMP/base.kld" 2>&1)
    if ! printf '%s' "$same" | grep -q "llama.cpp base file: chunk 1 log-probs agree with it"; then
      fail base-logits-wording "same model: $(printf '%s' "$same" | grep llama.cpp)"
    elif ! printf '%s' "$quant" | grep -q "MODEL is not the model llama.cpp scored"; then
      fail base-logits-wording "quantized model: $(printf '%s' "$quant" | grep llama.cpp)"
    elif printf '%s\n%s' "$same" "$quant" | grep -qi "err"; then
      fail base-logits-wording "an 'err' wording is left: $(printf '%s\n%s' "$same" "$quant" | grep -i err)"
    else
      pass base-logits-wording
    fi
  fi
fi

# --- Hugging Face hub cache: a fake tree (refs/main, snapshots/<rev>/ symlinks into blobs/)
if need_data hf-cache "$HF"; then
  R=$TMP/hfhome/hub/models--karpathy--stories260K
  rev=0123456789abcdef0123456789abcdef01234567
  mkdir -p "$R/blobs" "$R/refs" "$R/snapshots/$rev" "$R/snapshots/feedface"
  printf '%s' "$rev" >"$R/refs/main"
  for f in "$QF_DATA/$HF"/*; do
    [ -f "$f" ] || continue
    h=$(sha256sum "$f" | cut -c1-64)
    cp "$f" "$R/blobs/$h"
    ln -s "../../blobs/$h" "$R/snapshots/$rev/$(basename "$f")"
  done
  name_of() { "$I" "$1" | sed -n 's/^ *general.name: string "\(.*\)"$/\1/p'; }
  if "$C" "$R" -o "$TMP/root.gguf" --quiet 2>"$TMP/hc.err" && "$C" "$QF_DATA/$HF" -o "$TMP/plain.gguf" --quiet 2>>"$TMP/hc.err"; then
    n=$(name_of "$TMP/root.gguf")
    if [ "$n" = stories260K ]; then pass hf-cache-root-name; else fail hf-cache-root-name "general.name '$n'"; fi
    # the same tensors as the plain directory (the metadata differs only by the organization)
    if out=$("$C" "$R/snapshots/$rev" -o "$TMP/snap.gguf" --quiet 2>&1) && cmp -s "$TMP/root.gguf" "$TMP/snap.gguf"; then
      pass hf-cache-snapshot-dir
    else fail hf-cache-snapshot-dir "snapshot dir gives another file: $out"; fi
  else
    fail hf-cache-root-name "$(cat "$TMP/hc.err")"
  fi
  if HF_HOME=$TMP/hfhome "$C" karpathy/stories260K -o "$TMP/id.gguf" --quiet 2>"$TMP/id.err" &&
     cmp -s "$TMP/root.gguf" "$TMP/id.gguf"; then pass hf-cache-repo-id
  else fail hf-cache-repo-id "org/name under \$HF_HOME/hub: $(cat "$TMP/id.err")"; fi
  if HF_HOME=$TMP/hfhome "$C" karpathy/stories260K -o "$TMP/mn.gguf" --quiet --model-name "My Tiny Model" &&
     [ "$(name_of "$TMP/mn.gguf")" = "My Tiny Model" ]; then pass model-name
  else fail model-name "general.name '$(name_of "$TMP/mn.gguf")'"; fi
  # the other tools take the same names
  gen=$(HF_HOME=$TMP/hfhome "$V" karpathy/stories260K --generate 8 -t 1 2>&1)
  ref=$("$V" "$QF_DATA/$HF" --generate 8 -t 1 2>&1)
  if [ -n "$ref" ] && [ "$gen" = "$ref" ]; then pass hf-cache-verify; else fail hf-cache-verify "'$gen' vs '$ref'"; fi
  if HF_HOME=$TMP/hfhome "$Q" karpathy/stories260K "$TMP/q8.gguf" Q8_0 --quiet >/dev/null 2>"$TMP/q.err" &&
     HF_HOME=$TMP/hfhome "$I" karpathy/stories260K >/dev/null 2>>"$TMP/q.err" &&
     [ "$(name_of "$TMP/q8.gguf")" = stories260K ]; then pass hf-cache-quantize-inspect
  else fail hf-cache-quantize-inspect "$(cat "$TMP/q.err") name '$(name_of "$TMP/q8.gguf")'"; fi
  if [ -s "$TMP/wiki.txt" ]; then
    if HF_HOME=$TMP/hfhome "$CAL" karpathy/stories260K -f "$TMP/wiki.txt" -c 128 --chunks 2 -o "$TMP/hc.imatrix" --quiet; then
      pass hf-cache-calibrate; else fail hf-cache-calibrate "calibrate on org/name failed"; fi
  fi
  # HF_HUB_CACHE wins over HF_HOME; an unknown id is an ordinary missing path
  if HF_HOME=/nonexistent HF_HUB_CACHE=$TMP/hfhome/hub "$I" karpathy/stories260K >/dev/null 2>&1; then pass hf-hub-cache
  else fail hf-hub-cache "HF_HUB_CACHE not used"; fi
  expect_exit hf-cache-unknown-id 1 "nobody/nothing" -- env HF_HOME="$TMP/hfhome" "$C" nobody/nothing -o "$TMP/x.gguf"
  # refs/main naming a snapshot that is not there: one clear line
  printf 'deadbeef' >"$R/refs/main"
  expect_exit hf-cache-missing-snapshot 1 "snapshot deadbeef of refs/main is not in the cache" -- \
    env HF_HOME="$TMP/hfhome" "$C" karpathy/stories260K -o "$TMP/x.gguf"
fi
finish
