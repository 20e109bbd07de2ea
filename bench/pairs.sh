#!/usr/bin/env bash
# bench/pairs.sh - run a benchmark like for like on both instruction-set pairs:
# qforge built AVX2-only (make ARCH=-march=x86-64-v3, into build-x86-64-v3/)
# against llama.cpp's portable AVX2 build (peers/llama.cpp/bin), then, where
# this CPU has AVX-512 and the AVX-512 peer exists, qforge built natively
# against peers/llama.cpp/bin-avx512. Each run writes its own record.
#
#   bash bench/pairs.sh verify.sh [quantize.sh ...]   (knobs as for each script)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || { echo "usage: bench/pairs.sh SCRIPT.sh [SCRIPT.sh ...]" >&2; exit 2; }
QF_DATA=${QF_DATA:-../shared}
peers=$QF_DATA/peers/llama.cpp
make --no-print-directory -s B=build-x86-64-v3 BIN=build-x86-64-v3/bin ARCH=-march=x86-64-v3 \
  build-x86-64-v3/bin/qforge-verify build-x86-64-v3/bin/qforge-quantize build-x86-64-v3/bin/qforge-convert \
  build-x86-64-v3/bin/qforge-calibrate build-x86-64-v3/bin/qforge-inspect
make --no-print-directory -s all
for s in "$@"; do
  QF_BIN=build-x86-64-v3/bin PEER_BIN=$peers/bin bash "bench/$s"
  if grep -q avx512f /proc/cpuinfo && [ -d "$peers/bin-avx512" ]; then
    QF_BIN=bin PEER_BIN=$peers/bin-avx512 bash "bench/$s"
  else
    echo "pairs: no AVX-512 pair on this machine (CPU or peer build missing)" >&2
  fi
done
