#!/bin/bash
# Healing SmolLM2-135M on the GPU machine (`duet heal --device cuda`), in two device calls (and the 7B
# local stage's throughput in a third), from the
# repository root. The GPU image has CUDA and PyTorch but not OpenBLAS, PCRE2, CLI11 or gtest, so the
# Release CUDA build happens here and travels as binaries (docs/cuda.md, "Running on the GPU machine"):
#
#   here:    tools/gpu/heal_on_gpu.sh stage           # Release + CUDA build (BUILD, default build-cuda),
#                                                       # binaries + the GGUF in 2 parts under .gpuxfer/
#   call 1:  carry [".gpuxfer/bin", ".gpuxfer/p1"]:   tools/gpu/heal_on_gpu.sh call1
#            (unpacks to /tmp/gpubin and /tmp/m; runs duet_cuda_tests' training tests, the tiny fixture's
#            heal through the CLI, and the throughput pair: duet's stages and bench/heal_torch_peer.py)
#   call 2:  carry [".gpuxfer/p2"], at once (the machine is released ~30 s after call 1):
#            tools/gpu/heal_on_gpu.sh call2
#            (rejoins the GGUF; heals the PLANS, local then global, the first alone and timed, the others
#            side by side; then the local stage alone for each plan; then evaluates baseline, LP and both
#            healed models of every plan, side by side; results in $OUT/heal_results.jsonl)
#   7B:      carry [".gpuxfer/bin"]: tools/gpu/heal_on_gpu.sh call7b   (~3 minutes, no model needed)
#            (duet_cuda_tests' training tests, then the local stage on random weights of SHAPE7B
#            (llama2-7b) with PAIRS7B (14:28), batch 8 x 256 tokens: duet's tokens/s and peak GPU memory,
#            the PyTorch peer's on the same shapes, and a table with the ratio last)
#
# Per plan and stage it reports tokens/s and wall time (from the heal JSON log), the data generation
# time, KL to the original on held-out generated text before/after, and `duet eval
# --device cuda` on the six tasks' full dev sets and `duet ppl` on WikiText-2 valid for baseline, LP and
# the healed models (the deci GGUFs `duet heal` writes). The training text is the model's own
# (`duet heal`'s default): no task file or WikiText-2 is read before the evaluation.
# Knobs: TOKENS (per stage, default 524288), SEQ_LEN (256), BATCH (8), LR (1e-4), BUDGET_S (call 2's
# seconds, default 560: what has not finished by then is left out of the results), LR_VARIANTS (call 2:
# "PLAN_NAME@LR ...", e.g. "smollm2_135m_searched_8@3e-4", extra local+global runs),
# SHAPE7B (llama2-7b), PAIRS7B (14:28), STEPS7B (16).
set -u -o pipefail
mode=${1:-}
BIN=${DUET_GPU_BIN:-/tmp/gpubin}
MODEL=${DUET_MODEL:-/tmp/m/SmolLM2-135M-Instruct.Q4_1.gguf}
DATA=${DUET_DATA:-/tmp/duet_heal_data}  # the dev sets and WikiText-2, staged as .gpuxfer/p2/data.tar.xz
OUT=${OUT:-/tmp/duet_heal_gpu}      # what comes back: the summary lines and heal_logs.tgz
WORK=${WORK:-/tmp/duet_heal_work}   # logs and healed models (the tool returns at most 8 files)
TOKENS=${TOKENS:-524288}
SEQ_LEN=${SEQ_LEN:-256}
BATCH=${BATCH:-8}
LR=${LR:-1e-4}
BUDGET_S=${BUDGET_S:-560}
PLANS=${PLANS:-"plans/smollm2_135m_searched_8.txt plans/smollm2_135m_searched_4.txt plans/smollm2_135m_contiguous_4.txt plans/smollm2_135m_contiguous_8.txt"}
TASKS="hellaswag piqa arc_easy arc_challenge winogrande lambada_openai"
SHAPE7B=${SHAPE7B:-llama2-7b}
PAIRS7B=${PAIRS7B:-14:28}
STEPS7B=${STEPS7B:-16}

