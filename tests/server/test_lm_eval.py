"""lm-evaluation-harness `local-completions` against `duet serve` gives what
`duet eval` gives on the same items.

Usage: test_lm_eval.py [duet model options, e.g. --lp-pairs 20]

The tasks are custom YAMLs over the local JSONL files of DUET_DATA_DIR (no
hub access): context, choices with their leading space, no delimiter, as
`duet eval` scores them. lm-eval tokenizes through the server (/tokenize,
its remote tokenizer backend), sends token-id prompts in batches with
echo + logprobs, and sums the continuation's token logprobs. Checks, per
task: the same accuracy as `duet eval`, and for every choice of every item
the same log-likelihood (both sum the same float32 logprobs of the same
forward pass in double: agreement to 1e-6 nats leaves room only for the
JSON round trip, which is exact) and the same greedy flag.
"""
import json
import os
import subprocess
import sys
import tempfile

from duet_server import DATA_DIR, DUET, MODEL, DuetServer, check

TASKS = ["piqa", "arc_easy"]
LIMIT = 8
CTX = 512

YAML = """task: duet_{name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {path}
test_split: test
output_type: multiple_choice
doc_to_text: context
doc_to_choice: choices
doc_to_target: label
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


def duet_eval(model_args, dump):
    out = subprocess.run([DUET, "eval", "-m", MODEL, *model_args, "--task", ",".join(TASKS), "--limit", str(LIMIT),
                          "--data-dir", DATA_DIR, "--dump", dump], capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, OMP_WAIT_POLICY="passive"))
    check(out.returncode == 0, f"duet eval failed: {out.stderr}")
    acc = {}
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            acc[row["task"]] = row["acc"]
    items = {}
    with open(dump) as f:
        for line in f:
            row = json.loads(line)
            items[(row["task"], row["id"])] = row
    return acc, items


def main():
    model_args = sys.argv[1:]
    if not all(os.path.exists(os.path.join(DATA_DIR, t, "dev.jsonl")) for t in TASKS):
        print(f"skipped: no task data under {DATA_DIR} (set DUET_DATA_DIR)")
        return 77
    tmp = tempfile.mkdtemp(prefix="duet_lm_eval_")
    os.environ.update(HF_HOME=os.path.join(tmp, "hf"), HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1",
                      TOKENIZERS_PARALLELISM="false")
    for name in TASKS:
        with open(os.path.join(tmp, f"duet_{name}.yaml"), "w") as f:
            f.write(YAML.format(name=name, path=os.path.join(DATA_DIR, name, "dev.jsonl")))

    ref_acc, ref_items = duet_eval(model_args, os.path.join(tmp, "dump.jsonl"))

    import lm_eval
    from lm_eval.tasks import TaskManager

    with DuetServer(["--ctx", str(CTX), "--slots", "4", *model_args]) as server:
        results = lm_eval.simple_evaluate(
            model="local-completions",
            model_args=f"base_url={server.url}/v1/completions,model=SmolLM2-135M-Instruct.Q4_1,"
                       f"tokenizer_backend=remote,num_concurrent=4,batch_size=4,max_retries=1,timeout=300",
            tasks=[f"duet_{t}" for t in TASKS],
            task_manager=TaskManager(include_path=tmp, include_defaults=False),
            limit=LIMIT,
            log_samples=True,
        )
        check(server.alive(), "server crashed")

    for task in TASKS:
        acc = results["results"][f"duet_{task}"]["acc,none"]
        print(f"{task}: lm-eval through duet serve acc={acc:.4f}, duet eval acc={ref_acc[task]:.4f}")
        check(acc == ref_acc[task], f"{task}: accuracy {acc} != duet eval {ref_acc[task]}")
        samples = results["samples"][f"duet_{task}"]
        check(len(samples) == LIMIT, f"{task}: {len(samples)} samples")
        worst = 0.0
        for s in samples:
            ref = ref_items[(task, s["doc"]["id"])]
            got = [r[0] for r in s["resps"]]
            check(len(got) == len(ref["loglik"]), f"{task} {s['doc']['id']}: choice count")
            for (ll, greedy), want, want_greedy in zip(got, ref["loglik"], ref["greedy"]):
                worst = max(worst, abs(ll - want))
                check(abs(ll - want) <= 1e-6, f"{task} {s['doc']['id']}: loglik {ll} != duet eval {want}")
                check(bool(greedy) == bool(want_greedy), f"{task} {s['doc']['id']}: greedy flag")
        print(f"{task}: {LIMIT} items, largest log-likelihood difference {worst:.3g}")
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
