#!/usr/bin/env bash
# bench/gptq.sh - qforge-quantize --method gptq on the TinyLlama-1.1B-shaped
# synthetic model (bench/gen-1b.sh), THREADS threads, CHUNKS chunks of CTX
# tokens of CALIB_TEXT:
#   - calibration forward tokens/s (qforge's --json forward_seconds: the
#     layer-sequential engine's passes over the model alone) next to
#     llama-perplexity's prompt-eval tokens/s on the same F16 file, text,
#     context, chunks and threads (runs interleaved); goal >= 1.0x; the
#     Hessian accumulation (--json hessian_seconds: every group's H and
#     sum |x|) in its own column;
#   - the GPTQ solve time of all linears (--json solve_seconds: factor,
#     sweep, and the per-tensor loss report); goal <= 120 s at 2 threads;
#   - peak RSS of the whole run for each depth in LAYERS (the 22-layer model
#     is the cached F16 GGUF; other depths are generated with the same shape
#     and converted once into WORK); goal < 2 GiB and independent of depth;
#   - --method awq and awq+gptq on the deepest model: wall, peak RSS, and
#     their forward / search seconds, next to gptq's (AWQ_METHODS="gptq awq"
#     leaves out awq+gptq).
# The machine's load is recorded (bench/lib.sh); re-run on a quiet machine
# with the same command.
#
#   THREADS=2 WORK=build/bench REPS=1 CHUNKS=32 CTX=512 TYPE=Q4_K_M \
#   LAYERS="11 22" CELLS="gptq peer awq" bash bench/gptq.sh
. "$(dirname "$0")/gen-1b.sh"
CHUNKS=${CHUNKS:-32}
CTX=${CTX:-512}
TYPE=${TYPE:-Q4_K_M}
LAYERS=${LAYERS:-11 22}
CELLS=${CELLS:-gptq peer awq}
# SHAPE=mid: a smaller Llama shape (hidden 1024, ff 2816, 16/4 heads, vocab 32000) generated at
# every depth in LAYERS, for quick depth checks of peak RSS; default the 1.1B shape
SHAPE=${SHAPE:-1b}
CALIB_TEXT=${CALIB_TEXT:-$QF_DATA/corpus/wikitext-2-raw/wiki.test.raw}
logs=$WORK/logs-gptq; rm -rf "$logs"
mkdir -p "$logs"
want() { [[ " $CELLS " == *" $1 "* ]]; }
med() { [ -n "${1// /}" ] && median $1 || echo -; }
# jnum FILE KEY: the first number after "KEY": in FILE
jnum() { sed -n "s/.*\"$2\": \([0-9.e+-]*\).*/\1/p" "$1" | head -1; }

have_qf qforge-quantize || exit 0
[ -f "$CALIB_TEXT" ] || die "calibration text $CALIB_TEXT not found (set QF_DATA or CALIB_TEXT)"

# model_for L: sets MODEL to the F16 GGUF of the 1.1B shape with L layers.
model_for() {
  local dims="--hidden 2048 --heads 32 --kv-heads 4 --ff 5632" tag=tinyllama-1b
  [ "$SHAPE" = mid ] && dims="--hidden 1024 --heads 16 --kv-heads 4 --ff 2816" && tag=llama-mid
  if [ "$1" = 22 ] && [ "$SHAPE" != mid ]; then gguf_1b_f16; MODEL=$GGUF_1B_F16; return 0; fi
  local hf=$WORK/$tag-${1}l
  MODEL=$WORK/$tag-${1}l-F16.gguf
  [ -f "$MODEL" ] && return 0
  if [ ! -f "$hf/.complete" ]; then
    note "generating $hf ($tag shape, $1 layers)"
    rm -rf "$hf"
    "$QF_TOOLS/gen_synth_model" --arch llama --out "$hf" $dims --layers "$1" \
      --vocab 32000 --dtype bf16 --shards 1 --ctx 2048 >&2 || die "gen_synth_model failed"
    touch "$hf/.complete"
  fi
  "$QF_BIN/qforge-convert" "$hf" -o "$MODEL" --outtype f16 --threads "$THREADS" --quiet || die "qforge-convert $hf failed"
  [ "$KEEP" = 1 ] || rm -rf "$hf"
}

