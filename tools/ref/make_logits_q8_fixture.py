#!/usr/bin/env python3
"""llama.cpp's own int8 arithmetic on SmolLM2 Q4_1: the reference for duet's
`--cpu-math int8` path (CpuArithmetic::kInt8).

llama.cpp runs the Q4_1 file itself, so it rounds activations to 8 bits per
32 values (Q8_1) and multiplies with integer dot products, as duet's kInt8
does. For the prompts of tests/fixtures/logits/smollm2.json (written by
make_logits_fixture.py, the float32 reference) it writes
smollm2_q8_logits.npy with the same rows and columns as smollm2_logits.npy
(every STRIDE-th vocab id, then the float32 reference's top ids), and
smollm2_q8.json: per-position argmax and the greedy continuation.

Regenerate:  pip install llama-cpp-python==0.3.36 numpy
             python3 tools/ref/make_logits_q8_fixture.py [models/SmolLM2-135M-Instruct.Q4_1.gguf]
"""
import json
import os
import sys

import numpy as np
from llama_cpp import Llama, __version__ as llama_cpp_version

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "tests", "fixtures", "logits")


def main():
    with open(os.path.join(OUT, "smollm2.json")) as f:
        ref = json.load(f)
    stride = ref["stride"]
    # type_k/type_v 0 = GGML_TYPE_F32: only the matmuls differ from the float32 reference.
    llm = Llama(model_path=MODEL, n_ctx=512, n_threads=2, logits_all=True, verbose=False, seed=0,
                type_k=0, type_v=0, flash_attn=False)
    cases, rows = [], []
    for case in ref["cases"]:
        tokens = case["tokens"]
        llm.reset()
        llm.eval(tokens)
        logits = np.array(llm.scores[: len(tokens)], dtype=np.float32)  # [T, V]
        for t in range(len(tokens)):
            rows.append(np.concatenate([logits[t, ::stride], logits[t, case["top_ids"][t]]]))
        greedy, last = [], int(np.argmax(logits[-1]))
        for _ in range(len(case["greedy"])):
            greedy.append(last)
            llm.eval([last])
            last = int(np.argmax(np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)))
        cases.append({"argmax": [int(i) for i in np.argmax(logits, axis=1)], "greedy": greedy})
    meta = {
        "reference": f"llama-cpp-python {llama_cpp_version} on {os.path.basename(MODEL)} itself (Q4_1 x Q8_1 "
                     "integer dot products), F32 KV cache, the tokens of smollm2.json",
        "cases": cases,
    }
    with open(os.path.join(OUT, "smollm2_q8.json"), "w") as f:
        json.dump(meta, f, indent=1)
    np.save(os.path.join(OUT, "smollm2_q8_logits.npy"), np.stack(rows).astype(np.float32))
    print(f"wrote {len(cases)} prompts, {len(rows)} positions to {OUT}")


if __name__ == "__main__":
    main()