gpu_env() {
  mkdir -p "$OUT" "$WORK"
  local cublas_dir
  cublas_dir=$(find /usr/local /opt /usr/lib -name 'libcublas.so.13*' -printf '%h\n' 2>/dev/null | head -n 1)
  export LD_LIBRARY_PATH="$BIN/lib:/usr/local/cuda/lib64:${cublas_dir}:${LD_LIBRARY_PATH:-}"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
}

# One healing run: PLAN STAGES TAG [LR]; the healed model is $WORK/healed_TAG.gguf. Prints the wall time,
# the data generation rate, and per stage its steps, losses, tokens/s and wall time (from the JSON log).
heal_plan() {
  local plan=$1 stages=$2 tag=$3 lr=${4:-$LR}
  local start end
  start=$(date +%s.%N)
  "$BIN/duet" heal -m "$MODEL" --device cuda --lp-plan "$plan" --stage "$stages" --tokens "$TOKENS" \
    --seq-len "$SEQ_LEN" --batch "$BATCH" --lr "$lr" --heldout 16 --log "$WORK/heal_$tag.jsonl" \
    -o "$WORK/healed_$tag.gguf" > "$WORK/heal_$tag.out" 2> "$WORK/heal_$tag.err"
  local rc=$?
  end=$(date +%s.%N)
  rm -f "$WORK/healed_$tag.gguf.ckpt"
  if ((rc != 0)); then
    echo "$tag: duet heal exit $rc"; tail -c 400 "$WORK/heal_$tag.err" | tr '\r' '\n' | grep -v '^ *$' | tail -n 3
    return
  fi
  python3 - "$WORK/heal_$tag.jsonl" "$tag" "$(python3 -c "print($end - $start)")" "$BATCH" "$SEQ_LEN" <<'PY' |
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
tag, total = sys.argv[2], float(sys.argv[3])
data = next(r for r in rows if r["event"] == "data")
print(json.dumps({"heal": tag, "event": "data", "generated_tokens": data["generated_tokens"],
                  "seconds": round(data["seconds"], 2)}))
for stage in ("local", "global", "lm"):
    steps = [r for r in rows if r["event"] == "step" and r["stage"] == stage]
    if not steps:
        continue
    last = steps[-1]
    # tokens_per_s is the stage's running mean (tokens so far / seconds so far): its wall time follows.
    tokens = len(steps) * int(sys.argv[4]) * int(sys.argv[5])
    print(json.dumps({"heal": tag, "stage": stage, "steps": last["steps"], "tokens": tokens,
                      "loss_first": steps[0]["loss"], "loss_last": last["loss"],
                      "tokens_per_s": round(last["tokens_per_s"]), "wall_s": round(tokens / last["tokens_per_s"], 2)}))
done = [r for r in rows if r["event"] == "done"]
if done:
    print(json.dumps({"heal": tag, "event": "done", "kl_before": done[0]["kl_before"], "kl_after": done[0]["kl_after"],
                      "tokens_trained": done[0]["tokens_trained"], "run_wall_s": round(total, 2)}))
PY
    tee "$WORK/results_heal_$tag.jsonl"
}

# duet's local and global stages on random weights of the smollm2-135m shape, then the PyTorch peer's
# local stage on the same shapes, in this call: tokens/s of each (the ratio is the issue's target).
local_peer() {
  for plan in plans/smollm2_135m_searched_4.txt plans/smollm2_135m_searched_8.txt; do
    pairs=$(grep -v '^#' "$plan" | tr -d ' \n')
    echo "== local/global stage throughput, smollm2-135m shape, pairs $pairs: duet, then PyTorch"
    DUET_HEAL_PAIRS=$pairs "$BIN/duet_cuda_tests" --gtest_also_run_disabled_tests \
      --gtest_filter='TrainCudaBench.*' 2>&1 | grep -E '^\{|FAILED|Failure' | tee -a "$WORK/heal_throughput.jsonl"
    PYTHONUNBUFFERED=1 python3 bench/heal_torch_peer.py --pairs "$pairs" --batch "$BATCH" --seq-len "$SEQ_LEN" \
      --json "$WORK/heal_throughput.jsonl" 2>&1 | tail -n 2 || echo "torch peer failed"
  done
}

