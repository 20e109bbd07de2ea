#!/usr/bin/env bash
# budget.sh - qforge-quantize size budgets (--target-size, --target-bpw,
# --fit-vram) on stories260K: the file fits the budget and comes within 1% of
# it, the sensitivity sidecar is reused, the VRAM breakdown adds up with the
# KV cache of the model's shapes, a budget below the smallest size exits 1
# naming a size that then fits, role weights from --calib, and llama.cpp
# loads the budgeted file; a checkpoint directory gives its converted GGUF's bytes.
. "$(dirname "$0")/../lib.sh"
Q=$QF_BIN/qforge-quantize
F32=oracles/llamacpp/stories260K-F32.gguf
IMAT=oracles/llamacpp/stories260K-imatrix-wiki64x512.dat
PEER=$QF_DATA/peers/llama.cpp/bin/llama-perplexity
CALIB=corpus/tinystories-gen/calib.txt

json_get() { # file key -> value of the first "key": number/bool in the file
  sed -n "s/.*\"$2\": \([^,}]*\).*/\1/p" "$1" | head -n 1
}

if need_data setup "$F32" && need_data setup-imatrix "$IMAT"; then
  M=$QF_DATA/$F32
  IM=$QF_DATA/$IMAT
  CACHE=$TMP/s260.qfsens
  in_bytes=$(stat -c %s "$M")
  # 1. --target-size: at most the target, within 1% of it; the sensitivities are measured once
  target=$((in_bytes * 45 / 100))
  if "$Q" "$M" "$TMP/a.gguf" --target-size "$target" --imatrix "$IM" --sensitivity-cache "$CACHE" --json --quiet \
      >"$TMP/a.json" 2>"$TMP/err"; then
    got=$(stat -c %s "$TMP/a.gguf")
    if [ "$got" -le "$target" ] && [ $((got * 100)) -ge $((target * 99)) ]; then pass target-size
    else fail target-size "file $got bytes for a target of $target"; fi
    [ "$(json_get "$TMP/a.json" sensitivity_cached)" = false ] && pass measured-first || fail measured-first "$(head -c 300 "$TMP/a.json")"
    grep -q '"predicted_error"' "$TMP/a.json" && grep -q '"type": "q' "$TMP/a.json" && pass plan-json || fail plan-json "no per-tensor plan"
  else
    fail target-size "$(cat "$TMP/err")"
  fi
  # 2. another budget from the cache: not measured again; --dry-run writes nothing
  target2=$((in_bytes * 30 / 100))
  if "$Q" "$M" "$TMP/b.gguf" --target-size "$target2" --imatrix "$IM" --sensitivity-cache "$CACHE" --json --dry-run \
      --quiet >"$TMP/b.json" 2>"$TMP/err"; then
    [ "$(json_get "$TMP/b.json" sensitivity_cached)" = true ] && pass cache-reused || fail cache-reused "$(head -c 300 "$TMP/b.json")"
    [ ! -e "$TMP/b.gguf" ] && pass dry-run-writes-nothing || fail dry-run-writes-nothing "b.gguf exists"
    tb=$(json_get "$TMP/b.json" tensor_bytes)
    ta=$(json_get "$TMP/a.json" tensor_bytes)
    [ "$tb" -lt "$ta" ] && pass smaller-budget-smaller-plan || fail smaller-budget-smaller-plan "$tb >= $ta"
  else
    fail cache-reused "$(cat "$TMP/err")"
  fi
  # another imatrix (none) is another key: measured again
  if "$Q" "$M" "$TMP/c.gguf" --target-size "$target2" --sensitivity-cache "$CACHE" --json --dry-run --quiet \
      >"$TMP/c.json" 2>"$TMP/err" && [ "$(json_get "$TMP/c.json" sensitivity_cached)" = false ]; then
    pass cache-keyed-by-imatrix
  else
    fail cache-keyed-by-imatrix "$(cat "$TMP/err") $(head -c 200 "$TMP/c.json")"
  fi
  # 3. --target-bpw: the written file's bits per weight is at most the target, within 1%
  if "$Q" "$M" "$TMP/d.gguf" --target-bpw 7.5 --imatrix "$IM" --sensitivity-cache "$CACHE" --json --quiet \
      >"$TMP/d.json" 2>"$TMP/err"; then
    bpw=$(json_get "$TMP/d.json" bits_per_weight)
    awk -v b="$bpw" 'BEGIN { exit !(b <= 7.5 && b >= 7.5 * 0.99) }' && pass target-bpw || fail target-bpw "bpw $bpw"
  else
    fail target-bpw "$(cat "$TMP/err")"
  fi
  # 4. --fit-vram: the KV cache is 2 B x 2 (K, V) x 5 layers x ctx x 4 KV heads x 8 dims;
  # weights + KV + compute fit in the total
  vram=4000000
  if "$Q" "$M" "$TMP/e.gguf" --fit-vram "$vram" --fit-ctx 1024 --fit-batch 64 --imatrix "$IM" \
      --sensitivity-cache "$CACHE" --json --dry-run --quiet >"$TMP/e.json" 2>"$TMP/err"; then
    kv=$(json_get "$TMP/e.json" kv_cache)
    comp=$(json_get "$TMP/e.json" compute)
    w=$(json_get "$TMP/e.json" weights)
    want_kv=$((2 * 2 * 5 * 1024 * 4 * 8))
    # compute allowance: 4 B x 64 x (512 vocab + 8 heads x 1024 + 2 x 172 + 4 x 64)
    want_comp=$((4 * 64 * (512 + 8 * 1024 + 2 * 172 + 4 * 64)))
    if [ "$kv" = "$want_kv" ] && [ "$comp" = "$want_comp" ] && [ $((w + kv + comp)) -le "$vram" ]; then pass fit-vram-breakdown
    else fail fit-vram-breakdown "kv $kv (want $want_kv), compute $comp (want $want_comp), weights $w, total $vram"; fi
  else
    fail fit-vram-breakdown "$(cat "$TMP/err")"
  fi
  "$Q" "$M" "$TMP/f.gguf" --fit-vram 4000000 --fit-ctx 1024 --imatrix "$IM" --sensitivity-cache "$CACHE" --dry-run \
    >"$TMP/f.out" 2>&1
  grep -q "KV cache" "$TMP/f.out" && grep -q "compute" "$TMP/f.out" && pass fit-vram-printed || fail fit-vram-printed "$(head -3 "$TMP/f.out")"
  # 5. too small: exit 1 naming the smallest size; that size then fits
  "$Q" "$M" "$TMP/g.gguf" --target-size 1000 --imatrix "$IM" --sensitivity-cache "$CACHE" --quiet >/dev/null 2>"$TMP/err"
  rc=$?
  smallest=$(sed -n 's/.*smallest reachable size: \([0-9]*\) bytes.*/\1/p' "$TMP/err")
  if [ "$rc" -eq 1 ] && [ -n "$smallest" ] && [ ! -e "$TMP/g.gguf" ]; then
    pass too-small-exits-1
    if "$Q" "$M" "$TMP/g.gguf" --target-size "$smallest" --imatrix "$IM" --sensitivity-cache "$CACHE" --quiet \
        >/dev/null 2>"$TMP/err" && [ "$(stat -c %s "$TMP/g.gguf")" -le "$smallest" ]; then pass smallest-fits
    else fail smallest-fits "$(cat "$TMP/err")"; fi
  else
    fail too-small-exits-1 "exit $rc: $(cat "$TMP/err")"
  fi
  "$Q" "$M" "$TMP/h.gguf" --fit-vram 1M --fit-ctx 100000 --sensitivity-cache "$CACHE" --quiet >/dev/null 2>"$TMP/err"
  [ $? -eq 1 ] && grep -q "smallest reachable size" "$TMP/err" && pass vram-too-small-exits-1 || fail vram-too-small-exits-1 "$(cat "$TMP/err")"
  expect_exit type-and-budget 2 "replaces TYPE" -- "$Q" "$M" "$TMP/x.gguf" Q4_0 --target-size 1M
  expect_exit budget-and-override 2 "tensor-type" -- "$Q" "$M" "$TMP/x.gguf" --target-size 1M --tensor-type 'attn=q8_0'
  expect_exit bad-size 2 "expected a size" -- "$Q" "$M" "$TMP/x.gguf" --target-size 12parsecs
  # 6. role weights from calibration text
  if need_data calib-role-weights "$CALIB"; then
    if "$Q" "$M" "$TMP/i.gguf" --target-size "$target" --imatrix "$IM" --calib "$QF_DATA/$CALIB" --calib-ctx 64 \
        --calib-chunks 2 --sensitivity-cache "$TMP/cal.qfsens" --json --quiet >"$TMP/i.json" 2>"$TMP/err" &&
        [ "$(json_get "$TMP/i.json" role_weights)" = true ] && [ "$(stat -c %s "$TMP/i.gguf")" -le "$target" ] &&
        ! ls "$TMP"/i.gguf.probe* >/dev/null 2>&1; then
      pass calib-role-weights
    else
      fail calib-role-weights "$(cat "$TMP/err") $(head -c 300 "$TMP/i.json")"
    fi
  fi
  # 7. llama.cpp loads and runs the budgeted file
  if [ ! -x "$PEER" ]; then
    skip llamacpp-loads "peer binary $PEER not found"
  elif [ -e "$TMP/a.gguf" ] && need_data llamacpp-loads corpus/wikitext-2-raw/wiki.test.raw; then
    if "$PEER" -m "$TMP/a.gguf" -f "$QF_DATA/corpus/wikitext-2-raw/wiki.test.raw" -t 1 -b 128 -c 128 --chunks 4 \
        >"$TMP/peer.log" 2>&1 && grep -q "Final estimate: PPL" "$TMP/peer.log"; then
      pass llamacpp-loads
    else
      fail llamacpp-loads "$(tail -n 3 "$TMP/peer.log")"
    fi
  fi
