#!/usr/bin/env bash
# Builds the GGUF fuzzer with clang in build-fuzz/ and runs it for $1 seconds
# (default 30) on a seed corpus of valid files from fuzz/make_gguf_seed.cpp.
# Crashing inputs are written to build-fuzz/findings/; the exit status is
# nonzero when the fuzzer finds one.
set -euo pipefail

seconds=${1:-30}
root=$(cd "$(dirname "$0")/.." && pwd)
build=${DUET_FUZZ_BUILD:-$root/build-fuzz}

mkdir -p "$build"
CC=${CC:-clang} CXX=${CXX:-clang++} cmake -S "$root" -B "$build" \
  -DDUET_FUZZ=ON -DDUET_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo > "$build/configure.log" \
  || { cat "$build/configure.log"; exit 1; }
cmake --build "$build" --target gguf_fuzz gguf_fuzz_seed -j"$(nproc)"

corpus=$build/corpus/gguf
seeds=$build/seeds/gguf
mkdir -p "$corpus" "$seeds" "$build/findings"
"$build/fuzz/gguf_fuzz_seed" "$seeds"

# New interesting inputs go to $corpus (kept between runs); seeds are read only.
"$build/fuzz/gguf_fuzz" "$corpus" "$seeds" \
  -dict="$root/fuzz/gguf.dict" -max_total_time="$seconds" -max_len=4096 \
  -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
  -artifact_prefix="$build/findings/"
