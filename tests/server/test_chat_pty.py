"""`duet chat` driven through a pseudo-terminal.

Turn 1's greedy answer equals `duet run --chat` on the same question (same
engine arithmetic, one slot); turn 2 sees the history: its answer equals
`duet serve`'s chat completion for [question 1, answer 1, question 2];
Ctrl-C (the terminal's interrupt character) stops an answer and the program
goes on; /reset forgets the history (the first question gets its first
answer again); /quit ends with status 0. Every read has a deadline.
"""
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

from duet_server import DUET, MODEL, DuetServer, check

MAX_TOKENS = 48
Q1 = "What is the capital of France?"
Q2 = "And what is the capital of Germany?"
LONG = "Write a very long essay about the history of the Roman Empire."


class Terminal:
    def __init__(self, argv):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child: the pty is its controlling terminal
            os.environ["OMP_WAIT_POLICY"] = "passive"
            os.execv(argv[0], argv)
        self.buffer = b""

    def read_until(self, pattern, timeout=180):
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.buffer):
            left = deadline - time.monotonic()
            check(left > 0, f"no {pattern!r} in time; terminal shows {self.buffer[-400:]!r}")
            ready, _, _ = select.select([self.fd], [], [], min(left, 1.0))
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:
                    chunk = b""
                check(chunk, f"terminal closed; it showed {self.buffer[-400:]!r}")
                self.buffer += chunk
        m = re.search(pattern, self.buffer)
        out, self.buffer = self.buffer[:m.start()], self.buffer[m.end():]
        return out.decode(errors="replace")

    def send(self, text):
        os.write(self.fd, text.encode())

    def ask(self, question):
        self.send(question + "\n")
        self.read_until(re.escape(question.encode()) + rb"\r?\n")  # the terminal's echo
        return self.read_until(rb"\r?\n> ").replace("\r\n", "\n")

    def wait(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.1)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        check(False, "duet chat did not exit")


def main():
    run = subprocess.run([DUET, "run", "-m", MODEL, "--chat", "--temp", "0", "-n", str(MAX_TOKENS), Q1],
                         capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_WAIT_POLICY="passive"))
    check(run.returncode == 0, f"duet run: {run.stderr}")
    reference_1 = run.stdout[:-1] if run.stdout.endswith("\n") else run.stdout  # run ends with one newline

    term = Terminal([DUET, "chat", "-m", MODEL, "--ctx", "1024", "-n", str(MAX_TOKENS)])
    try:
        term.read_until(rb"> ")
        answer_1 = term.ask(Q1)
        check(answer_1 == reference_1, f"turn 1 {answer_1!r} != duet run {reference_1!r}")
        answer_2 = term.ask(Q2)

        # Ctrl-C while the answer streams: stopped, and the program asks for the next line.
        term.send(LONG + "\n")
        term.read_until(re.escape(LONG.encode()) + rb"\r?\n")
        term.read_until(rb"\S")  # the answer has started
        term.send("\x03")
        stopped = term.read_until(rb"\r?\n> ")
        check("[stopped]" in stopped, f"Ctrl-C did not stop the answer: {stopped!r}")

        term.send("/reset\n")
        # Up to the next prompt: a question sent before it is echoed ahead of the "> ".
        term.read_until(rb"conversation cleared[^\n]*\n> ")
        again = term.ask(Q1)
        check(again == answer_1, f"after /reset {again!r} != first answer {answer_1!r}")
        term.send("/quit\n")
        code = term.wait()
        check(code == 0, f"exit status {code}")
    finally:
        try:
            os.kill(term.pid, signal.SIGKILL)
            os.waitpid(term.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass

    # Turn 2 saw turn 1: the server, given the same history, answers the same.
    with DuetServer(["--ctx", "1024", "--slots", "1"]) as server:
        messages = [{"role": "user", "content": Q1}, {"role": "assistant", "content": answer_1},
                    {"role": "user", "content": Q2}]
        status, body = server.post("/v1/chat/completions",
                                   {"messages": messages, "max_tokens": MAX_TOKENS, "temperature": 0})
        check(status == 200, f"server: {body}")
        served = body["choices"][0]["message"]["content"]
        check(answer_2 == served, f"turn 2 {answer_2!r} != server with the history {served!r}")
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
