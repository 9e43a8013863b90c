#!/usr/bin/env python3
"""Reference logits and greedy tokens for SmolLM2 from llama.cpp (llama-cpp-python).

llama.cpp runs an F32 copy of the Q4_1 checkpoint (tools/ref/gguf_to_f32.py:
the same dequantized weights duet uses) with an F32 KV cache, so both sides
compute in float32 and the comparison is tight. On the Q4_1 file itself
llama.cpp quantizes activations to 8 bits and its logits move by up to ~1.3.

Writes tests/fixtures/logits/smollm2.json (tokens, per-position argmax, greedy
continuations) and smollm2_logits.npy: float32 [positions, V/STRIDE + TOPK]
holding, for every prompt position, the logits of every STRIDE-th vocab id
followed by the logits of llama.cpp's top-TOPK ids (listed in the JSON).

Regenerate:  pip install llama-cpp-python==0.3.36 numpy
             python3 tools/ref/make_logits_fixture.py [models/SmolLM2-135M-Instruct.Q4_1.gguf]
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from llama_cpp import Llama, __version__ as llama_cpp_version

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "tests", "fixtures", "logits")
STRIDE = 64
TOPK = 8
GREEDY = 16

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "<|im_start|>user\nWhat is 12 times 7?<|im_end|>\n<|im_start|>assistant\n",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
]


def main():
    f32_model = os.path.join(tempfile.mkdtemp(), "model_f32.gguf")
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "ref", "gguf_to_f32.py"), MODEL, f32_model], check=True)
    # type_k/type_v 0 = GGML_TYPE_F32: keep the KV cache in float32 too.
    llm = Llama(model_path=f32_model, n_ctx=512, n_threads=2, logits_all=True, verbose=False, seed=0,
                type_k=0, type_v=0, flash_attn=False)
    cases, rows = [], []
    for prompt in PROMPTS:
        tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        llm.reset()
        llm.eval(tokens)
        logits = np.array(llm.scores[: len(tokens)], dtype=np.float32)  # [T, V]
        top = np.argsort(-logits, axis=1)[:, :TOPK]
        for t in range(len(tokens)):
            rows.append(np.concatenate([logits[t, ::STRIDE], logits[t, top[t]]]))
        # Greedy continuation, one token at a time on the same cache.
        greedy, last = [], int(np.argmax(logits[-1]))
        for _ in range(GREEDY):
            greedy.append(last)
            llm.eval([last])
            last = int(np.argmax(np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)))
        cases.append({
            "prompt": prompt,
            "tokens": tokens,
            "argmax": [int(i) for i in np.argmax(logits, axis=1)],
            "top_ids": top.tolist(),
            "greedy": greedy,
        })
    meta = {
        "reference": f"llama-cpp-python {llama_cpp_version} on an F32 copy of the model, F32 KV cache, "
                     "add_bos=False, special=True",
        "model": os.path.basename(MODEL),
        "vocab_size": llm.n_vocab(),
        "stride": STRIDE,
        "topk": TOPK,
        "cases": cases,
    }
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "smollm2.json"), "w") as f:
        json.dump(meta, f, indent=1)
    np.save(os.path.join(OUT, "smollm2_logits.npy"), np.stack(rows).astype(np.float32))
    print(f"wrote {len(cases)} prompts, {len(rows)} positions to {OUT}")


if __name__ == "__main__":
    main()
