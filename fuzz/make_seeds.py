#!/usr/bin/env python3
"""Writes the committed seed corpora under fuzz/seeds/NAME/ (run from anywhere;
rerun after changing it and commit the result). Seeds are small valid inputs
that reach each parser's features; the fuzzers mutate from them.

Sources: tests/fixtures (HF configs, chat templates), plans/ (LP plans), the
SmolLM2 GGUF in models/ (its chat template; tools/setup.sh fetches it), and
hand-written tokenizers, indexes and texts below. The GGUF target's seeds are
not here: fuzz/make_gguf_seed.cpp writes them at run time with duet's writer.
"""
import json
import pathlib
import shutil
import struct

ROOT = pathlib.Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"


def write(target, name, data):
    path = SEEDS / target / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def gguf_string(path, wanted_key):
    """The string value of one metadata key of a GGUF file (v2/v3)."""
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    with open(path, "rb") as f:
        def u32():
            return struct.unpack("<I", f.read(4))[0]

        def u64():
            return struct.unpack("<Q", f.read(8))[0]

        def string():
            return f.read(u64()).decode("utf-8", "replace")

        def skip(kind):
            if kind == 8:
                f.seek(u64(), 1)
            elif kind == 9:
                inner, n = u32(), u64()
                for _ in range(n):
                    skip(inner)
            else:
                f.seek(sizes[kind], 1)

        assert f.read(4) == b"GGUF"
        u32(), u64()
        for _ in range(u64()):
            key, kind = string(), u32()
            if key == wanted_key and kind == 8:
                return string()
            skip(kind)
    raise KeyError(wanted_key)


