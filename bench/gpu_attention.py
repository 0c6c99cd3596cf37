"""GPU attention: the fused flash attention of helios (`--dtype bf16`, head dim 64:
`alpha/helios/kernels/flash.py` on tensor cores) checked against float64 and against the
materialised path (16-bit matmuls around (B*H, T, T) scores, `ops_attention.py`), then timed
forward + backward at GPT-2 small's shape beside that path and PyTorch on the same GPU.

    python bench/gpu_attention.py                     # B 16, T 1024, 768 wide, 12 heads
    python bench/gpu_attention.py --batch 4 --reps 3

Checks: relative L2 error of out, lse and dqkv of the flash kernels against a float64 reference
on the bf16-rounded inputs at (1, 77, 128, 2 heads) (T odd, two tiles; inputs in +-2 and in
+-6, where the lazily rescaled forward moves its running max), and against the
materialised bf16 path and the fp32 kernels at (2, 200, 128, 2), (2, 1024, 256, 4) and
(1, 64, 768, 12) (bf16 rounding: ~1e-2 and below). Timing: wall clock of `--reps` forward +
backward pairs after a second of warm-up, synchronised; PyTorch runs
scaled_dot_product_attention (causal, bf16: its flash kernel) and the eager math (bf16 matmuls,
fp32 softmax) on the same q, k, v layout, forward + backward.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from array import array

# T not a multiple of the 64-row tile, GPT-2 small's tile walk, twelve heads
CHECKS = ((2, 200, 128, 2), (2, 1024, 256, 4), (1, 64, 768, 12))
EXACT = (1, 77, 128, 2)  # against float64
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def check(be, B, T, C, H) -> list[float]:
    """Flash vs the materialised bf16 path, then flash vs the fp32 kernels: 6 errors."""
    from alpha.bench import helios_flash as hf
    x, dy = hf.inputs(B, T, C)
    flash = hf.run(be.with_matmul_dtype("bf16"), be, x, dy, B, T, C, H)
    old = be.with_matmul_dtype("bf16")
    old.flash = False
    return (hf.rel_errors(flash, hf.run(old, be, x, dy, B, T, C, H))
            + hf.rel_errors(flash, hf.run(be, be, x, dy, B, T, C, H)))


def check_exact(be, span) -> list[float]:
    """Flash (lazy rescaling, then rescaling every tile) vs float64: 6 errors."""
    from alpha.bench import helios_flash as hf
    B, T, C, H = EXACT
    x, dy = hf.inputs(B, T, C, span=span)
    want = hf.reference(x, dy, B, T, C, H)
    out = []
    for lazy in (True, False):
        lp = be.with_matmul_dtype("bf16")
        lp.flash_lazy = lazy
        out += hf.rel_errors(hf.run(lp, be, x, dy, B, T, C, H), want)
    return out


def time_alpha(be, B, T, C, H, reps, flash=True, lazy=True) -> float:
    lp = be.with_matmul_dtype("bf16")
    lp.flash, lp.flash_lazy = flash, lazy
    rng = random.Random(2)
    n = B * T * 3 * C
    qkv = lp.from_array(array("f", [rng.uniform(-1, 1) for _ in range(n)]), (B, T, 3 * C))
    dout = lp.from_array(array("f", [rng.uniform(-1, 1) for _ in range(B * T * C)]), (B, T, C))
    out, lse, g = lp.empty((B, T, C)), lp.empty((B, H, T)), lp.zeros((B, T, 3 * C))

    def once():
        lp.attention_forward(out, lse, qkv, H)
        lp.attention_backward(g, dout, qkv, out, lse, H)
    return timed(once, lp.synchronize, reps)


def timed(once, sync, reps) -> float:
    """Seconds per call of once() after a second of warm-up (the GPU idles at a low clock)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 1.0:
        once()
        sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        once()
    sync()
    return (time.perf_counter() - t0) / reps


def time_torch(B, T, C, H, reps, mode) -> float:
    import torch
    import torch.nn.functional as F
    hs = C // H
    qkv = torch.randn(B, T, 3 * C, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    dout = torch.randn(B, T, C, device="cuda", dtype=torch.bfloat16)
    mask = torch.ones(T, T, device="cuda", dtype=torch.bool).tril()

    def once():
        q, k, v = qkv.view(B, T, 3, H, hs).permute(2, 0, 3, 1, 4)
        if mode == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            s = (q @ k.transpose(-2, -1)).float() / math.sqrt(hs)
            p = s.masked_fill(~mask, float("-inf")).softmax(-1)
            y = p.to(torch.bfloat16) @ v
        y = y.transpose(1, 2).reshape(B, T, C)
        y.backward(dout)
    return timed(once, torch.cuda.synchronize, reps)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--block", type=int, default=1024)
    p.add_argument("--width", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    from alpha.tensor import get_backend
    be = get_backend("helios")
    ok = True
    for span in (2.0, 6.0):  # 6: scores spread over tens, the lazy forward rescales
        rels = check_exact(be, span)
        good = all(e < 1e-2 for e in rels)
        ok = ok and good
        print(f"check {EXACT}, inputs in +-{span}: flash vs float64, relative L2 error of out, "
              "lse, dqkv: " + ", ".join(f"{e:.2e}" for e in rels[:3]) + "; rescaling every "
              "tile: " + ", ".join(f"{e:.2e}" for e in rels[3:]) + (" ok" if good else
                                                                     " FAILED"), flush=True)
    for shape in CHECKS:
        rels = check(be, *shape)
        good = all(e < 2e-2 for e in rels)
        ok = ok and good
        print(f"check (B, T, C, H) = {shape}: flash vs materialised bf16 path "
              + ", ".join(f"{e:.2e}" for e in rels[:3]) + "; vs fp32 kernels "
              + ", ".join(f"{e:.2e}" for e in rels[3:]) + (" ok" if good else " FAILED"),
              flush=True)
    B, T, C, H = args.batch, args.block, args.width, args.heads
    flops = 4 * B * H * T * T * (C // H) * 3.5 / 2  # fwd 2 + bwd 5 matmuls, causal half
    print(f"attention forward + backward, B {B}, T {T}, C {C}, {H} heads "
          f"(TFLOP/s count the causal half of 7 matmuls)")
    rows = [("alpha helios bf16 flash", time_alpha(be, B, T, C, H, args.reps)),
            ("alpha flash, eager rescale", time_alpha(be, B, T, C, H, args.reps, True, False)),
            ("alpha bf16 materialised", time_alpha(be, B, T, C, H, args.reps, False))]
    try:
        import torch
        if torch.cuda.is_available():
            rows.append(("torch sdpa bf16 (flash)", time_torch(B, T, C, H, args.reps, "sdpa")))
            rows.append(("torch eager math bf16", time_torch(B, T, C, H, args.reps, "math")))
        else:
            print("PyTorch has no CUDA here: no reference")
    except ImportError:
        print("PyTorch is not installed: no reference")
    ref = rows[3][1] if len(rows) > 3 else None
    for name, sec in rows:
        ratio = f"{ref / sec:.2f}x" if ref else "-"
        print(f"{name:<26}{1000 * sec:>9.2f} ms{flops / sec / 1e12:>8.1f} TFLOP/s"
              f"{ratio:>8} of sdpa")
    print(f"device: {be.dev.name}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
