#!/usr/bin/env python3
"""Token-id goldens for duet's tokenizer, taken from llama.cpp (llama-cpp-python).

For each vocabulary below, writes tests/fixtures/tokenizer/<name>.json with the
ids llama.cpp's llama_tokenize gives for every labelled corpus case, with
parse_special true ("ids_special") and false ("ids_plain"), no BOS; one BOS
example; and chat-template renderings with their ids.

Chat expectations come from an independent renderer: jinja2 on the model's
own template for ChatML (it includes SmolLM2's default system prompt, which
llama.cpp's built-in ChatML omits), llama.cpp's llama_chat_apply_template for
the Llama 2 / Llama 3 formats (their official Jinja templates put BOS in the
text, which encode adds as a token instead).

Needs: pip install llama-cpp-python==0.3.36 jinja2, and the vocab files that
tools/setup.sh puts in models/ (models/vocab/ggml-vocab-*.gguf from the
llama-cpp-python sdist, models/SmolLM2-135M-Instruct.Q4_1.gguf).

Regenerate:  python3 tools/ref/make_tokenizer_fixture.py   (from the repo root)
"""
import ctypes
import json
import os
import random
import sys

import jinja2
import llama_cpp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_DIR = os.path.join(ROOT, "tests", "fixtures", "tokenizer")

VOCABS = {
    # name: (path relative to the repo root, chat template override or None)
    "smollm2": ("models/SmolLM2-135M-Instruct.Q4_1.gguf", None),
    "llama-spm": ("models/vocab/ggml-vocab-llama-spm.gguf", "llama2"),
    "llama-bpe": ("models/vocab/ggml-vocab-llama-bpe.gguf", "llama3"),
    "qwen2": ("models/vocab/ggml-vocab-qwen2.gguf", None),
    "gpt-2": ("models/vocab/ggml-vocab-gpt-2.gguf", None),
}

# Official Hugging Face templates of the two families whose vocab GGUFs carry none.
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

