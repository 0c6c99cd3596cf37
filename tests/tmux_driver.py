"""Driving a program in a real terminal: a tmux server on a private socket (`tmux -L <unique>`, so
a user's own tmux is never touched), `send-keys` to type and `capture-pane` to read the screen.

    with Tmux.start("python3 -m alpha tui", width=100, height=30, env={...}) as t:
        t.wait_for("1 Runs")
        t.keys("2")
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid

TMUX = shutil.which("tmux")


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
