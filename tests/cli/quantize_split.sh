#!/usr/bin/env bash
# quantize_split.sh - qforge-quantize on split GGUF models: a split input
# (llama-gguf-split --split of the F32 oracle, and qforge-convert
# --split-max-size) is read whole and gives the bytes of the unsplit input;
# --keep-split writes the input's shards, --split-max-size shards of bounded
# size, both with the split.* keys: llama-gguf-split --merge reads them back to
# the same tensors, qforge-verify scores them like the single file; a later
# shard, a missing shard and an output over an input shard are refused.
. "$(dirname "$0")/../lib.sh"
Q=$QF_BIN/qforge-quantize
C=$QF_BIN/qforge-convert
V=$QF_BIN/qforge-verify
I=$QF_BIN/qforge-inspect
M=oracles/llamacpp/stories260K-F32.gguf
WIKI=corpus/wikitext-2-raw/wiki.test.raw
SPLIT=$QF_DATA/peers/llama.cpp/bin/llama-gguf-split

# name type shape bytes of every tensor (no index, no offset)
tensors() { "$I" "$1" --tensors | awk '/^ *[0-9]+ +[^ ]+ +[A-Z0-9_]+ +\[/ { $1 = ""; $(NF - 1) = ""; print }'; }
kv() { "$I" "$1" | sed -n "s/^ *$2: [a-z0-9]* \(.*\)$/\1/p"; }

expect_exit keep-split-and-max 2 "exclude each other" -- "$Q" a.gguf b.gguf Q8_0 --keep-split --split-max-size 1M
expect_exit bad-split-size 2 "split-max-size" -- "$Q" a.gguf b.gguf Q8_0 --split-max-size 12Q