CORPUS = [
    ("empty", ""),
    ("single_space", " "),
    ("two_spaces", "  "),
    ("single_newline", "\n"),
    ("single_letter", "a"),
    ("hello_world", "Hello world"),
    ("leading_space", " Hello world"),
    ("leading_two_spaces", "  Hello world"),
    ("trailing_space", "Hello world "),
    ("trailing_spaces", "Hello world   "),
    ("prose", "The quick brown fox jumps over the lazy dog. It was the best of times, it was the worst of times; "
              "a tale of two cities (1859) by Charles Dickens!"),
    ("sentences_newlines", "First line.\nSecond line.\n\nThird after a blank line.\n\n\n\nFour newlines before."),
    ("whitespace_runs", "a  b   c    d\t\te\t \tf \n g\r\nh\rI"),
    ("tabs_and_spaces_end", "x\t\t  \n  \t"),
    ("only_whitespace", " \t \n \r\n  "),
    ("many_newlines", "\n\n\n\n\n\n\n\n"),
    ("newline_space_letter", "\n a\n\tb\n\n c"),
    ("contractions", "I'm sure you're right, it's what we've said: they'll go, he'd stay, don't."),
    ("contractions_upper", "IT'S I'M YOU'RE WE'VE THEY'LL HE'D DON'T 'S 'T 'Re 'vE"),
    ("apostrophes", "'quoted' ''double'' rock'n'roll ' s 'x 'll"),
    ("digits_short", "0 1 12 123 1234 12345"),
    ("digits_long", "3141592653589793238462643383279502884197169399375105820974944"),
    ("numbers_mixed", "Version 3.10.2, 1,000,000 items, 2024-06-01T12:34:56Z, -42.5e-3, 0x1F, #7"),
    ("digits_letters", "abc123def 4th 5G 2x3 10km/h"),
    ("punctuation", "!!! ??? ... --- ::: ;;; ((( ))) [[[ ]]] {{{ }}} <<< >>> @@@ ### $$$ %%% ^^^ &&& *** ~~~"),
    ("punct_space_mix", "a , b . c ! d ? e ; f : g"),
    ("accents_french", "Ça va très bien, merci! L'élève a été déçu à Noël; où est-ce?"),
    ("accents_german", "Größenwahn über Äpfel und Öl; Straße, Fußgänger, ÄÖÜäöüß"),
    ("accents_combining", "e\u0301 a\u0300 n\u0303 o\u0308 cafe\u0301 A\u030a"),
    ("spanish", "¿Dónde está el niño? ¡Mañana será otro día!"),
    ("cjk_chinese", "我爱自然语言处理。今天天气很好，我们去公园散步吧！"),
    ("cjk_japanese", "こんにちは、世界！カタカナとひらがな、漢字も混ざっています。"),
    ("cjk_korean", "안녕하세요, 세계! 한국어 문장입니다."),
    ("cjk_mixed_ascii", "GPT模型在2023年很流行, deep learning是AI的一部分。"),
    ("arabic", "مرحبا بالعالم! هذه جملة باللغة العربية ١٢٣٤٥."),
    ("hebrew", "שלום עולם, זה משפט בעברית."),
    ("cyrillic", "Привет, мир! Съешь же ещё этих мягких французских булок, да выпей чаю."),
    ("greek", "Καλημέρα κόσμε, αβγδε ΑΒΓΔΕ."),
    ("hindi", "नमस्ते दुनिया, यह हिंदी में एक वाक्य है।"),
    ("thai", "สวัสดีชาวโลก ภาษาไทยไม่มีช่องว่างระหว่างคำ"),
    ("emoji_simple", "I love pizza 🍕 and cats 🐱😀😂👍!"),
    ("emoji_zwj", "Family: 👨‍👩‍👧‍👦, couple: 👩‍❤️‍👨, tech: 👩🏽‍💻, rainbow flag: 🏳️‍🌈"),
    ("emoji_flags", "Flags: 🇺🇸🇬🇧🇯🇵🇩🇪🇫🇷 and 🏴󠁧󠁢󠁳󠁣󠁴󠁿"),
    ("emoji_skin_tones", "👋🏻👋🏼👋🏽👋🏾👋🏿"),
    ("emoji_only", "🙂🙃🫠🫨"),
    ("symbols_math", "∀x∈ℝ: x² ≥ 0, ∑ᵢ aᵢ ≤ ∞, π ≈ 3.14159, ½ + ¼ = ¾, ①②③"),
    ("symbols_currency", "€100 £50 ¥1000 ₹75 $5.99 ₿0.001"),
    ("unicode_spaces", "a\u00a0b\u2003c\u3000d\u2009e\u200bf\u202fg\u205fh\u1680i\u180ej\u0085k"),
    ("unicode_line_seps", "x\u2028y\u2029z\u000bw\u000cv"),
    ("control_chars", "a\x00b\x01c\x07d\x1be\x7ff"),
    ("rare_scripts", "𐍈𐌰𐌽 ᚠᚢᚦ ꯀꯁ 𓀀𓀁 𑼄𑼅 𞓐𞓑 𞓰𞓱 𝋀𝋁"),
    ("fullwidth", "ＡＢＣ１２３！？　ｱｲｳ"),
    ("python_code", "def fib(n: int) -> int:\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    if n < 2:\n"
                    "        return n\n    return fib(n - 1) + fib(n - 2)\n\n\nprint([fib(i) for i in range(10)])\n"),
    ("cpp_code", "#include <vector>\n\nint main() {\n\tstd::vector<int> v{1, 2, 3};\n\tfor (auto& x : v) {\n"
                 "\t\tx *= 2;  // double\n\t}\n\treturn v.size() == 3 ? 0 : 1;\n}\n"),
    ("json_text", "{\"key\": [1, 2.5, null, true], \"nested\": {\"a\": \"b\\n\"}}"),
    ("html_markup", "<div class=\"x\"><p>Hello &amp; welcome</p><br/></div>"),
    ("markdown", "# Title\n\n- item **bold** _it_\n- `code`\n\n> quote\n\n```py\nx = 1\n```"),
    ("url", "Visit https://example.com/path/to/page?query=1&lang=en#section or http://127.0.0.1:8080/."),
    ("email_path", "mail me: john.doe+tag@example.co.uk, path C:\\Users\\me\\file.txt, ~/dir/file.tar.gz"),
    ("special_chatml", "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"),
    ("special_bos_eos_text", "<s>Hello</s> <s> </s>"),
    ("special_endoftext", "Text<|endoftext|>More text <|endoftext|>"),
    ("special_llama3", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"),
    ("special_partial", "<|im_start <|im_end| <| |> <|endoftext <s </s"),
    ("special_adjacent", "<|im_end|><|im_end|><|im_start|><|endoftext|>x<|im_start|> y"),
    ("special_with_spaces", " <|im_start|> user \n <|im_end|> "),
    ("special_user_defined", "[PAD151650] and [PAD151651][PAD151652]"),
    ("special_unk", "<unk> <UNK> <|unk|>"),
    ("byte_tokens_text", "<0x0A> <0xFF> <0x41>"),
    ("repeated_chars", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" + "=" * 64 + "-" * 33),
    ("long_word", "Pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism"),
    ("mixed_case", "camelCaseWord PascalCase snake_case SCREAMING_CASE kebab-case"),
    ("hyphens_dashes", "well-known — em dash – en dash ‐ hyphen − minus"),
    ("quotes_unicode", "“double” ‘single’ «guillemets» „low“ ‹single›"),
    ("ellipsis_bullets", "Wait… • one ◦ two ▪ three → done ✓ ✗"),
    ("sentencepiece_marker", "▁ ▁▁ a▁b ▁hello"),
    ("nul_between_words", "hello\x00world"),
    ("latin1_supplement", "¡¢£¤¥¦§¨©ª«¬®¯°±²³´µ¶·¸¹º»¼½¾¿"),
    ("ligatures_compat", "ﬁ ﬂ ﬀ Ⅻ ㎏ ™ ℃"),
    ("private_use", "\ue000\uf8ff\U000f0000"),
    ("unassigned", "\u0378\u0379 \U0001fadf \U000e0080"),
    ("max_codepoints", "\uffff\ufffe\U0010ffff\ufffd"),
    ("long_mixed", "In 2023, the model (v2.1) scored 87.5% on MMLU — not bad! Здравствуйте, 世界. "
                   "It's 'fine'... right?\n\tTabs\tand  spaces  galore.   \n"),
]

# Malformed UTF-8: llama.cpp decodes each bad byte to U+FFFD before BPE
# pre-tokenization; SentencePiece sees the raw bytes.
BYTE_CASES = [
    ("invalid_lone_continuation", b"ab\x80cd"),
    ("invalid_truncated_2", b"x\xc3"),
    ("invalid_truncated_3", b"\xe4\xb8 y"),
    ("invalid_ff_fe", b"\xff\xfe hello \xfe"),
    ("invalid_overlong", b"A\xc0\x80B \xe0\x80\x80C"),
    ("invalid_surrogate", b"s\xed\xa0\x80t"),
]

RANDOM_ALPHABET = (
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") * 3
    + list("0123456789") * 2
    + list(" " * 12 + "\n\n\t\r")
    + list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    + list("éèàüöñçÉßøåæ")
    + list("我爱中文字日本語한국어")
    + list("Приветмир")
    + list("مرحبا")
    + ["😀", "🍕", "👍🏽", "👩‍💻", "🇫🇷", "\u200d", "\u0301", "\u00a0", "\u3000", "…", "“", "”", "—", "½", "²", "١"]
    + ["<|im_start|>", "<|im_end|>", "<s>", "</s>", "'s", "'ll", "<|endoftext|>", "  ", "\n\n", "123", "▁"]
)
RANDOM_SEED = 20240607
RANDOM_COUNT = 50


def random_cases():
    rng = random.Random(RANDOM_SEED)
    cases = []
    for i in range(RANDOM_COUNT):
        n = rng.randint(1, 40)
        cases.append((f"random_{i:02d}", "".join(rng.choice(RANDOM_ALPHABET) for _ in range(n))))
    return cases


def text_field(data: bytes):
    try:
        return {"text": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"text_hex": data.hex()}


def llama_cpp_chat(template: str, messages, add_generation_prompt: bool) -> str:
    chat = (llama_cpp.llama_chat_message * len(messages))()
    keep = []
    for i, m in enumerate(messages):
        role, content = m["role"].encode(), m["content"].encode()
        keep += [role, content]
        chat[i].role = role
        chat[i].content = content
    buf = ctypes.create_string_buffer(1 << 16)
    n = llama_cpp.llama_chat_apply_template(template.encode(), chat, len(messages), add_generation_prompt,
                                            buf, len(buf))
    if n < 0 or n > len(buf):
        raise RuntimeError(f"llama_chat_apply_template failed: {n}")
    return buf.raw[:n].decode("utf-8")


def jinja_chat(template: str, messages, add_generation_prompt: bool, bos: str, eos: str) -> str:
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                            bos_token=bos, eos_token=eos)


CONVERSATIONS = [
    ([{"role": "user", "content": "Hi there!"},
      {"role": "assistant", "content": "Hello! How can I help you today?"}], False),
    ([{"role": "system", "content": "You are a terse assistant."},
      {"role": "user", "content": "What is 2+2?"}], True),
]


def chat_cases(llm, family_override):
    template = llm.metadata.get("tokenizer.chat_template")
    cases = []
    for messages, add_gen in CONVERSATIONS:
        if family_override == "llama2":
            text, source, tmpl = llama_cpp_chat(LLAMA2_TEMPLATE, messages, add_gen), "llama.cpp", LLAMA2_TEMPLATE
        elif family_override == "llama3":
            text, source, tmpl = llama_cpp_chat(LLAMA3_TEMPLATE, messages, add_gen), "llama.cpp", LLAMA3_TEMPLATE
            assert text == jinja_chat(LLAMA3_TEMPLATE, messages, add_gen, "", ""), "llama3 renderers disagree"
        elif template:
            text, source, tmpl = jinja_chat(template, messages, add_gen, "", ""), "jinja2", template
        else:
            continue
        ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        cases.append({"template": tmpl if family_override else None, "messages": messages,
                      "add_generation_prompt": add_gen, "text": text, "text_source": source,
                      "ids_with_default_bos": ids})
    return cases


def main():
    corpus = [(label, text.encode("utf-8")) for label, text in CORPUS] + BYTE_CASES
    corpus += [(label, text.encode("utf-8")) for label, text in random_cases()]
    labels = [label for label, _ in corpus]
    assert len(labels) == len(set(labels)), "duplicate labels"

    os.makedirs(OUT_DIR, exist_ok=True)
    total = 0
    for name, (rel_path, family_override) in VOCABS.items():
        path = os.path.join(ROOT, rel_path)
        if not os.path.exists(path):
            sys.exit(f"missing {path}: run tools/setup.sh first")
        llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
        cases = []
        for label, data in corpus:
            case = {"label": label, **text_field(data),
                    "ids_special": llm.tokenize(data, add_bos=False, special=True),
                    "ids_plain": llm.tokenize(data, add_bos=False, special=False)}
            cases.append(case)
        bos_text = "Hello world"
        fixture = {
            "generator": "tools/ref/make_tokenizer_fixture.py",
            "reference": f"llama-cpp-python {llama_cpp.__version__}",
            "model": rel_path,
            "bos_example": {"text": bos_text,
                            "ids_with_default_bos": llm.tokenize(bos_text.encode(), add_bos=True, special=False)},
            "chat": chat_cases(llm, family_override),
            "cases": cases,
        }
        out = os.path.join(OUT_DIR, f"{name}.json")
        with open(out, "w", encoding="utf-8") as f:
            json.dump(fixture, f, ensure_ascii=False, separators=(",", ":"))
            f.write("\n")
        total += os.path.getsize(out)
        print(f"wrote {os.path.relpath(out, ROOT)}: {len(cases)} cases, {len(fixture['chat'])} chats")
        del llm
    print(f"total fixture size {total / 1024:.0f} KiB")
    print("regenerate with: python3 tools/ref/make_tokenizer_fixture.py  (from the repo root)")


if __name__ == "__main__":
    main()
