#!/bin/bash
# Copies binaries from a build dir into .gpubin/ with the non-CUDA shared
# libraries they need (OpenBLAS, PCRE2, gomp...), so the GPU machine, whose
# image has CUDA but not these, can run them. cuBLAS/cudart come from the
# machine's own CUDA 13 install. A call carries at most 64 MiB: two binaries
# and the libraries take about 54 MB.
# Usage: tools/gpu/pack_binaries.sh [build-cuda [BINARY...]]
#   default binaries: duet_cuda_tests duet_bench (run_gpu.sh);
#   tools/gpu/smollm2_on_gpu.sh needs: duet duet_cuda_tests
set -eu
build=${1:-build-cuda}
shift || true
binaries=("$@")
((${#binaries[@]})) || binaries=(duet_cuda_tests duet_bench)
rm -rf .gpubin && mkdir -p .gpubin/lib
for name in "${binaries[@]}"; do
  cp "$build/$name" .gpubin/
  strip ".gpubin/$name"
  ldd ".gpubin/$name" | awk '/=> \// {print $3}' |
    grep -v -E 'libcuda|libcublas|libcudart|libnccl|libc\.so|libm\.so|libpthread|libdl|librt|ld-linux|libstdc|libgcc' |
    xargs -r -I{} cp -Lu {} .gpubin/lib/
done
exclude=$(git rev-parse --git-path info/exclude)  # a worktree's .git is a file
mkdir -p "$(dirname "$exclude")"
grep -qx '/.gpubin/' "$exclude" 2>/dev/null || echo '/.gpubin/' >> "$exclude"
du -sh .gpubin