def safetensors_file(tensors, metadata=None, pad=0):
    """tensors: [(name, dtype, shape, bytes)] laid out in order."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode() + b" " * pad
    return struct.pack("<Q", len(text)) + text + data


def safetensors_seeds():
    f32 = struct.pack("<6f", 1, 2, 3, 4, 5, 6)
    f16 = struct.pack("<3e", 0.5, -1.0, 2.0)
    bf16 = bytes([0x40, 0x40, 0x80, 0xBE])  # 3.0, -0.25
    write("safetensors", "mixed.safetensors", safetensors_file(
        [("model.embed_tokens.weight", "F32", [2, 3], f32), ("model.norm.weight", "F16", [3], f16),
         ("lm_head.weight", "BF16", [1, 1, 2], bf16), ("scalar", "F32", [], struct.pack("<f", 7)),
         ("empty", "F32", [0, 4], b"")], metadata={"format": "pt"}, pad=5))
    write("safetensors", "one.safetensors", safetensors_file([("w", "F32", [1], struct.pack("<f", 1))]))
    write("safetensors", "empty_header.safetensors", safetensors_file([]))


def index_seeds():
    weight_map = {"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
                  "model.layers.0.self_attn.q_proj.weight": "model-00001-of-00002.safetensors",
                  "model.norm.weight": "model-00002-of-00002.safetensors",
                  "lm_head.weight": "model-00002-of-00002.safetensors"}
    write("safetensors_index", "two_shards.json",
          json.dumps({"metadata": {"total_size": 1024}, "weight_map": weight_map}, indent=2))
    write("safetensors_index", "one_shard.json", json.dumps({"weight_map": {"w": "model.safetensors"}}))


def config_seeds():
    for arch in ("llama", "qwen2", "qwen3"):
        shutil.copy(ROOT / f"tests/fixtures/tiny_arch/{arch}_hf/config.json", SEEDS / "hf_config" / f"{arch}.json")
    base = {"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
            "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152,
            "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "tie_word_embeddings": True}
    write("hf_config", "smollm2_v5.json", json.dumps(
        dict(base, rope_parameters={"rope_type": "default", "rope_theta": 100000.0})))
    write("hf_config", "linear.json", json.dumps(
        dict(base, model_type="mistral", rope_theta=1e6, rope_scaling={"type": "linear", "factor": 2.0})))


def tokenizer_json_seeds():
    vocab = {c: i for i, c in enumerate("abcdehlorw\u0120")}
    vocab.update({"he": 11, "ll": 12, "hell": 13, "hello": 14, "\u0120w": 15})
    merges = ["h e", "l l", "he ll", "hell o", "\u0120 w"]
    added = [{"id": 16, "content": "<|endoftext|>", "special": True},
             {"id": 17, "content": "<|im_start|>", "special": True},
             {"id": 18, "content": "<user>", "special": False}]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    gpt2 = {"model": {"type": "BPE", "vocab": vocab, "merges": merges}, "added_tokens": added,
            "normalizer": None, "pre_tokenizer": byte_level}
    config = {"bos_token": "<|endoftext|>", "eos_token": {"content": "<|endoftext|>"}, "add_bos_token": True,
              "chat_template": "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"}
    write("tokenizer_json", "gpt2.json", json.dumps(gpt2))
    write("tokenizer_json", "gpt2_config.json", json.dumps(gpt2) + "\0" + json.dumps(config))
    llama3 = dict(gpt2, model={"type": "BPE", "vocab": vocab, "merges": [m.split(" ") for m in merges],
                               "ignore_merges": True},
                  pre_tokenizer={"type": "Sequence", "pretokenizers": [
                      {"type": "Split", "pattern": {"Regex": "(?i:'s|'t)|\\p{L}+|\\p{N}{1,3}|\\s+"},
                       "behavior": "Isolated", "invert": False},
                      {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]})
    write("tokenizer_json", "llama3_style.json", json.dumps(llama3) + "\0" + json.dumps(
        {"bos_token": "<|endoftext|>", "chat_template": [{"name": "default", "template": "<|start_header_id|>"}]}))
    spm_vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<0x41>": 3, "<0x0A>": 4, "\u2581": 5, "\u2581a": 6, "b": 7, "ab": 8}
    spm = {"model": {"type": "BPE", "vocab": spm_vocab, "merges": ["\u2581 a", "a b"], "byte_fallback": True,
                     "unk_token": "<unk>"},
           "added_tokens": [{"id": 1, "content": "<s>", "special": True}],
           "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                                                               {"type": "Replace", "pattern": {"String": " "},
                                                                "content": "\u2581"}]},
           "pre_tokenizer": None}
    write("tokenizer_json", "spm_style.json", json.dumps(spm))
    meta = dict(spm, normalizer={"type": "NFC"}, pre_tokenizer={"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True},
        {"type": "Split", "pattern": {"String": "b"}, "behavior": "Isolated"}]})
    write("tokenizer_json", "metaspace.json", json.dumps(meta))


def encode_seeds():
    # First byte picks the vocabulary (tokenizer_encode_fuzz.cpp): 0 SmolLM2, 1 GPT-2,
    # 2 Llama 3, 3 Qwen2, 4 Llama 2 (SentencePiece).
    texts = {
        "english": "Hello world! The quick brown fox jumps over the lazy dog, doesn't it? I'LL see.",
        "code": "def f(x):\n    return x ** 2  # square\n\n\tprint(f'{x=}')\r\n",
        "numbers": "In 2024, 1234567 people paid $3.50 (or 0.5%) each; ٣٤٥ and ½.",
        "multilingual": "日本語のテキスト, Ελληνικά, русский, עברית, العربية, हिन्दी, 한국어 e\u0301",
        "emoji": "👋🏽 family: 👨‍👩‍👧 flags 🇫🇷 ▁spaces▁  \u00a0\u3000 end",
        "special": "<|im_start|>user\nhi<|im_end|>\n<s>[INST] x [/INST]</s><|endoftext|><|eot_id|>",
        "whitespace": "   \n\n\n  \t\t  a  b   \n ",
    }
    for pick, (name, text) in enumerate(texts.items()):
        write("tokenizer_encode", f"{name}.txt", bytes([pick % 5]) + text.encode())
    write("tokenizer_encode", "invalid_utf8.bin", bytes([4]) + b"ok \xff\xfe \xc3( \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x82")


def chat_seeds():
    def chat(name, template, messages, add_generation_prompt=True):
        fields = [template] + [x for m in messages for x in m]
        write("chat_template", name, bytes([int(add_generation_prompt)]) + "\0".join(fields).encode())

    conversation = [("user", "Hi there!"), ("assistant", "Hello! How can I help?"), ("user", "  Tell me a joke. ")]
    smollm2 = gguf_string(ROOT / "models/SmolLM2-135M-Instruct.Q4_1.gguf", "tokenizer.chat_template")
    chat("smollm2.bin", smollm2, conversation)
    chat("smollm2_system.bin", smollm2, [("system", "Be brief.")] + conversation, False)
    for vocab in ("llama-spm", "llama-bpe"):
        fixture = json.loads((ROOT / f"tests/fixtures/tokenizer/{vocab}.json").read_text())
        template = next(c["template"] for c in fixture["chat"] if c["template"])
        chat(f"{vocab}.bin", template, [("system", "sys")] + conversation)
    chat("unsupported.bin", "{% for m in messages %}<<{{ m.role }}>>{{ m.content }}{% endfor %}", conversation)


def plan_seeds():
    for plan in sorted((ROOT / "plans").glob("*.txt"))[:4]:
        shutil.copy(plan, SEEDS / "lp_plan" / plan.name)
    write("lp_plan", "range.txt", "10:26\n")
    write("lp_plan", "mixed.txt", "# a plan\n0:4  # two pairs\n8, 12,14\n\n")


def request_seeds():
    """Server request bodies; the first byte picks the endpoint: '0' completions, '1' chat."""
    completions = [
        {"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0},
        {"prompt": ["a", "b c"], "max_tokens": 4, "n": 2, "stop": ["\n", "."], "seed": 7, "top_p": 0.9, "top_k": 40},
        {"prompt": [1, 2, 3], "max_tokens": 0, "echo": True, "logprobs": 5},
        {"prompt": [[4, 5], [6]], "stream": True, "stream_options": {"include_usage": True}, "model": "duet"},
    ]
    chats = [
        {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Why?"}]}],
         "logprobs": True, "top_logprobs": 3, "stream": True, "max_completion_tokens": 5, "stop": "x"},
    ]
    for i, body in enumerate(completions):
        write("request", f"completion_{i}.bin", "0" + json.dumps(body))
    for i, body in enumerate(chats):
        write("request", f"chat_{i}.bin", "1" + json.dumps(body, ensure_ascii=False))
    # A finding (the parser's message quoted these bytes raw): invalid UTF-8 where the parse stops.
    write("request", "invalid_utf8.bin", b'0{"prompt": [[4, 5], [6]\xa8\xd3\xdf\xdd"stream": true}')
    write("request", "n_zero.bin", '0{"prompt": "a", "n": 0}')  # a finding: accepted before the lower bound held
    write("request", "chat_utf8.bin", "1" + json.dumps({"messages": [{"role": "user", "content": "caf\u00e9 \u2603"}]}, ensure_ascii=False))


def main():
    if SEEDS.exists():
        for target in ("safetensors", "safetensors_index", "hf_config", "tokenizer_json", "tokenizer_encode",
                       "chat_template", "lp_plan", "request"):
            shutil.rmtree(SEEDS / target, ignore_errors=True)
    for target in ("hf_config", "lp_plan"):
        (SEEDS / target).mkdir(parents=True, exist_ok=True)
    safetensors_seeds()
    index_seeds()
    config_seeds()
    tokenizer_json_seeds()
    encode_seeds()
    chat_seeds()
    plan_seeds()
    request_seeds()


if __name__ == "__main__":
    main()
