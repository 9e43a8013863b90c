#!/usr/bin/env python3
"""Load generator for OpenAI-compatible servers: `duet serve` (baseline and LP
plans) and, on the CPU, llama-cpp-python's server on the same model file, with
the same load, in one run. Every request has its own prompt (same length), so
no server answers from a cached prefix.

For each server and each concurrency C it keeps C streaming completions in
flight until `--requests` (default max(4C, 16)) have finished, every one with
the same prompt length and `--max-tokens` output tokens (end-of-text banned:
`ignore_eos` for duet, `logit_bias` for llama-cpp-python), and reports:
  req/s      finished requests per second of wall time
  out tok/s  generated tokens per second of wall time
  TTFT       time to the first streamed token (median, p99), ms
  TPOT       (last token time - first token time) / (tokens - 1) per request (median, p99), ms
  duet only, from its /metrics: mean batch (sequences per decode step), loop ms/step (the engine
  loop's busy time per decode step) and model share (of that time, inside the model's calls; the
  rest is scheduling, sampling and handing tokens to the HTTP threads)
Standard library only, so it runs wherever python3 does.

  python3 bench/serve_load.py --lp 16:20                     # duet baseline + LP, CPU
  python3 bench/serve_load.py --llama-cpp-python .cache/venv-bench/bin/python   # + the peer
  python3 bench/serve_load.py --device cuda --slots 64 --lp 10:26 --json out.json
"""
import argparse
import http.client
import json
import multiprocessing
import os
import random
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from urllib.parse import urlparse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process on a free port; waits for /health (or /v1/models) and always stops it."""

    def __init__(self, name, argv, port, health="/health", timeout=600):
        self.name, self.argv, self.port, self.health, self.timeout = name, argv, port, health, timeout
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self):
        print(f"== {self.name}: {shlex.join(self.argv)}", file=sys.stderr)
        self.log = open(f"/tmp/serve_load_{self.port}.log", "w")
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log.name}")
            try:
                with urllib.request.urlopen(self.url + self.health, timeout=5) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.25)
        self.__exit__()
        raise RuntimeError(f"{self.name} did not start in {self.timeout} s")

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def one_request(url, body):
    """Streams one completion; returns (ttft_s, token_times) with one time per received token."""
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    start = time.perf_counter()
    conn.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
    times, usage_tokens = [], None
    for line in resp:
        line = line.strip()
        if not line.startswith(b"data: "):
            continue
        if line == b"data: [DONE]":
            break
        event = json.loads(line[6:])
        now = time.perf_counter() - start
        if event.get("usage"):
            usage_tokens = event["usage"].get("completion_tokens")
        for choice in event.get("choices", []):
            if choice.get("text"):
                times.append(now)
    conn.close()
    if not times:
        raise RuntimeError("no tokens streamed")
    # A chunk can carry more than one token (held-back UTF-8); usage has the true count.
    n = usage_tokens or len(times)
    return times[0], times[-1], n


def run_share(share):
    """One process's part of a level: `threads` streams in flight over `bodies`; returns (results, errors)."""
    url, bodies, threads = share
    results, errors, lock = [], [], threading.Lock()
    todo = iter(bodies)

    def worker():
        while True:
            with lock:
                body = next(todo, None)
            if body is None:
                return
            try:
                r = one_request(url, body)
                with lock:
                    results.append(r)
            except Exception as e:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(repr(e))

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return results, errors


