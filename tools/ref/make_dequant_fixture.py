#!/usr/bin/env python3
"""Dequantization fixtures from gguf-py, the reference outside duet.

For each type this writes tests/fixtures/dequant/<type>.bin (raw ggml blocks) and
<type>.f32 (float32 little-endian, what gguf.quants.dequantize returns for them);
tests/io_dequant_test.cpp decodes the .bin with duet and compares.

Q8_0, Q4_0 and Q4_1 blocks come from gguf.quants.quantize on random rows (with
a zero block and outliers mixed in). gguf-py does not implement quantize for
Q4_K and Q6_K, so their blocks are random bytes made valid: every byte pattern
is a valid K-quant block once the fp16 scales (d, dmin) are finite, so only those
fields are set explicitly.

Usage: pip install gguf numpy; python3 tools/ref/make_dequant_fixture.py
"""
import pathlib

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

OUT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "dequant"
ROWS = 4        # 4 rows x 256 elements per type keeps the fixtures at ~25 KB in all
ROW_ELEMS = 256


def quantized_rows(rng, qtype):
    x = rng.standard_normal((ROWS, ROW_ELEMS)).astype(np.float32)
    x[0, :32] = 0.0                 # an all-zero block (d = 0)
    x[1, 40] = 50.0                 # an outlier that sets its block's scale
    x[2] *= 1e-3                    # small scales near fp16's subnormal range
    x[3] += 3.0                     # an offset block, so Q4_1's m is non-trivial
    return quants.quantize(x, qtype)


def k_quant_blocks(rng, qtype, d_offsets):
    """Random bytes with finite fp16 scales written at the byte offsets given."""
    block_bytes = quants.GGML_QUANT_SIZES[qtype][1]
    n_blocks = ROWS * ROW_ELEMS // quants.GGML_QUANT_SIZES[qtype][0]
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    for off in d_offsets:
        scale = (rng.standard_normal(n_blocks) * 0.01).astype(np.float16)
        raw[:, off:off + 2] = scale.view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(ROWS, -1)


def float_rows(rng, qtype):
    x = rng.standard_normal((ROWS, ROW_ELEMS)).astype(np.float32) * 10
    x[0, :8] = [0.0, -0.0, 65504.0, -65504.0, 6e-8, -6e-8, 1e-5, np.inf]  # fp16 edge values
    if qtype == T.F16:
        return x.astype(np.float16).view(np.uint8)
    bits = x.view(np.uint32) >> 16  # bf16 by truncation: any bit pattern is a valid input
    return bits.astype(np.uint16).view(np.uint8)


def main():
    rng = np.random.default_rng(20240611)
    cases = {
        "f16": float_rows(rng, T.F16),
        "bf16": float_rows(rng, T.BF16),
        "q8_0": quantized_rows(rng, T.Q8_0),
        "q4_0": quantized_rows(rng, T.Q4_0),
        "q4_1": quantized_rows(rng, T.Q4_1),
        "q4_k": k_quant_blocks(rng, T.Q4_K, d_offsets=[0, 2]),   # d, dmin
        "q6_k": k_quant_blocks(rng, T.Q6_K, d_offsets=[208]),    # d (last field)
    }
    OUT.mkdir(parents=True, exist_ok=True)
    for name, raw in cases.items():
        qtype = T[name.upper()]
        expected = quants.dequantize(raw, qtype).astype(np.float32)
        assert expected.shape == (ROWS, ROW_ELEMS), (name, expected.shape)
        (OUT / f"{name}.bin").write_bytes(np.ascontiguousarray(raw).tobytes())
        (OUT / f"{name}.f32").write_bytes(expected.astype("<f4").tobytes())
        print(f"{name}: {raw.nbytes} bytes -> {expected.size} floats")


if __name__ == "__main__":
    main()