# The local stage of a 7B shape (random weights): duet's throughput test, then the PyTorch peer, each under a
# timeout that keeps the call within its 10 minutes; a table of the two and their ratio last.
local_7b() {
  echo "== duet local stage, $SHAPE7B, pairs $PAIRS7B, batch $BATCH x $SEQ_LEN, $STEPS7B steps (first 4 untimed)"
  rm -f "$WORK/heal_7b.jsonl"
  DUET_HEAL_SHAPE=$SHAPE7B DUET_HEAL_PAIRS=$PAIRS7B DUET_HEAL_STAGES=local DUET_HEAL_STEPS=$STEPS7B \
    timeout 270 "$BIN/duet_cuda_tests" --gtest_also_run_disabled_tests --gtest_filter='TrainCudaBench.*' \
    > "$WORK/duet_7b.log" 2>&1
  echo "exit $?"
  grep -E '^\{' "$WORK/duet_7b.log" | tee -a "$WORK/heal_7b.jsonl"
  grep -E 'Failure|FAILED|error' "$WORK/duet_7b.log" | head -n 8
  echo "== PyTorch peer, same shapes"
  PYTHONUNBUFFERED=1 timeout 180 python3 bench/heal_torch_peer.py --shape "$SHAPE7B" --pairs "$PAIRS7B" \
    --batch "$BATCH" --seq-len "$SEQ_LEN" --steps 10 --warmup 3 --json "$WORK/heal_7b.jsonl" 2>&1 | tail -n 3
  echo "exit $?"
  python3 - "$WORK/heal_7b.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
duet = next((r for r in rows if r.get("engine") == "duet"), None)
torch = next((r for r in rows if r.get("peer") == "torch"), None)
print("| engine | shape | pairs | batch x seq | ms/step | tokens/s | peak GPU GiB |")
print("|---|---|---|---|---|---|---|")
# duet: the device's use (cudaMemGetInfo, CUDA context included); torch: its allocator's peak pool.
for name, r, peak in (("duet", duet, "peak_gib"), ("torch", torch, "peak_reserved_gib")):
    if r:
        print(f"| {name} | {r['shape']} | {r['pairs']} | {r['batch']} x {r['seq_len']} | {r['ms_per_step']:.1f} | "
              f"{r['tokens_per_s']:.0f} | {r.get(peak, float('nan')):.1f} of {r.get('gpu_gib', float('nan')):.1f} |")
if duet and torch:
    print(f"duet / torch tokens/s: {duet['tokens_per_s'] / torch['tokens_per_s']:.2f}x ({torch.get('device', '?')})")
PY
}

# Six tasks and WikiText-2 perplexity of one model: NAME, then model options. One JSON line per task and
# one for the perplexity go to $WORK/results_eval_NAME.jsonl, tagged with NAME (one file per run: the
# runs go side by side).
run_eval() {
  local name=$1
  shift
  local start=$SECONDS
  "$BIN/duet" eval --device cuda --task all --data-dir "$DATA" --batch 64 "$@" \
    > "$WORK/eval_$name.jsonl" 2> "$WORK/eval_$name.log" || { echo "eval $name failed"; tail -n 2 "$WORK/eval_$name.log"; }
  "$BIN/duet" ppl --device cuda -f "$DATA/wikitext2/valid.txt" "$@" > "$WORK/ppl_$name.out" 2> "$WORK/ppl_$name.log" ||
    { echo "ppl $name failed"; tail -n 2 "$WORK/ppl_$name.log"; }
  python3 - "$name" "$WORK/eval_$name.jsonl" "$WORK/ppl_$name.out" $((SECONDS - start)) <<'PY' > "$WORK/results_eval_$name.jsonl"
import json, sys
name = sys.argv[1]
for path in sys.argv[2:4]:
    for line in open(path):
        if line.startswith("{"):
            row = json.loads(line)
            row["model"] = name
            print(json.dumps(row))
print(json.dumps({"model": name, "event": "eval_wall_s", "seconds": int(sys.argv[4])}))
PY
}