def run_level(url, make_body, concurrency, requests, procs):
    """make_body(i): the i-th request's body (each its own prompt, so no server reuses a cached prefix).
    The streams are spread over `procs` processes: one Python process parses ~8k events/s, fewer than a
    GPU server sends at concurrency 64, and the load generator must not be what is measured."""
    bodies = [make_body(i) for i in range(requests)]
    procs = max(1, min(procs, concurrency))
    shares = [(url, bodies[p::procs], concurrency // procs + (p < concurrency % procs)) for p in range(procs)]
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        start = time.perf_counter()
        outs = pool.map(run_share, shares)
        wall = time.perf_counter() - start
    results = [r for out in outs for r in out[0]]
    errors = [e for out in outs for e in out[1]]
    ttft = sorted(r[0] for r in results)
    tpot = sorted((r[1] - r[0]) / (r[2] - 1) for r in results if r[2] > 1)
    tokens = sum(r[2] for r in results)

    def pct(xs, q):
        return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] * 1e3 if xs else float("nan")

    return {"concurrency": concurrency, "requests": len(results), "errors": len(errors), "wall_s": wall,
            "req_per_s": len(results) / wall, "out_tok_per_s": tokens / wall,
            "tokens_per_request": tokens / len(results) if results else 0,
            "ttft_ms_median": pct(ttft, 0.5), "ttft_ms_p99": pct(ttft, 0.99),
            "tpot_ms_median": pct(tpot, 0.5), "tpot_ms_p99": pct(tpot, 0.99),
            "first_error": errors[0] if errors else None}


ENGINE_COUNTERS = ("duet_engine_decode_steps_total", "duet_engine_decode_rows_total",
                   "duet_engine_busy_seconds_total", "duet_engine_model_seconds_total")


def engine_counters(url):
    """duet's engine counters from /metrics (None for servers without them)."""
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ENGINE_COUNTERS:
            values[name] = float(value)
    return values if len(values) == len(ENGINE_COUNTERS) else None


def engine_row(before, after):
    """Mean decode batch, loop time per decode step, and the model calls' share of the loop's busy time."""
    if not before or not after:
        return {}
    d = {k: after[k] - before[k] for k in ENGINE_COUNTERS}
    steps = d["duet_engine_decode_steps_total"]
    if steps <= 0:
        return {}
    return {"mean_batch": d["duet_engine_decode_rows_total"] / steps,
            "loop_ms_per_step": 1e3 * d["duet_engine_busy_seconds_total"] / steps,
            "model_share": d["duet_engine_model_seconds_total"] / max(d["duet_engine_busy_seconds_total"], 1e-9)}


def make_prompt(n_words, seed=0):
    rng = random.Random(seed)
    words = ["the", "river", "mountain", "quiet", "engine", "light", "north", "garden", "paper", "stone", "window",
             "silver", "market", "forest", "signal", "harbor", "winter", "story", "bridge", "cloud"]
    return " ".join(rng.choice(words) for _ in range(n_words))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duet", default=os.path.join(ROOT, "build", "duet"))
    ap.add_argument("-m", "--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--slots", type=int, default=64, help="duet --slots (the batch)")
    ap.add_argument("--ctx", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=0, help="CPU threads for both servers (0: all cores)")
    ap.add_argument("--lp", action="append", default=[], help="an LP range to serve besides the baseline (repeatable)")
    ap.add_argument("--concurrency", default="1,8,32,64")
    ap.add_argument("--requests", type=int, default=0, help="requests per level (default max(4C, 16))")
    ap.add_argument("--prompt-words", type=int, default=100, help="prompt length in words (~1.2 tokens each)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--ban-tokens", default="0,2", help="token ids banned for llama-cpp-python (SmolLM2's EOS, EOT)")
    ap.add_argument("--llama-cpp-python", metavar="PYTHON",
                    help="a python with llama-cpp-python[server]==0.3.36: also load its server (CPU)")
    ap.add_argument("--procs", type=int, default=0,
                    help="load-generator processes (default: 1 on the CPU, where they would take the server's cores; "
                         "min(8, cores / 2) otherwise)")
    ap.add_argument("--json", help="write all rows here")
    args = ap.parse_args()

    levels = [int(c) for c in args.concurrency.split(",")]
    procs = args.procs or (1 if args.device == "cpu" else max(1, min(8, (os.cpu_count() or 2) // 2)))
    threads = args.threads or os.cpu_count()
    body = {"max_tokens": args.max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}, "ignore_eos": True,
            "logit_bias": {t: -100 for t in args.ban_tokens.split(",") if t}}
    request_count = 0

    def make_body(i):  # distinct prompts of the same length across levels and servers alike
        return dict(body, prompt=make_prompt(args.prompt_words, seed=request_count + i + 1))

    servers = []
    for plan in [None] + args.lp:
        argv = [args.duet, "serve", "-m", args.model, "--device", args.device, "--slots", str(args.slots),
                "--ctx", str(args.ctx), "--queue", str(max(levels) * 2), "-t", str(threads)]
        if plan:
            argv += ["--lp", plan]
        servers.append((f"duet {args.device} " + (f"LP {plan}" if plan else "baseline"), argv, "/health"))
    if args.llama_cpp_python:
        argv = [args.llama_cpp_python, "-m", "llama_cpp.server", "--model", args.model, "--n_ctx", str(args.ctx),
                "--n_threads", str(threads), "--host", "127.0.0.1",
                # Its default ends a streaming request when the next one arrives: queue them instead.
                "--interrupt_requests", "False"]
        servers.append(("llama-cpp-python 0.3.36", argv, "/v1/models"))

    rows = []
    for name, argv, health in servers:
        port = free_port()
        argv = argv + ["--port", str(port)]
        with Server(name, argv, port, health) as server:
            one_request(server.url, dict(body, prompt=make_prompt(args.prompt_words), max_tokens=4))  # warm-up
            request_count = 0
            for c in levels:
                n = args.requests or max(4 * c, 16)
                before = engine_counters(server.url)
                row = dict(server=name, prompt_words=args.prompt_words, max_tokens=args.max_tokens,
                           **run_level(server.url, make_body, c, n, procs))
                row.update(engine_row(before, engine_counters(server.url)))
                request_count += n
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)

    print("| server | conc | req/s | out tok/s | tokens/request | TTFT med | TTFT p99 | TPOT med | TPOT p99 | errors "
          "| mean batch | loop ms/step | model share |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        engine = (f"{r['mean_batch']:.1f} | {r['loop_ms_per_step']:.3f} | {100 * r['model_share']:.0f}%"
                  if "mean_batch" in r else "- | - | -")
        print(f"| {r['server']} | {r['concurrency']} | {r['req_per_s']:.2f} | {r['out_tok_per_s']:.1f} | "
              f"{r['tokens_per_request']:.1f} | {r['ttft_ms_median']:.1f} | {r['ttft_ms_p99']:.1f} | "
              f"{r['tpot_ms_median']:.1f} | {r['tpot_ms_p99']:.1f} | {r['errors']} | {engine} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
