"""Helpers of the watch tests: a real server on 127.0.0.1 (in this process, or `python -m alpha
serve` as a subprocess), plain HTTP calls, and an SSE reader."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "test-secret-123"
AUTH = {"Authorization": f"Bearer {SECRET}"}


class LocalServer:
    """The app in a thread of this process: `with LocalServer(outputs) as s: s.url`."""

    def __init__(self, outputs: str, modules=None):
        from alpha.server.app import ServerContext, make_server

        self.ctx = ServerContext(outputs=str(outputs), log=lambda line: None)
        self.server = make_server("127.0.0.1", 0, self.ctx, modules)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.ctx.draining.set()
        watch = getattr(self.ctx, "_alpha_watch", None)
        if watch is not None:
            watch.hub.wake_all()
            if watch.watcher is not None:
                watch.watcher.stop()
        self.server.shutdown()
        self.server.server_close()
        self.ctx.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    """`python -m alpha serve` as a subprocess; kill() and start() again keep the port."""

    def __init__(self, outputs: str, env: dict, port: int | None = None):
        self.outputs = str(outputs)
        self.env = env
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = os.path.join(os.path.dirname(self.outputs), f"serve-{self.port}.log")

    def start(self, timeout: float = 60.0) -> "ServeProcess":
        log = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "alpha", "serve", "--port", str(self.port), "--outputs",
             self.outputs], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with {self.proc.returncode}: "
                                   f"{open(self.log).read()[-2000:]}")
            try:
                if call("GET", self.url + "/health", timeout=1)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"serve did not answer in {timeout}s: {open(self.log).read()[-2000:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


def call(method: str, url: str, body=None, headers=None, timeout: float = 10.0):
    """(status, headers, body bytes); HTTP errors are answers too."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get_json(url: str, headers=None):
    status, _, body = call("GET", url, headers=headers)
    assert status == 200, (url, status, body[:300])
    return json.loads(body)


class SSE:
    """Reads a text/event-stream: `next_event(timeout)` -> {"id", "event", "data"} or None."""

    def __init__(self, base_url: str, path: str = "/api/training/live",
                 last_event_id: str | None = None):
        host, port = base_url.split("//")[1].split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=10)
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self.conn.request("GET", path, headers=headers)
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200, self.resp.status
        assert self.resp.getheader("Content-Type").startswith("text/event-stream")
        self.comments: list[str] = []

    def next_event(self, timeout: float = 5.0) -> dict | None:
        self.conn.sock.settimeout(timeout)
        event: dict = {}
        try:
            while True:
                line = self.resp.readline()  # http.client undoes the chunked framing
                if not line:
                    return None
                line = line.decode("utf-8").rstrip("\r\n")
                if line == "":
                    if "data" in event:
                        event["data"] = json.loads(event["data"])
                        return event
                    event = {}
                    continue
                if line.startswith(":"):
                    self.comments.append(line)
                    continue
                key, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if key in ("id", "event"):
                    event[key] = value
                elif key == "data":
                    event["data"] = event.get("data", "") + value
        except (socket.timeout, TimeoutError):
            return None

    def close(self) -> None:
        self.conn.close()