# Runs the commands given as arguments (one shell line each) side by side, each ended at the budget.
side_by_side() {
  local left=$((BUDGET_S - SECONDS))
  ((left > 10)) || { echo "budget spent: skipped $#"; return; }
  export -f heal_plan run_eval
  export BIN MODEL DATA OUT WORK TOKENS SEQ_LEN BATCH LR
  for cmd in "$@"; do timeout "$left" bash -c "$cmd" & done
  wait
}

case $mode in
  stage)  # here; BUILD (default build-cuda) is any Release build with CUDA on
    build=${BUILD:-build-cuda}
    model=models/SmolLM2-135M-Instruct.Q4_1.gguf
    [[ -f $build/CMakeCache.txt ]] || cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DDUET_CUDA=ON \
      -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache > /dev/null || exit 1
    cmake --build "$build" -j"$(nproc)" --target duet duet_cuda_tests duet_bench || exit 1
    tools/gpu/pack_binaries.sh "$build" duet duet_cuda_tests duet_bench || exit 1
    # As tools/gpu/stage_transfer.sh: the bundle and the GGUF's first part in call 1.
    exclude=$(git rev-parse --git-path info/exclude)
    grep -qx '/.gpuxfer/' "$exclude" 2>/dev/null || echo '/.gpuxfer/' >> "$exclude"
    rm -rf .gpuxfer && mkdir -p .gpuxfer/bin .gpuxfer/p1 .gpuxfer/p2
    tar -cJf .gpuxfer/bin/gpubin.tar.xz .gpubin
    head -c 39000000 "$model" > .gpuxfer/p1/gguf.aa
    tail -c +39000001 "$model" > .gpuxfer/p2/gguf.ab
    echo "$(sha256sum < "$model" | cut -d' ' -f1)  $MODEL" > .gpuxfer/p2/gguf.sha256
    # The six tasks' full dev sets and WikiText-2's validation text, beside the GGUF's second part.
    src=${DUET_DATA_SRC:-../shared/data}
    [[ -d $src ]] || src=/work/shared/data
    tar -cJf .gpuxfer/p2/data.tar.xz -C "$src" wikitext2/valid.txt $(for t in $TASKS; do echo "$t/dev.jsonl"; done)
    du -sb .gpuxfer/*
    ;;
  call1)
    # Without .gpuxfer/p1 (one call only: no real model) the tests and the throughput pair still run.
    mkdir -p /tmp/m && { [[ ! -d .gpuxfer/p1 ]] || cp .gpuxfer/p1/gguf.aa /tmp/m/; } &&
      tar -xJf .gpuxfer/bin/gpubin.tar.xz && rm -rf "$BIN" && cp -r .gpubin "$BIN" || exit 9
    gpu_env
    echo "== duet_cuda_tests: training"
    DUET_SOURCE_DIR=$PWD "$BIN/duet_cuda_tests" --gtest_filter='TrainCuda*' 2>&1 | tee "$WORK/train_cuda_tests.log" |
      grep -E "^\[ +(OK|PASSED|FAILED) |Failure|Expected|Which is|vs|rel_err" | head -n 60
    echo "== duet heal --device cuda on the tiny fixture (CLI end to end: GPU data, local + global)"
    "$BIN/duet" heal -m tests/fixtures/tiny_arch/llama.gguf --lp-pairs 0 --device cuda --stage local,global \
      --tokens 2048 --seq-len 32 --batch 8 --lr 1e-2 --log "$WORK/heal_tiny.jsonl" -o "$WORK/tiny.gguf" 2>&1 |
      tr '\r' '\n' | grep -v '^ *$' | tail -n 6
    local_peer
    tar -czf "$OUT/heal_logs_call1.tgz" -C "$WORK" --exclude='*.gguf' --exclude='*.ckpt' . 2>/dev/null
    ;;
  call7b)
    tar -xJf .gpuxfer/bin/gpubin.tar.xz && rm -rf "$BIN" && cp -r .gpubin "$BIN" || exit 9
    gpu_env
    echo "== duet_cuda_tests: training (recomputation, partial uploads, the healer's phases)"
    DUET_SOURCE_DIR=$PWD timeout 120 "$BIN/duet_cuda_tests" --gtest_filter='TrainCuda*' 2>&1 |
      tee "$WORK/train_cuda_tests.log" | grep -E "^\[ +(OK|PASSED|FAILED) |Failure" | head -n 40
    local_7b
    tar -czf "$OUT/heal_logs_7b.tgz" -C "$WORK" --exclude='*.gguf' --exclude='*.ckpt' . 2>/dev/null
    ;;
  call2)
    cp .gpuxfer/p2/gguf.ab /tmp/m/ && cat /tmp/m/gguf.aa /tmp/m/gguf.ab > "$MODEL" &&
      sha256sum -c .gpuxfer/p2/gguf.sha256 && mkdir -p "$DATA" && tar -xJf .gpuxfer/p2/data.tar.xz -C "$DATA" || exit 9
    gpu_env
    SECONDS=0
    set -- $PLANS
    echo "== duet heal, local then global, $TOKENS tokens per stage; $(basename "$1" .txt) alone (timed)"
    heal_plan "$1" local,global "$(basename "$1" .txt)"
    shift
    echo "== the other plans side by side, then every plan's local stage alone, side by side"
    cmds=()
    for p in "$@"; do cmds+=("heal_plan $p local,global $(basename "$p" .txt)"); done
    # LR_VARIANTS: "PLAN_NAME@LR ..." healed again at another peak learning rate (tag PLAN_NAME_lrLR); the
    # held-out KL (generated text, not an eval set) says which rate to keep.
    for v in ${LR_VARIANTS:-}; do cmds+=("heal_plan plans/${v%@*}.txt local,global ${v%@*}_lr${v#*@} ${v#*@}"); done
    side_by_side "${cmds[@]}"
    cmds=()
    for p in $PLANS; do cmds+=("heal_plan $p local $(basename "$p" .txt)_local"); done
    side_by_side "${cmds[@]}"
    echo "== eval (six full dev sets, WikiText-2 valid): baseline, each plan unhealed, healed local, healed local+global"
    cmds=("run_eval baseline -m $MODEL")
    for p in $PLANS; do
      n=$(basename "$p" .txt)
      cmds+=("run_eval $n -m $MODEL --lp-plan $p")
      for h in "${n}_local" "$n"; do [[ -f $WORK/healed_$h.gguf ]] && cmds+=("run_eval healed_$h -m $WORK/healed_$h.gguf"); done
    done
    for v in ${LR_VARIANTS:-}; do
      h=${v%@*}_lr${v#*@}
      [[ -f $WORK/healed_$h.gguf ]] && cmds+=("run_eval healed_$h -m $WORK/healed_$h.gguf")
    done
    side_by_side "${cmds[@]}"
    cat "$WORK"/results_*.jsonl > "$OUT/heal_results.jsonl"
    tar -czf "$OUT/heal_logs.tgz" -C "$WORK" --exclude='*.gguf' --exclude='*.ckpt' . 2>/dev/null
    python3 tools/gpu/heal_table.py "$OUT/heal_results.jsonl" | tee "$OUT/heal_table.md"
    ;;
  *)
    sed -n 2,28p "$0"
    exit 2
    ;;
esac
