#!/bin/bash
# Tensor parallelism on the GPU machine (issue 24), in one device call:
#   1. duet_cuda_tests CudaTpProcesses.*: the --device cuda --tp N decoder and serve's
#      batch decoder (a worker process per GPU, NCCL in the decode graphs) against one
#      GPU; --tp > GPUs fails
#   2. duet_cuda_tests CudaTpOneGpu.*, CudaTpNccl.*: the sharded CudaModel against one
#      rank (in-process ranks on GPU 0; NCCL tests need 2+ GPUs and skip otherwise), and
#      the rank decoders of an mpirun job as threads (RankDecodersOfAnMpiJobMatchOneGpu)
#   3. duet bench --tp N for the llama2-7b and smollm2-135m shapes, baseline and the
#      shapes' LP plans in the same run: measured with N GPUs (NCCL, then the one-shot
#      P2P all-reduce), else the estimate (all-reduce latency measured over the GPUs
#      there are when 2+, else ASSUMED: --allreduce-us $DUET_ALLREDUCE_US, default 10)
# Binaries: $DUET_GPU_BIN (default .gpubin; pack them here first with
#   tools/gpu/pack_binaries.sh build-cuda duet_cuda_tests duet_bench
# ). libnccl (218 MB) is not packed: the GPU machine's CUDA install has to provide it.
# Logs and JSON go to $OUT (the device tool's return folder) or /tmp/duet_tp. A hang (a rank that failed
# while the others wait in a collective) ends at the timeouts below.
# The device tool allows 10 minutes a command: run `tp_check.sh tests`, then `tp_check.sh bench`
# (and `tp_check.sh p2p` with N GPUs) as separate calls; no argument runs all three.
# `tp_check.sh mpi` (not part of all; needs N GPUs and OpenMPI's mpirun on the machine, and duet
# packed: pack_binaries.sh build-cuda duet duet_cuda_tests): `mpirun -np N duet run --device cuda
# --tp N` on $DUET_MODEL (a model whose heads --tp N divides) against --tp 1, greedy text equal.
set -u -o pipefail
mode=${1:-all}
BIN=${DUET_GPU_BIN:-.gpubin}
OUT=${OUT:-/tmp/duet_tp}
TP=${DUET_TP:-2}
mkdir -p "$OUT"
lib_dir() { find /usr/local /opt /usr/lib -name "$1" -printf '%h\n' 2>/dev/null | head -n 1; }
cublas_dir=$(lib_dir 'libcublas.so.13*')
nccl_dir=$(lib_dir 'libnccl.so.2*')
[[ -n $nccl_dir ]] || echo "warning: no libnccl.so.2 on this machine; the NCCL binaries will not start"
export LD_LIBRARY_PATH="$BIN/lib:/usr/local/cuda/lib64:${cublas_dir}:${nccl_dir}:${LD_LIBRARY_PATH:-}"
export NCCL_NVLS_ENABLE=0
status=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
nvidia-smi topo -m 2>/dev/null | head -12 || true
gpus=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | wc -l)
echo "GPUs visible: $gpus; --tp $TP"

if [[ $mode == tests || $mode == all ]]; then
echo "== duet_cuda_tests: --device cuda --tp N worker processes (a process that has not started CUDA)"
# Each test that forks in its own process: a CUDA context does not survive fork.
for t in WorkerProcessesMatchOneGpu BatchWorkerProcessesMatchOneGpu MoreRanksThanGpusIsAnError; do
  timeout 120 "$BIN/duet_cuda_tests" --gtest_filter="CudaTpProcesses.$t" > "$OUT/tp_processes_$t.log" 2>&1 || status=1
  grep -E "^\[ +(OK|FAILED|PASSED|SKIPPED) |Failure|rank|error" "$OUT/tp_processes_$t.log" | head -20
done
echo "== duet_cuda_tests: sharded CudaModel, in-process ranks and NCCL"
timeout 230 "$BIN/duet_cuda_tests" --gtest_filter='CudaTpOneGpu.*:CudaTpNccl.*' > "$OUT/tp_cuda_tests.log" 2>&1 || status=1
grep -E "^\[ +(OK|FAILED|PASSED|SKIPPED) |Failure|rank" "$OUT/tp_cuda_tests.log" | head -40

fi

if [[ $mode == bench || $mode == all ]]; then
echo "== duet bench --tp $TP"
cmd="$BIN/duet_bench bench --tp $TP --shape llama2-7b,smollm2-135m --batch 1,16,64 --ctx 1024 --prefill 2048 --steps 200 --allreduce-us ${DUET_ALLREDUCE_US:-10} --json $OUT/tp_bench.json"
echo "$cmd"
timeout 560 $cmd > "$OUT/tp_bench.md" 2> "$OUT/tp_bench.log" || { status=1; tail -n 5 "$OUT/tp_bench.log"; }
cat "$OUT/tp_bench.md"
fi

if [[ ($mode == p2p || $mode == all) ]] && ((gpus >= TP)); then
  echo "== duet bench --tp $TP --allreduce p2p (the one-shot peer-to-peer all-reduce in the graphs)"
  cmd="$BIN/duet_bench bench --tp $TP --allreduce p2p --shape llama2-7b,smollm2-135m --batch 1,16 --ctx 1024 --prefill 0 --steps 200 --json $OUT/tp_bench_p2p.json"
  echo "$cmd"
  timeout 560 $cmd > "$OUT/tp_bench_p2p.md" 2> "$OUT/tp_bench_p2p.log" || { status=1; tail -n 5 "$OUT/tp_bench_p2p.log"; }
  cat "$OUT/tp_bench_p2p.md"
fi
if [[ $mode == mpi ]]; then
  model=${DUET_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
  args=(run -m "$model" --device cuda -n 32 "The capital of France is")
  if ! command -v mpirun > /dev/null; then
    echo "no mpirun on this machine: only the threads form of the mpirun ranks (tests mode) can run here"
    status=1
  elif ((gpus < TP)); then
    echo "mpirun -np $TP needs $TP GPUs; $gpus visible"
    status=1
  else
    echo "== mpirun -np $TP duet ${args[*]} --tp $TP, against --tp 1"
    timeout 120 "$BIN/duet" "${args[@]}" > "$OUT/mpi_tp1.txt" 2> "$OUT/mpi_tp1.log" || status=1
    timeout 300 mpirun --allow-run-as-root -np "$TP" -x LD_LIBRARY_PATH -x NCCL_NVLS_ENABLE "$BIN/duet" "${args[@]}" \
      --tp "$TP" > "$OUT/mpi_tpN.txt" 2> "$OUT/mpi_tpN.log" || { status=1; tail -n 5 "$OUT/mpi_tpN.log"; }
    echo "--tp 1: $(cat "$OUT/mpi_tp1.txt")"
    echo "--tp $TP: $(cat "$OUT/mpi_tpN.txt")"
    cmp -s "$OUT/mpi_tp1.txt" "$OUT/mpi_tpN.txt" && echo "greedy text equal" || echo "greedy text DIFFERS (bf16 near-ties can flip a token; see the logs)"
  fi
fi
exit $status
