"""Helpers for the serving tests: tiny trained runs, a real `python -m alpha serve` subprocess on
127.0.0.1, a stdlib HTTP client and an SSE parser."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = ["--layers", "1", "--heads", "2", "--batch", "2", "--eval-iters", "1", "--warmup", "1",
         "--quiet", "--eval-interval", "0", "--sample-interval", "0", "--iters", "2"]
KEY = "test-key-123"


def env(**extra) -> dict:
    e = dict(os.environ, PYTHONPATH=ROOT)
    e.pop("ALPHA_API_KEY", None)
    e.update(extra)
    return e


def make_runs(outputs: str) -> None:
    """outputs/chat (BPE with the chat tokens, block 64), outputs/text (chars, block 48) and
    outputs/long (chars, block 1024: streams long enough to be cut or drained)."""
    os.makedirs(outputs, exist_ok=True)
    base = os.path.dirname(outputs)
    chat = os.path.join(base, "chat.txt")
    with open(chat, "w") as f:
        f.write("\n".join(f"<|user|>hello {i}, how are you?<|assistant|>I am fine, thank you "
                          f"{i}.<|end_of_text|>" for i in range(120)))
    text = os.path.join(base, "text.txt")
    with open(text, "w") as f:
        f.write("The quick brown fox jumps over the lazy dog. " * 300)
    runs = [("chat", ["--domain", "chat", "--data", chat, "--vocab-size", "300", "--dim", "32",
                      "--block", "64"]),
            ("text", ["--data", text, "--dim", "16", "--block", "48"]),
            ("long", ["--data", text, "--dim", "32", "--block", "1024", "--layers", "2"])]
    procs = [subprocess.Popen([sys.executable, "-m", "alpha", "train", *TRAIN, *args,
                               "--run-dir", os.path.join(outputs, name)], cwd=ROOT, env=env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, args in runs]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err


class Server:
    """`python -m alpha serve` on a free port; `stop()` sends SIGTERM and returns the exit code."""

    def __init__(self, outputs: str, *args, key: str | None = None, backend: str = "cpu"):
        extra = {"ALPHA_API_KEY": key} if key else {}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "alpha", "serve", "--port", "0", "--outputs", outputs,
             "--backend", backend, *args],
            cwd=ROOT, env=env(**extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.key = key
        self.lines: list[str] = []
        self.port = None
        deadline = time.monotonic() + 240
        while self.port is None:
            line = self.proc.stderr.readline()
            if not line:
                raise AssertionError("the server exited: " + "".join(self.lines))
            self.lines.append(line)
            m = re.search(r"serving on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
            assert time.monotonic() < deadline, "the server did not start"
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line)

    def log(self) -> str:
        return "".join(self.lines)

    def conn(self, timeout: float = 120) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method: str, path: str, body=None, headers=None, key=True, conn=None):
        """(status, headers, parsed JSON or raw bytes)."""
        h = {"Content-Type": "application/json"}
        if key and self.key:
            h["Authorization"] = f"Bearer {self.key}"
        h.update(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        c = conn or self.conn()
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        raw = r.read()
        if conn is None:
            c.close()
        try:
            data = json.loads(raw)
        except ValueError:
            data = raw
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def stream(self, path: str, body: dict):
        """(status, [parsed data objects], done) of an SSE response, read to the end."""
        c = self.conn()
        h = {"Content-Type": "application/json"}
        if self.key:
            h["Authorization"] = f"Bearer {self.key}"
        c.request("POST", path, body=json.dumps(body), headers=h)
        r = c.getresponse()
        if r.status != 200:
            return r.status, json.loads(r.read()), False
        assert r.getheader("Content-Type").startswith("text/event-stream")
        events, done = parse_sse(r.read().decode("utf-8"))
        c.close()
        return r.status, events, done

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


def parse_sse(text: str):
    """Strict OpenAI SSE framing: every event is exactly `data: <json>` then a blank line, and the
    stream ends with `data: [DONE]`. Returns ([objects], saw [DONE])."""
    assert text.endswith("\n\n"), text[-200:]
    events, done = [], False
    for block in text[:-2].split("\n\n"):
        assert not done, "data after [DONE]"
        assert block.startswith("data: ") and "\n" not in block, block
        payload = block[len("data: "):]
        if payload == "[DONE]":
            done = True
        else:
            events.append(json.loads(payload))
    return events, done
