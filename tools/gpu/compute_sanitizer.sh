#!/bin/bash
# compute-sanitizer over duet_cuda_tests on the GPU machine (docs/cuda.md,
# "compute-sanitizer"). Runs each tool named (default: memcheck racecheck) on
# the whole test binary, or on the tests DUET_SANITIZER_FILTER selects (a gtest
# filter), and fails if any tool reports an error or a hazard.
#
#   tools/gpu/compute_sanitizer.sh [memcheck|racecheck|synccheck|initcheck ...]
#
#   memcheck   out-of-bounds and misaligned device accesses, bad frees, CUDA API
#              errors, and device memory still allocated at exit (--leak-check full)
#   racecheck  shared-memory hazards between threads of a block (RAW/WAR/WAW)
#
# Binaries come from $DUET_GPU_BIN (default .gpubin, made by tools/gpu/pack_binaries.sh).
# Logs go to $OUT (the device tool's return folder) or /tmp/duet_sanitizer, one per tool.
# DUET_SANITIZER_TIMEOUT (default 280 s) bounds each tool so that two fit one
# device call; DUET_SANITIZER_ARGS adds compute-sanitizer options (e.g.
# "--kernel-name-exclude kns=gemm" to leave cuBLAS out of racecheck).
set -u -o pipefail
BIN=${DUET_GPU_BIN:-.gpubin}
OUT=${OUT:-/tmp/duet_sanitizer}
FILTER=${DUET_SANITIZER_FILTER:-*}
LIMIT=${DUET_SANITIZER_TIMEOUT:-280}
mkdir -p "$OUT"
cublas_dir=$(find /usr/local /opt /usr/lib -name 'libcublas.so.13*' -printf '%h\n' 2>/dev/null | head -n 1)
export LD_LIBRARY_PATH="$BIN/lib:/usr/local/cuda/lib64:${cublas_dir}:${LD_LIBRARY_PATH:-}"
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null) || {
  echo "compute-sanitizer not found (PATH, /usr/local/cuda/bin)" >&2
  exit 2
}
"$sanitizer" --version | tail -n 1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true

tools=("$@")
((${#tools[@]})) || tools=(memcheck racecheck)
status=0
for tool in "${tools[@]}"; do
  case $tool in
    memcheck) opts=(--leak-check full) ;;
    racecheck) opts=(--racecheck-report hazard) ;;
    synccheck | initcheck) opts=() ;;
    *) echo "unknown tool '$tool' (memcheck, racecheck, synccheck, initcheck)" >&2; exit 2 ;;
  esac
  log=$OUT/$tool.log
  echo "== $tool (tests: $FILTER, limit ${LIMIT}s)"
  start=$SECONDS
  # shellcheck disable=SC2086  # DUET_SANITIZER_ARGS is a list of options
  timeout "$LIMIT" "$sanitizer" --tool "$tool" "${opts[@]}" --error-exitcode 99 --print-limit 50 \
    ${DUET_SANITIZER_ARGS:-} "$BIN/duet_cuda_tests" --gtest_filter="$FILTER" > "$log" 2>&1
  rc=$?
  # Summary lines: "ERROR SUMMARY: N errors", "RACECHECK SUMMARY: N hazards displayed ...", gtest's verdict.
  grep -E "SUMMARY:|^\[ +(PASSED|FAILED) |tests ran" "$log" | tail -n 8
  case $rc in
    0) echo "$tool: clean ($((SECONDS - start)) s)" ;;
    99) echo "$tool: FOUND ERRORS (first reports below; all in $log)"; grep -m 40 -E "^=========" "$log"; status=1 ;;
    124) echo "$tool: timed out after ${LIMIT}s; narrow DUET_SANITIZER_FILTER"; status=1 ;;
    *) echo "$tool: tests failed under the tool (exit $rc); see $log"; tail -n 20 "$log"; status=1 ;;
  esac
done
exit $status