deepest=$(printf '%s\n' $LAYERS | sort -n | tail -1)
out=$WORK/gptq-out.gguf
peer=0; want peer && have_peer llama-perplexity && peer=1
declare -A W R FW HW SW TOK PT PR
for rep in $(seq 1 "$REPS"); do
  for L in $LAYERS; do
    model_for "$L"
    methods=gptq
    [ "$L" = "$deepest" ] && want awq && methods=${AWQ_METHODS:-gptq awq awq+gptq}
    for m in $methods; do
      want gptq || [ "$m" != gptq ] || continue
      rm -f "$out"
      k="$m|$L"
      if timed "$logs/$rep-$m-$L.log" "$QF_BIN/qforge-quantize" "$MODEL" "$out" "$TYPE" --method "$m" --calib "$CALIB_TEXT" \
           --calib-ctx "$CTX" --calib-chunks "$CHUNKS" --threads "$THREADS" --json; then
        W[$k]+="$T_WALL "; R[$k]+="$T_RSS "
        [ "$m" = gptq ] && PR[$k]=$("$QF_BIN/qforge-quantize" "$MODEL" "$out" "$TYPE" --method gptq --calib "$CALIB_TEXT" \
          --calib-ctx "$CTX" --calib-chunks "$CHUNKS" --threads "$THREADS" --dry-run --json 2>/dev/null |
          sed -n 's/.*"peak_rss": \([0-9]*\).*/\1/p')
        FW[$k]+="$(jnum "$logs/$rep-$m-$L.log" forward_seconds) "
        HW[$k]+="$(jnum "$logs/$rep-$m-$L.log" hessian_seconds) "
        if [ "$m" = awq ]; then SW[$k]+="$(jnum "$logs/$rep-$m-$L.log" search_seconds) "
        else SW[$k]+="$(jnum "$logs/$rep-$m-$L.log" solve_seconds) "; fi
        TOK[$k]=$(jnum "$logs/$rep-$m-$L.log" tokens)
      fi
      rm -f "$out"
    done
    if [ $peer = 1 ] && [ "$L" = "$deepest" ]; then
      if timed "$logs/$rep-peer-$L.log" "$PEER_BIN/llama-perplexity" -m "$MODEL" -f "$CALIB_TEXT" -c "$CTX" \
           --chunks "$CHUNKS" -t "$THREADS" -ctk f32 -ctv f32; then
        PT[$L]+="$(awk '/prompt eval time/ { for (i = 1; i <= NF; i++) if ($i == "ms") { ms = $(i - 1); n = $(i + 2); break } }
                      END { if (ms > 0) printf "%.1f", n / (ms / 1000) }' "$logs/$rep-peer-$L.log") "
      fi
    fi
  done
done

if [ "$SHAPE" = mid ]; then echo "Model: a Llama-shaped synthetic model (hidden 1024, ff 2816, 16/4 heads, vocab 32000, random"
else echo "Model: the TinyLlama-1.1B-shaped synthetic model (hidden 2048, ff 5632, 32/4 heads, vocab 32000, random"; fi
echo "BF16 weights, F16 GGUF), target $TYPE, calibration $(basename "$CALIB_TEXT"): $CHUNKS chunks of $CTX tokens,"
echo "$THREADS threads, median of $REPS run(s). Loss and quality are not measured here (random weights)."
echo
if want gptq; then
  echo "| layers | method | wall s | peak RSS MiB | --dry-run predicted MiB | forward s | forward tok/s | H s | solve s | solve s / layer |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for L in $LAYERS; do
    for m in gptq awq awq+gptq; do
      k="$m|$L"; [ -n "${W[$k]:-}" ] || continue
      f=$(med "${FW[$k]}"); s=$(med "${SW[$k]}"); h=$(med "${HW[$k]:-}")
      tps=$(awk -v t="${TOK[$k]:-}" -v f="$f" 'BEGIN { if (t == "" || f == "-" || f == 0) print "-"; else printf "%.0f", t / f }')
      echo "| $L | $m | $(fmt 1 "$(med "${W[$k]}")") | $(mib "$(med "${R[$k]}")") | $(awk -v b="${PR[$k]:-}" 'BEGIN { if (b == "") print "-"; else printf "%.0f", b / 1048576 }') | $(fmt 1 "$f") | $tps | $(fmt 1 "$h") | $(fmt 1 "$s")$([ "$m" = awq ] && echo " (search)") | $(awk -v s="$s" -v l="$L" 'BEGIN { if (s == "-") print "-"; else printf "%.2f", s / l }') |"
    done
  done
  echo
fi
if [ $peer = 1 ] && [ -n "${PT[$deepest]:-}" ]; then
  k="gptq|$deepest"; f=$(med "${FW[$k]:-}")
  q=$(awk -v t="${TOK[$k]:-}" -v f="$f" 'BEGIN { if (t == "" || f == "-" || f == 0) print "-"; else printf "%.1f", t / f }')
  p=$(med "${PT[$deepest]}")
  h=$(med "${HW[$k]:-}")
  qh=$(awk -v t="${TOK[$k]:-}" -v f="$f" -v h="$h" 'BEGIN { if (t == "" || f == "-" || h == "-" || f + h == 0) print "-"; else printf "%.1f", t / (f + h) }')
  echo "| $deepest layers, $CHUNKS x $CTX tokens | qforge gptq calibration forward tok/s (model passes alone) | llama-perplexity tok/s (F32 KV) | ratio | qforge H accumulation s | qforge forward + H tok/s |"
  echo "|---|---|---|---|---|---|"
  echo "| $TYPE | $q | $p | $(ratio "$q" "$p") | $(fmt 1 "$h") | $qh |"
fi
