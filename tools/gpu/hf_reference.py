#!/usr/bin/env python3
"""Independent reference for the CUDA backend: transformers on the GPU machine.

Creates small random LlamaForCausalLM and Qwen2ForCausalLM checkpoints (weights
rounded to bf16 so both sides hold the same numbers), saves them as HF
safetensors, and writes float32 logits of a fixed token sequence computed by
transformers in float32 (no TF32). duet_cuda_tests (CudaHf.MatchesTransformers)
loads each directory with duet's loader and compares.

Usage: python3 tools/gpu/hf_reference.py OUT_DIR
"""
import os
import sys

import torch
import transformers

out_dir = sys.argv[1]
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.manual_seed(0)


def make(name, model):
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "norm" in pname:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif "bias" in pname:
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) * (p.shape[-1] ** -0.5 if p.dim() == 2 and "embed" not in pname else 1.0))
            p.copy_(p.bfloat16().float())
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    model.save_pretrained(d, safe_serialization=True)
    # transformers 5 writes RoPE settings under "rope_parameters"; Hub checkpoints (and duet's
    # HF loader) use the top-level "rope_theta", so write that form too.
    import json
    cfg_path = os.path.join(d, "config.json")
    cfg = json.load(open(cfg_path))
    cfg.setdefault("rope_theta", model.config.rope_parameters["rope_theta"] if hasattr(model.config, "rope_parameters") and model.config.rope_parameters else 10000.0)
    json.dump(cfg, open(cfg_path, "w"), indent=2)
    model = model.cuda().eval()
    tokens = torch.randint(0, model.config.vocab_size, (24,))
    with torch.no_grad():
        logits = model(tokens[None].cuda()).logits[0].float().cpu()
    logits.numpy().tofile(os.path.join(d, "logits.f32"))
    with open(os.path.join(d, "tokens.txt"), "w") as f:
        f.write(" ".join(str(int(t)) for t in tokens) + "\n")
    print(f"[hf_reference] {name}: {sum(p.numel() for p in model.parameters())} params, logits {tuple(logits.shape)}")


make("llama", transformers.LlamaForCausalLM(transformers.LlamaConfig(
    vocab_size=1000, hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=512, rope_theta=10000.0, rms_norm_eps=1e-5,
    tie_word_embeddings=False, torch_dtype=torch.float32)))
make("qwen2", transformers.Qwen2ForCausalLM(transformers.Qwen2Config(
    vocab_size=1002, hidden_size=384, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=3,
    num_key_value_heads=1, max_position_embeddings=512, rope_theta=1000000.0, rms_norm_eps=1e-6,
    tie_word_embeddings=True, torch_dtype=torch.float32)))
