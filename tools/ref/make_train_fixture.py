#!/usr/bin/env python3
"""PyTorch autograd references for duet's training engine (tests/train_reference_test.cpp).

Writes tests/fixtures/train/:
  layer.safetensors  one LP wide layer (4 heads over 2 KV heads, FFN 20, QKV bias, RoPE on
                     adjacent pairs as GGUF llama stores it, norm gains folded): input x, target,
                     every weight, the local loss (MSE / ||target||^2), every gradient and dx,
                     and the losses of 10 AdamW steps (clipping, warmup + cosine, weight decay).
  model/             a tiny 4-layer llama as HF safetensors (config.json, model.safetensors),
                     norm gains random, RoPE on half-split pairs.
  model_ref.safetensors  for LP pair (1,2) of that model: the tokens, the global loss
                     KL(P_orig || P_lp) on 6 tokens and the lm loss (next-token cross-entropy),
                     the gradients of both wrt every tensor of the wide layer (gains folded, GGUF
                     names), and the global losses of 10 AdamW steps.
Computed in float64; duet runs float32, so the test compares within tolerances.

Run: python3 -m venv .cache/venv-torch && .cache/venv-torch/bin/pip install torch numpy
     .cache/venv-torch/bin/python tools/ref/make_train_fixture.py
"""
import json
import math
import os
import struct

import numpy as np
import torch

torch.set_default_dtype(torch.float64)
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "train")

# The optimizer recipe both sides run (duet: train/adamw.h, HealOptions).
LR, MIN_RATIO, BETAS, EPS, WEIGHT_DECAY, CLIP, STEPS = 1e-2, 0.1, (0.9, 0.95), 1e-8, 0.1, 1.0, 10


def lr_at(s, steps, warmup):
    """duet's train::lr_at: linear warmup, then cosine to lr * MIN_RATIO at the last step."""
    if s < warmup:
        return LR * (s + 1) / warmup
    decay = steps - warmup
    progress = (s - warmup) / (decay - 1) if decay > 1 else 1.0
    return LR * (MIN_RATIO + (1 - MIN_RATIO) * 0.5 * (1 + math.cos(math.pi * progress)))


