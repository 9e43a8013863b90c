#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run of the CPU test suite.
# Builds duet and duet_tests with clang in build-asan/ (CUDA off) and runs
# every gtest there through CTest; tools/test.sh calls it after the main suite.
# Any sanitizer report fails the run (UBSan does not recover); there are no
# suppressions.
#
# OpenMP and OpenBLAS: clang links LLVM's libomp (-fopenmp=libomp), and the
# suite runs clean under it with leak detection on and the default thread
# count (2 on a 2-core machine, so the parallel kernels run threaded), without
# OMP_NUM_THREADS or detect_leaks settings. OpenBLAS (Debian's uninstrumented
# pthread build) is called single-threaded from inside the OpenMP threads
# (kernels/cpu/matmul.cpp); ASan sees its memory only through the malloc
# interceptors, which is enough to check our side of each sgemm call.
# Build type RelWithDebInfo: -O2 keeps the model tests fast under ASan (the
# slowest, SmolLM2Logits, takes ~30 s) and -g gives file:line in reports.
#
# Environment: DUET_ASAN_BUILD (default build-asan), DUET_ASAN_JOBS (default nproc).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=${DUET_ASAN_BUILD:-$root/build-asan}
jobs=${DUET_ASAN_JOBS:-$(nproc)}
flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"

launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
mkdir -p "$build"
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -DDUET_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" "${launcher[@]}" \
  > "$build/configure.log" || { cat "$build/configure.log"; exit 1; }
cmake --build "$build" -j"$jobs" --target duet duet_tests

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Left out: the parser fuzzers (they run under ASan+UBSan in the main suite
# already), the Python timeline report (no C++), one speed budget that
# means nothing under ASan (TokenizerSmolLM2.EncodesAMegabyteQuickly: 5 s for
# 1 MB, 2.6 s alone here and over 10 s beside other tests), and mpi_bootstrap
# and TpMpi.* (OpenMPI's own allocations at MPI_Finalize are leaks to
# LeakSanitizer; the main suite runs them; TpLeader.* runs the same protocol
# here with ranks as threads).
ctest --test-dir "$build" --output-on-failure -j"$jobs" \
  -E 'parser_fuzz|kernel_timeline_report|TokenizerSmolLM2.EncodesAMegabyteQuickly|mpi_bootstrap|TpMpi\.'
