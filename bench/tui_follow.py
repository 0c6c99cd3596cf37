"""Benchmark: what the terminal dashboard costs while it follows many live runs, and how fast it
answers a key.

    python bench/tui_follow.py [--runs 20] [--seconds 30] [--rate 20]

A writer process appends to `--runs` run folders as trainers do (`--rate` metrics rows a second
per run, an eval event every 50 steps, a train.log line every 10 steps). `python -m alpha tui`
follows them in a tmux pane (120x40, on the Runs tab, then the Run tab with its charts); its CPU
time over `--seconds` comes from /proc. Key latency, two ways: on a pseudo-terminal of our own,
from writing the key's byte to reading the new tab's text among the bytes curses sends (what a
terminal would show); and through tmux, `send-keys` until `capture-pane` shows it (tmux's round
trips and process starts included: an upper bound).

Targets: <= 5% of one core following 20 live runs; a key answered within 100 ms. Needs tmux.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import select
import shutil
import socket
import struct
import statistics
import subprocess
import sys
import tempfile
import termios
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.tui_helpers import Tmux  # noqa: E402

TARGET_CPU = 0.05
TARGET_KEY_S = 0.100

WRITER = r"""
import json, os, sys, time
root, runs, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
files = []
for i in range(runs):
    path = os.path.join(root, f"20261202-0000{i:02d}-text-b{i:03d}")
    files.append([open(os.path.join(path, n), "a") for n in
                  ("metrics.jsonl", "events.jsonl", "train.log")])
step, t0 = 0, time.time()
while True:
    step += 1
    for i, (m, e, log) in enumerate(files):
        row = {"step": step, "loss": 3.0 / (1 + step / 200) + 0.01 * (i % 7), "lr": 1e-3,
               "grad_norm": 0.5, "clip_coef": 1.0, "tokens_per_sec": 15000.0 + i,
               "ms_per_iter": 1000 / rate, "elapsed_s": step / rate, "timing_fwd_ms": 10.0,
               "timing_bwd_ms": 20.0, "timing_optim_ms": 1.0, "timing_data_ms": 0.1}
        if step % 50 == 0:
            row["val_loss"] = row["loss"] + 0.05
            e.write(json.dumps({"step": step, "level": "info", "kind": "eval",
                                "message": f"step {step}: val loss {row['val_loss']:.4f}",
                                "payload": {"val_loss": row["val_loss"]}}) + "\n")
            e.flush()
        m.write(json.dumps(row) + "\n")
        m.flush()
        if step % 10 == 0:
            log.write(f"00:00:00 step {step}/100000 | loss {row['loss']:.4f}\n")
            log.flush()
    time.sleep(max(0.0, t0 + step / rate - time.time()))
"""


def make_runs(root: str, runs: int, writer_pid: int) -> None:
    for i in range(runs):
        path = os.path.join(root, f"20261202-0000{i:02d}-text-b{i:03d}")
        os.makedirs(os.path.join(path, "checkpoints"), exist_ok=True)
        config = {"run_id": os.path.basename(path), "domain": "text", "tokenizer": "char",
                  "model": {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 128,
                            "vocab_size": 65, "activation": "gelu"},
                  "train": {"iters": 100000}, "sample": {},
                  "info": {"param_count": 800000, "pid": writer_pid,
                           "host": socket.gethostname()}}
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(config, f)
        with open(os.path.join(path, "events.jsonl"), "w") as f:
            f.write(json.dumps({"step": 0, "level": "info", "kind": "start",
                                "message": "started"}) + "\n")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_cpu(pid: int, seconds: float) -> float:
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def key_latencies(t: Tmux, count: int) -> list[float]:
    out = []
    for i in range(count):
        key, marker = ("2", "loss and val loss") if i % 2 == 0 else ("1", "RUN ")
        t0 = time.monotonic()
        t.keys(key)
        while marker not in t.screen():
            time.sleep(0.002)
        out.append(time.monotonic() - t0)
        time.sleep(0.2)
    return out


def pty_latencies(root: str, count: int) -> list[float]:
    """Key to painted bytes, on a 120x40 pseudo-terminal that this process reads."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {**os.environ, "PYTHONPATH": ROOT, "LANG": "C.UTF-8", "TERM": "xterm-256color"}
    proc = subprocess.Popen([sys.executable, "-m", "alpha", "tui", "--outputs", root],
                            stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT,
                            start_new_session=True)
    os.close(slave)

    def read_until(marker: bytes, timeout: float = 10.0) -> None:
        seen, deadline = b"", time.monotonic() + timeout
        while marker not in seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{marker!r} never came")
            if select.select([master], [], [], left)[0]:
                seen = (seen + os.read(master, 65536))[-65536:]

    def drain() -> None:
        while select.select([master], [], [], 0)[0]:
            os.read(master, 65536)

    out = []
    try:
        read_until(b"b019", 30)
        time.sleep(2.0)
        for _ in range(count):
            drain()
            t0 = time.monotonic()
            os.write(master, b"2")
            read_until(b"loss and val loss")
            out.append(time.monotonic() - t0)
            time.sleep(0.1)
            os.write(master, b"1")
            time.sleep(0.2)
        os.write(master, b"q")
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rate", type=float, default=20.0, help="metrics rows a second per run")
    args = ap.parse_args()
    if shutil.which("tmux") is None:
        print("needs tmux (apt-get install tmux)")
        return 2
    root = tempfile.mkdtemp(prefix="alpha-tui-bench-")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, root, str(args.runs),
                               str(args.rate)])
    try:
        make_runs(root, args.runs, writer.pid)
        time.sleep(0.5)
        command = f"exec {sys.executable} -m alpha tui --outputs {root}"
        env = {"PYTHONPATH": ROOT, "LANG": "C.UTF-8", "TERM": "xterm-256color"}
        with Tmux.start(command, 120, 40, env, ROOT) as t:
            t.wait_for(r"b019" if args.runs >= 20 else r"RUN ")
            pid = int(t.display("#{pane_pid}"))
            time.sleep(3.0)  # the first read of every file is done
            load = os.getloadavg()[0]
            runs_tab = measure_cpu(pid, args.seconds)
            t.keys("2")
            run_tab = measure_cpu(pid, args.seconds / 3)
            t.keys("1")
            keys = key_latencies(t, 20)
            t.keys("q")
        direct = pty_latencies(root, 20)
    finally:
        writer.kill()
        writer.wait()
        shutil.rmtree(root, ignore_errors=True)
    rows = args.runs * args.rate
    print(f"following {args.runs} live runs ({rows:.0f} metrics rows/s in all), "
          f"load average {load:.1f} on {os.cpu_count()} CPUs")
    print(f"  Runs tab: {runs_tab * 100:.2f}% of one core over {args.seconds:.0f} s "
          f"(target <= {TARGET_CPU * 100:.0f}%)")
    print(f"  Run tab (charts): {run_tab * 100:.2f}% of one core over {args.seconds / 3:.0f} s")
    p90 = sorted(direct)[int(len(direct) * 0.9) - 1]
    print(f"  key to painted bytes (own pty): median {statistics.median(direct) * 1000:.0f} ms, "
          f"p90 {p90 * 1000:.0f} ms, max {max(direct) * 1000:.0f} ms "
          f"(target <= {TARGET_KEY_S * 1000:.0f} ms)")
    print(f"  key to screen via tmux: median {statistics.median(keys) * 1000:.0f} ms, "
          f"max {max(keys) * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
