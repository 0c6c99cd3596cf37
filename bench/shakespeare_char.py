"""Tiny Shakespeare, character level: nanoGPT's baby GPT scaled to two cores, Alpha beside PyTorch.

    python bench/shakespeare_char.py               # 2000 steps, both frameworks
    python bench/shakespeare_char.py --iters 200   # a quick look
    python bench/shakespeare_char.py --seeds 3     # seeds 1337, 1338, 1339: per seed and the mean

The config (both frameworks): char tokenizer; 4 layers, 4 heads, 128 dim, block 64, batch 12,
no biases, dropout 0, tied embeddings; AdamW lr 1e-3 with 100 warmup steps and cosine decay to
1e-4, beta2 0.99, weight decay 0.1 (matmul weights only), gradient clip 1.0; validation is the last
10% of the file, evaluated at the end over 200 batches. Reported: final validation loss and wall
time (tokenizing, training and the evaluation). Target: val loss <= 1.90 in about 3 minutes.
The final loss moves by about +-0.015 from seed to seed (initial weights and batches), more than
the gap being measured: `--seeds N` runs N seeds per framework (Alpha then PyTorch for each seed,
so a change in machine load hits both) and reports the mean and the spread.

Alpha runs through its real Trainer (a run folder in a temporary directory). PyTorch runs the same
model and schedule in eager mode with 2 threads, when torch is importable here or under
.venv-bench/bin/python; otherwise the script says so and reports Alpha alone.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "tinyshakespeare.txt"))

MODEL = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, bias=False, dropout=0.0)
TRAIN = dict(batch_size=12, iters=2000, lr=1e-3, min_lr=1e-4, warmup_iters=100, beta1=0.9,
             beta2=0.99, weight_decay=0.1, grad_clip=1.0, eval_iters=200)
TARGET_LOSS = 1.90


def lr_at(step, lr, min_lr, warmup, iters):
    if warmup and step <= warmup:
        return lr * step / warmup
    if step >= iters:
        return min_lr
    coeff = 0.5 * (1 + math.cos(math.pi * (step - warmup) / (iters - warmup)))
    return min_lr + coeff * (lr - min_lr)


def run_alpha(data: str, iters: int, seed: int) -> dict:
    sys.path.insert(0, ROOT)
    from alpha.core.config import resolve
    from alpha.train.trainer import Trainer

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        train = {**TRAIN, "iters": iters, "data": data, "tokenizer": "char", "seed": seed,
                 "eval_interval": iters, "sample_interval": 0, "checkpoint_interval": 0,
                 "log_interval": 100, "run_dir": os.path.join(tmp, "run")}
        cfg = resolve("text", "", {"model": MODEL, "train": train})
        result = Trainer(cfg, out=sys.stderr).train()
    return {"framework": "alpha cpu", "val_loss": result.val_loss, "train_loss": result.loss,
            "wall_s": time.perf_counter() - t0, "train_s": result.elapsed_s}


def run_torch(data: str, iters: int, seed: int) -> dict:
    import torch

    sys.path.insert(0, HERE)
    from train_speed import torch_gpt, torch_optimizer

    torch.set_num_threads(2)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    with open(data, encoding="utf-8") as f:
        text = f.read()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    cut = int(len(ids) * 0.9)
    train_ids, val_ids = ids[:cut], ids[cut:]
    B, T = TRAIN["batch_size"], MODEL["block_size"]
    model = torch_gpt(len(chars), MODEL["n_layer"], MODEL["n_head"], MODEL["n_embd"], T,
                      bias=MODEL["bias"], dropout=MODEL["dropout"])
    opt = torch_optimizer(model, TRAIN["lr"], TRAIN["weight_decay"], TRAIN["beta1"],
                          TRAIN["beta2"])

    def batch(src):
        ix = torch.randint(len(src) - T, (B,))
        return (torch.stack([src[i:i + T] for i in ix]),
                torch.stack([src[i + 1:i + T + 1] for i in ix]))

    t_train = time.perf_counter()
    loss = None
    for step in range(1, iters + 1):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, TRAIN["lr"], TRAIN["min_lr"], TRAIN["warmup_iters"], iters)
        x, y = batch(train_ids)
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), TRAIN["grad_clip"])
        opt.step()
        if step % 100 == 0:
            print(f"torch step {step}/{iters} | loss {loss.item():.4f} | "
                  f"{time.perf_counter() - t_train:.0f}s", file=sys.stderr)
    train_s = time.perf_counter() - t_train
    model.eval()
    total = 0.0
    with torch.no_grad():
        for _ in range(TRAIN["eval_iters"]):
            _, vl = model(*batch(val_ids))
            total += vl.item()
    return {"framework": "pytorch " + torch.__version__, "val_loss": total / TRAIN["eval_iters"],
            "train_loss": loss.item(), "wall_s": time.perf_counter() - t0, "train_s": train_s}


def summarize(runs: list[dict]) -> dict:
    """Mean, sample standard deviation and range of the val loss, mean wall time, over seeds."""
    vals = [r["val_loss"] for r in runs]
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return {"runs": len(runs), "val_loss_mean": mean, "val_loss_std": std,
            "val_loss_min": min(vals), "val_loss_max": max(vals),
            "wall_s_mean": sum(r["wall_s"] for r in runs) / len(runs)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iters", type=int, default=TRAIN["iters"])
    p.add_argument("--data", default=DATA)
    p.add_argument("--seed", type=int, default=1337, help="the first seed")
    p.add_argument("--seeds", type=int, default=1, help="how many seeds, from --seed up")
    p.add_argument("--no-torch", action="store_true", help="Alpha only")
    p.add_argument("--torch-side", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if not os.path.isfile(args.data):
        print(f"error: {args.data} not found (pass --data FILE)", file=sys.stderr)
        return 2
    if args.torch_side:
        print(json.dumps(run_torch(args.data, args.iters, args.seed)))
        return 0

    sys.path.insert(0, HERE)
    from train_speed import busy_note, machine_busy, torch_env, torch_python

    if machine_busy():
        print(busy_note())
    seeds = [args.seed + k for k in range(args.seeds)]
    tpy = None if args.no_torch else torch_python()
    if not tpy and not args.no_torch:
        print("PyTorch is not importable here and .venv-bench has none: Alpha alone "
              "(python3 -m venv .venv-bench && .venv-bench/bin/pip install torch==2.13.0)")
    results = []
    for seed in seeds:
        results.append({**run_alpha(args.data, args.iters, seed), "seed": seed})
        if tpy:
            r = subprocess.run([tpy, os.path.abspath(__file__), "--torch-side", "--iters",
                                str(args.iters), "--data", args.data, "--seed", str(seed)],
                               stdout=subprocess.PIPE, text=True, cwd=ROOT, env=torch_env())
            if r.returncode == 0:
                results.append({**json.loads(r.stdout.strip().splitlines()[-1]), "seed": seed})
            else:
                print(f"the PyTorch run of seed {seed} failed (see above)", file=sys.stderr)

    print(f"\ntiny shakespeare char, {args.iters} steps, 4L 4H 128d, block 64, batch 12:")
    for r in results:
        ok = "meets" if r["val_loss"] is not None and r["val_loss"] <= TARGET_LOSS else "misses"
        print(f"  {r['framework']:<22} seed {r['seed']:<6} val loss {r['val_loss']:.4f} "
              f"({ok} <= {TARGET_LOSS}), train loss {r['train_loss']:.4f}, "
              f"wall {r['wall_s']:.1f}s (training {r['train_s']:.1f}s)")
    frameworks = list(dict.fromkeys(r["framework"] for r in results))
    summary = {fw: summarize([r for r in results if r["framework"] == fw]) for fw in frameworks}
    if len(seeds) > 1:
        print(f"  over {len(seeds)} seeds (mean, sample std, min..max):")
        for fw, m in summary.items():
            ok = "meets" if m["val_loss_mean"] <= TARGET_LOSS else "misses"
            print(f"  {fw:<22} val loss {m['val_loss_mean']:.4f} +- {m['val_loss_std']:.4f} "
                  f"({m['val_loss_min']:.4f}..{m['val_loss_max']:.4f}; mean {ok} "
                  f"<= {TARGET_LOSS}), wall {m['wall_s_mean']:.1f}s")
    if len(frameworks) == 2:
        a, t = (summary[fw] for fw in frameworks)
        print(f"  alpha/torch wall time: {a['wall_s_mean'] / t['wall_s_mean']:.2f}x, val loss "
              f"alpha - torch: {a['val_loss_mean'] - t['val_loss_mean']:+.4f}")
    print(json.dumps({"iters": args.iters, "seeds": seeds, "results": results,
                      "summary": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
