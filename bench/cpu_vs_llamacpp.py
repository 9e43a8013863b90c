#!/usr/bin/env python3
"""CPU speed, side by side in one run: duet vs llama.cpp (llama-cpp-python) on
the same GGUF, the same prompt tokens and the same thread count.

Prefill = one batch of the whole prompt; decode = one token per step, greedy.
Each engine runs REPEATS times alternately; the table shows the medians.
Both compute only the logits they use (llama.cpp: logits_all=False, the last
row read from the context; duet: LogitsMode::Last) with the same threads for
prompt and decode. duet runs with --cpu-math int8 (llama.cpp's arithmetic on
quantized weights) unless --cpu-math float32 is given.

Usage: python3 bench/cpu_vs_llamacpp.py [--threads 2] [--decode 64] [--repeats 5] [--cpu-math int8]
Needs: llama-cpp-python 0.3.36 compiled for this CPU (tools/setup_llamacpp.sh:
.cache/venv-llamacpp/bin/python bench/cpu_vs_llamacpp.py ...).
"""
import argparse
import os
import re
import statistics
import subprocess
import time

import numpy as np
from llama_cpp import Llama

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT = ("The history of the lighthouse begins in the ancient world, when fires were lit on hilltops to guide "
          "ships along dangerous coasts. Over the centuries these signals became towers of stone, and the open "
          "flames gave way to oil lamps, mirrors and finally the great glass lenses that could throw a beam of "
          "light more than twenty miles out to sea. Keepers lived beside them, tending the lamps through the "
          "night and recording the weather, the passing ships and every storm that struck the coast.")


def run_duet(args):
    cmd = [os.path.join(ROOT, "build", "duet"), "run", "-m", args.model, "-t", str(args.threads), "-n",
           str(args.decode), "--stats", "--ctx", "1024", "--cpu-math", args.cpu_math] + (["--lp", args.lp] if args.lp else []) + [PROMPT]
    err = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
    m = re.search(r"prompt (\d+) tokens, prefill ([\d.]+) tok/s, decode ([\d.]+) tok/s", err)
    return int(m.group(1)), float(m.group(2)), float(m.group(3))


def last_logits(llm):
    """The last evaluated row (with logits_all=False llama.cpp computes only that one)."""
    return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))


def run_llama(llm, args):
    tokens = llm.tokenize(PROMPT.encode(), add_bos=False, special=True)
    llm.reset()
    start = time.perf_counter()
    llm.eval(tokens)
    prefill = len(tokens) / (time.perf_counter() - start)
    token = int(last_logits(llm).argmax())
    start = time.perf_counter()
    for _ in range(args.decode - 1):  # the first token comes from the prefill, as in duet
        llm.eval([token])
        token = int(last_logits(llm).argmax())
    decode = (args.decode - 1) / (time.perf_counter() - start)
    return len(tokens), prefill, decode


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--decode", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--cpu-math", default="int8", choices=["int8", "float32"], help="duet's --cpu-math")
    p.add_argument("--lp", default="", help="also pass this LP range to duet")
    args = p.parse_args()
    llm = Llama(model_path=args.model, n_ctx=1024, n_threads=args.threads, n_threads_batch=args.threads,
                n_batch=512, logits_all=False, verbose=False)
    duet, llama = [], []
    for _ in range(args.repeats):
        duet.append(run_duet(args))
        llama.append(run_llama(llm, args))
    med = lambda rows, i: statistics.median(r[i] for r in rows)
    print(f"prompt {duet[0][0]} tokens (llama.cpp {llama[0][0]}), decode {args.decode} tokens, "
          f"{args.threads} threads, median of {args.repeats}")
    print(f"{'engine':<28}{'prefill tok/s':>15}{'decode tok/s':>15}")
    name = f"duet ({args.cpu_math})" + (f" --lp {args.lp}" if args.lp else "")
    print(f"{name:<28}{med(duet, 1):>15.1f}{med(duet, 2):>15.1f}")
    print(f"{'llama.cpp (Q4_1 x q8)':<28}{med(llama, 1):>15.1f}{med(llama, 2):>15.1f}")
    print(f"{'duet / llama.cpp':<28}{med(duet, 1) / med(llama, 1):>15.2f}{med(duet, 2) / med(llama, 2):>15.2f}")


if __name__ == "__main__":
    main()
