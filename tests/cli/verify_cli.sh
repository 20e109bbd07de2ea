#!/usr/bin/env bash
# verify_cli.sh - qforge-verify's command line: exit codes, error messages,
# output formats (text and --json), generation and --base (KLD).
. "$(dirname "$0")/../lib.sh"
V=$QF_BIN/qforge-verify
M=oracles/llamacpp/stories260K-F32.gguf
Q=oracles/llamacpp/stories260K-Q4_0.gguf
TEXT=corpus/wikitext-2-raw/wiki.test.raw

if "$V" --help | grep -q -- '--generate'; then pass help; else fail help "--help does not describe --generate"; fi
expect_exit no-args 2 'error: no model given' -- "$V"
expect_exit bad-option 2 "unknown option '--bogus'" -- "$V" x.gguf -f x.txt --bogus
expect_exit bad-number 2 "-c: expected an integer >= 4, not 'abc'" -- "$V" x.gguf -f x.txt -c abc
expect_exit missing-model 1 '^qforge-verify: error: nope.gguf: ' -- "$V" nope.gguf -f x.txt

if need_data ppl "$M" && need_data ppl "$TEXT"; then
  expect_exit missing-text 1 '^qforge-verify: error: nope.txt: ' -- "$V" "$QF_DATA/$M" -f nope.txt
  printf 'too short\n' >"$TMP/short.txt"
  expect_exit short-text 1 'need at least 1024 tokens for a context of 512' -- "$V" "$QF_DATA/$M" -f "$TMP/short.txt"

  # llama-perplexity -c 128 --chunks 4 -ctk f32 -ctv f32: PPL = 79.0980 +/- 16.72430
  out=$("$V" "$QF_DATA/$M" -f "$QF_DATA/$TEXT" -c 128 --chunks 4 -t 1 2>"$TMP/err")
  if [ "$out" = "perplexity: 79.0980 +/- 16.72431" ] || [ "$out" = "perplexity: 79.0980 +/- 16.72430" ]; then
    pass ppl
  else
    fail ppl "stdout '$out'"
  fi
  # not a terminal: no running [1]x,[2]y,... progress on stderr
  if [ ! -s "$TMP/err" ]; then pass quiet-stderr; else fail quiet-stderr "stderr: $(head -c 200 "$TMP/err")"; fi

  json=$("$V" "$QF_DATA/$M" -f "$QF_DATA/$TEXT" -c 128 --chunks 2 -t 1 --json)
  case $json in
    '{"model": '*'"n_chunks": 2'*'"ppl": 66.45'*'"chunks": [{"nll": '*) pass json ;;
    *) fail json "unexpected: $(printf '%s' "$json" | head -c 300)" ;;
  esac

  # greedy from BOS: the stories260K PROVENANCE text
  gen=$("$V" "$QF_DATA/$M" --generate 31 --kv f16 -t 1)
  if [ "$gen" = " Once upon a time, there was a little girl named Lily. She loved to play outside in the park." ]; then
    pass generate
  else
    fail generate "got '$gen'"
  fi
  gj=$("$V" "$QF_DATA/$M" --generate 5 -p "Once upon a time" --json -t 1)
  case $gj in
    *'"ids": [1, 403, 407, 261, 378, 432, 383, 286, 261, 376]'*) pass generate-json ;;
    *) fail generate-json "got '$gj'" ;;
  esac
  expect_exit bad-kv 2 "--kv takes f32 or f16" -- "$V" "$QF_DATA/$M" --generate 1 --kv f8
fi

if need_data kld "$Q" && need_data kld "$M" && need_data kld "$TEXT"; then
  out=$("$V" "$QF_DATA/$Q" -f "$QF_DATA/$TEXT" -c 128 --chunks 2 -t 1 --base "$QF_DATA/$M")
  if printf '%s\n' "$out" | grep -q '^mean KLD: 0\.' && printf '%s\n' "$out" | grep -q '^base perplexity: 66\.45' &&
     printf '%s\n' "$out" | grep -q '^same top: '; then
    pass kld
  else
    fail kld "output: $(printf '%s' "$out" | head -c 300)"
  fi
  same=$("$V" "$QF_DATA/$M" -f "$QF_DATA/$TEXT" -c 128 --chunks 2 -t 1 --base "$QF_DATA/$M" --json)
  case $same in
    *'"kld": {"mean": 0.00000000,'*'"top1": 1.00000000,'*) pass kld-self ;;
    *) fail kld-self "model vs itself: $(printf '%s' "$same" | head -c 300)" ;;
  esac
fi
finish
