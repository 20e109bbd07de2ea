#!/usr/bin/env bash
# verify_split.sh - qforge-verify on a split model (gguf-split layout written
# by qforge-convert --split-max-size) scores exactly like the single file;
# a missing shard or opening a later shard is a clear error.
. "$(dirname "$0")/../lib.sh"
V=$QF_BIN/qforge-verify
C=$QF_BIN/qforge-convert
MODEL=models/stories260K
TEXT=corpus/wikitext-2-raw/wiki.test.raw

if need_data split "$MODEL" && need_data split "$TEXT"; then
  "$C" "$QF_DATA/$MODEL" -o "$TMP/one.gguf" --outtype f32 --quiet
  "$C" "$QF_DATA/$MODEL" -o "$TMP/s.gguf" --outtype f32 --split-max-size 300K --quiet
  n=$(ls "$TMP"/s-0000*-of-*.gguf 2>/dev/null | wc -l)
  if [ "$n" -ge 2 ]; then pass split-written; else fail split-written "expected >= 2 shards, got $n"; fi
  first=$(ls "$TMP"/s-00001-of-*.gguf | head -n 1)
  a=$("$V" "$TMP/one.gguf" -f "$QF_DATA/$TEXT" -c 128 --chunks 3 -t 1)
  b=$("$V" "$first" -f "$QF_DATA/$TEXT" -c 128 --chunks 3 -t 1)
  if [ -n "$a" ] && [ "$a" = "$b" ]; then pass split-same-ppl; else fail split-same-ppl "single '$a' vs split '$b'"; fi
  second=$(ls "$TMP"/s-00002-of-*.gguf | head -n 1)
  expect_exit split-later-shard 1 'shard 2 of a split model; open the first shard' -- "$V" "$second" -f "$QF_DATA/$TEXT" -c 128
  rm -f "$second"
  expect_exit split-missing-shard 1 "s-00002-of-0000[0-9]\.gguf: " -- "$V" "$first" -f "$QF_DATA/$TEXT" -c 128
fi
finish
