#!/bin/bash
# Stages everything the GPU checks need for two device calls, within 64 MiB a call:
#   .gpuxfer/bin/gpubin.tar.xz   duet, duet_cuda_tests, duet_bench and their non-CUDA libraries (~19 MB xz)
#   .gpuxfer/p1/gguf.aa          the first 42 MB of the default SmolLM2 GGUF
#   .gpuxfer/p2/gguf.ab          the rest (~56 MB)
#   .gpuxfer/p2/gguf.sha256      the whole file's checksum, for `sha256sum -c` once rejoined in /tmp/m
# Call 1 carries bin + p1 (runs the sweep, leaves the binaries and p1 in /tmp); call 2, right after while
# the machine is warm (30 s), carries p2 and runs the real-model checks. docs/cuda.md has both commands.
# Usage: tools/gpu/stage_transfer.sh [build-cuda]
set -eu
build=${1:-build-cuda}
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$model" ] || { echo "stage_transfer: $model missing (run tools/setup.sh)" >&2; exit 1; }
tools/gpu/pack_binaries.sh "$build" duet duet_cuda_tests duet_bench
grep -qx '/.gpuxfer/' .git/info/exclude 2>/dev/null || echo '/.gpuxfer/' >> .git/info/exclude
rm -rf .gpuxfer && mkdir -p .gpuxfer/bin .gpuxfer/p1 .gpuxfer/p2
tar -cJf .gpuxfer/bin/gpubin.tar.xz .gpubin
part1_bytes=38000000  # with the ~24 MB bundle and the tracked files, call 1 stays under 64 MiB
head -c "$part1_bytes" "$model" > .gpuxfer/p1/gguf.aa
tail -c +"$((part1_bytes + 1))" "$model" > .gpuxfer/p2/gguf.ab
echo "$(sha256sum < "$model" | cut -d' ' -f1)  /tmp/m/$(basename "$model")" > .gpuxfer/p2/gguf.sha256
du -sb .gpuxfer/*
