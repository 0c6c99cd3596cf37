"""Optimizer step time: each of Alpha's optimizers (one update of a whole model's flat buffers)
beside PyTorch's on the same parameter shapes, both on the CPU with the same thread count.

    python bench/optimizers.py                   # config B's shapes (~11M parameters)
    python bench/optimizers.py --layers 4 --dim 128 --vocab 256 --block 128 --steps 20
    python bench/optimizers.py --backend helios  # Alpha on helios (PyTorch stays on the CPU)

The twins: torch.optim.AdamW (foreach), SGD (momentum 0.9), Adafactor (PyTorch's own variant,
which differs from Alpha's: no update clipping, its own eps; the same work per element), Muon
(torch.optim.Muon on the blocks' matrices, bfloat16 Newton-Schulz, + AdamW for the rest; Alpha
runs Newton-Schulz in f32 and splits c_attn into q, k, v), and for Lion, which PyTorch lacks, a
few `torch._foreach_*` lines of the paper's rule. Gradients are random; the first `--warmup`
updates are not timed. PyTorch is imported if installed; without it the table says so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from alpha.core.config import ModelConfig, TrainConfig  # noqa: E402
from alpha.model.gpt import GPT  # noqa: E402
from alpha.tensor import build, get_backend  # noqa: E402
from alpha.train.optimizers import OPTIMIZERS, build_optimizer  # noqa: E402
from alpha.train.optimizers.muon import is_hidden_matrix  # noqa: E402

LRS = {"adamw": 1e-3, "lion": 1e-4, "adafactor": 1e-2, "sgd": 0.1, "muon": 1e-3}


def time_alpha(backend: str, cfg: ModelConfig, name: str, steps: int, warmup: int) -> float:
    """ms per update of Alpha's optimizer `name`."""
    be = get_backend(backend)
    model = GPT(cfg, be)
    be.rng_normal(model.grads, (7, 7), 0, 0.0, 1e-3)
    tc = TrainConfig(optimizer=name, lr=LRS[name], min_lr=0.0)
    opt = build_optimizer(be, model, tc)
    for _ in range(warmup):
        opt.update(tc.lr, grad_scale=1.0)
    be.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.update(tc.lr, grad_scale=1.0)
    be.synchronize()
    return (time.perf_counter() - t0) / steps * 1000.0


def _lion_torch(torch, params, lr=1e-4, b1=0.9, b2=0.99, wd=0.1):
    """Lion's update (Chen et al. 2023) in foreach ops: PyTorch ships no Lion."""
    ms = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step():
        grads = [p.grad for p in params]
        c = torch._foreach_lerp(ms, grads, 1 - b1)
        torch._foreach_mul_(params, 1 - lr * wd)
        torch._foreach_add_(params, torch._foreach_sign(c), alpha=-lr)
        torch._foreach_lerp_(ms, grads, 1 - b2)
    return step


def time_torch(cfg: ModelConfig, name: str, steps: int, warmup: int, threads: int):
    """ms per update of PyTorch's twin, or None when PyTorch is missing."""
    if os.getloadavg()[0] >= (os.cpu_count() or 1):
        # a busy machine: OpenMP's spinning barrier makes PyTorch several times slower
        # (bench/train_speed.py measured it); set before torch loads OpenMP
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch
    except ImportError:
        return None
    from alpha.model.params import param_table

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    named = []
    for pname, shape in param_table(cfg):
        t_shape = tuple(reversed(shape)) if len(shape) == 2 else shape  # torch: (out, in)
        p = torch.nn.Parameter(torch.randn(t_shape) * 0.02)
        p.grad = torch.randn(t_shape) * 1e-3
        named.append((pname, shape, p))
    params = [p for _, _, p in named]
    lr = LRS[name]
    if name == "adamw":
        opts = [torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.99), weight_decay=0.1)]
    elif name == "sgd":
        opts = [torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=0.1)]
    elif name == "adafactor":
        opts = [torch.optim.Adafactor(params, lr=lr, weight_decay=0.1)]
    elif name == "muon":
        mats = [p for n, s, p in named if is_hidden_matrix(n, s)]
        rest = [p for n, s, p in named if not is_hidden_matrix(n, s)]
        opts = [torch.optim.Muon(mats, lr=0.02, weight_decay=0.0, momentum=0.95),
                torch.optim.AdamW(rest, lr=lr, betas=(0.9, 0.99), weight_decay=0.1)]
    else:
        step = _lion_torch(torch, params, lr)
        opts = [type("Twin", (), {"step": staticmethod(step)})()]
    for _ in range(warmup):
        for o in opts:
            o.step()
    t0 = time.perf_counter()
    for _ in range(steps):
        for o in opts:
            o.step()
    return (time.perf_counter() - t0) / steps * 1000.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="cpu", choices=("cpu", "helios"))
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--block", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated optimizers (default: all)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    cfg = ModelConfig(vocab_size=args.vocab, n_layer=args.layers, n_head=args.heads,
                      n_embd=args.dim, block_size=args.block)
    threads = build.num_threads()
    names = [n for n in (args.only.split(",") if args.only else OPTIMIZERS)]
    from alpha.model.params import num_params

    rows = []
    for name in names:
        ours = time_alpha(args.backend, cfg, name, args.steps, args.warmup)
        theirs = time_torch(cfg, name, args.steps, args.warmup, threads)
        rows.append({"optimizer": name, "alpha_ms": ours, "torch_ms": theirs,
                     "ratio": ours / theirs if theirs else None})
    if args.json:
        print(json.dumps({"params": num_params(cfg), "threads": threads,
                          "backend": args.backend, "rows": rows}))
        return 0
    load = os.getloadavg()[0]
    print(f"{num_params(cfg) / 1e6:.1f}M parameters, Alpha on {args.backend}, PyTorch on the CPU, "
          f"{threads} threads, load average {load:.1f} ({os.cpu_count()} cores)")
    print(f"{'optimizer':<10} {'alpha ms':>9} {'torch ms':>9} {'alpha/torch':>11}")
    for r in rows:
        t = f"{r['torch_ms']:9.1f}" if r["torch_ms"] else "  no torch"
        ratio = f"{r['ratio']:11.2f}" if r["ratio"] else ""
        print(f"{r['optimizer']:<10} {r['alpha_ms']:9.1f} {t} {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
