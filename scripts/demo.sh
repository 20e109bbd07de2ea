#!/usr/bin/env bash
# scripts/demo.sh MODEL_DIR - the pipeline on one model: convert -> quantize -> verify.
# Uses stories260K from $QF_DATA when present, else a synthetic Llama checkpoint
# that the project generates itself.
set -euo pipefail
model=${1:-${QF_DATA:-../shared}/models/stories260K}
bin=${QF_BIN:-bin}
out=${DEMO_OUT:-build/demo}
mkdir -p "$out"
text=""
if [ ! -f "$model/config.json" ]; then
  echo "demo: $model not found; generating a small synthetic Llama checkpoint instead"
  model=$out/synth-llama
  build/tools/gen_synth_model --arch llama --out "$model" --hidden 64 --ff 128 --layers 2 --heads 4 --kv-heads 2 --vocab 512 >/dev/null
fi
wiki=${QF_DATA:-../shared}/corpus/wikitext-2-raw/wiki.test.raw
if [ -f "$wiki" ]; then text=$wiki; else
  text=$out/demo-text.txt
  for i in $(seq 1 400); do echo "Once upon a time there was a little girl named Lily. She liked to play in the park with her ball."; done > "$text"
fi
echo "== convert: $model -> $out/model-f32.gguf"
"$bin/qforge-convert" "$model" -o "$out/model-f32.gguf" --outtype f32 --manifest
"$bin/qforge-inspect" "$out/model-f32.gguf" | head -n 20
# qforge-quantize with its per-tensor fallback lines summarised in one line
quantize() {
  local log rc=0 n
  log=$(mktemp)
  "$bin/qforge-quantize" "$@" 2>"$log" || rc=$?
  grep -v ': fallback: ' "$log" >&2 || true
  n=$(grep -c ': fallback: ' "$log" || true)
  if [ "$n" -gt 0 ]; then
    echo "qforge-quantize: $n tensors fell back to another type (rows not a multiple of the block size):" \
      "$(sed -n 's/^.*: fallback: [^:]*: \([^ ]*\) needs.* -> \(.*\)$/\1->\2/p' "$log" | sort | uniq -c |
         awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1}'); --dry-run lists them"
  fi
  rm -f "$log"
  return $rc
}
if [ -x "$bin/qforge-quantize" ]; then
  echo "== quantize: Q8_0 and Q4_K_M"
  quantize "$out/model-f32.gguf" "$out/model-q8_0.gguf" Q8_0
  quantize "$out/model-f32.gguf" "$out/model-q4_k_m.gguf" Q4_K_M
fi
echo "== verify: perplexity of the F32 file (4 chunks of 128 tokens)"
"$bin/qforge-verify" "$out/model-f32.gguf" -f "$text" --ctx 128 --chunks 4 --manifest "$out/model-f32.gguf.xxh"
for q in q8_0 q4_k_m; do
  [ -f "$out/model-$q.gguf" ] || continue
  echo "== verify: $q against the F32 base (KLD, top-1), gate: top-1 >= 80%"
  "$bin/qforge-verify" "$out/model-$q.gguf" -f "$text" --ctx 128 --chunks 4 --base "$out/model-f32.gguf" --min-top1 0.80
done
echo "== generate: greedy from the F32 file"
"$bin/qforge-verify" "$out/model-f32.gguf" --generate 40 --prompt "Once upon a time"
echo "demo: done (outputs in $out)"
