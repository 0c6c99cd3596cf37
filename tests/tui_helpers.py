"""Helpers of the dashboard's tests: a real terminal, a real training run, a cuttable connection.

`Tmux`: a tmux server on a private socket (`tmux -L <unique>`, so a user's own tmux is never
touched), `send-keys` to type and `capture-pane` to read the screen.

    with Tmux.start("python3 -m alpha tui", width=100, height=30, env={...}, cwd=...) as t:
        t.wait_for("1 Runs")
        t.keys("2")

`training(tmp_path)`: `python -m alpha train` on a tiny model, writing a run folder for as long as
the test looks (SIGINT at the end). `CutProxy`: a TCP proxy to a server whose connections the test
can cut (a network drop), recording each request's head.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

TMUX = shutil.which("tmux")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_ID = "20261202-000000-text-live"
ITERS = 200000


class Tmux:
    def __init__(self, socket: str):
        self.socket = socket

    def tmux(self, *args: str, check: bool = True) -> str:
        r = subprocess.run([TMUX, "-L", self.socket, *args], capture_output=True, text=True,
                           timeout=30)
        if check and r.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout

    @classmethod
    def start(cls, command: str, width: int, height: int, env: dict, cwd: str) -> "Tmux":
        t = cls(f"alpha-test-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        args = ["new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), "-c", cwd]
        for key, value in env.items():
            args += ["-e", f"{key}={value}"]
        t.tmux("-f", "/dev/null", *args, command)
        t.tmux("set-option", "-g", "remain-on-exit", "on", check=False)
        return t

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.tmux("kill-server", check=False)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t")

    def keys(self, *keys: str, literal: bool = False) -> None:
        self.tmux("send-keys", "-t", "t", *(["-l"] if literal else []), *keys)

    def resize(self, width: int, height: int) -> None:
        self.tmux("resize-window", "-t", "t", "-x", str(width), "-y", str(height))

    def display(self, fmt: str) -> str:
        return self.tmux("display-message", "-p", "-t", "t", fmt).strip()

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match:
        """The first match of `pattern` on the screen, polling until `timeout`."""
        deadline = time.monotonic() + timeout
        screen = ""
        while True:
            screen = self.screen()
            m = re.search(pattern, screen)
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not on screen after {timeout}s:\n{screen}")
            time.sleep(0.05)


@contextlib.contextmanager
def training(tmp_path):
    """(outputs folder, process): a tiny model training into outputs/RUN_ID, with a checkpoint
    already written when the block starts."""
    data = tmp_path / "data.txt"
    data.write_text("the quick brown fox jumps over the lazy dog, again and again.\n" * 300)
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    env = {**os.environ, "ALPHA_NUM_THREADS": "1", "PYTHONPATH": ROOT}
    proc = subprocess.Popen(
        [sys.executable, "-m", "alpha", "train", "--data", str(data), "--layers", "1",
         "--heads", "2", "--dim", "32", "--block", "32", "--batch", "4", "--iters", str(ITERS),
         "--eval-interval", "100", "--sample-interval", "200", "--checkpoint-interval", "500",
         "--sample-tokens", "16", "--keep-checkpoints", "3", "--log-interval", "20",
         "--run-dir", str(outputs / RUN_ID)],
        cwd=str(tmp_path), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        ckdir = outputs / RUN_ID / "checkpoints"
        while not (ckdir.is_dir() and any(ckdir.iterdir())):
            if proc.poll() is not None:
                raise AssertionError(f"train exited with {proc.returncode}")
            assert time.monotonic() < deadline, "train wrote no checkpoint within 60 s"
            time.sleep(0.1)
        yield outputs, proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class CutProxy:
    """127.0.0.1:<port> forwarding to `target` (host, port); `cut()` closes every connection."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.heads: list[bytes] = []  # the first bytes of each connection (the request head)
        self.socks: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.socks += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, src, dst, record: bool) -> None:
        first = record
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if first:
                    with self.lock:
                        self.heads.append(data)
                    first = False
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
                s.close()

    def close(self) -> None:
        self.cut()
        self.listener.close()
