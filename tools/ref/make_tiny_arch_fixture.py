#!/usr/bin/env python3
"""Tiny random checkpoints of each supported family, with llama.cpp's logits.

For llama (GQA, Llama-3 RoPE scaling, untied output), qwen2 (QKV bias, tied
embeddings) and qwen3 (per-head q/k RMSNorm, H*Dh != D) this script

  1. draws F32 weights with numpy (fixed seed) in HF conventions,
  2. writes them as tests/fixtures/tiny_arch/<family>_hf/ (config.json +
     model.safetensors, written by hand: u64 header length, JSON header, data),
  3. writes the same weights as tests/fixtures/tiny_arch/<family>.gguf the way
     llama.cpp's convert_hf_to_gguf.py does (llama: Q/K rows permuted for
     adjacent-pair RoPE; Llama-3 scaling as the rope_freqs.weight tensor), with
     a GPT-2 style byte-level vocab so that llama.cpp accepts the file,
  4. runs llama.cpp (llama-cpp-python, F32 weights, F32 KV cache, no flash
     attention) on PROMPT, then DECODE one token at a time on the same cache,
     and stores the logits of every position in tests/fixtures/tiny_arch/<family>.json.

tests/model_arch_reference_test.cpp checks duet against these logits through
both the GGUF and the HF loaders.

Regenerate:  pip install llama-cpp-python==0.3.36 gguf numpy
             python3 tools/ref/make_tiny_arch_fixture.py
"""
import json
import math
import os
import struct

import gguf
import numpy as np
from llama_cpp import Llama, __version__ as llama_cpp_version

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "tiny_arch")
SEED = 20250607

# Vocab: 256 byte tokens (GPT-2 alphabet), one merged token, BOS, EOS, one spare control token.
N_BYTES = 256
MERGED_ID, BOS_ID, EOS_ID = 256, 257, 258
V = 260

PROMPT = [BOS_ID, 72, 101, 108, 108, 111, 44, 32, 256, 33, 7, 200]  # BOS, "Hello, ", merged, "!", awkward bytes
DECODE = [119, 259, 0]  # three single-token steps after the prompt

# Sizes stay tiny (each GGUF < 150 KB) but every family keeps its distinguishing
# feature: H != Hkv (GQA) everywhere, qwen3 with H*Dh = 64 != D = 32.
FAMILIES = {
    "llama": dict(arch="llama", L=2, D=32, H=4, Hkv=2, Dh=8, F=48, eps=1e-5, theta=500000.0, tied=False,
                  # original_max 256 puts Dh/2 = 4 frequencies in all three llama3 bands (kept, smoothed, slowed).
                  rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 256}),
    "qwen2": dict(arch="qwen2", L=2, D=32, H=4, Hkv=2, Dh=8, F=64, eps=1e-6, theta=10000.0, tied=True,
                  rope_scaling=None),
    "qwen3": dict(arch="qwen3", L=2, D=32, H=4, Hkv=2, Dh=16, F=64, eps=1e-6, theta=1000000.0, tied=True,
                  rope_scaling=None),
}
CONTEXT = 128


