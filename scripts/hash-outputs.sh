#!/usr/bin/env bash
# hash-outputs.sh - sha256 of every deterministic output of a set of qforge binaries.
#
#   scripts/hash-outputs.sh BIN_DIR [WORK_DIR] > hashes.txt
#
# Runs BIN_DIR/qforge-* over a fixed matrix and prints "sha256  name" per output:
#   - qforge-convert of stories260K and tinystories-distill-3M to f32, f16, bf16, q8_0;
#   - qforge-calibrate's imatrix of each model (tinystories-gen calib text);
#   - qforge-quantize of each model (its f32 GGUF) to every preset that
#     `qforge-quantize --help` lists, with --method exact, search and auto, without
#     and with that imatrix;
#   - qforge-verify --json of each model's Q4_K_M file against its f32 GGUF, timing
#     fields removed.
# Two runs on the same inputs (e.g. before and after a restructure) must print the
# same lines: `diff <(scripts/hash-outputs.sh old/bin) <(scripts/hash-outputs.sh bin)`.
# Data: QF_DATA (default ../shared). Exit 1 if any command fails.
set -euo pipefail

bin=$(cd "${1:?usage: hash-outputs.sh BIN_DIR [WORK_DIR]}" && pwd)
data=$(cd "${QF_DATA:-../shared}" && pwd)
work=${2:-$(mktemp -d /tmp/qf-hash.XXXXXX)}
mkdir -p "$work"
cd "$work"

models="stories260K tinystories-distill-3M"
presets=$("$bin/qforge-quantize" --help 2>&1 | sed -n '/^TYPE/,/^  Norms/p' | awk '/^  [A-Z0-9_]+ /{print $1}')
calib="$data/corpus/tinystories-gen/calib.txt"
test_text="$data/corpus/tinystories-gen/test.txt"

run() { "$@" >/dev/null 2>run.err || { echo "hash-outputs: error: failed: $*" >&2; cat run.err >&2; exit 1; }; }
# run_quantize OUT ARGS...: as run, but a type that needs an importance matrix
# refused without one is an output too: OUT.refused holds the message.
run_quantize() {
    local out=$1
    shift
    "$@" >/dev/null 2>run.err && return 0
    if grep -q 'needs an importance matrix' run.err; then cp run.err "$out.refused"; return 0; fi
    echo "hash-outputs: error: failed: $*" >&2; cat run.err >&2; exit 1
}

for m in $models; do
    for t in f32 f16 bf16 q8_0; do
        run "$bin/qforge-convert" "$data/models/$m" -o "$m-$t.gguf" --outtype "$t" --quiet
    done
    run "$bin/qforge-calibrate" "$m-f32.gguf" -f "$calib" -o "$m-imatrix.gguf" -c 128 --chunks 8 --quiet
    for p in $presets; do
        for meth in exact search auto; do
            run_quantize "$m-$p-$meth.gguf" "$bin/qforge-quantize" "$m-f32.gguf" "$m-$p-$meth.gguf" "$p" \
                --method "$meth" --quiet
            run_quantize "$m-$p-$meth-imat.gguf" "$bin/qforge-quantize" "$m-f32.gguf" "$m-$p-$meth-imat.gguf" "$p" \
                --method "$meth" --imatrix "$m-imatrix.gguf" --quiet
        done
    done
    "$bin/qforge-verify" "$m-Q4_K_M-auto.gguf" -f "$test_text" --base "$m-f32.gguf" -c 128 --chunks 4 --json \
        2>run.err | jq -S 'walk(if type == "object" then with_entries(select(.key | test("^timings$|_s$|time|second|elapsed|rss|thread"; "i") | not)) else . end)' \
        > "$m-verify.json" || { echo "hash-outputs: error: verify failed on $m" >&2; cat run.err >&2; exit 1; }
done

sha256sum -- *.gguf *.json $(ls *.refused 2>/dev/null) | sort -k2
