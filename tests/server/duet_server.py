"""Starts `duet serve` on a free loopback port for a test and always stops it.

    with DuetServer(["--ctx", "512"]) as server:
        requests.get(server.url + "/health")

The server prints "listening on http://HOST:PORT" once its socket is bound
(port 0 lets the kernel pick a free one); /health answers 200 once the model
is loaded. Every wait is bounded; on exit the process is sent SIGTERM, then
SIGKILL if it has not ended within a few seconds.
"""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

SOURCE_DIR = os.environ.get("DUET_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
DUET = os.environ.get("DUET_BINARY", os.path.join(SOURCE_DIR, "build", "duet"))
MODEL = os.path.join(SOURCE_DIR, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
DATA_DIR = os.environ.get("DUET_DATA_DIR", "/work/shared/data")


class DuetServer:
    def __init__(self, args=(), start_timeout=120):
        self.args = list(args)
        self.start_timeout = start_timeout
        self.proc = None
        self.url = None
        self.log = []
        self.health_statuses = []  # /health answers while starting: 503 (loading) then 200

    def __enter__(self):
        env = dict(os.environ, OMP_WAIT_POLICY="passive")
        self.proc = subprocess.Popen([DUET, "serve", "-m", MODEL, "--port", "0", *self.args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        port_seen = threading.Event()

        def read_log():
            for line in self.proc.stderr:
                self.log.append(line.rstrip("\n"))
                m = re.search(r"listening on (http://[\d.]+:\d+)", line)
                if m:
                    self.url = m.group(1)
                    port_seen.set()

        threading.Thread(target=read_log, daemon=True).start()
        try:
            deadline = time.monotonic() + self.start_timeout
            if not port_seen.wait(timeout=self.start_timeout):
                raise RuntimeError("duet serve did not bind a port:\n" + "\n".join(self.log))
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError("duet serve exited early:\n" + "\n".join(self.log))
                try:
                    with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
                        self.health_statuses.append(r.status)
                        if r.status == 200:
                            return self
                except urllib.error.HTTPError as e:
                    self.health_statuses.append(e.code)
                    assert e.code == 503, e.code  # loading
                except OSError:
                    pass
                time.sleep(0.1)
            raise RuntimeError("duet serve did not become healthy in time:\n" + "\n".join(self.log))
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return False

    def alive(self):
        return self.proc.poll() is None

    def metrics(self):
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as r:
            text = r.read().decode()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    def post(self, path, body, timeout=120, api_key=None):
        """(status, parsed JSON) of a POST; body is a dict or raw bytes."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = "Bearer " + api_key
        req = urllib.request.Request(self.url + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())


def check(condition, message):
    if not condition:
        print("FAIL:", message, file=sys.stderr)
        sys.exit(1)
