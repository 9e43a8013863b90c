"""64 concurrent streaming clients against `duet serve`, bad ones mixed in.

40 valid greedy streams (20 prompts, each sent twice), 12 malformed requests
(bad JSON, wrong types, a prompt over the context, an unknown model, a huge
max_tokens) and 12 clients that disconnect early (before any byte of the
answer, or after its first event) on requests too long to finish by
themselves. Checks: every valid stream completes with text equal to the same
request sent alone; every bad request gets its 4xx and an error message;
the server stays up; /metrics shows every slot free, nothing running or
waiting, and the disconnected requests cancelled; /health answers within
2 s while all 64 are connected.
"""
import http.client
import json
import sys
import threading
import time
import urllib.request
from urllib.parse import urlparse

from duet_server import DuetServer, check

CTX = 256
TIMEOUT = 240  # seconds any one client may take


def stream(url, body, disconnect=None):
    """Sends one streaming completion. Returns (status, text, error_message).
    disconnect: None, "before" (close right after sending) or "after-first" (close after the first event)."""
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=TIMEOUT)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn.request("POST", "/v1/completions", body=raw, headers={"Content-Type": "application/json"})
    if disconnect == "before":
        conn.sock.close()
        return None, "", None
    resp = conn.getresponse()
    if resp.status != 200:
        payload = json.loads(resp.read())
        conn.close()
        return resp.status, "", payload.get("error", {}).get("message")
    text, done = "", False
    for line in resp:
        line = line.decode().strip()
        if not line.startswith("data: "):
            continue
        if line == "data: [DONE]":
            done = True
            break
        event = json.loads(line[6:])
        if disconnect == "after-first":
            conn.sock.close()
            return 200, "", None
        check("error" not in event, f"error event {event}")
        text += "".join(c["text"] for c in event["choices"])
    conn.close()
    check(done, "stream ended without [DONE]")
    return 200, text, None


def main():
    prompts = [f"Question {i}: what comes after {i}? Answer:" for i in range(10)] + [
        "The quick brown fox", "Once upon a time", "def fibonacci(n):", "Paris is the capital of",
        "1, 2, 3, 4,", "The weather today is", "In 1969, humans", "Water boils at", "My favourite colour is",
        "The best way to learn is"]
    valid = [{"prompt": p, "max_tokens": 4 + i % 5, "temperature": 0, "stream": True} for i, p in enumerate(prompts)]
    long_req = {"prompt": "Tell me a very long story.", "max_tokens": 200, "temperature": 0, "stream": True,
                "ignore_eos": True}
    bad = [
        (400, b'{"prompt": "unterminated'),
        (400, b'[1, 2, 3]'),
        (400, {"prompt": 123, "max_tokens": 4, "stream": True}),
        (400, {"prompt": "hi", "max_tokens": "ten", "stream": True}),
        (400, {"prompt": "hi", "max_tokens": 4, "temperature": "hot", "stream": True}),
        (400, {"prompt": "hi", "max_tokens": 4, "stop": [1, 2], "stream": True}),
        (400, {"prompt": "word " * (CTX + 10), "max_tokens": 4, "stream": True}),
        (404, {"prompt": "hi", "model": "no-such-model", "max_tokens": 4, "stream": True}),
        (400, {"prompt": "hi", "max_tokens": 10 ** 9, "stream": True}),
        (400, {"prompt": "hi", "max_tokens": -1, "stream": True}),
        (400, {"prompt": [], "max_tokens": 4, "stream": True}),
        (400, {"prompt": [[5, 6, 10 ** 8]], "max_tokens": 4, "stream": True}),
    ]
    with DuetServer(["--ctx", str(CTX), "--slots", "8", "--queue", "64"]) as server:
        # Each valid request alone first: the reference for the concurrent run.
        alone = []
        for body in valid:
            status, text, _ = stream(server.url, body)
            check(status == 200 and text, f"alone: {status} {text!r}")
            alone.append(text)

        jobs = [("valid", i, body) for i, body in enumerate(valid)] * 2
        jobs += [("bad", code, body) for code, body in bad]
        jobs += [("disconnect", "before" if i % 2 else "after-first", long_req) for i in range(12)]
        check(len(jobs) == 64, f"{len(jobs)} clients")
        results = [None] * len(jobs)

        def client(k):
            kind, arg, body = jobs[k]
            try:
                results[k] = stream(server.url, body, disconnect=arg if kind == "disconnect" else None)
            except Exception as e:  # noqa: BLE001 - reported below
                results[k] = ("exception", repr(e), None)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(len(jobs))]
        order = list(range(len(jobs)))
        order = order[::3] + order[1::3] + order[2::3]  # interleave the kinds
        for k in order:
            threads[k].start()
        # With every client connected (streams open, requests queued), /health still answers at once.
        time.sleep(1.0)
        t0 = time.monotonic()
        with urllib.request.urlopen(server.url + "/health", timeout=10) as r:
            check(r.status == 200, f"/health {r.status}")
        check(time.monotonic() - t0 < 2.0, f"/health took {time.monotonic() - t0:.2f} s under load")
        check(server.metrics()["duet_requests_waiting"] > 0, "the load did not fill the slots")
        deadline = time.monotonic() + TIMEOUT
        for t in threads:
            t.join(timeout=max(1, deadline - time.monotonic()))
        check(all(not t.is_alive() for t in threads), "clients still running after the deadline")

        for (kind, arg, body), result in zip(jobs, results):
            status, text, message = result
            if kind == "valid":
                check(status == 200, f"valid request failed: {result}")
                check(text == alone[arg], f"concurrent {text!r} != alone {alone[arg]!r} for {body['prompt']!r}")
            elif kind == "bad":
                check(status == arg and message, f"bad request {body!r}: {result}, wanted {arg} with a message")
        check(server.alive(), "server crashed")

        # Every slot comes back: the disconnected 200-token requests must have been cancelled.
        deadline = time.monotonic() + 30
        while True:
            m = server.metrics()
            if m["duet_kv_slots_used"] == 0 and m["duet_requests_running"] == 0 and m["duet_requests_waiting"] == 0:
                break
            check(time.monotonic() < deadline, f"slots still held: {m}")
            time.sleep(0.2)
        check(m["duet_requests_cancelled_total"] >= 12, f"cancelled {m['duet_requests_cancelled_total']} < 12")
        check(m["duet_requests_finished_total"] == 3 * len(valid), f"finished {m['duet_requests_finished_total']}")
        check(m["duet_http_client_errors_total"] == len(bad), f"4xx count {m['duet_http_client_errors_total']}")
        check(m["duet_time_to_first_token_seconds_count"] >= 3 * len(valid), "TTFT histogram")
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
