"""The workgroup-scope tensor-core matmul (VK_NV_cooperative_matrix2, `kernels/coopmat2.py`) on a
device that has it, in one GPU call: what the driver offers, the kernel checked against float64
on every layout, batches, edge tiles, unaligned strides, split-K, accumulate, alpha and the bias
epilogue (bf16 and fp16), then timed at n^3 beside the subgroup kernel's default and cuBLAS
(PyTorch) in the same run.

    python bench/gpu_coopmat2.py               # H200: ~1.5 min
    python bench/gpu_coopmat2.py --check-only  # the checks (exit 1 if one fails)

A check's error is the worst |got - ref| over 1e-5 (bf16) or 1e-4 (fp16: the tensor cores align
fp16 products with truncation) of sum |products| + |beta C| + |bias|, for every element of the
small cases and three bands of rows of the large ones; <= 1 passes. Outputs start as NaN, so an
unwritten element fails. Timing: GPU timestamps around `reps` back-to-back products after a
warm-up (PyTorch: CUDA events).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from alpha.bench.helios_coop import cuda_seconds  # noqa: E402
from alpha.helios.kernels import coopmat as kcm  # noqa: E402
from alpha.helios.kernels import coopmat2 as kcm2  # noqa: E402

C2 = kcm2.Cm2Config
# tile shapes timed at n^3 (the first is the one the checks use). Dropped after three H200
# calls (8192^3 A @ B, TFLOP/s; the subgroup kernel 323.6-324.2 in the same runs): on 256
# invocations 128x128x32 176.3 (unrolled 4 k steps 185.6, row-by-row order 176.6), 128x128x64
# 262.7, 128x256x64 270.6, 256x128x32 259.9, 256x128x64 124.2, 128x256x16 183.1, 256x256x32
# 45.9; on 128 128x128x32 282.0 (unrolled 2 / 4: 290.9 / 293.8), 128x128x16 189.7, 128x64x32
# 204.9, 64x64x32 173.1, 128x128x128 75.7, 128x192x64 22.7; 64x64x32 on 64 186.7; the next
# k step's operands loaded before the product (128x128x64 on 128: 51.6, spills)
VARIANTS = [
    ("cm2 128x128x64 t128", C2()),
    ("cm2 128x128x64 t128 u2", C2(unroll=2)),
    ("cm2 128x256x32 t256", C2(128, 256, 32, 256)),
]
# GPT-2 small's products at batch 16 x 1024 tokens: (name, trans_a, trans_b, M, N, K)
TRAIN = [
    ("qkv  X W^T", False, True, 16384, 2304, 768),
    ("fc   X W^T", False, True, 16384, 3072, 768),
    ("proj X W^T", False, True, 16384, 768, 3072),
    ("head X W^T", False, True, 16384, 50304, 768),
    ("dX   dY W ", False, False, 16384, 768, 3072),
    ("dW   dY^T X", True, False, 3072, 768, 16384),
]
# (name, trans_a, trans_b, batch of a, batch of b, M, N, K, accumulate, alpha, bias)
CASES = [
    ("A @ B whole tiles", False, False, 0, 0, 256, 384, 512, False, 1.0, False),
    ("A @ B^T whole tiles", False, True, 0, 0, 256, 384, 512, False, 1.0, False),
    ("A^T @ B whole tiles", True, False, 0, 0, 256, 384, 512, False, 1.0, False),
    ("A^T @ B^T", True, True, 0, 0, 128, 256, 96, False, 1.0, False),
    ("edges 200x136x72", False, False, 0, 0, 200, 136, 72, False, 1.0, False),
    ("edges A @ B^T 200x136x72", False, True, 0, 0, 200, 136, 72, False, 1.0, False),
    ("edges A^T @ B 200x136x72", True, False, 0, 0, 200, 136, 72, False, 1.0, False),
    ("odd strides 131x77x45", False, False, 0, 0, 131, 77, 45, False, 1.0, False),
    ("odd strides A @ B^T 67x45x77", False, True, 0, 0, 67, 45, 77, False, 1.0, False),
    ("batched 3 x (128x256x64)", False, False, 3, 3, 128, 256, 64, False, 1.0, False),
    ("batched A, shared B^T", False, True, 4, 0, 96, 200, 64, False, 1.0, False),
    ("accumulate, alpha 0.5", False, False, 0, 0, 256, 128, 192, True, 0.5, False),
    ("bias (x @ W^T + b)", False, True, 0, 0, 256, 384, 256, False, 1.0, True),
    ("bias, edges", False, True, 0, 0, 200, 136, 72, False, 1.0, True),
    ("split-K dW 768x768x16384", True, False, 0, 0, 768, 768, 16384, False, 1.0, False),
    ("split-K, accumulate", True, False, 0, 0, 768, 256, 8192, True, 1.0, False),
]


def _say(msg: str) -> None:
    print(msg, flush=True)


class Case:
    """op(A) @ op(B) (+ C) (+ bias) with random 16-bit inputs on helios and in torch."""

    def __init__(self, be, torch, dev, dtype, ta, tb, ba, bb, M, N, K, acc, alpha, bias, seed):
        self.be, self.torch, self.dev, self.dtype = be, torch, dev, dtype
        self.ta, self.tb, self.M, self.N, self.K = ta, tb, M, N, K
        self.acc, self.alpha = acc, alpha
        ashape = ((ba,) if ba else ()) + ((K, M) if ta else (M, K))
        bshape = ((bb,) if bb else ()) + ((N, K) if tb else (K, N))
        self.ua, self.a_t = self._random16(ashape, seed)
        self.ub, self.b_t = self._random16(bshape, seed + 1)
        self.oshape = ((max(ba, bb),) if ba or bb else ()) + (M, N)
        self.out = be.empty(self.oshape)
        self.c0, self.c0_t = self._random32(self.oshape, seed + 2) if acc else (None, None)
        self.bias, self.bias_t = self._random32((N,), seed + 3) if bias else (None, None)

    def _uniform(self, n, seed):
        x = self.be.empty((n,))
        self.be.rng_uniform(x, (seed, 5), 0)
        self.be.binary_scalar(x, "sub", x, 0.5)
        return x

    def _random16(self, shape, seed):
        be, torch = self.be, self.torch
        n = math.prod(shape)
        x = self._uniform(n + n % 2, seed)
        u = be.empty((n + n % 2,), "u16")
        be.pack16(u, x, self.dtype)
        host = be.to_array(u)
        tdt = torch.bfloat16 if self.dtype == "bf16" else torch.float16
        t = torch.frombuffer(bytearray(host.tobytes()), dtype=torch.int16).view(tdt)[:n]
        return u.narrow(0, 0, n).view(*shape), t.view(*shape).to(self.dev)

    def _random32(self, shape, seed):
        torch = self.torch
        n = math.prod(shape)
        x = self._uniform(n, seed)
        host = self.be.to_array(x)
        t = torch.frombuffer(bytearray(host.tobytes()), dtype=torch.float32)
        return x.view(*shape), t.view(*shape).to(self.dev)

    def run(self):
        self.be.matmul16(self.out, self.ua, self.ub, dtype=self.dtype, trans_a=self.ta,
                         trans_b=self.tb, accumulate=self.acc, alpha=self.alpha,
                         bias=self.bias)

    def check(self, bands: bool) -> float:
        torch, be = self.torch, self.be
        if self.acc:
            be.rt.copy(self.out, self.c0)
        else:
            be.fill(self.out, math.nan)
        self.run()
        a = self.a_t.transpose(-2, -1) if self.ta else self.a_t
        b = self.b_t.transpose(-2, -1) if self.tb else self.b_t
        a64, b64 = a.to(torch.float64), b.to(torch.float64)
        # bands (2-D outputs only): three of 64 rows, read alone (an LM head's C is 3.3 GB)
        bands = bands and len(self.oshape) == 2
        band = min(64, self.M)
        starts = sorted({0, (self.M // 2) // band * band, self.M - band}) if bands else [0]
        if not bands:
            band = self.M
        parts = []
        for r0 in starts:
            got = be.to_array(self.out if not bands else self.out.narrow(0, r0, band))
            parts.append(torch.frombuffer(bytearray(got.tobytes()), dtype=torch.float32)
                         .view(*self.oshape[:-2], band, self.N))
        g = torch.cat(parts, -2).to(self.dev, torch.float64)
        rows = [r for r0 in starts for r in range(r0, r0 + band)]
        idx = torch.tensor(rows, device=self.dev)
        ref = self.alpha * (a64.index_select(-2, idx) @ b64)
        bound = abs(self.alpha) * (a64.index_select(-2, idx).abs() @ b64.abs())
        if self.acc:
            c = self.c0_t.to(torch.float64).index_select(-2, idx)
            ref, bound = ref + c, bound + c.abs()
        if self.bias_t is not None:
            ref, bound = ref + self.bias_t.to(torch.float64), bound + \
                self.bias_t.to(torch.float64).abs()
        if not torch.isfinite(g).all():
            return math.inf
        tol = 1e-5 if self.dtype == "bf16" else 1e-4
        return float(((g - ref).abs() / (tol * bound + 1e-30)).max())

    def tflops(self, reps) -> float:
        self.run()
        self.be.synchronize()
        sec = self.be.dev.gpu_seconds(self.run, reps)
        return 2 * self.M * self.N * self.K * max(1, math.prod(self.oshape[:-2])) / sec / 1e12

    def torch_tflops(self, reps):
        torch = self.torch
        a = self.a_t.transpose(-2, -1) if self.ta else self.a_t
        b = self.b_t.transpose(-2, -1) if self.tb else self.b_t
        sec = cuda_seconds(torch, lambda: torch.matmul(a, b), reps)
        return 2 * self.M * self.N * self.K / sec / 1e12


def probe(be) -> dict:
    """What the driver offers for coopmat2 (features, properties, flexible granularities)."""
    dev = be.dev
    out = {"extensions": sorted(e for e in dev.extensions if "cooperative" in e
                                or "bfloat16" in e),
           "maxComputeSharedMemorySize": dev.limits.maxComputeSharedMemorySize}
    if dev.fcm2 is not None:
        names = ("WorkgroupScope", "FlexibleDimensions", "Reductions", "Conversions",
                 "PerElementOperations", "TensorAddressing", "BlockLoads")
        out["features"] = {n: int(getattr(dev.fcm2, "cooperativeMatrix" + n)) for n in names}
    if dev.cm2_props is not None:
        p = dev.cm2_props
        out["properties"] = {"workgroupScopeMaxWorkgroupSize": p.workgroupScopeMaxWorkgroupSize,
                             "flexibleDimensionsMaxDimension": p.flexibleDimensionsMaxDimension,
                             "workgroupScopeReservedSharedMemory":
                                 p.workgroupScopeReservedSharedMemory}
    out["flexible"] = dev.coopmat_flexible
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=8192, help="the square product's n (n^3)")
    p.add_argument("--check-only", action="store_true", help="the checks, no timing")
    p.add_argument("--variants", default="", help="comma-separated labels to time (default all)")
    p.add_argument("--top", type=int, default=3,
                   help="the best variants also timed on GPT-2 small's training products")
    p.add_argument("--json", default=None, help="write every number here")
    args = p.parse_args()
    t_start = time.time()
    import torch
    from alpha.tensor import get_backend
    be = get_backend("helios")
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    info = probe(be)
    _say(f"device {be.dev.name}: " + json.dumps(info))
    result = {"device": be.dev.name, "probe": info, "checks": [], "square": []}
    base = VARIANTS[0][1]
    failed = 0
    for dtype in ("bf16", "f16"):
        if not be.dev.coopmat2_ok(dtype, base.threads, base.BM, base.BN, base.BK):
            _say(f"{dtype}: no workgroup-scope matrices for {base} here: checks skipped")
            continue
        for i, (name, ta, tb, ba, bb, M, N, K, acc, alpha, bias) in enumerate(CASES):
            case = Case(be, torch, dev, dtype, ta, tb, ba, bb, M, N, K, acc, alpha, bias,
                        11 + 7 * i)
            be.coop_config = base
            try:
                err = case.check(bands=M * N > 2 ** 20)
            except Exception as e:  # a variant the driver rejects: report it and go on
                err = math.inf
                _say(f"  {dtype} {name}: {type(e).__name__}: {e}")
            finally:
                be.coop_config = None
            ok = err <= 1.0
            failed += not ok
            _say(f"  {dtype} {name:<30} check {err:.3g} {'ok' if ok else 'FAILED'}")
            result["checks"].append({"dtype": dtype, "case": name, "check": err})
            del case
    if args.check_only or dev != "cuda":
        return 1 if failed else 0
    n = args.size
    sq = Case(be, torch, dev, "bf16", False, False, 0, 0, n, n, n, False, 1.0, False, 1)
    t0 = time.time()
    while time.time() - t0 < 3:  # the GPU idles at a few hundred MHz: a second of work first
        sq.torch_tflops(10)
    ref = sq.torch_tflops(10)
    _say(f"cuBLAS bf16 {n}^3 A @ B: {ref:.1f} TFLOP/s")
    result["cublas_square"] = ref
    want = [v for v in args.variants.split(",") if v]
    rows = [("khr default", None)] + [v for v in VARIANTS if not want or v[0] in want]
    sqt = Case(be, torch, dev, "bf16", False, True, 0, 0, n, n, n, False, 1.0, False, 3)
    for label, cfg in rows:
        if cfg is not None and not be.dev.coopmat2_ok("bf16", cfg.threads, cfg.BM, cfg.BN,
                                                      cfg.BK):
            _say(f"  {label:<24} skipped: not offered for this tile")
            continue
        be.coop_config = cfg
        try:
            err = sq.check(bands=True)
            tf = sq.tflops(5) if err <= 1.0 else 0.0
            tft = sqt.tflops(5)
        except Exception as e:
            _say(f"  {label:<24} failed: {type(e).__name__}: {e}")
            continue
        finally:
            be.coop_config = None
        _say(f"  {label:<24} {n}^3 A @ B {tf:6.1f} TFLOP/s ({100 * tf / ref:4.1f}% of cuBLAS), "
             f"A @ B^T {tft:6.1f}  check {err:.3g}")
        result["square"].append({"label": label, "config": repr(cfg), "tflops": tf,
                                 "tflops_abt": tft, "check": err})
    del sq, sqt
    best = sorted((r for r in result["square"] if r["label"] != "khr default"),
                  key=lambda r: -r["tflops"])[:args.top]
    picks = [("khr default", None)] + [(r["label"], dict(VARIANTS)[r["label"]]) for r in best]
    _say("GPT-2 small training products, TFLOP/s (cuBLAS bf16 in the same run):")
    _say(f"  {'product':<12} {'cuBLAS':>7} " + " ".join(f"{lbl:>24}" for lbl, _ in picks))
    result["train"] = []
    for name, ta, tb, M, N, K in TRAIN:
        prod = Case(be, torch, dev, "bf16", ta, tb, 0, 0, M, N, K, False, 1.0, False, 5)
        r = prod.torch_tflops(5)
        cells, row = [], {"name": name, "shape": [M, N, K], "cublas": r, "alpha": {}}
        for label, cfg in picks:
            be.coop_config = cfg
            try:
                err = prod.check(bands=True)
                tf = prod.tflops(3) if err <= 1.0 else 0.0
            except Exception as e:
                _say(f"  {name} {label}: {type(e).__name__}: {e}")
                err, tf = math.inf, 0.0
            finally:
                be.coop_config = None
            cells.append(f"{tf:7.1f} ({100 * tf / r:3.0f}%)" + ("" if err <= 1.0 else " BAD"))
            row["alpha"][label] = {"tflops": tf, "check": err}
        result["train"].append(row)
        _say(f"  {name:<12} {r:7.1f} " + " ".join(f"{c:>24}" for c in cells))
        del prod
    sq = Case(be, torch, dev, "bf16", False, False, 0, 0, n, n, n, False, 1.0, False, 1)
    again = sq.torch_tflops(10)
    _say(f"cuBLAS bf16 {n}^3 A @ B again at the end: {again:.1f} TFLOP/s; took "
         f"{time.time() - t_start:.0f} s")
    result["cublas_square_end"] = again
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
