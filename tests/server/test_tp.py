"""`duet serve --tp 3` (CPU, ranks as threads) against `duet serve --tp 1` on SmolLM2-135M.

Six greedy completions sent at once, so that the engine decodes several slots
per step (the batch decoder's sharded decode) while it prefills others, on
each server. Checks: the same text for every prompt, the chosen tokens'
logprobs within 1e-3 (tp_test.cpp's SmolLM2 bound: only the order of the
all-reduce sums differs), and the server naming its device "cpu (tp 3)".
Needs only the standard library.
"""
import json
import sys
import threading
import urllib.request

from duet_server import DuetServer, check

PROMPTS = ["The capital of France is", "Once upon a time", "def fibonacci(n):", "The three primary colors are",
           "In 1969, the first", "Water boils at"]
TOLERANCE = 1e-3


def complete_all(server):
    """{prompt: (text, token logprobs)} of greedy completions, all requests in flight together."""
    results, threads = {}, []

    def one(prompt):
        body = json.dumps({"prompt": prompt, "max_tokens": 12, "temperature": 0, "logprobs": 1}).encode()
        req = urllib.request.Request(server.url + "/v1/completions", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=300) as r:
            choice = json.loads(r.read())["choices"][0]
        results[prompt] = (choice["text"], choice["logprobs"]["token_logprobs"])

    for p in PROMPTS:
        threads.append(threading.Thread(target=one, args=(p,)))
        threads[-1].start()
    for t in threads:
        t.join()
    check(len(results) == len(PROMPTS), f"answers for {sorted(results)}")
    return results


def main():
    answers, logs = {}, {}
    for tp in (1, 3):
        # float32 on both: --cpu-math auto picks it for --tp 3, and only it is shard-exact (docs/tensor_parallel.md).
        with DuetServer(["--ctx", "128", "--slots", "4", "--tp", str(tp), "--cpu-math", "float32"]) as server:
            answers[tp] = complete_all(server)
            logs[tp] = "\n".join(server.log)
    check("cpu (tp 3)" in logs[3], f"--tp 3 server's device:\n{logs[3]}")
    worst = 0.0
    for p in PROMPTS:
        (text1, lp1), (text3, lp3) = answers[1][p], answers[3][p]
        check(text3 == text1, f"{p!r}: --tp 3 {text3!r} != --tp 1 {text1!r}")
        check(len(lp1) == len(lp3) == 12, f"{p!r}: {len(lp1)} and {len(lp3)} logprobs")
        worst = max([worst] + [abs(a - b) for a, b in zip(lp1, lp3)])
    check(worst <= TOLERANCE, f"max |logprob diff| {worst:.2e} > {TOLERANCE}")
    print(f"serve --tp 3 == --tp 1 on {len(PROMPTS)} concurrent greedy completions; max |logprob diff| {worst:.2e}")


if __name__ == "__main__":
    sys.exit(main())
