"""Rotary positions and the attention softcap on the CPU backend: their cost, beside PyTorch eager
(CPU, the same thread count) measured in the same run.

    python bench/rope_softcap.py [--threads 2] [--budget 0.5]

Shape: config B's attention (batch 8, block 256, dim 384, 6 heads). Rows:
- rope forward + backward on packed qkv (Alpha's `rope_forward`/`rope_backward`; PyTorch:
  HF LLaMA's `rotate_half` formula on q and k, autograd backward);
- causal attention forward + backward, softcap off and at 30 (Alpha's fused kernel; PyTorch:
  `scaled_dot_product_attention` when off, and scores -> 30 tanh(s/30) -> mask -> softmax -> @ v
  with autograd when on, since SDPA has no cap);
- a config-A training step (forward + backward + AdamW), GPT-2 vs rope + softcap 30.
Times are the best of repeated calls; ratios are Alpha / PyTorch (below 1: Alpha is faster).
PyTorch is imported when installed, else its columns say "not installed".
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from alpha.bench.kernels import _filled, best_time  # noqa: E402
from alpha.core.config import ModelConfig  # noqa: E402
from alpha.core.rng import Rng, Stream  # noqa: E402
from alpha.model import GPT  # noqa: E402
from alpha.model.rope import tables  # noqa: E402
from alpha.tensor import build, get_backend  # noqa: E402

B, T, C, NH = 8, 256, 384, 6
CAP = 30.0


def alpha_cases(budget):
    be = get_backend("cpu")
    hs = C // NH
    qkv = _filled((B, T, 3 * C))
    cos, sin = (be.from_array(a, (T, hs // 2)) for a in tables(T, hs, 10000.0))
    pos = be.from_array(range(T), (T,), "i32")
    out, dqkv = be.zeros((B, T, 3 * C)), be.zeros((B, T, 3 * C))

    def rope():
        be.rope_forward(out, qkv, pos, cos, sin, NH)
        be.rope_backward(dqkv, out, pos, cos, sin, NH)

    def attention(cap):
        o, lse, d = be.zeros((B, T, C)), be.zeros((B, NH, T)), be.zeros((B, T, 3 * C))
        dout = _filled((B, T, C), seed=2)

        def run():
            be.attention_forward(o, lse, qkv, NH, cap)
            be.attention_backward(d, dout, qkv, o, lse, NH, cap)
        return run

    return {"rope": best_time(rope, budget),
            "attention": best_time(attention(0.0), budget),
            "attention_softcap": best_time(attention(CAP), budget)}


def torch_cases(budget, threads):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    hs = C // NH
    g = torch.Generator().manual_seed(1)
    qkv = (torch.rand(B, T, 3 * C, generator=g) - 0.5).requires_grad_(True)
    inv = 1.0 / 10000.0 ** (torch.arange(0, hs, 2, dtype=torch.float64) / hs)
    ang = torch.outer(torch.arange(T, dtype=torch.float64), inv)
    emb = torch.cat([ang, ang], -1)
    cos, sin = emb.cos().float(), emb.sin().float()

    def rotate_half(x):
        return torch.cat([-x[..., hs // 2:], x[..., :hs // 2]], -1)

    def rope():
        x = qkv.view(B, T, 3, NH, hs)
        q, k, v = x[:, :, 0], x[:, :, 1], x[:, :, 2]
        c, s = cos[None, :, None], sin[None, :, None]
        y = torch.stack([q * c + rotate_half(q) * s, k * c + rotate_half(k) * s, v], 2)
        y.backward(y.detach())
        qkv.grad = None

    dout = torch.rand(B, T, C, generator=g) - 0.5
    mask = torch.ones(T, T, dtype=torch.bool).tril()

    def attention(cap):
        def run():
            q, k, v = (t.view(B, T, NH, hs).transpose(1, 2) for t in qkv.split(C, 2))
            if not cap:
                o = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                s = q @ k.transpose(-1, -2) / math.sqrt(hs)
                s = (cap * torch.tanh(s / cap)).masked_fill(~mask, float("-inf"))
                o = s.softmax(-1) @ v
            o.transpose(1, 2).reshape(B, T, C).backward(dout)
            qkv.grad = None
        return run

    return {"rope": best_time(rope, budget),
            "attention": best_time(attention(0.0), budget),
            "attention_softcap": best_time(attention(CAP), budget)}


def train_step(budget, **arch):
    be = get_backend("cpu")
    cfg = ModelConfig(vocab_size=256, n_layer=4, n_head=4, n_embd=128, block_size=128, **arch)
    m = GPT(cfg, be, Rng(1))
    s = Stream((1, 2))
    ids = be.from_array(s.randint(16 * 128, 256), (16, 128), "i32")
    tg = be.from_array(s.randint(16 * 128, 256), (16, 128), "i32")
    params, grads = m.params, m.grads
    mom, var = be.zeros(params.shape), be.zeros(params.shape)
    step = [0]

    def run():
        m.zero_grad()
        m.forward(ids, tg)
        m.backward()
        step[0] += 1
        be.adamw_step(params, grads, mom, var, lr=1e-3, beta1=0.9, beta2=0.95, eps=1e-8,
                      weight_decay=0.1, step=step[0])
    return best_time(run, budget, min_reps=3, max_reps=20)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--budget", type=float, default=0.5, help="seconds per timed case")
    args = p.parse_args(argv)
    build.set_num_threads(args.threads)
    t0 = time.perf_counter()
    alpha = alpha_cases(args.budget)
    torch = torch_cases(args.budget, args.threads)
    print(f"B={B} T={T} C={C} nh={NH}, {args.threads} threads, softcap {CAP:g}")
    print(f"{'case':<22}{'alpha ms':>10}{'torch ms':>10}{'ratio':>8}")
    for name, t in alpha.items():
        ref = torch[name] if torch else None
        cols = (f"{ref * 1e3:>10.2f}{t / ref:>8.2f}" if ref else f"{'not installed':>18}")
        print(f"{name + ' fwd+bwd':<22}{t * 1e3:>10.2f}{cols}")
    cost = alpha["attention_softcap"] / alpha["attention"]
    ref = f" (torch x{torch['attention_softcap'] / torch['attention']:.2f})" if torch else ""
    print(f"softcap cost in Alpha's attention: x{cost:.2f}{ref}")
    base = train_step(args.budget * 4)
    modern = train_step(args.budget * 4, pos="rope", attn_softcap=CAP)
    print(f"config A train step: GPT-2 {base * 1e3:.1f} ms, rope + softcap {modern * 1e3:.1f} ms "
          f"(x{modern / base:.2f})")
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