def random_weights(cfg, rng):
    """HF-named float32 tensors (RoPE pairs (i, i + Dh/2), HF's convention)."""
    D, Hq, Hkv, F = cfg["D"], cfg["H"] * cfg["Dh"], cfg["Hkv"] * cfg["Dh"], cfg["F"]

    def normal(shape, scale):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def gain(n):  # 1 + noise, so that a missing or misplaced gain shows
        return rng.uniform(0.8, 1.2, n).astype(np.float32)

    # Small embeddings so that the layers, not the token's own embedding, decide
    # the logits (with tied embeddings a unit-scale residual makes argmax = input token).
    t = {"model.embed_tokens.weight": normal((V, D), 0.1)}
    for i in range(cfg["L"]):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = gain(D)
        t[p + "self_attn.q_proj.weight"] = normal((Hq, D), D ** -0.5)
        t[p + "self_attn.k_proj.weight"] = normal((Hkv, D), D ** -0.5)
        t[p + "self_attn.v_proj.weight"] = normal((Hkv, D), D ** -0.5)
        if cfg["arch"] == "qwen2":
            t[p + "self_attn.q_proj.bias"] = normal((Hq,), 0.3)
            t[p + "self_attn.k_proj.bias"] = normal((Hkv,), 0.3)
            t[p + "self_attn.v_proj.bias"] = normal((Hkv,), 0.3)
        if cfg["arch"] == "qwen3":
            t[p + "self_attn.q_norm.weight"] = gain(cfg["Dh"])
            t[p + "self_attn.k_norm.weight"] = gain(cfg["Dh"])
        t[p + "self_attn.o_proj.weight"] = normal((D, Hq), Hq ** -0.5)
        t[p + "post_attention_layernorm.weight"] = gain(D)
        t[p + "mlp.gate_proj.weight"] = normal((F, D), D ** -0.5)
        t[p + "mlp.up_proj.weight"] = normal((F, D), D ** -0.5)
        t[p + "mlp.down_proj.weight"] = normal((D, F), F ** -0.5)
    t["model.norm.weight"] = gain(D)
    if not cfg["tied"]:
        t["lm_head.weight"] = normal((V, D), D ** -0.5)
    return t


def hf_config(cfg):
    c = {
        "model_type": cfg["arch"],
        "architectures": [{"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
                           "qwen3": "Qwen3ForCausalLM"}[cfg["arch"]]],
        "hidden_size": cfg["D"],
        "intermediate_size": cfg["F"],
        "num_hidden_layers": cfg["L"],
        "num_attention_heads": cfg["H"],
        "num_key_value_heads": cfg["Hkv"],
        "head_dim": cfg["Dh"],
        "vocab_size": V,
        "max_position_embeddings": CONTEXT,
        "rms_norm_eps": cfg["eps"],
        "rope_theta": cfg["theta"],
        "tie_word_embeddings": cfg["tied"],
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "torch_dtype": "float32",
    }
    if cfg["rope_scaling"]:
        c["rope_scaling"] = cfg["rope_scaling"]
    return c


def write_safetensors(path, tensors):
    header, offset = {}, 0
    for name, a in tensors.items():
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for a in tensors.values():
            f.write(np.ascontiguousarray(a, dtype="<f4").tobytes())


