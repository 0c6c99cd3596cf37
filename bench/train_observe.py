"""What the trainer's observability costs, and its MFU beside PyTorch's on the same machine.

    python bench/train_observe.py             # config A (train_speed.py), 30 steps per run
    python bench/train_observe.py --steps 10

Three Alpha runs of config A (vocab 256, 4 layers, 128 dim, block 128, batch 16) on the CPU
backend through the real Trainer: plain; with --spike-threshold (never tripping), --packed and
--layer-stats-interval 1 (a layer-stats row every step: the worst case); and the same with
--layer-stats-interval 0. It prints the median ms per step and the per-phase medians of each, the
MFU (alpha.train.mfu: nanoGPT's FLOPs per token over the measured FMA peak), and PyTorch eager's
MFU for the same config and peak (bench/train_speed.py's twin, when torch is importable; said so
when not). Then the packed loader's shuffle: seconds per million windows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from train_speed import CONFIGS, busy_note, machine_busy, run_one, torch_python  # noqa: E402

PHASES = ("data_ms", "forward_ms", "backward_ms", "optimizer_ms")


def _alpha_run(folder: str, data: str, steps: int, **train) -> list[dict]:
    from alpha.core.config import resolve
    from alpha.train.trainer import Trainer

    c = CONFIGS["A"]
    model = {k: c[k] for k in ("n_layer", "n_head", "n_embd", "block_size")}
    t = {"data": data, "batch_size": c["batch"], "iters": steps, "eval_interval": 0,
         "sample_interval": 0, "checkpoint_interval": 0, "warmup_iters": 2, "run_dir": folder,
         "tokenizer": "char", **train}
    trainer = Trainer(resolve("text", "", {"model": model, "train": t}), out=None)
    trainer.train()
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return rows[2:], trainer  # the first steps warm up


def _median(rows, key):
    return statistics.median(r[key] for r in rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=30)
    args = p.parse_args()
    if machine_busy():
        print(busy_note())
    tmp = tempfile.mkdtemp(prefix="alpha-observe-")
    data = os.path.join(tmp, "data.txt")
    with open(data, "w") as f:  # 256 distinct characters' worth of text is not needed: any text
        f.write("".join(chr(32 + (i * 7919) % 95) for i in range(400_000)))
    runs = {
        "plain": {},
        "all options": {"spike_threshold": 1e9, "packed": True, "layer_stats_interval": 1},
        "no layer stats": {"spike_threshold": 1e9, "packed": True},
    }
    results = {}
    for name, train in runs.items():
        rows, trainer = _alpha_run(os.path.join(tmp, name.replace(" ", "-")), data, args.steps,
                                   **train)
        results[name] = rows
        peak, fpt = trainer.meter.peak, trainer.meter.flops_per_token
    print(f"config A, {args.steps} steps (first 2 untimed), CPU backend; measured peak "
          f"{peak / 1e9:.1f} GFLOP/s, {fpt / 1e6:.2f} MFLOP per token")
    print(f"{'run':<16}{'ms/step':>9}" + "".join(f"{k:>14}" for k in PHASES) + f"{'mfu':>8}")
    for name, rows in results.items():
        print(f"{name:<16}{_median(rows, 'ms_per_iter'):>9.1f}"
              + "".join(f"{_median(rows, k):>14.2f}" for k in PHASES)
              + f"{_median(rows, 'mfu'):>8.3f}")
    base = _median(results["plain"], "ms_per_iter")
    for name in ("all options", "no layer stats"):
        print(f"{name}: {_median(results[name], 'ms_per_iter') / base:.3f}x the plain step time")
    stats_path = os.path.join(tmp, "all-options", "layer_stats.jsonl")
    with open(stats_path) as f:
        stats = [json.loads(line)["ms"] for line in f if line.strip()]
    print(f"a layer-stats row: median {statistics.median(stats):.2f} ms")

    tpy = torch_python()
    if tpy is None:
        print("PyTorch is not importable here: no reference MFU")
    else:
        ns = argparse.Namespace(steps=args.steps, warmup=2, decode=0)
        t = run_one(tpy, "torch", "A", ns)
        if t:
            torch_mfu = fpt * t["tok_s"] / peak
            alpha_mfu = _median(results["plain"], "mfu")
            print(f"PyTorch eager, same config and peak: {t['tok_s']:.0f} tok/s, mfu "
                  f"{torch_mfu:.3f}; alpha/torch {alpha_mfu / torch_mfu:.2f}x")

    from alpha.core.rng import Rng
    from alpha.train.sampler import BatchSampler

    n = 1_000_000 * 8 + 1
    s = BatchSampler(range(n), 1, 8, Rng(1), mode="packed")
    t0 = time.perf_counter()
    s._shuffle()
    print(f"packed shuffle: {time.perf_counter() - t0:.2f} s per million windows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
