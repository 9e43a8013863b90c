#!/usr/bin/env python3
"""duet export -> stock llama.cpp: exported deci GGUF files must run in llama.cpp
(llama-cpp-python 0.3.36, installed by tools/setup_llamacpp.sh) and give duet's
logits of the in-memory LP model.

Cases (each: `duet export`, llama.cpp's logits of every prompt position on the
exported file, `duet logits` of the source model with the same plan applied at
load time, same token ids):
  tiny llama  (tests/fixtures/tiny_arch/llama.gguf: GQA, Llama-3 rope_freqs, untied)
              baseline and LP pair 0 (its 2 layers become one wide layer), F32 and F16
  tiny qwen2  (QKV biases in a wide layer, half-split RoPE rows permuted, tied)
              baseline and LP pair 0, F32
  SmolLM2-135M (models/SmolLM2-135M-Instruct.Q4_1.gguf, dequantized): baseline and
              plans/smollm2_135m_searched_4.txt (4 wide layers among narrow ones), F32

Tolerances (max |logit difference|), each with its reason:
  F32: both sides compute in float32 on the same float32 weights (llama.cpp with an
       F32 KV cache and no flash attention), differing in summation order and RoPE
       angle arithmetic. Measured: tiny models <= 2.7e-6 (logits ~4), SmolLM2 5.7e-5
       baseline and 6.3e-5 with the 4-pair plan (logits up to ~27). Limits 1e-4
       (tiny) and 1e-3 (SmolLM2) leave >10x headroom; an error moves logits far more
       (measured: exporting qwen2 without permuting its Q/K rows gives 1.95 and
       top-1 agreement 0.29).
  F16: the file holds weights rounded to f16 while duet's reference is float32.
       Measured 5.3e-3 on the tiny llama (logits ~4); limit 5e-2.
Top-1 must agree at every position where duet's best logit leads its second by
more than the tolerance (exact near-ties may flip).
Time: ~13 s of CPU (two 540 MB F32 exports of SmolLM2 dominate).

Run: python3 tests/llamacpp_export_test.py --duet build/duet   (CTest: llamacpp_export)
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_PYTHON = os.path.join(ROOT, ".cache", "venv-llamacpp", "bin", "python")

# The test needs llama-cpp-python; re-run inside the venv that setup installed it into.
if os.path.realpath(sys.prefix) != os.path.realpath(os.path.join(ROOT, ".cache", "venv-llamacpp")):
    if not os.path.exists(VENV_PYTHON):
        sys.exit(f"llamacpp_export_test: {VENV_PYTHON} is missing: run tools/setup_llamacpp.sh")
    os.execv(VENV_PYTHON, [VENV_PYTHON] + sys.argv)

import numpy as np  # noqa: E402
from llama_cpp import Llama, __version__ as llama_cpp_version  # noqa: E402

TINY_PROMPT = "Hello, world! The quick brown fox."
SMOLLM2_PROMPT = ("<|im_start|>user\nWhat is the capital of France? Answer in one word.<|im_end|>\n"
                  "<|im_start|>assistant\nThe capital of France is")

F32_TOL_TINY = 1e-4
F32_TOL_SMOLLM2 = 1e-3
F16_TOL_TINY = 5e-2


def run(cmd):
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"FAILED: {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def llama_cpp_logits(path, prompt, tokens):
    """llama.cpp's logits [T, V] of every prompt position; its tokens must be duet's."""
    # type_k/type_v 0 = GGML_TYPE_F32: float32 KV cache, as duet's CPU path keeps.
    llm = Llama(model_path=path, n_ctx=max(64, len(tokens)), n_threads=2, logits_all=True, verbose=False,
                seed=0, type_k=0, type_v=0, flash_attn=False)
    ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
    if ids != tokens:
        raise SystemExit(f"FAILED: llama.cpp tokenizes the prompt of {path} as {ids}, duet as {tokens}")
    llm.eval(tokens)
    return np.array(llm.scores[: len(tokens)], dtype=np.float32)


def check_case(duet, name, source, plan_args, export_type, prompt, tol, workdir):
    out = os.path.join(workdir, f"{name}.gguf")
    summary = run([duet, "export", "-m", source, *plan_args, "--type", export_type, "-o", out]).strip()
    tokens = json.loads(run([duet, "tokenize", "-m", out, "--text", prompt]))
    npy = os.path.join(workdir, f"{name}.npy")
    # float32: the reference arithmetic (the default int8 rounds activations as llama.cpp does on Q4_1).
    run([duet, "logits", "-m", source, *plan_args, "--cpu-math", "float32", "--prompt", prompt, "-o", npy])
    ours = np.load(npy)
    theirs = llama_cpp_logits(out, prompt, tokens)
    if ours.shape != theirs.shape:
        raise SystemExit(f"FAILED {name}: duet logits {ours.shape}, llama.cpp {theirs.shape}")
    diff = float(np.max(np.abs(ours - theirs)))
    top2 = np.sort(ours, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > tol  # positions whose top-1 is not an exact near-tie
    agree = np.argmax(ours, axis=1) == np.argmax(theirs, axis=1)
    ok = diff <= tol and bool(np.all(agree[clear]))
    print(f"{'ok  ' if ok else 'FAIL'} {name:24s} {export_type:4s} T={len(tokens):3d} max|diff| {diff:.2e} (limit {tol:.0e})"
          f"  top-1 agreement {agree.mean():.3f}  [{summary}]")
    return ok


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--duet", default=os.path.join(ROOT, "build", "duet"))
    args = parser.parse_args()
    start = time.time()
    print(f"llama-cpp-python {llama_cpp_version}")
    tiny = os.path.join(ROOT, "tests", "fixtures", "tiny_arch")
    smollm2 = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
    plan4 = os.path.join(ROOT, "plans", "smollm2_135m_searched_4.txt")
    cases = [
        ("tiny_llama_base", f"{tiny}/llama.gguf", [], "f32", TINY_PROMPT, F32_TOL_TINY),
        ("tiny_llama_lp0", f"{tiny}/llama.gguf", ["--lp-pairs", "0"], "f32", TINY_PROMPT, F32_TOL_TINY),
        ("tiny_llama_lp0_f16", f"{tiny}/llama.gguf", ["--lp-pairs", "0"], "f16", TINY_PROMPT, F16_TOL_TINY),
        ("tiny_qwen2_base", f"{tiny}/qwen2.gguf", [], "f32", TINY_PROMPT, F32_TOL_TINY),
        ("tiny_qwen2_lp0", f"{tiny}/qwen2.gguf", ["--lp-pairs", "0"], "f32", TINY_PROMPT, F32_TOL_TINY),
        ("smollm2_base", smollm2, [], "f32", SMOLLM2_PROMPT, F32_TOL_SMOLLM2),
        ("smollm2_searched_4", smollm2, ["--lp-plan", plan4], "f32", SMOLLM2_PROMPT, F32_TOL_SMOLLM2),
    ]
    if not os.path.exists(smollm2):
        raise SystemExit(f"FAILED: {smollm2} is missing: run tools/setup.sh")
    failed = 0
    with tempfile.TemporaryDirectory(prefix="duet_llamacpp_export_") as workdir:
        for case in cases:
            failed += not check_case(args.duet, *case, workdir)
    print(f"{len(cases) - failed}/{len(cases)} cases passed in {time.time() - start:.1f} s")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