def permute_for_interleaved_rope(w, n_head, n_head_kv=None):
    """convert_hf_to_gguf.py's LlamaModel.permute: HF pairs (i, i+Dh/2) -> adjacent pairs."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_rope_factors(cfg):
    """convert_hf_to_gguf.py's LlamaModel.generate_extra_tensors (rope_freqs.weight)."""
    s, dim, base = cfg["rope_scaling"], cfg["Dh"], cfg["theta"]
    freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    factor, low, high = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
    old_context_len = s["original_max_position_embeddings"]
    low_freq_wavelen, high_freq_wavelen = old_context_len / low, old_context_len / high
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_freq_wavelen:
            factors.append(1)
        elif wavelen > low_freq_wavelen:
            factors.append(factor)
        else:
            smooth = (old_context_len / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


def gpt2_byte_symbols():
    """GPT-2's bytes_to_unicode: printable bytes stand for themselves, the rest map to U+0100 + n."""
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    out, n = {}, 0
    for b in range(256):
        if b in printable:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return [out[b] for b in range(256)]


GGUF_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def write_gguf(path, cfg, tensors):
    arch = cfg["arch"]
    w = gguf.GGUFWriter(path, arch=arch)
    w.add_name(f"duet tiny {arch}")
    w.add_block_count(cfg["L"])
    w.add_context_length(CONTEXT)
    w.add_embedding_length(cfg["D"])
    w.add_feed_forward_length(cfg["F"])
    w.add_head_count(cfg["H"])
    w.add_head_count_kv(cfg["Hkv"])
    w.add_key_length(cfg["Dh"])
    w.add_value_length(cfg["Dh"])
    w.add_layer_norm_rms_eps(cfg["eps"])
    w.add_rope_freq_base(cfg["theta"])
    w.add_rope_dimension_count(cfg["Dh"])
    w.add_vocab_size(V)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)

    symbols = gpt2_byte_symbols()
    tokens = symbols + [symbols[32] + "t", "<|bos|>", "<|eos|>", "<|spare|>"]
    types = [gguf.TokenType.NORMAL] * (N_BYTES + 1) + [gguf.TokenType.CONTROL] * 3
    assert len(tokens) == V
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")  # llama.cpp's name for GPT-2's pre-tokenizer
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges([symbols[32] + " t"])  # gguf-py refuses an empty array
    w.add_bos_token_id(BOS_ID)
    w.add_eos_token_id(EOS_ID)
    w.add_add_bos_token(False)

    H, Hkv = cfg["H"], cfg["Hkv"]
    w.add_tensor("token_embd.weight", tensors["model.embed_tokens.weight"])
    if cfg["rope_scaling"]:
        w.add_tensor("rope_freqs.weight", llama3_rope_factors(cfg))
    for i in range(cfg["L"]):
        for hf_name, gguf_name in GGUF_NAMES.items():
            a = tensors.get(f"model.layers.{i}.{hf_name}")
            if a is None:
                continue
            if arch == "llama" and hf_name == "self_attn.q_proj.weight":
                a = permute_for_interleaved_rope(a, H, H)
            elif arch == "llama" and hf_name == "self_attn.k_proj.weight":
                a = permute_for_interleaved_rope(a, H, Hkv)
            w.add_tensor(f"blk.{i}.{gguf_name}", np.ascontiguousarray(a))
    w.add_tensor("output_norm.weight", tensors["model.norm.weight"])
    if "lm_head.weight" in tensors:
        w.add_tensor("output.weight", tensors["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def llama_cpp_logits(path):
    # type_k/type_v 0 = GGML_TYPE_F32: an F32 KV cache, so llama.cpp computes in float32 throughout.
    llm = Llama(model_path=path, n_ctx=64, n_threads=2, logits_all=True, type_k=0, type_v=0, flash_attn=False,
                verbose=False, seed=0)
    assert llm.n_vocab() == V
    llm.reset()
    llm.eval(PROMPT)
    rows = [np.array(llm.scores[t], dtype=np.float32) for t in range(len(PROMPT))]
    for token in DECODE:
        llm.eval([token])
        rows.append(np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32))
    return np.stack(rows)


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(SEED)
    for family, cfg in FAMILIES.items():
        tensors = random_weights(cfg, rng)
        hf_dir = os.path.join(OUT, f"{family}_hf")
        os.makedirs(hf_dir, exist_ok=True)
        with open(os.path.join(hf_dir, "config.json"), "w") as f:
            json.dump(hf_config(cfg), f, indent=1)
        write_safetensors(os.path.join(hf_dir, "model.safetensors"), tensors)
        gguf_path = os.path.join(OUT, f"{family}.gguf")
        write_gguf(gguf_path, cfg, tensors)

        logits = llama_cpp_logits(gguf_path)
        fixture = {
            "reference": f"llama-cpp-python {llama_cpp_version}: F32 weights, F32 KV cache (type_k=type_v=0), "
                         "flash_attn=False; prompt in one eval, then one eval per decode token",
            "regenerate": "python3 tools/ref/make_tiny_arch_fixture.py",
            "family": family,
            "config": {k: v for k, v in cfg.items()},
            "vocab_size": V,
            "prompt": PROMPT,
            "decode": DECODE,
            "argmax": [int(i) for i in np.argmax(logits, axis=1)],
            # [len(PROMPT) + len(DECODE), V]; 8 significant digits round-trip a float32 closely enough.
            "logits": [[float(f"{x:.8g}") for x in row] for row in logits],
        }
        with open(os.path.join(OUT, f"{family}.json"), "w") as f:
            json.dump(fixture, f, separators=(",", ":"))
        print(f"{family}: gguf {os.path.getsize(gguf_path)} B, logits {logits.shape}, "
              f"|logit| max {np.abs(logits).max():.3f}, argmax {fixture['argmax']}")


if __name__ == "__main__":
    main()
