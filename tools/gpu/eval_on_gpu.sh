#!/bin/bash
# Full-dev-set accuracy and the LP speed/accuracy report for SmolLM2-135M on the
# GPU machine (the `device` tool), from the repository root. docs/eval.md.
#
#   tools/gpu/eval_on_gpu.sh eval     the six tasks, full dev sets, baseline + plans/*.txt (timed)
#   tools/gpu/eval_on_gpu.sh report   duet report --device cuda (search + speed + accuracy + plot)
#   tools/gpu/eval_on_gpu.sh all      both
#
# Needs a CUDA build of `duet` in $DUET_GPU_BIN (default .gpubin, with its
# non-CUDA shared libraries in .gpubin/lib as tools/gpu/pack_binaries.sh lays
# them out: add `duet` to the binaries it copies) and the task data in
# $DUET_DATA (default ../shared/data; carry it or a copy). Logs, JSON and the
# report go to $OUT (the device tool's return folder) or /tmp/duet_eval_gpu.
# The GPU image may lack gnuplot: the report then stops after writing
# report.md, plot.dat and plot.gp; render locally with `gnuplot plot.gp`.
set -u -o pipefail
mode=${1:-all}
BIN=${DUET_GPU_BIN:-.gpubin}
DATA=${DUET_DATA:-../shared/data}
MODEL=${DUET_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
OUT=${OUT:-/tmp/duet_eval_gpu}
BATCH=${DUET_EVAL_BATCH:-64}
mkdir -p "$OUT"
cublas_dir=$(find /usr/local /opt /usr/lib -name 'libcublas.so.13*' -printf '%h\n' 2>/dev/null | head -n 1)
export LD_LIBRARY_PATH="$BIN/lib:/usr/local/cuda/lib64:${cublas_dir}:${LD_LIBRARY_PATH:-}"
status=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

run_eval() {  # name, then LP options
  local name=$1
  shift
  echo "== eval $name $*"
  local start=$(date +%s.%N)
  "$BIN/duet" eval -m "$MODEL" --device cuda --task all --data-dir "$DATA" --batch "$BATCH" "$@" \
    --dump "$OUT/eval_$name.dump.jsonl" > "$OUT/eval_$name.jsonl" 2> "$OUT/eval_$name.log" || status=1
  local end=$(date +%s.%N)
  grep '^{' "$OUT/eval_$name.jsonl"
  echo "{\"plan\": \"$name\", \"seconds\": $(echo "$end - $start" | bc)}" | tee -a "$OUT/eval_times.jsonl"
}

if [[ $mode == eval || $mode == all ]]; then
  run_eval baseline
  for plan in plans/*.txt; do
    [[ -e $plan ]] && run_eval "$(basename "$plan" .txt)" --lp-plan "$plan"
  done
fi

if [[ $mode == report || $mode == all ]]; then
  cmd="$BIN/duet report -m $MODEL --device cuda --data-dir $DATA --limit 0 --pairs 2,4,6,8,10 \
--windows 16 --window 256 --objective kl --beam 2 --ppl-tokens 65536 --speed-prompt 512 --speed-decode 128 \
--log $OUT/search_log.jsonl --out $OUT/report"
  echo "== $cmd"
  $cmd > "$OUT/report.jsonl" 2> "$OUT/report.log" || status=1
  cat "$OUT/report.jsonl"
  tail -n 3 "$OUT/report.log"
fi
exit $status
