"""Where the host time of a helios training step goes: cProfile of GPT-2 small steps (after a
warm-up) on helios, the top functions by own time. A development aid for bench/gpu_train.py.

    python bench/gpu_profile_step.py [--dtype bf16] [--steps 2]
"""

from __future__ import annotations

import argparse
from array import array
import cProfile
import os
import pstats
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dtype", default="bf16")
    p.add_argument("--steps", type=int, default=2)
    args = p.parse_args()
    from alpha.core.config import ModelConfig
    from alpha.core.rng import Rng
    from alpha.model.gpt import GPT
    from alpha.tensor import get_backend
    from alpha.core.config import TrainConfig
    from alpha.train.optim import clip_coef, grad_norm
    from alpha.train.optimizers import build_optimizer

    B, T, V = 16, 1024, 50304
    cfg = ModelConfig(vocab_size=V, n_layer=12, n_head=12, n_embd=768, block_size=T)
    be = get_backend("helios").with_matmul_dtype(args.dtype)
    rng = Rng(0)
    model = GPT(cfg, be, rng)
    opt = build_optimizer(be, model, TrainConfig(optimizer="adamw", beta1=0.9, beta2=0.95,
                                                 eps=1e-8, weight_decay=0.1))
    data = rng.stream("data")
    # array('i') like the trainer's BatchSampler (from_array converts a list element by element)
    xs, ys = array("i", data.randint(B * T, V)), array("i", data.randint(B * T, V))

    def step():
        ids, targets = (be.from_array(xs, (B, T), "i32"), be.from_array(ys, (B, T), "i32"))
        model.zero_grad()
        _, loss = model.forward(ids, targets)
        loss.to_array()
        model.backward()
        opt.update(3e-4, grad_scale=clip_coef(grad_norm(be, model.grads), 1.0))
        be.synchronize()

    step()
    n0 = be.dev.dispatches
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    for _ in range(args.steps):
        step()
    prof.disable()
    wall = (time.perf_counter() - t0) / args.steps
    print(f"{1000 * wall:.1f} ms/step under cProfile, "
          f"{(be.dev.dispatches - n0) / args.steps:.0f} dispatches/step")
    pstats.Stats(prof).sort_stats("tottime").print_stats(22)
    return 0


if __name__ == "__main__":
    sys.exit(main())