fi
# 8. a checkpoint directory: measured through its --outtype auto GGUF view, the same
# plan and bytes as that GGUF (size, bpw, and with --calib role weights); the
# sidecar of the directory is keyed by its files
S260=models/stories260K
if need_data dir-budget "$S260" && need_data dir-budget-calib "$CALIB"; then
  D=$QF_DATA/$S260
  "$QF_BIN/qforge-convert" "$D" -o "$TMP/s260-auto.gguf" --outtype auto --quiet >/dev/null 2>&1
  dsz=$(($(stat -c %s "$TMP/s260-auto.gguf") * 40 / 100))
  for b in "--target-size $dsz" "--target-bpw 9.5" "--target-size $dsz --calib $QF_DATA/$CALIB --calib-ctx 64 --calib-chunks 2"; do
    nm=$(printf '%s' "$b" | awk '{ print substr($1, 3) ($3 == "--calib" ? "-calib" : "") }')
    if "$Q" "$D" "$TMP/dir-$nm.gguf" $b --sensitivity-cache "$TMP/dir-$nm.qfsens" --quiet >/dev/null 2>"$TMP/err" &&
       "$Q" "$TMP/s260-auto.gguf" "$TMP/gguf-$nm.gguf" $b --sensitivity-cache "$TMP/gguf-$nm.qfsens" --quiet >/dev/null 2>>"$TMP/err" &&
       cmp -s "$TMP/dir-$nm.gguf" "$TMP/gguf-$nm.gguf"; then pass "dir-same-bytes-$nm"
    else fail "dir-same-bytes-$nm" "$(cat "$TMP/err") (or the files differ)"; fi
  done
  j=$("$Q" "$D/" "$TMP/dir-again.gguf" --target-size "$dsz" --sensitivity-cache "$TMP/dir-target-size.qfsens" --dry-run --json 2>/dev/null)
  printf '%s' "$j" | grep -q '"sensitivity_cached": true' && pass dir-cache-reused || fail dir-cache-reused "$(printf '%s' "$j" | head -c 300)"
fi
finish
