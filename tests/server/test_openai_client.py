"""The real `openai` Python client against `duet serve` (CPU, SmolLM2).

Checks completions, chat, streaming (text equal to the non-streamed greedy
answer), logprobs against the server's own numbers and the echo layout
lm-eval parses, n, stop strings, stream_options.include_usage, seeds, the
auxiliary routes, the API key, /health answering 503 while the model loads,
and that bad requests get an OpenAI error object with a 4xx status.
"""
import math
import sys
import time

import openai

from duet_server import DuetServer, check

API_KEY = "test-key"


def main():
    with DuetServer(["--ctx", "256", "--slots", "4", "--api-key", API_KEY]) as server:
        # The port is bound before the model loads: /health said 503 until it could serve.
        check(server.health_statuses[0] == 503 and server.health_statuses[-1] == 200,
              f"/health while starting: {server.health_statuses}")
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=120)
        model = client.models.list().data[0].id
        check(model == "SmolLM2-135M-Instruct.Q4_1", f"model id {model}")

        # Completions: greedy, then the same as a stream.
        prompt = "The capital of France is"
        full = client.completions.create(model=model, prompt=prompt, max_tokens=8, temperature=0)
        text = full.choices[0].text
        check(text.startswith(" Paris"), f"greedy completion {text!r}")
        check(full.usage.prompt_tokens == 5 and full.usage.completion_tokens == 8, f"usage {full.usage}")
        check(full.choices[0].finish_reason == "length", full.choices[0].finish_reason)
        streamed = "".join(c.choices[0].text for c in client.completions.create(
            model=model, prompt=prompt, max_tokens=8, temperature=0, stream=True) if c.choices)
        check(streamed == text, f"stream {streamed!r} != {text!r}")

        # Logprobs: the chosen token's logprob is the top-1 of its row under greedy decoding.
        lp = client.completions.create(model=model, prompt=prompt, max_tokens=4, temperature=0, logprobs=3)
        lps = lp.choices[0].logprobs
        check(len(lps.tokens) == 4 and len(lps.token_logprobs) == 4 and len(lps.top_logprobs) == 4, "logprob lengths")
        for tok, tlp, top in zip(lps.tokens, lps.token_logprobs, lps.top_logprobs):
            check(len(top) == 3 and math.isclose(max(top.values()), tlp), f"greedy token {tok!r} not top-1: {top}")
            check(tlp <= 0, "log-probability above 0")
        check("".join(lps.tokens) == lp.choices[0].text, "logprob tokens spell the text")

        # Echo as lm-eval's local-completions asks for it: prompt tokens first (the first one null).
        status, tokenized = server.post("/tokenize", {"prompt": prompt, "add_special_tokens": False}, api_key=API_KEY)
        check(status == 200, f"/tokenize {status}")
        ids = tokenized["tokens"]
        status, detok = server.post("/detokenize", {"tokens": ids}, api_key=API_KEY)
        check(status == 200 and detok["prompt"] == prompt, f"/detokenize {detok}")
        echo = client.completions.create(model=model, prompt=ids, max_tokens=1, temperature=0, logprobs=1, echo=True)
        e = echo.choices[0].logprobs
        check(len(e.token_logprobs) == len(ids) + 1, f"echo gives {len(e.token_logprobs)} logprobs for {len(ids)}+1 tokens")
        check(e.token_logprobs[0] is None and e.top_logprobs[0] is None, "first prompt token has no logprob")
        check(all(v is not None and v <= 0 for v in e.token_logprobs[1:]), "prompt logprobs")
        check(echo.choices[0].text.startswith(prompt), "echo repeats the prompt")
        check(math.isclose(e.token_logprobs[-1], lp.choices[0].logprobs.token_logprobs[0], rel_tol=1e-6),
              "the generated token's logprob is the same with and without echo")

        # Chat, streamed and not, with usage at the end of the stream.
        messages = [{"role": "user", "content": "What is 2+2?"}]
        chat = client.chat.completions.create(model=model, messages=messages, max_tokens=10, temperature=0)
        answer = chat.choices[0].message.content
        check(chat.choices[0].message.role == "assistant" and answer, f"chat answer {answer!r}")
        chunks = list(client.chat.completions.create(model=model, messages=messages, max_tokens=10, temperature=0,
                                                     stream=True, stream_options={"include_usage": True}))
        check("".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == answer, "chat stream text")
        check(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == chat.usage.completion_tokens,
              "usage chunk last")
        chat_lp = client.chat.completions.create(model=model, messages=messages, max_tokens=3, temperature=0,
                                                 logprobs=True, top_logprobs=2)
        content = chat_lp.choices[0].logprobs.content
        check(len(content) == 3 and all(len(c.top_logprobs) == 2 for c in content), "chat logprobs")
        check(all(math.isclose(c.logprob, c.top_logprobs[0].logprob) for c in content), "chat greedy is top-1")

        # Sampling: the same seed repeats itself; n gives n choices; stop strings cut the text.
        a = client.completions.create(model=model, prompt="Once upon a time", max_tokens=12, temperature=1.0, seed=7)
        b = client.completions.create(model=model, prompt="Once upon a time", max_tokens=12, temperature=1.0, seed=7)
        check(a.choices[0].text == b.choices[0].text, "seeded sampling repeats")
        many = client.completions.create(model=model, prompt="Once upon a time", max_tokens=6, temperature=1.0, n=3,
                                         seed=1, top_p=0.9, extra_body={"top_k": 50})
        check(sorted(c.index for c in many.choices) == [0, 1, 2], "n=3 choices")
        stop_at = text.strip().split()[0][:3]  # a piece of the greedy text
        stopped = client.completions.create(model=model, prompt=prompt, max_tokens=8, temperature=0, stop=[stop_at])
        check(stop_at not in stopped.choices[0].text and stopped.choices[0].finish_reason == "stop",
              f"stop {stop_at!r}: {stopped.choices[0].text!r}")
        check(text.startswith(stopped.choices[0].text), "stopped text is a prefix")
        batch = client.completions.create(model=model, prompt=[prompt, "1, 2, 3,"], max_tokens=3, temperature=0)
        check(len(batch.choices) == 2 and batch.choices[0].text == text[:len(batch.choices[0].text)], "prompt list")

        # Bad requests: an OpenAI error object and a 4xx.
        def expect(status, call):
            try:
                call()
            except openai.APIStatusError as err:
                check(err.status_code == status, f"status {err.status_code}, wanted {status}: {err}")
                check(isinstance(err.body, dict) and err.body.get("message"), f"error object {err.body}")
                return
            check(False, f"expected HTTP {status}")

        expect(404, lambda: client.completions.create(model="no-such-model", prompt="x", max_tokens=1))
        expect(400, lambda: client.completions.create(model=model, prompt="x", max_tokens=100000))
        expect(400, lambda: client.completions.create(model=model, prompt="x", max_tokens=1, temperature=-1))
        expect(400, lambda: client.completions.create(model=model, prompt=[[1, 2, 999999]], max_tokens=1))
        expect(400, lambda: client.chat.completions.create(model=model, messages=[], max_tokens=1))
        expect(400, lambda: client.completions.create(model=model, prompt="x " * 400, max_tokens=1))
        bad_key = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0)
        expect(401, lambda: bad_key.models.list())
        check(server.alive(), "server alive after bad requests")

    # A full server: one slot, no queue. While a stream holds the slot, the next request gets a 429.
    with DuetServer(["--ctx", "256", "--slots", "1", "--queue", "0"]) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=120)
        running = client.completions.create(model=model, prompt="Count:", max_tokens=200, temperature=0, stream=True,
                                            extra_body={"ignore_eos": True})
        next(iter(running))  # it holds the slot now
        expect(429, lambda: client.completions.create(model=model, prompt="x", max_tokens=1))
        running.close()  # the server notices the closed connection and frees the slot
        deadline = time.monotonic() + 10
        while server.metrics()["duet_kv_slots_used"] != 0:
            check(time.monotonic() < deadline, "the closed stream's slot was not freed")
            time.sleep(0.05)
        check(server.metrics()["duet_requests_rejected_total"] == 1, "one rejection counted")
        after = client.completions.create(model=model, prompt="x", max_tokens=1)
        check(len(after.choices) == 1, "served after the stream closed")
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
