#!/bin/bash
# SmolLM2-135M (real weights) on the GPU machine, in one device call:
#   1. duet_cuda_tests (CUDA vs CPU on random models and on SmolLM2, batching, GPU scoring)
#   2. SmolLM2: CUDA vs CPU logits and greedy text, with and without LP
#   3. duet bench on the smollm2-135m shape for each committed plan (B = 1, 64)
#   4. duet eval on the full dev sets of the six tasks, baseline and plans (timed)
# The model is too big for one call's 64 MiB: earlier calls leave it (and the
# task data) in /tmp/m; docs/cuda.md has the two-call recipe (tools/gpu/stage_transfer.sh).
set -u -o pipefail
BIN=${DUET_GPU_BIN:-.gpubin}
MODEL=${DUET_MODEL:-/tmp/m/SmolLM2-135M-Instruct.Q4_1.gguf}
DATA=${DUET_DATA:-/tmp/m/data}
OUT=${OUT:-/tmp/duet_smollm2_gpu}
mkdir -p "$OUT"
cublas_dir=$(find /usr/local /opt /usr/lib -name 'libcublas.so.13*' -printf '%h\n' 2>/dev/null | head -n 1)
export LD_LIBRARY_PATH="$BIN/lib:/usr/local/cuda/lib64:${cublas_dir}:${LD_LIBRARY_PATH:-}"
status=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
sha256sum "$MODEL"

echo "== duet_cuda_tests"
DUET_SMOLLM2_GGUF="$MODEL" "$BIN/duet_cuda_tests" > "$OUT/cuda_tests.log" 2>&1 || status=1
grep -E "^\[ +(PASSED|FAILED) |Failure" "$OUT/cuda_tests.log" | head -20

echo "== SmolLM2: CUDA vs CPU"
prompts=("The capital of France is" "def fibonacci(n):" "Once upon a time, in a small village by the sea,")
i=0
for lp in "" "--lp 10:26"; do
  for p in "${prompts[@]}"; do
    for dev in cpu cuda; do
      "$BIN/duet" logits -m "$MODEL" --device $dev $lp --prompt "$p" -o "$OUT/logits_${i}_$dev.npy" 2>/dev/null || status=1
      "$BIN/duet" run -m "$MODEL" --device $dev $lp -n 24 "$p" > "$OUT/text_${i}_$dev.txt" 2>/dev/null || status=1
    done
    i=$((i + 1))
  done
done
python3 - "$OUT" "$i" <<'PY' || status=1
import sys, numpy as np
out, n = sys.argv[1], int(sys.argv[2])
worst = 0.0
for i in range(n):
    a, b = np.load(f"{out}/logits_{i}_cpu.npy"), np.load(f"{out}/logits_{i}_cuda.npy")
    rel = np.linalg.norm(a - b, axis=1) / np.linalg.norm(a, axis=1)
    top1 = (a.argmax(1) == b.argmax(1)).mean()
    same = open(f"{out}/text_{i}_cpu.txt").read() == open(f"{out}/text_{i}_cuda.txt").read()
    worst = max(worst, rel.max())
    print(f"case {i}: rows {a.shape[0]}, max row rel err {rel.max():.4f}, top-1 agreement {top1:.3f}, greedy text identical: {same}")
# The CPU keeps the exact dequantized Q4_1 weights and the GPU rounds them to bf16, so these rows carry
# weight rounding on top of the bf16 activations: 8e-2, the bound of cuda_smollm2_test (like-for-like
# weights, this model's outlier activations); measured 0.056 on the H100 and on the H200.
print(f"worst row rel err {worst:.4f} (tolerance 8e-2)")
sys.exit(0 if worst < 8e-2 else 1)
PY

echo "== duet bench: smollm2-135m shape, each plan"
for plan in plans/*.txt; do
  "$BIN/duet" bench --shape smollm2-135m --batch 1,64 --ctx 1024 --prefill 0 --lp-plan "$plan" \
    --json "$OUT/bench_$(basename "$plan" .txt).json" 2>/dev/null | tail -n 3 || status=1
done

echo "== duet eval: full dev sets"
[[ -d $DATA ]] || { echo "eval skipped: no task data at $DATA"; exit $status; }
for plan in baseline plans/smollm2_135m_searched_8.txt plans/smollm2_135m_contiguous_8.txt \
            plans/smollm2_135m_searched_4.txt plans/smollm2_135m_contiguous_4.txt; do
  name=$(basename "$plan" .txt)
  if ((SECONDS > 380)); then echo "$name: skipped (the device call's 600 s limit)"; continue; fi
  lp=(); [[ $plan != baseline ]] && lp=(--lp-plan "$plan")
  start=$(date +%s.%N)
  timeout 170 "$BIN/duet" eval -m "$MODEL" --device cuda --task all --data-dir "$DATA" "${lp[@]}" \
    > "$OUT/eval_$name.jsonl" 2> "$OUT/eval_$name.log" || status=1
  end=$(date +%s.%N)
  echo "$name: $(echo "$end - $start" | python3 -c "print(round($end - $start, 1))") s"
  grep '^{' "$OUT/eval_$name.jsonl"
done
exit $status
