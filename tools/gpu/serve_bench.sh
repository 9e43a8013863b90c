#!/bin/bash
# duet serve on the GPU under load (bench/serve_load.py), beside duet bench's
# batched decode rate for the same shape and batch (issue 23's targets: the
# server's output tokens/s at concurrency 64 >= 85% of that rate; TTFT at
# concurrency 1 < 20 ms for SmolLM2 with a 512-token prompt).
#
#   tools/gpu/serve_bench.sh pack   here: CUDA build of duet (which has `duet bench`), packed into .gpubin/
#   tools/gpu/serve_bench.sh        on the GPU machine (device tool), from the repository root
#
# The model does not fit one device call's 64 MiB: as for smollm2_on_gpu.sh
# (docs/cuda.md), an earlier call leaves it in /tmp/m. Results: $OUT.
set -u -o pipefail
if [[ ${1:-run} == pack ]]; then
  export PATH="$PATH:/usr/local/cuda/bin"
  cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
    -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache -DDUET_NATIVE=OFF >/dev/null
  cmake --build build-cuda -j"$(nproc)" --target duet
  exec bash tools/gpu/pack_binaries.sh build-cuda duet
fi

BIN=${DUET_GPU_BIN:-.gpubin}
MODEL=${DUET_MODEL:-/tmp/m/SmolLM2-135M-Instruct.Q4_1.gguf}
LP=${DUET_SERVE_LP:-10:26}
OUT=${OUT:-/tmp/duet_serve_gpu}
mkdir -p "$OUT"
cublas_dir=$(find /usr/local /opt /usr/lib -name 'libcublas.so.13*' -printf '%h\n' 2>/dev/null | head -n 1)
export LD_LIBRARY_PATH="$BIN/lib:/usr/local/cuda/lib64:${cublas_dir}:${LD_LIBRARY_PATH:-}"
export PYTHONUNBUFFERED=1
status=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

echo "== duet bench: batched decode rate of the same model (B = 1, 64; ctx 1024)"
"$BIN/duet" bench -m "$MODEL" --batch 1,64 --lp "$LP" --ctx 1024 --prefill 512 --steps 300 \
  --json "$OUT/duet_bench.json" > "$OUT/duet_bench.md" 2> "$OUT/duet_bench.log" || status=1
cat "$OUT/duet_bench.md"

echo "== TTFT at concurrency 1, 512-token prompt (~420 words), 16 output tokens"
python3 bench/serve_load.py --duet "$BIN/duet" -m "$MODEL" --device cuda --slots 64 --ctx 1024 --lp "$LP" \
  --concurrency 1 --requests 50 --prompt-words 420 --max-tokens 16 --json "$OUT/serve_ttft.json" \
  | tee "$OUT/serve_ttft.md" || status=1

echo "== throughput at concurrency 1, 8, 32, 64 (100-word prompt, 256 output tokens)"
python3 bench/serve_load.py --duet "$BIN/duet" -m "$MODEL" --device cuda --slots 64 --ctx 1024 --lp "$LP" \
  --concurrency 1,8,32,64 --prompt-words 100 --max-tokens 256 --json "$OUT/serve_load.json" \
  | tee "$OUT/serve_load.md" || status=1
exit $status
