#!/usr/bin/env bash
# bench/convert.sh - qforge-convert on a TinyLlama-1.1B-shaped BF16 checkpoint
# in 2 safetensors shards (bench/gen-1b.sh) -> F16 and -> Q8_0: wall time,
# input MB/s, peak RSS; and `cat` of the same input files (the read I/O
# limit), plus `cat > file` (read + write of the same amount into the page
# cache, the limit for a tool that writes as much as it reads, as F16 does)
# and `cat > file; sync file` (the same + fsync, the limit for --fsync).
# qforge-convert does not fsync by default (--fsync: the F16 --fsync row).
#
# Goals: qforge-convert >= 70% of cold cat's throughput; peak RSS < 300 MiB.
#
# Page cache: "cold" runs drop the page cache first (echo 3 >
# /proc/sys/vm/drop_caches, needs root); "warm" runs read inputs that are
# already cached. Without root only warm runs are made, and the script says so.
# The peer (llama.cpp's convert_hf_to_gguf.py) runs only if PEER_CONVERT
# points at it and python3 can import numpy, torch and sentencepiece.
#
# The cases run in a different order in every repetition (rotated by one), so
# a disturbance that hits whatever runs first after the page cache is dropped
# (seen here: cold `cat` at 2.4-8.8 s in one run while `cat > file` read the
# same files cold in 1.6-2.4 s) is spread over all rows.
#
# QF_BIN_BEFORE=dir adds rows for dir/qforge-convert (an older build: A/B in
# the same session, interleaved with the rest).
#
#   THREADS=2 WORK=build/bench REPS=3 KEEP=0 bash bench/convert.sh
. "$(dirname "$0")/gen-1b.sh"
gen_1b

have_qf qforge-convert || exit 0
inputs=("$SYNTH_1B"/model-*.safetensors)
in_bytes=$(bytes_of "${inputs[@]}")
out=$WORK/convert-out.gguf
logs=$WORK/logs-convert; rm -rf "$logs"
mkdir -p "$logs"

cold=1
if ! drop_caches; then
  cold=0
  note "cannot drop the page cache (not root?): warm-cache runs only"
fi

peer=""
if [ -n "${PEER_CONVERT:-}" ] && [ -f "$PEER_CONVERT" ] &&
   python3 -c 'import numpy, torch, sentencepiece' 2>/dev/null; then
  peer=$PEER_CONVERT
else
  note "SKIP peer convert_hf_to_gguf.py: $( [ -z "${PEER_CONVERT:-}" ] && echo 'PEER_CONVERT not set' ||
        echo 'not found or python3 lacks numpy/torch/sentencepiece')"
fi

# Each case: name|command (run with bash -c; $IN = inputs, $OUT = output file).
cases=(
  "cat|cat \$IN > /dev/null"
  "cat > file|cat \$IN > \$OUT"
  "cat > file + sync|cat \$IN > \$OUT && sync \$OUT"
  "qforge-convert F16|$QF_BIN/qforge-convert $SYNTH_1B -o \$OUT --outtype f16 --threads $THREADS --quiet"
  "qforge-convert Q8_0|$QF_BIN/qforge-convert $SYNTH_1B -o \$OUT --outtype q8_0 --threads $THREADS --quiet"
  "qforge-convert F16 --fsync|$QF_BIN/qforge-convert $SYNTH_1B -o \$OUT --outtype f16 --threads $THREADS --quiet --fsync"
)
if [ -n "${QF_BIN_BEFORE:-}" ] && [ -x "$QF_BIN_BEFORE/qforge-convert" ]; then
  cases+=(
    "before: qforge-convert F16|$QF_BIN_BEFORE/qforge-convert $SYNTH_1B -o \$OUT --outtype f16 --threads $THREADS --quiet"
    "before: qforge-convert Q8_0|$QF_BIN_BEFORE/qforge-convert $SYNTH_1B -o \$OUT --outtype q8_0 --threads $THREADS --quiet"
  )
fi
[ -n "$peer" ] && cases+=(
  "convert_hf_to_gguf.py F16|python3 $peer $SYNTH_1B --outfile \$OUT --outtype f16"
  "convert_hf_to_gguf.py Q8_0|python3 $peer $SYNTH_1B --outfile \$OUT --outtype q8_0"
)
caches=(warm); [ $cold = 1 ] && caches=(cold warm)

declare -A WALL RSS
export IN="${inputs[*]}" OUT=$out
for rep in $(seq 1 "$REPS"); do
  for cache in "${caches[@]}"; do
    n=${#cases[@]}
    for k in $(seq 0 $((n - 1))); do
      c=${cases[$(( (k + rep - 1) % n ))]}
      name=${c%%|*}; cmd=${c#*|}
      rm -f "$out"
      if [ "$cache" = cold ]; then drop_caches; else cat "${inputs[@]}" >/dev/null; fi
      key="$name|$cache"
      if timed "$logs/$rep-${name//[^A-Za-z0-9_]/_}-$cache.log" bash -c "$cmd"; then
        WALL[$key]+="$T_WALL "; RSS[$key]+="$T_RSS "
        note "$key run $rep: ${T_WALL}s, ${T_RSS} KiB"
      else
        WALL[$key]+=""
      fi
    done
  done
done
rm -f "$out"

echo "### convert: TinyLlama-1.1B-shaped BF16, 2 shards ($(awk -v b="$in_bytes" 'BEGIN { printf "%.0f", b / 1e6 }') MB)"
echo
machine_header
[ $cold = 0 ] && echo "- page cache could not be dropped: warm-cache runs only"
[ -n "${QF_BIN_BEFORE:-}" ] && echo "- before rows: $QF_BIN_BEFORE/qforge-convert"
echo
echo "| run | page cache | wall s | input MB/s | peak RSS MiB | throughput vs cat (same cache) | vs cold cat (the goal) | vs cat > file | vs cat > file + sync |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for cache in "${caches[@]}"; do
  cat_w=$(median ${WALL["cat|$cache"]:-})
  cold_w=$(median ${WALL["cat|cold"]:-})
  cf_w=$(median ${WALL["cat > file|$cache"]:-})
  cp_w=$(median ${WALL["cat > file + sync|$cache"]:-})
  for c in "${cases[@]}"; do
    name=${c%%|*}; key="$name|$cache"
    if [ -z "${WALL[$key]:-}" ]; then echo "| $name | $cache | failed | - | - | - | - | - | - |"; continue; fi
    w=$(median ${WALL[$key]}); r=$(median ${RSS[$key]})
    echo "| $name | $cache | $(fmt 2 "$w") | $(awk -v b="$in_bytes" -v w="$w" 'BEGIN { printf "%.0f", b / 1e6 / w }') | $(mib "$r") | $(ratio "$cat_w" "$w") | $(ratio "$cold_w" "$w") | $(ratio "$cf_w" "$w") | $(ratio "$cp_w" "$w") |"
  done
done
echo
[ -z "$peer" ] && echo "Peer convert_hf_to_gguf.py: skipped (needs python3 with numpy, torch, sentencepiece and PEER_CONVERT=path/to/convert_hf_to_gguf.py)."

if [ "$KEEP" != 1 ]; then rm -rf "$SYNTH_1B" "$out"; fi
