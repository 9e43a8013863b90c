#!/bin/bash
# Copies duet_cuda_tests and duet_bench from a build dir into .gpubin/ with the
# non-CUDA shared libraries they need (OpenBLAS, PCRE2, gomp...), so the GPU
# machine, whose image has CUDA but not these, can run them. cuBLAS/cudart come
# from the machine's own CUDA 13 install. Usage: tools/gpu/pack_binaries.sh [build-cuda]
set -eu
build=${1:-build-cuda}
rm -rf .gpubin && mkdir -p .gpubin/lib
cp "$build/duet_cuda_tests" "$build/duet_bench" .gpubin/
strip .gpubin/duet_cuda_tests .gpubin/duet_bench
for bin in .gpubin/duet_cuda_tests .gpubin/duet_bench; do
  ldd "$bin" | awk '/=> \// {print $3}' | grep -v -E 'libcuda|libcublas|libcudart|libc\.so|libm\.so|libpthread|libdl|librt|ld-linux|libstdc|libgcc' |
    xargs -r -I{} cp -Lu {} .gpubin/lib/
done
grep -qx '/.gpubin/' .git/info/exclude 2>/dev/null || echo '/.gpubin/' >> .git/info/exclude
du -sh .gpubin
