#!/usr/bin/env python3
"""PyTorch peer of `duet heal`'s local stage: the same step, same shapes, on the same GPU.

One optimizer step of the local stage, as duet runs it (src/train/heal.h): the frozen original model
(random bf16 weights of a bench shape: --shape, as `duet bench`'s and the DUET_HEAL_SHAPE of duet's
throughput test) runs B sequences of T tokens up to the highest pair boundary (only the layers below it
exist on the GPU, as in duet's local stage), keeping the hidden states entering layer i and leaving layer i+1 of every LP pair; each wide
layer (2H heads, 2Hkv KV heads, 2F FFN, folded norms: the pair merged as duet merges it) maps the first
to the second under autocast bf16 (fp32 master weights), loss = the target-normalised MSE per sequence,
backward, then one fused AdamW step over all wide layers. Timed with CUDA events after warmup; prints
and writes tokens/s (B*T per step) and the peak GPU memory (PyTorch's reserved pool; the device's use
by cudaMemGetInfo). Eager PyTorch, F.scaled_dot_product_attention (flash) for attention.

Usage: python3 bench/heal_torch_peer.py --pairs 4,6,17,25 --batch 8 --seq-len 256 --json out.json
       python3 bench/heal_torch_peer.py --shape llama2-7b --pairs 14:28 --steps 10
"""
import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

SHAPES = {  # L, D, H, Hkv, F, V, theta: src/runtime/bench_shapes.cpp's
    "smollm2-135m": (30, 576, 9, 3, 1536, 49152, 1e5),
    "llama2-7b": (32, 4096, 32, 32, 11008, 32000, 1e4),
    "llama3-8b": (32, 4096, 32, 8, 14336, 128256, 5e5),
}


def parse_pairs(text, L):
    """An LP plan as duet reads one: "A:B" (pairs A, A+2, .., B-2) or a list of pairs' first layers."""
    if ":" in text:
        a, b = (int(x) for x in text.split(":"))
        if b <= a or (b - a) % 2:
            raise SystemExit(f"bad LP range {text}: END must exceed START by an even number")
        pairs = list(range(a, b, 2))
    else:
        pairs = sorted(int(p) for p in text.split(",") if p.strip())
    if not pairs or pairs[0] < 0 or pairs[-1] + 2 > L or any(q - p < 2 for p, q in zip(pairs, pairs[1:])):
        raise SystemExit(f"bad LP plan {text} for {L} layers")
    return pairs


def rope_tables(T, Dh, theta, device):
    inv = theta ** (-torch.arange(0, Dh, 2, device=device, dtype=torch.float32) / Dh)
    ang = torch.arange(T, device=device, dtype=torch.float32)[:, None] * inv[None, :]
    return ang.cos(), ang.sin()


def rope(x, cos, sin):  # x [B, H, T, Dh], HalfSplit pairs (i, i + Dh/2) as HF Llama
    half = x.shape[-1] // 2
    x0, x1 = x[..., :half], x[..., half:]
    c, s = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x0 * c - x1 * s, x0 * s + x1 * c], dim=-1)


class Layer(torch.nn.Module):
    def __init__(self, D, H, Hkv, Fd, Dh, dtype, device):
        super().__init__()
        def w(n, k):
            return torch.nn.Parameter(torch.randn(n, k, device=device, dtype=dtype) / math.sqrt(k))
        self.H, self.Hkv, self.Dh = H, Hkv, Dh
        self.q, self.k, self.v, self.o = w(H * Dh, D), w(Hkv * Dh, D), w(Hkv * Dh, D), w(D, H * Dh)
        self.gate, self.up, self.down = w(Fd, D), w(Fd, D), w(D, Fd)

    def forward(self, x, cos, sin):
        B, T, D = x.shape
        h = F.rms_norm(x, (D,), eps=1e-5)
        q = (h @ self.q.t()).view(B, T, self.H, self.Dh).transpose(1, 2)
        k = (h @ self.k.t()).view(B, T, self.Hkv, self.Dh).transpose(1, 2)
        v = (h @ self.v.t()).view(B, T, self.Hkv, self.Dh).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        x = x + a.transpose(1, 2).reshape(B, T, -1) @ self.o.t()
        h = F.rms_norm(x, (D,), eps=1e-5)
        return x + (F.silu(h @ self.gate.t()) * (h @ self.up.t())) @ self.down.t()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="smollm2-135m", choices=sorted(SHAPES))
    ap.add_argument("--pairs", default="4,6,17,25")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--device", default="cuda", help="cuda (the measurement) or cpu (a quick check of the script)")
    ap.add_argument("--json")
    a = ap.parse_args()
    L, D, H, Hkv, Fd, V, theta = SHAPES[a.shape]
    Dh = D // H
    dev = a.device
    torch.manual_seed(0)
    pairs = parse_pairs(a.pairs, L)
    last = max(pairs) + 2
    with torch.no_grad():  # the layers the local stage runs: those below the last pair's target boundary
        frozen = [Layer(D, H, Hkv, Fd, Dh, torch.bfloat16, dev).requires_grad_(False) for _ in range(last)]
        embd = torch.randn(V, D, device=dev, dtype=torch.bfloat16)
    wide = [Layer(D, 2 * H, 2 * Hkv, 2 * Fd, Dh, torch.float32, dev) for _ in pairs]
    params = [p for w in wide for p in w.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.0, fused=dev == "cuda")
    cos, sin = rope_tables(a.seq_len, Dh, theta, dev)

    def step():
        tokens = torch.randint(0, V, (a.batch, a.seq_len), device=dev)
        states = {}
        with torch.no_grad():
            x = embd[tokens]
            for l in range(last + 1):
                states[l] = x
                if l < last:
                    x = frozen[l](x, cos, sin)
        for p, w in zip(pairs, wide):
            with torch.autocast(dev, dtype=torch.bfloat16):
                out = w(states[p], cos, sin)
            t = states[p + 2].float()
            loss = (((out.float() - t) ** 2).sum((1, 2)) / (t ** 2).sum((1, 2))).mean() / len(pairs)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(a.warmup):
        step()
    if dev == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        for _ in range(a.steps):
            step()
        end.record()
        torch.cuda.synchronize()
        ms = start.elapsed_time(end) / a.steps
    else:
        t0 = time.perf_counter()
        for _ in range(a.steps):
            step()
        ms = (time.perf_counter() - t0) * 1e3 / a.steps
    tps = a.batch * a.seq_len / (ms / 1e3)
    row = {"peer": "torch", "stage": "local", "shape": a.shape, "pairs": a.pairs, "batch": a.batch,
           "seq_len": a.seq_len, "ms_per_step": ms, "tokens_per_s": tps, "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu",
           "torch": torch.__version__}
    if dev == "cuda":
        free, total = torch.cuda.mem_get_info()
        row.update(peak_reserved_gib=round(torch.cuda.max_memory_reserved() / 2**30, 2),
                   in_use_gib=round((total - free) / 2**30, 2), gpu_gib=round(total / 2**30, 2))
    print(json.dumps(row))
    if a.json:
        with open(a.json, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
