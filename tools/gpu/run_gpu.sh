#!/bin/bash
# The GPU correctness checks and the benchmark, as run on the GPU machine (the
# `device` tool) from the repository root. docs/cuda.md explains the set-up.
#
#   tools/gpu/run_gpu.sh check   transformers reference + duet_cuda_tests
#   tools/gpu/run_gpu.sh bench   duet bench sweep + torch peer + side-by-side table
#   tools/gpu/run_gpu.sh all     both
#   tools/gpu/run_gpu.sh repeat  five alternations of the two closest targets (smollm2-135m
#                                LP 10:26 at batch 1, 1000 steps; llama2-7b batch 1 + prefill)
#
# Binaries: $DUET_GPU_BIN (default .gpubin, prebuilt by tools/gpu/pack_binaries.sh
# because the GPU image lacks the CPU-side libraries) or a build dir with them.
# Logs (as logs.tgz) and JSON go to $OUT (the device tool's return folder) or /tmp/duet_gpu.
set -u -o pipefail
mode=${1:-all}
BIN=${DUET_GPU_BIN:-.gpubin}
OUT=${OUT:-/tmp/duet_gpu}
mkdir -p "$OUT"
cublas_dir=$(find /usr/local /opt /usr/lib -name 'libcublas.so.13*' -printf '%h\n' 2>/dev/null | head -n 1)
export LD_LIBRARY_PATH="$BIN/lib:/usr/local/cuda/lib64:${cublas_dir}:${LD_LIBRARY_PATH:-}"
export PYTHONUNBUFFERED=1
status=0

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv,noheader || true

if [[ $mode == check || $mode == all ]]; then
  echo "== transformers reference"
  python3 tools/gpu/hf_reference.py /tmp/duet_hfref 2>&1 | grep -v Warning | tee "$OUT/hf_reference.log" || status=1
  echo "== duet_cuda_tests"
  DUET_HF_REF=/tmp/duet_hfref "$BIN/duet_cuda_tests" > "$OUT/cuda_tests.log" 2>&1 || status=1
  grep -E "^\[ +(OK|FAILED|PASSED|SKIPPED) |^\[hf |Failure" "$OUT/cuda_tests.log" | head -60
fi

if [[ $mode == bench || $mode == all ]]; then
  SHAPES=${DUET_BENCH_SHAPES:-llama2-7b,llama3-8b,qwen2.5-7b,smollm2-135m,smollm2-1.7b,llama3.2-1b}
  BATCHES=${DUET_BENCH_BATCHES:-1,16,64}
  cmd="$BIN/duet_bench bench --shape $SHAPES --batch $BATCHES --ctx 1024 --prefill 2048 --steps 300 --json $OUT/duet_bench.json"
  echo "== $cmd"
  $cmd > "$OUT/duet_bench.md" 2> "$OUT/duet_bench.log" || status=1
  tail -n 4 "$OUT/duet_bench.log"
  # Context lengths: the same step at a short, the sweep's and a long cache (no prompts, no peer).
  ctx_cmd="$BIN/duet_bench bench --shape llama2-7b,llama3-8b,smollm2-135m --batch 1,16 --ctx 256,1024,4096 --prefill 0 --steps 300 --json $OUT/duet_bench_ctx.json"
  echo "== $ctx_cmd"
  $ctx_cmd > "$OUT/duet_bench_ctx.md" 2> "$OUT/duet_bench_ctx.log" || status=1
  echo "== torch peer"
  PEER=${DUET_PEER_CONFIGS:-llama2-7b:none:1 llama2-7b:14:28:1 llama2-7b:none:64 llama2-7b:14:28:64 smollm2-135m:none:1 smollm2-135m:10:26:1 llama3-8b:none:1}
  args=()
  for c in $PEER; do args+=(--config "$c"); done
  python3 bench/torch_peer.py "${args[@]}" --ctx 1024 --json "$OUT/torch_peer.json" 2>&1 | tee "$OUT/torch_peer.log" || status=1
  cat "$OUT/duet_bench.md" "$OUT/duet_bench_ctx.md"
  python3 bench/compare.py "$OUT/duet_bench.json" "$OUT/torch_peer.json" | tee "$OUT/compare.md" || status=1
fi
if [[ $mode == repeat ]]; then
  # The sweep times each row once; these repeats show the spread of the rows nearest a target.
  for i in 1 2 3 4 5; do
    echo "== repeat $i"
    "$BIN/duet_bench" bench --shape smollm2-135m --batch 1 --lp 10:26 --prefill 0 --steps 1000 \
      2>/dev/null | tail -n 2 || status=1
    "$BIN/duet_bench" bench --shape llama2-7b --batch 1 --prefill 2048 --steps 300 --baseline-only \
      2>/dev/null | tail -n 1 || status=1
  done
fi
# The device tool returns at most 8 files from $OUT: the logs travel as one archive.
if compgen -G "$OUT/*.log" > /dev/null; then
  tar -czf "$OUT/logs.tgz" -C "$OUT" $(cd "$OUT" && ls *.log) && rm -f "$OUT"/*.log
fi
exit $status