def write_safetensors(path, tensors):
    """float32 tensors, in the layout of the safetensors format (8-byte header length, JSON, data)."""
    header, blobs, offset = {}, [], 0
    for name, value in tensors.items():
        data = np.ascontiguousarray(np.asarray(value, dtype=np.float32))
        raw = data.tobytes()
        header[name] = {"dtype": "F32", "shape": list(data.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def rms(x, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps)


def rope(x, positions, theta, interleaved):
    """x [T, H, Dh]; rotates pairs (2i, 2i+1) when interleaved, else (i, i + Dh/2)."""
    Dh = x.shape[-1]
    freq = theta ** (-torch.arange(0, Dh // 2) * 2.0 / Dh)
    angle = positions[:, None].double() * freq[None, :]  # [T, Dh/2]
    c, s = torch.cos(angle)[:, None, :], torch.sin(angle)[:, None, :]
    if interleaved:
        a, b = x[..., 0::2], x[..., 1::2]
        return torch.stack([a * c - b * s, a * s + b * c], dim=-1).flatten(-2)
    a, b = x[..., : Dh // 2], x[..., Dh // 2 :]
    return torch.cat([a * c - b * s, a * s + b * c], dim=-1)


def layer(x, w, cfg, gains=None):
    """One pre-norm Llama block; w holds [out, in] matrices (GGUF names), gains = (g1, g2) or folded."""
    T, H, Hkv, Dh = x.shape[0], cfg["H"], cfg["Hkv"], cfg["Dh"]
    g1, g2 = gains if gains is not None else (1.0, 1.0)
    xn = rms(x, cfg["eps"]) * g1
    q = xn @ w["attn_q"].T + w.get("attn_q_bias", 0.0)
    k = xn @ w["attn_k"].T + w.get("attn_k_bias", 0.0)
    v = xn @ w["attn_v"].T + w.get("attn_v_bias", 0.0)
    pos = torch.arange(T)
    q = rope(q.view(T, H, Dh), pos, cfg["theta"], cfg["interleaved"])
    k = rope(k.view(T, Hkv, Dh), pos, cfg["theta"], cfg["interleaved"])
    v = v.view(T, Hkv, Dh)
    k = k.repeat_interleave(H // Hkv, dim=1)  # query head h reads KV head h / (H/Hkv)
    v = v.repeat_interleave(H // Hkv, dim=1)
    scores = torch.einsum("thd,shd->hts", q, k) / math.sqrt(Dh)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    att = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)
    y = torch.einsum("hts,shd->thd", att, v).reshape(T, H * Dh)
    h = x + y @ w["attn_output"].T
    hn = rms(h, cfg["eps"]) * g2
    act = torch.nn.functional.silu(hn @ w["ffn_gate"].T) * (hn @ w["ffn_up"].T)
    return h + act @ w["ffn_down"].T


def adamw_losses(params, loss_fn, steps, warmup):
    """Losses before each of `steps` AdamW updates with global-norm clipping (torch.optim.AdamW)."""
    opt = torch.optim.AdamW(params, lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)
    losses = []
    for s in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(s, steps, warmup)
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        losses.append(loss.item())
    return losses


def make_layer_fixture(rng):
    cfg = {"T": 5, "D": 24, "H": 4, "Hkv": 2, "Dh": 6, "F": 20, "eps": 1e-5, "theta": 10000.0, "interleaved": True}
    D, QD, KD, F = cfg["D"], cfg["H"] * cfg["Dh"], cfg["Hkv"] * cfg["Dh"], cfg["F"]
    shapes = {"attn_q": (QD, D), "attn_k": (KD, D), "attn_v": (KD, D), "attn_q_bias": (QD,), "attn_k_bias": (KD,),
              "attn_v_bias": (KD,), "attn_output": (D, QD), "ffn_gate": (F, D), "ffn_up": (F, D), "ffn_down": (D, F)}
    w = {n: torch.tensor(rng.normal(0, 0.3, s), requires_grad=True) for n, s in shapes.items()}
    x = torch.tensor(rng.normal(0, 1, (cfg["T"], D)), requires_grad=True)
    target = torch.tensor(rng.normal(0, 1, (cfg["T"], D)))
    out = {"x": x.detach(), "target": target, "config": torch.tensor([cfg[k] for k in ("T", "D", "H", "Hkv", "Dh", "F")])}
    out.update({"w." + n: t.detach().clone() for n, t in w.items()})

    def loss_fn():
        y = layer(x, w, cfg)
        return ((y - target) ** 2).sum() / (target**2).sum()

    loss = loss_fn()
    loss.backward()
    out["loss"] = torch.tensor([loss.item()])
    out["dx"] = x.grad.clone()
    out.update({"grad." + n: t.grad.clone() for n, t in w.items()})
    # Warmup of 2 steps, as HealOptions::warmup = 0.2 gives for 10 steps.
    out["adamw_losses"] = torch.tensor(adamw_losses(list(w.values()), loss_fn, STEPS, 2))
    write_safetensors(os.path.join(OUT, "layer.safetensors"), {k: v.numpy() for k, v in out.items()})


def make_model_fixture(rng):
    cfg = {"L": 4, "D": 16, "H": 2, "Hkv": 1, "Dh": 8, "F": 24, "V": 40, "eps": 1e-6, "theta": 10000.0,
           "interleaved": False}
    D, QD, KD, F, V = cfg["D"], cfg["H"] * cfg["Dh"], cfg["Hkv"] * cfg["Dh"], cfg["F"], cfg["V"]
    t = lambda *s: torch.tensor(rng.normal(0, 0.4, s))
    gain = lambda: torch.tensor(rng.uniform(0.8, 1.2, D))
    embd, out_w, out_norm = t(V, D) * 2.5, t(V, D), gain()
    layers = []
    for _ in range(cfg["L"]):
        layers.append({"attn_q": t(QD, D), "attn_k": t(KD, D), "attn_v": t(KD, D), "attn_output": t(D, QD),
                       "ffn_gate": t(F, D), "ffn_up": t(F, D), "ffn_down": t(D, F), "g1": gain(), "g2": gain()})
    tokens = torch.tensor([1, 17, 39, 4, 22, 8])
    T = len(tokens)

    def logits_of(blocks):
        x = embd[tokens]
        for run in blocks:
            x = run(x)
        return (rms(x, cfg["eps"]) * out_norm) @ out_w.T

    plain = lambda l: (lambda x: layer(x, l, cfg, (l["g1"], l["g2"])))
    p_logits = logits_of([plain(l) for l in layers]).detach()

    # The wide layer of pair (1, 2): gains folded into the rows that read them, rows stacked, the
    # output and down projections concatenated along their input (docs/layer-parallelism.md).
    a, b = layers[1], layers[2]
    fold = lambda m, g: m * g[None, :]
    wide = {"attn_q": torch.cat([fold(a["attn_q"], a["g1"]), fold(b["attn_q"], b["g1"])]),
            "attn_k": torch.cat([fold(a["attn_k"], a["g1"]), fold(b["attn_k"], b["g1"])]),
            "attn_v": torch.cat([fold(a["attn_v"], a["g1"]), fold(b["attn_v"], b["g1"])]),
            "attn_output": torch.cat([a["attn_output"], b["attn_output"]], dim=1),
            "ffn_gate": torch.cat([fold(a["ffn_gate"], a["g2"]), fold(b["ffn_gate"], b["g2"])]),
            "ffn_up": torch.cat([fold(a["ffn_up"], a["g2"]), fold(b["ffn_up"], b["g2"])]),
            "ffn_down": torch.cat([a["ffn_down"], b["ffn_down"]], dim=1)}
    wide = {n: v.clone().requires_grad_(True) for n, v in wide.items()}
    wide_cfg = dict(cfg, H=2 * cfg["H"], Hkv=2 * cfg["Hkv"])
    lp_blocks = [plain(layers[0]), lambda x: layer(x, wide, wide_cfg), plain(layers[3])]

    def loss_fn():
        q = torch.log_softmax(logits_of(lp_blocks), -1)
        p = torch.log_softmax(p_logits, -1)
        return (p.exp() * (p - q)).sum() / T

    def lm_loss_fn():  # next-token cross-entropy, mean over the T-1 predicted tokens
        return torch.nn.functional.cross_entropy(logits_of(lp_blocks)[:-1], tokens[1:])

    lm_loss = lm_loss_fn()
    lm_loss.backward()
    ref = {"tokens": tokens.double(), "lm_loss": torch.tensor([lm_loss.item()])}
    ref.update({"lm_grad.blk.1." + n: v.grad.clone() for n, v in wide.items()})
    for v in wide.values():
        v.grad = None
    loss = loss_fn()
    loss.backward()
    ref["loss"] = torch.tensor([loss.item()])
    ref.update({"blk.1." + n: v.detach().clone() for n, v in wide.items()})
    ref.update({"grad.blk.1." + n: v.grad.clone() for n, v in wide.items()})
    # Warmup of 1 step, as HealOptions::warmup = 0.05 gives for 10 steps.
    ref["adamw_losses"] = torch.tensor(adamw_losses(list(wide.values()), loss_fn, STEPS, 1))
    write_safetensors(os.path.join(OUT, "model_ref.safetensors"), {k: v.numpy() for k, v in ref.items()})

    hf = {"model.embed_tokens.weight": embd, "lm_head.weight": out_w, "model.norm.weight": out_norm}
    names = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
             "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
             "ffn_down": "mlp.down_proj", "g1": "input_layernorm", "g2": "post_attention_layernorm"}
    for i, l in enumerate(layers):
        for n, v in l.items():
            hf[f"model.layers.{i}.{names[n]}.weight"] = v
    os.makedirs(os.path.join(OUT, "model"), exist_ok=True)
    write_safetensors(os.path.join(OUT, "model", "model.safetensors"), {k: v.numpy() for k, v in hf.items()})
    config = {"model_type": "llama", "hidden_size": D, "intermediate_size": F, "num_hidden_layers": cfg["L"],
              "num_attention_heads": cfg["H"], "num_key_value_heads": cfg["Hkv"], "head_dim": cfg["Dh"],
              "vocab_size": V, "max_position_embeddings": 64, "rms_norm_eps": cfg["eps"],
              "rope_theta": cfg["theta"], "tie_word_embeddings": False}
    with open(os.path.join(OUT, "model", "config.json"), "w") as f:
        json.dump(config, f, indent=1)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(2026)
    make_layer_fixture(rng)
    make_model_fixture(rng)
    print("wrote", os.path.abspath(OUT), "with torch", torch.__version__)
