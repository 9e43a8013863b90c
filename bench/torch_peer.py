#!/usr/bin/env python3
"""A strong, simple peer for `duet bench`: the same decode step in PyTorch.

Random bf16 weights of the same named shapes (LP plans merge pairs into wide
layers exactly as duet does), a static KV cache [B, Hkv, S, Dh] per layer, the
whole step (embedding, layers, final norm, logits) captured in one CUDA graph
and replayed; timed with CUDA events. Attention is F.scaled_dot_product_attention
over the static cache with a mask of the valid positions (S = ctx + 1).

Usage: python3 bench/torch_peer.py --config llama2-7b:none:1 --config smollm2-135m:10:26:1 --json out.json
       (each --config is SHAPE:PLAN:B, PLAN 'none' or 'A:B')
"""
import argparse
import json
import sys

import torch
import torch.nn.functional as F

SHAPES = {  # L, D, H, Hkv, F, V, tied, theta
    "llama2-7b": (32, 4096, 32, 32, 11008, 32000, False, 1e4),
    "llama3-8b": (32, 4096, 32, 8, 14336, 128256, False, 5e5),
    "qwen2.5-7b": (28, 3584, 28, 4, 18944, 152064, False, 1e6),
    "smollm2-135m": (30, 576, 9, 3, 1536, 49152, True, 1e5),
    "smollm2-1.7b": (24, 2048, 32, 32, 8192, 49152, True, 1.3e5),
    "llama3.2-1b": (16, 2048, 32, 8, 8192, 128256, True, 5e5),
}


def layer_widths(L, H, Hkv, Fd, plan):
    starts = set()
    if plan != "none":
        a, b = (int(v) for v in plan.split(":"))
        starts = set(range(a, b, 2))
    widths, l = [], 0
    while l < L:
        if l in starts:
            widths.append((2 * H, 2 * Hkv, 2 * Fd))
            l += 2
        else:
            widths.append((H, Hkv, Fd))
            l += 1
    return widths


class DecodeStep:
    def __init__(self, shape, plan, B, ctx, dev="cuda"):
        L, D, H, Hkv, Fd, V, tied, theta = SHAPES[shape]
        Dh = D // H
        self.D, self.Dh, self.V, self.B = D, Dh, V, B
        S = ctx + 1
        g = torch.Generator(device=dev).manual_seed(0)

        def rnd(*size, scale):
            return (torch.rand(*size, device=dev, generator=g, dtype=torch.bfloat16) * 2 - 1) * scale

        self.layers = []
        for (h, hkv, f) in layer_widths(L, H, Hkv, Fd, plan):
            self.layers.append(dict(
                h=h, hkv=hkv, f=f,
                wqkv=rnd((h + 2 * hkv) * Dh, D, scale=D ** -0.5),
                wo=rnd(D, h * Dh, scale=(h * Dh) ** -0.5),
                wgu=rnd(2 * f, D, scale=D ** -0.5),
                wdown=rnd(D, f, scale=f ** -0.5),
                k=rnd(B, hkv, S, Dh, scale=1.0), v=rnd(B, hkv, S, Dh, scale=1.0)))
        self.embd = rnd(V, D, scale=1.0)
        self.out = self.embd if tied else rnd(V, D, scale=D ** -0.5)
        inv = 1.0 / (theta ** (torch.arange(0, Dh, 2, device=dev, dtype=torch.float32) / Dh))
        ang = torch.arange(S, device=dev, dtype=torch.float32)[:, None] * inv[None, :]
        self.cos, self.sin = ang.cos(), ang.sin()
        self.tokens = torch.randint(0, V, (B,), device=dev)
        self.pos = torch.full((B,), ctx, device=dev, dtype=torch.long)
        self.arange_s = torch.arange(S, device=dev)
        self.bidx = torch.arange(B, device=dev)
        self.weight_bytes = sum(2 * (l["wqkv"].numel() + l["wo"].numel() + l["wgu"].numel() + l["wdown"].numel())
                                for l in self.layers) + 2 * V * D

    def rope(self, x):  # x [B, heads, Dh], half-split pairs
        c = self.cos[self.pos][:, None, :]
        s = self.sin[self.pos][:, None, :]
        x1, x2 = x.float().chunk(2, dim=-1)
        return torch.cat([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1).to(torch.bfloat16)

    def __call__(self):
        B, Dh = self.B, self.Dh
        x = self.embd[self.tokens]
        mask = (self.arange_s[None, :] <= self.pos[:, None])[:, None, None, :]
        for l in self.layers:
            h, hkv, f = l["h"], l["hkv"], l["f"]
            qkv = F.rms_norm(x, (self.D,)) @ l["wqkv"].t()
            q, k, v = qkv.split([h * Dh, hkv * Dh, hkv * Dh], dim=-1)
            q = self.rope(q.view(B, h, Dh))
            k = self.rope(k.view(B, hkv, Dh))
            l["k"][self.bidx, :, self.pos] = k
            l["v"][self.bidx, :, self.pos] = v.view(B, hkv, Dh)
            a = F.scaled_dot_product_attention(q[:, :, None, :], l["k"], l["v"], attn_mask=mask,
                                               enable_gqa=h != hkv)
            x = x + a.reshape(B, h * Dh) @ l["wo"].t()
            gu = F.rms_norm(x, (self.D,)) @ l["wgu"].t()
            gate, up = gu.split([f, f], dim=-1)
            x = x + (F.silu(gate) * up) @ l["wdown"].t()
        return F.rms_norm(x, (self.D,)) @ self.out.t()


def time_config(shape, plan, B, ctx, steps):
    step = DecodeStep(shape, plan, B, ctx)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    for _ in range(5):
        graph.replay()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        graph.replay()
    stop.record()
    stop.synchronize()
    ms = start.elapsed_time(stop) / steps
    del graph, step
    torch.cuda.empty_cache()
    return ms


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", action="append", required=True, help="SHAPE:PLAN:B, PLAN none or A:B")
    p.add_argument("--ctx", type=int, default=1024)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--json")
    a = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    results = []
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}", file=sys.stderr)
    for spec in a.config:
        parts = spec.split(":")
        shape, B = parts[0], int(parts[-1])
        plan = "none" if parts[1] == "none" else f"{parts[1]}:{parts[2]}"
        ms = time_config(shape, plan, B, a.ctx, a.steps)
        print(f"  torch peer {shape:14s} lp={plan:8s} B={B:<3d} {ms:8.3f} ms/step {B * 1e3 / ms:9.1f} tok/s",
              file=sys.stderr, flush=True)
        results.append(dict(shape=shape, lp_plan=plan, batch=B, ms_per_step=ms, tokens_per_s=B * 1e3 / ms))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(torch=torch.__version__, context=a.ctx, results=results), f, indent=2)


if __name__ == "__main__":
    main()