if need_data split "$M" && need_data split "$WIKI"; then
  head -c 60000 "$QF_DATA/$WIKI" >"$TMP/wiki.txt"
  "$Q" "$QF_DATA/$M" "$TMP/ref.gguf" Q8_0 --quiet >/dev/null 2>&1 || fail split "reference quantization failed"
  ppl_ref=$("$V" "$TMP/ref.gguf" -f "$TMP/wiki.txt" -c 128 --chunks 2 -t 1)

  # split inputs: qforge-convert's, and llama-gguf-split's when the peer is there
  mkdir -p "$TMP/c"
  "$C" "$QF_DATA/models/stories260K" -o "$TMP/c/in.gguf" --outtype f32 --split-max-size 300K --quiet
  "$C" "$QF_DATA/models/stories260K" -o "$TMP/c/one.gguf" --outtype f32 --quiet
  n=$(ls "$TMP"/c/in-*-of-*.gguf 2>/dev/null | wc -l)
  first=$(ls "$TMP"/c/in-00001-of-*.gguf 2>/dev/null)
  if [ "$n" -lt 2 ]; then
    fail split-input-convert "convert wrote $n shards"
  elif "$Q" "$first" "$TMP/c/q.gguf" Q8_0 --quiet >/dev/null 2>"$TMP/e" &&
       "$Q" "$TMP/c/one.gguf" "$TMP/c/q1.gguf" Q8_0 --quiet >/dev/null 2>>"$TMP/e" && cmp -s "$TMP/c/q.gguf" "$TMP/c/q1.gguf"; then
    pass split-input-convert
  else
    fail split-input-convert "split input ($n shards) gives another file than the single one: $(cat "$TMP/e")"
  fi
  if [ ! -x "$SPLIT" ]; then
    skip split-peer "peer binary $SPLIT not found"
  else
    mkdir -p "$TMP/p"
    "$SPLIT" --split --split-max-tensors 12 "$QF_DATA/$M" "$TMP/p/in" >/dev/null 2>&1
    in1=$TMP/p/in-00001-of-00004.gguf
    # 1. the whole split input, byte-identical to the unsplit one
    if "$Q" "$in1" "$TMP/p/q.gguf" Q8_0 --quiet >/dev/null 2>"$TMP/e" && cmp -s "$TMP/p/q.gguf" "$TMP/ref.gguf"; then
      pass split-input-peer
    else
      fail split-input-peer "$(cat "$TMP/e")"
    fi
    # 2. --keep-split: the input's 4 shards, tensor for tensor
    if "$Q" "$in1" "$TMP/p/ks.gguf" Q8_0 --keep-split --quiet >/dev/null 2>"$TMP/e"; then
      bad=""
      for s in 1 2 3 4; do
        a=$(tensors "$TMP/p/in-0000$s-of-00004.gguf" | awk '{ print $1 }' | sort)
        b=$(tensors "$TMP/p/ks-0000$s-of-00004.gguf" | awk '{ print $1 }' | sort)
        [ -n "$a" ] && [ "$a" = "$b" ] || bad="$bad shard$s"
        [ "$(kv "$TMP/p/ks-0000$s-of-00004.gguf" split.no)" = $((s - 1)) ] || bad="$bad split.no$s"
        [ "$(kv "$TMP/p/ks-0000$s-of-00004.gguf" split.count)" = 4 ] || bad="$bad split.count$s"
      done
      [ "$(kv "$TMP/p/ks-00001-of-00004.gguf" split.tensors.count)" = 47 ] || bad="$bad split.tensors.count"
      ppl=$("$V" "$TMP/p/ks-00001-of-00004.gguf" -f "$TMP/wiki.txt" -c 128 --chunks 2 -t 1)
      [ "$ppl" = "$ppl_ref" ] || bad="$bad ppl($ppl vs $ppl_ref)"
      "$SPLIT" --merge "$TMP/p/ks-00001-of-00004.gguf" "$TMP/p/ksm.gguf" >/dev/null 2>&1 || bad="$bad peer-merge"
      [ "$(tensors "$TMP/p/ksm.gguf" | sort)" = "$(tensors "$TMP/ref.gguf" | sort)" ] || bad="$bad merged-tensors"
      if [ -z "$bad" ]; then pass keep-split; else fail keep-split "wrong:$bad"; fi
    else
      fail keep-split "$(cat "$TMP/e")"
    fi
    # 3. --split-max-size: shards of at most 100 KB of tensor data (or one tensor)
    if "$Q" "$in1" "$TMP/p/sm.gguf" Q8_0 --split-max-size 100K --quiet >/dev/null 2>"$TMP/e"; then
      n=$(ls "$TMP"/p/sm-*-of-*.gguf | wc -l)
      f1=$(ls "$TMP"/p/sm-00001-of-*.gguf)
      bad=""
      [ "$n" -ge 3 ] || bad="$bad n=$n"
      for f in "$TMP"/p/sm-*-of-*.gguf; do
        sz=$(tensors "$f" | awk '{ s += $NF; k++ } END { print (k > 1 && s > 100000) ? "big" : "ok" }')
        [ "$sz" = ok ] || bad="$bad $(basename "$f")"
      done
      ppl=$("$V" "$f1" -f "$TMP/wiki.txt" -c 128 --chunks 2 -t 1)
      [ "$ppl" = "$ppl_ref" ] || bad="$bad ppl"
      "$SPLIT" --merge "$f1" "$TMP/p/smm.gguf" >/dev/null 2>&1 || bad="$bad peer-merge"
      [ "$(tensors "$TMP/p/smm.gguf")" = "$(tensors "$TMP/ref.gguf")" ] || bad="$bad merged-tensors"
      if [ -z "$bad" ]; then pass split-max-size; else fail split-max-size "wrong:$bad"; fi
      # the manifest names every shard
      "$Q" "$in1" "$TMP/p/mf.gguf" Q8_0 --split-max-size 100K --manifest --quiet >/dev/null 2>&1
      if [ "$(grep -c 'mf-0000[0-9]-of-0000[0-9].gguf' "$TMP/p/mf.gguf.xxh" 2>/dev/null)" = "$n" ]; then pass split-manifest
      else fail split-manifest "$(head -c 300 "$TMP/p/mf.gguf.xxh" 2>&1)"; fi
    else
      fail split-max-size "$(cat "$TMP/e")"
    fi
    # 4. refused: a later shard, a missing shard, an output over an input shard
    expect_exit split-later-shard 1 "shard 2 of a split model; open the first shard" -- \
      "$Q" "$TMP/p/in-00002-of-00004.gguf" "$TMP/x.gguf" Q8_0
    sum_before=$(cat "$TMP"/p/in-0000?-of-00004.gguf | cksum)
    expect_exit split-output-is-input 1 "output is an input file" -- \
      "$Q" "$in1" "$TMP/p/in.gguf" Q8_0 --keep-split
    [ "$(cat "$TMP"/p/in-0000?-of-00004.gguf | cksum)" = "$sum_before" ] && pass split-input-untouched ||
      fail split-input-untouched "an input shard changed"
    mv "$TMP/p/in-00003-of-00004.gguf" "$TMP/p/away.gguf"
    expect_exit split-missing-shard 1 "in-00003-of-00004.gguf" -- "$Q" "$in1" "$TMP/x.gguf" Q8_0
    left=$(ls "$TMP"/x.gguf* 2>/dev/null)
    [ -z "$left" ] && pass split-missing-nothing-left || fail split-missing-nothing-left "$left"
  fi
fi
finish
