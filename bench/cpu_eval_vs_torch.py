#!/usr/bin/env python3
"""`duet eval` on the CPU against PyTorch float32 (transformers) scoring the
same task items on the same cores, alternating, median of REPEATS.

PyTorch runs the same GGUF, which transformers dequantizes to float32, and
scores each (context, choice) request as the harness and duet do: encode the
context and context + choice, sum the log-probabilities of the whole's tokens
after the context's. Its requests run longest first in padded batches of
--torch-batch (right padding, attention mask), logits for every position
(transformers' usual forward); only the scoring loop is timed (the model is
loaded once, before). duet's time is the whole `duet eval` process, model
loading included, so the comparison leans against duet. Both use --threads.

The script also checks that the two score the same thing: accuracy and the
largest per-request log-likelihood difference (duet --cpu-math float32 agrees
with PyTorch to ~1e-3; int8 moves log-likelihoods by ~0.1).

Usage: .cache/venv-torchcpu/bin/python bench/cpu_eval_vs_torch.py --threads 2 [--task piqa] [--limit 100]
Needs: python3 -m venv .cache/venv-torchcpu &&
       .cache/venv-torchcpu/bin/pip install torch transformers gguf accelerate numpy
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_items(path, limit):
    items = []
    with open(path) as f:
        for line in f:
            item = json.loads(line)
            if "choices" not in item:
                raise SystemExit(f"{path}: only multiple-choice items (context, choices) are supported")
            items.append(item)
            if len(items) == limit:
                break
    return items


def tokenized_requests(tok, items):
    """(tokens, first continuation index) per request, in duet's order (item by item, choice by choice)."""
    out = []
    for item in items:
        for choice in item["choices"]:
            ctx = tok(item["context"], add_special_tokens=False).input_ids
            whole = tok(item["context"] + choice, add_special_tokens=False).input_ids
            out.append((whole, len(ctx)))
    return out


def torch_scores(model, requests, batch):
    """Log-likelihood of each request's continuation; the requests run longest first in padded batches."""
    order = sorted(range(len(requests)), key=lambda i: -len(requests[i][0]))
    out = [0.0] * len(requests)
    with torch.inference_mode():
        for b in range(0, len(order), batch):
            ids = order[b:b + batch]
            T = max(len(requests[i][0]) for i in ids)
            tokens = torch.zeros((len(ids), T), dtype=torch.long)
            mask = torch.zeros((len(ids), T), dtype=torch.long)
            for row, i in enumerate(ids):
                seq = requests[i][0]
                tokens[row, :len(seq)] = torch.tensor(seq)
                mask[row, :len(seq)] = 1
            logp = torch.log_softmax(model(input_ids=tokens, attention_mask=mask).logits.float(), dim=-1)
            for row, i in enumerate(ids):
                seq, first = requests[i]
                targets = torch.tensor(seq[first:])
                out[i] = float(logp[row, first - 1:len(seq) - 1].gather(1, targets[:, None]).sum())
    return out


def accuracy(items, scores):
    correct, k = 0, 0
    for item in items:
        n = len(item["choices"])
        correct += max(range(n), key=lambda j: scores[k + j]) == item["label"]
        k += n
    return correct / len(items)


def run_duet(args, dump):
    cmd = [os.path.join(ROOT, "build", "duet"), "eval", "-m", args.model, "-t", str(args.threads), "--task", args.task,
           "--data", args.data, "--limit", str(args.limit), "--cpu-math", args.cpu_math, "--dump", dump]
    start = time.perf_counter()
    subprocess.run(cmd, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    with open(dump) as f:
        loglik = [x for line in f for x in json.loads(line)["loglik"]]
    return seconds, loglik


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    p.add_argument("--task", default="piqa")
    p.add_argument("--data", default="", help="task JSONL (default: ../shared/data/<task>/dev.jsonl)")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--torch-batch", type=int, default=16)
    p.add_argument("--cpu-math", default="int8", choices=["int8", "float32"], help="duet's --cpu-math")
    args = p.parse_args()
    args.data = args.data or os.path.join(ROOT, "..", "shared", "data", args.task, "dev.jsonl")
    if not os.path.exists(args.data):
        args.data = os.path.join("/work/shared/data", args.task, "dev.jsonl")

    torch.set_num_threads(args.threads)
    folder, name = os.path.split(os.path.abspath(args.model))
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    items = read_items(args.data, args.limit)
    requests = tokenized_requests(tok, items)

    dump = os.path.join(tempfile.mkdtemp(), "duet.jsonl")
    duet_s, torch_s = [], []
    for _ in range(args.repeats):
        seconds, duet_loglik = run_duet(args, dump)
        duet_s.append(seconds)
        start = time.perf_counter()
        torch_loglik = torch_scores(model, requests, args.torch_batch)
        torch_s.append(time.perf_counter() - start)
    diff = max(abs(a - b) for a, b in zip(duet_loglik, torch_loglik))
    n = len(items)
    duet_rate, torch_rate = n / statistics.median(duet_s), n / statistics.median(torch_s)
    print(f"{args.task}: {n} items, {len(requests)} sequences, {args.threads} threads, median of {args.repeats}")
    print(f"{'engine':<40}{'seconds':>10}{'items/s':>10}{'acc':>8}")
    print(f"{'duet eval (' + args.cpu_math + ', with model load)':<40}{statistics.median(duet_s):>10.2f}"
          f"{duet_rate:>10.2f}{accuracy(items, duet_loglik):>8.3f}")
    print(f"{'PyTorch float32 (batch ' + str(args.torch_batch) + ', scoring only)':<40}"
          f"{statistics.median(torch_s):>10.2f}{torch_rate:>10.2f}{accuracy(items, torch_loglik):>8.3f}")
    print(f"{'duet / PyTorch (items/s)':<40}{'':>10}{duet_rate / torch_rate:>10.2f}")
    print(f"max |log-likelihood difference| per request: {diff:.4f}")


if __name__ == "__main__":
    main()
