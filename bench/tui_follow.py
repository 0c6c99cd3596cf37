"""Benchmark: what the terminal dashboard costs while it follows many live runs, and how fast it
answers a key.

    python bench/tui_follow.py [--runs 20] [--seconds 30] [--rate 20]

A writer process appends to `--runs` run folders as trainers do (`--rate` metrics rows a second
per run, an eval event every 50 steps, a train.log line every 10 steps). `python -m alpha tui`
follows them in a tmux pane (120x40, on the Runs tab, then the Run tab with its charts); its CPU
time over `--seconds` comes from /proc. Key latency: a tab key sent with `tmux send-keys` until
the new tab is on `capture-pane` (so tmux's own round trip is included: an upper bound).

Targets: <= 5% of one core following 20 live runs; a key answered within 100 ms. Needs tmux.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
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
    print(f"  key to screen via tmux: median {statistics.median(keys) * 1000:.0f} ms, "
          f"max {max(keys) * 1000:.0f} ms (target <= {TARGET_KEY_S * 1000:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
