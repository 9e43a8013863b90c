#!/usr/bin/env python3
"""Independent check of `duet eval`: scores the same task items with llama.cpp
(llama-cpp-python) and compares per-item log-likelihoods and predictions with
the JSONL that `duet eval --dump` wrote.

llama.cpp tokenizes with its own tokenizer and runs its own forward pass; only
the scoring convention is shared (../shared/data/README.md): encode context and
context + continuation, score the whole's tokens after the context's tokens,
log-softmax in float64. Use an F32 copy of the GGUF (tools/ref: see --make-f32)
and an f32 KV cache so that differences are the two engines' rounding only.

  duet eval -m M --cpu-math float32 --task piqa,arc_easy,winogrande --limit 50 --dump /tmp/duet.jsonl
  python3 tools/ref/eval_reference.py --model /tmp/smol_f32.gguf --dump /tmp/duet.jsonl
"""
import argparse
import json
import os
import sys

import numpy as np

DATA_FILES = {
    "hellaswag": "hellaswag/dev.jsonl", "piqa": "piqa/dev.jsonl", "arc_easy": "arc_easy/dev.jsonl",
    "arc_challenge": "arc_challenge/dev.jsonl", "winogrande": "winogrande/dev.jsonl",
    "lambada_openai": "lambada_openai/dev.jsonl", "openbookqa": "openbookqa/dev.jsonl",
    "boolq": "boolq/dev.jsonl", "mmlu": "mmlu/dev.jsonl",
}


def make_f32(src, dst):
    """Dequantizes every tensor of a GGUF to F32 (same metadata): tools/ref/gguf_to_f32.py."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import gguf_to_f32
    gguf_to_f32.main(src, dst)


def requests(task, item):
    """(context, continuation) pairs in duet's request order, and the gold index."""
    if "contexts" in item:
        return [(c, item["continuation"]) for c in item["contexts"]], item["label"]
    if "target" in item:
        return [(item["context"], item["target"])], 0
    return [(item["context"], ch) for ch in item["choices"]], item["label"]


def score(llm, context, continuation):
    tok = lambda s: llm.tokenize(s.encode("utf-8"), add_bos=False, special=False)
    ctx, whole = tok(context), tok(context + continuation)
    n_ctx = len(ctx)
    llm.reset()
    llm.eval(whole)
    logits = np.asarray(llm.scores[: len(whole)], dtype=np.float64)
    logp = logits - logits.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    ll, greedy = 0.0, True
    for t in range(n_ctx, len(whole)):  # row t-1 predicts token t
        ll += logp[t - 1, whole[t]]
        greedy &= int(np.argmax(logits[t - 1])) == whole[t]
    return ll, greedy, len(whole) - n_ctx


def chars(choice):
    return max(len(choice) - (1 if choice.startswith(" ") else 0), 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="GGUF (ideally F32) for llama.cpp")
    ap.add_argument("--make-f32", metavar="SRC", help="first write an F32 copy of SRC to --model")
    ap.add_argument("--dump", required=True, help="JSONL from duet eval --dump")
    ap.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "../../../shared/data"))
    ap.add_argument("--out", help="write the per-item comparison as JSONL")
    args = ap.parse_args()
    if args.make_f32 and not os.path.exists(args.model):
        make_f32(args.make_f32, args.model)

    from llama_cpp import Llama
    llm = Llama(model_path=args.model, n_ctx=2048, n_batch=2048, logits_all=True, type_k=0, type_v=0,
                verbose=False, n_threads=os.cpu_count())
    duet = [json.loads(l) for l in open(args.dump) if l.strip()]
    by_task = {}
    for rec in duet:
        by_task.setdefault(rec["task"], []).append(rec)
    out = open(args.out, "w") if args.out else None
    worst = 0.0
    for task, recs in by_task.items():
        items = {}
        with open(os.path.join(args.data_dir, DATA_FILES[task])) as f:
            for line in f:
                if line.strip():
                    it = json.loads(line)
                    items[it["id"]] = it
        n = agree = agree_norm = ref_correct = duet_correct = ntok_mismatch = 0
        max_diff = 0.0
        for rec in recs:
            reqs, label = requests(task, items[rec["id"]])
            res = [score(llm, c, k) for c, k in reqs]
            ll = [r[0] for r in res]
            diff = max(abs(a - b) for a, b in zip(ll, rec["loglik"]))
            max_diff = max(max_diff, diff)
            ntok_mismatch += any(r[2] != d for r, d in zip(res, rec["n_tokens"]))
            if task == "lambada_openai":
                ref_pred, ref_norm = int(res[0][1]), int(res[0][1])
                duet_pred, duet_norm = int(rec["greedy"][0]), int(rec["greedy"][0])
                ref_correct += ref_pred
                duet_correct += duet_pred
            else:
                ref_pred = int(np.argmax(ll))
                ref_norm = int(np.argmax([l / chars(k) for l, (_, k) in zip(ll, reqs)]))
                duet_pred, duet_norm = rec["pred"], rec["pred_norm"]
                ref_correct += ref_pred == label
                duet_correct += duet_pred == label
            agree += ref_pred == duet_pred
            agree_norm += ref_norm == duet_norm
            n += 1
            if out:
                out.write(json.dumps({"task": task, "id": rec["id"], "ref_loglik": ll, "duet_loglik": rec["loglik"],
                                      "max_abs_diff": diff}) + "\n")
        worst = max(worst, max_diff)
        print(json.dumps({"task": task, "n": n, "pred_agree": agree / n, "pred_norm_agree": agree_norm / n,
                          "ref_acc": ref_correct / n, "duet_acc": duet_correct / n,
                          "max_abs_loglik_diff": max_diff, "token_count_mismatches": ntok_mismatch}))
    print(json.dumps({"max_abs_loglik_diff_all": worst}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
