"""The tensor-core matmul's part of `bench helios`: every kernel variant is first checked against
a float64 reference on odd shapes (all transposes, batches, edge tiles, split-K, unaligned
strides, accumulate, a bias added by the kernel's store), then bf16/fp16 products are timed at
4096^3 and 8192^3 against PyTorch's cuBLAS in the same run.

The reference multiplies the 16-bit roundings of the inputs exactly (math.fsum of float64
products), so what remains is the accumulation error: the check's tolerance is 1e-5 (bf16) or
1e-4 (fp16, see TOL) of the sum of |products|. Outputs are poisoned with NaN first, so an
unwritten element fails; large cases compare every seventh row.
"""

from __future__ import annotations

import math
import random
import struct
from array import array

from alpha.helios.kernels import coopmat as kcm
from alpha.helios.kernels import coopmat2 as kcm2


def round16(x: float, dtype: str) -> float:
    if dtype == "f16":
        return struct.unpack("<e", struct.pack("<e", x))[0]
    b = struct.unpack("<I", struct.pack("<f", x))[0]
    b = (b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000
    return struct.unpack("<f", struct.pack("<I", b))[0]


def _upload(be, host, shape, dtype, src):
    """host (floats, row-major `shape`) as an f32 tensor, or as 16-bit bits in a u16 tensor."""
    t = be.from_array(array("f", host + [0.0] * (len(host) % 2)))
    if src == "f32":
        return t.narrow(0, 0, len(host)).view(*shape)
    u = be.empty((t.numel,), "u16")
    be.pack16(u, t, dtype)
    return u.narrow(0, 0, len(host)).view(*shape)


# Tolerance per unit of sum |products|. bf16 products (16 significant bits) add exactly in fp32;
# fp16 products have 22, and the tensor cores align them to the largest exponent with a few guard
# bits before adding (measured on an H200: 3e-5 relative), so fp16 gets 1e-4.
TOL = {"bf16": 1e-5, "f16": 1e-4}

CASES = [  # trans_a, trans_b, batch, M, N, K, accumulate, alpha, bias
    (False, False, 1, 128, 128, 64, False, 1.0, False),
    (False, True, 1, 130, 70, 72, False, 1.0, True),
    (True, False, 2, 65, 33, 40, False, 1.0, True),
    (True, True, 3, 64, 96, 48, True, 1.0, False),
    (False, False, 1, 77, 51, 93, True, 0.5, True),
    (True, False, 1, 96, 80, 1024, True, 1.0, True),  # a weight gradient: split-K on a GPU
    (False, True, 2, 300, 260, 96, False, 1.0, True),
    (False, True, 1, 128, 256, 64, False, 1.0, True),  # a linear's forward, whole tiles
]


def check_case(be, dtype, src, case, rng) -> float:
    """Worst error / tolerance over every output element (<= 1 passes)."""
    ta, tb, nb, M, N, K, acc, alpha, with_bias = case
    ashape = (nb, K, M) if ta else (nb, M, K)
    bshape = (N, K) if tb else (K, N)
    A = [rng.uniform(-1, 1) for _ in range(math.prod(ashape))]
    B = [rng.uniform(-1, 1) for _ in range(math.prod(bshape))]
    C0 = [rng.uniform(-1, 1) for _ in range(nb * M * N)]
    bias = [rng.uniform(-1, 1) for _ in range(N)] if with_bias else [0.0] * N
    a, b = _upload(be, A, ashape, dtype, src), _upload(be, B, bshape, dtype, src)
    out = be.from_array(array("f", C0 if acc else [math.nan] * (nb * M * N)), (nb, M, N))
    bt = be.from_array(array("f", bias)) if with_bias else None
    if src == "f32":
        be.with_matmul_dtype(dtype).matmul(out, a, b, trans_a=ta, trans_b=tb,
                                           accumulate=acc, alpha=alpha, bias=bt)
    else:
        be.matmul16(out, a, b, dtype=dtype, trans_a=ta, trans_b=tb, accumulate=acc,
                    alpha=alpha, bias=bt)
    got = be.to_array(out)
    RA = [round16(v, dtype) for v in A]
    RB = [round16(v, dtype) for v in B]
    if not all(math.isfinite(g) for g in got):
        return math.inf
    worst = 0.0
    rows = sorted(set(range(0, M, 1 if M * N * K <= 1 << 20 else 7)) | {M - 1})
    for bi in range(nb):
        for i in rows:
            arow = [RA[bi * K * M + k * M + i] if ta else RA[bi * M * K + i * K + k]
                    for k in range(K)]
            for j in range(N):
                terms = [arow[k] * (RB[j * K + k] if tb else RB[k * N + j]) for k in range(K)]
                want = (alpha * math.fsum(terms) + (C0[(bi * M + i) * N + j] if acc else 0.0)
                        + bias[j])
                tol = TOL[dtype] * (abs(alpha) * sum(abs(t) for t in terms) + 1.0)
                g = got[(bi * M + i) * N + j]
                worst = max(worst, abs(g - want) / tol)
    return worst


def check(be, say, configs=None) -> tuple[set, list]:
    """Validate the tensor-core kernels this device can run; print one line per variant.
    Returns (the input types whose kernels passed, the tile configs that passed)."""
    types = sorted(be._coop_types())
    if not types:
        say("tensor-core matmul: this device offers no usable cooperative matrix; skipped")
        return set(), []
    rng = random.Random(12)
    passed, good_cfgs = set(types), []
    for dtype in types:
        for src in (dtype, "f32"):
            worst = 0.0
            try:
                for case in CASES:
                    worst = max(worst, check_case(be, dtype, src, case, rng))
            except Exception as e:  # a kernel the driver rejects: report it, check the rest
                say(f"  check {dtype} inputs from {src}: {type(e).__name__}: {e}")
                worst = math.inf
            good = worst <= 1.0
            if not good:
                passed.discard(dtype)
            say(f"  check {dtype} inputs from {src:>4}: {len(CASES)} shapes, worst error "
                f"{worst:.3g} x tolerance -> {'ok' if good else 'FAILED'}")
    for cfg in configs or ():
        be.coop_config = cfg
        # the workgroup-scope kernel is a separate code path: every case, both input types
        cases = [(d, c) for d in types for c in CASES] if isinstance(cfg, kcm2.Cm2Config) \
            else [(types[0], CASES[i]) for i in (0, 6, 7)]
        try:
            w = max(check_case(be, d, d, c, rng) for d, c in cases)
        except Exception as e:
            say(f"  check config {cfg}: {type(e).__name__}: {e}")
            w = math.inf
        finally:
            be.coop_config = None
        if w <= 1.0:
            good_cfgs.append(cfg)
        say(f"  check config {cfg}: worst {w:.3g} x tolerance -> "
            f"{'ok' if w <= 1.0 else 'FAILED'}")
    return passed, good_cfgs


def _random16(be, n, dtype, seed):
    x = be.empty((n * n,))
    be.rng_uniform(x, (seed, 11), 0)
    be.binary_scalar(x, "sub", x, 0.5)
    u = be.empty((n * n,), "u16")
    be.pack16(u, x, dtype)
    return x.view(n, n), u.view(n, n)


def time_matmul(be, n, dtype, src, reps, trans_b=False) -> float:
    """TFLOP/s of an n^3 product (GPU timestamps, after a warm-up); trans_b: B stored (N, K)."""
    xa, ua = _random16(be, n, dtype, 1)
    xb, ub = _random16(be, n, dtype, 2)
    out = be.empty((n, n))
    if src == "f32":
        lp = be.with_matmul_dtype(dtype)
        fn = lambda: lp.matmul(out, xa, xb, trans_b=trans_b)  # noqa: E731
    else:
        fn = lambda: be.matmul16(out, ua, ub, dtype=dtype, trans_b=trans_b)  # noqa: E731
    fn()
    be.synchronize()
    sec = be.dev.gpu_seconds(fn, reps)
    return 2 * n ** 3 / sec / 1e12


def cuda_seconds(torch, fn, reps: int, warm: int = 2) -> float:
    """Seconds per call of `fn` (CUDA work), timed with CUDA events after `warm` calls."""
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1000 / reps


def torch_matmul(n, dtype):
    """cuBLAS TFLOP/s for an n^3 product in `dtype` ("f32" with TF32 off, "bf16", "f16"), or
    None without torch and CUDA."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    t = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[dtype]
    a = torch.rand(n, n, device="cuda", dtype=t) - 0.5
    b = torch.rand(n, n, device="cuda", dtype=t) - 0.5
    sec = cuda_seconds(torch, lambda: torch.mm(a, b), 20 if n <= 4096 else 10, warm=3)
    del a, b
    torch.cuda.empty_cache()
    return 2 * n ** 3 / sec / 1e12


def _label(cfg) -> str:
    if isinstance(cfg, kcm2.Cm2Config):
        return (f"workgroup scope (coopmat2) BM={cfg.BM} BN={cfg.BN} BK={cfg.BK} "
                f"{cfg.threads} invocations")
    return (f"BM={cfg.BM} BN={cfg.BN} BK={cfg.BK} WM={cfg.WM} WN={cfg.WN} "
            f"{cfg.stages} buffer(s) {'prefetch' if cfg.prefetch else 'direct'} "
            f"groups {cfg.group_m}")


def run(be, say, sizes) -> None:
    configs = [c for c in kcm.CONFIGS
               if c.shared_bytes() <= be.dev.limits.maxComputeSharedMemorySize]
    W = kcm2.DEFAULT
    if any(be.dev.coopmat2_ok(d, W.threads, W.BM, W.BN, W.BK) for d in be._coop_types()):
        configs.append(W)
    say("tensor-core matmul (VK_KHR_cooperative_matrix; VK_NV_cooperative_matrix2 where "
        "offered), checked against float64 first:")
    passed, configs = check(be, say, configs)
    types = sorted(passed)
    if not types:
        say("  not timed: no input type passed its check")
        return
    say(f"  tile sweep at 4096^3, {types[0]} inputs, B stored (K, N) | (N, K); only tiles that "
        "passed their check:")
    # the GPU idles at a few hundred MHz: a second of work first, or the first tiles time slow
    for _ in range(3):
        time_matmul(be, 8192, types[0], types[0], 20)
    best = None
    for cfg in configs:
        be.coop_config = cfg
        try:
            tf = time_matmul(be, 4096, types[0], types[0], 10)
            tft = time_matmul(be, 4096, types[0], types[0], 10, trans_b=True)
        except Exception as e:  # a shape this driver cannot build: report it and go on
            say(f"    {cfg}: failed ({type(e).__name__}: {e})")
            continue
        finally:
            be.coop_config = None
        say(f"    {_label(cfg)}: {tf:6.1f} | {tft:6.1f} TFLOP/s")
        if best is None or max(tf, tft) > best[1]:
            best = (cfg, max(tf, tft))
    be.coop_config = best[0] if best else None
    say(f"  products with the best tile ({_label(best[0]) if best else 'the default'}; "
        "target: bf16 8192^3 >= 50% of cuBLAS bf16):")
    try:
        for dtype in types:
            for n in sizes:
                ref = torch_matmul(n, dtype)
                for src, tb in ((dtype, False), (dtype, True), ("f32", False)):
                    tf = time_matmul(be, n, dtype, src, 10 if n <= 4096 else 5, tb)
                    what = (f"{dtype} A @ B" if not tb else f"{dtype} A @ B^T") if src == dtype \
                        else f"f32 as {dtype} A @ B"
                    cmp = (f", cuBLAS {dtype} {ref:.1f} TFLOP/s, {100 * tf / ref:.1f}%"
                           if ref else ", cuBLAS: torch with CUDA not importable")
                    say(f"    {n}^3 {what:<18} helios {tf:7.1f} TFLOP/s{cmp}")
    finally:
        be.coop_config = None
