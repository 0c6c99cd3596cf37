"""`python -m alpha bench kernels`: the CPU kernels' speed, put in proportion to this machine.

Measured in one run, so the ratios compare like with like:
- the machine: FMA peak (a C loop of independent vector FMAs, 1 and N threads) and copy bandwidth
  (a large multi-threaded memcpy; bytes read + written);
- SGEMM n^3 at n = 256, 512, 1024, 2048 on 1 and N threads: time, GFLOP/s, fraction of the FMA
  peak, and numpy/OpenBLAS on the same sizes and threads (in a subprocess with OPENBLAS_CORETYPE
  and OPENBLAS_L2_SIZE unset, so an environment tuned for something else does not slow it);
- layernorm, softmax, GELU, attention and AdamW at GPT-sized shapes through the CPU backend: time,
  GB/s (minimal bytes read + written) or GFLOP/s for attention, fraction of copy bandwidth;
- the Python overhead of one small op call (the checking front included, and without it).
numpy is only ever imported in the subprocess, and only if it is installed. Every figure is the best of a few runs:
other processes on the machine only ever make a kernel look slower. A working set that fits in
the L3 cache (layernorm at (8192, 768) is 25 MB) can run faster than the copy probe, which streams
from memory: a fraction over 100% says so, not that the probe is wrong.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import subprocess
import sys
import time
from array import array

SGEMM_SIZES = (256, 512, 1024, 2048)
QUICK_SIZES = (256, 512)

_NUMPY_SCRIPT = r"""
import json, sys, time
try:
    import numpy as np
except ImportError:
    print(json.dumps(None)); sys.exit(0)
out = {}
budget = float(sys.argv[2])
for n in map(int, sys.argv[1].split(",")):
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32) - 0.5
    b = rng.random((n, n), dtype=np.float32) - 0.5
    c = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=c)
    best, spent, reps = 1e9, 0.0, 0
    while reps < 3 or (spent < budget and reps < 50):
        t = time.perf_counter(); np.matmul(a, b, out=c); t = time.perf_counter() - t
        best, spent, reps = min(best, t), spent + t, reps + 1
    out[n] = 2.0 * n ** 3 / best / 1e9
print(json.dumps(out))
"""


def _progress(msg: str) -> None:
    print(f"\r\033[K[bench] {msg}", end="", file=sys.stderr, flush=True)


def best_time(fn, budget: float = 0.25, min_reps: int = 3, max_reps: int = 200) -> float:
    """Best wall time of fn() over at least min_reps calls (after one warm-up), repeating until
    about `budget` seconds are spent."""
    fn()
    best, spent, reps = float("inf"), 0.0, 0
    while reps < min_reps or (spent < budget and reps < max_reps):
        t = time.perf_counter()
        fn()
        t = time.perf_counter() - t
        best, spent, reps = min(best, t), spent + t, reps + 1
    return best


def _filled(shape, seed: int = 1):
    """A contiguous f32 CPU tensor of values in [-0.5, 0.5)."""
    from alpha.tensor import get_backend

    n = math.prod(shape)
    period = 4099
    block = array("f", [((i * 2654435761 + seed * 97) % 10007) / 10007 - 0.5
                        for i in range(min(n, period))])
    reps, rest = divmod(n, len(block)) if n else (0, 0)
    return get_backend("cpu").from_array(block * reps + block[:rest], shape)


def _with_threads(n: int, fn):
    from alpha.tensor import build

    before = build.num_threads()
    if n != before:
        build.set_num_threads(n)
    try:
        return fn()
    finally:
        if n != before:
            build.set_num_threads(before)


# ---- the machine --------------------------------------------------------------------------------

def fma_peak(threads: int) -> float:
    """GFLOP/s of independent vector FMAs on `threads` threads (best of 5)."""
    from alpha.tensor import build

    L = build.lib()
    L.alpha_fma_peak.restype = ctypes.c_double
    L.alpha_fma_peak.argtypes = [ctypes.c_int64, ctypes.c_int64, ctypes.c_int]
    iters = 1 << 21
    tasks = 1 if threads == 1 else 4 * threads

    def once():
        t = time.perf_counter()
        flops = L.alpha_fma_peak(tasks, iters, threads > 1)
        return flops / (time.perf_counter() - t) / 1e9

    return _with_threads(threads, lambda: max(once() for _ in range(5)))


def copy_bandwidth(threads: int, mib: int = 128) -> float:
    """GB/s (bytes read + written) of a large multi-threaded copy (best of 5)."""
    from alpha.tensor import build
    from alpha.tensor.cpu_storage import CPUStorage

    L = build.lib()
    L.alpha_copy_bandwidth.restype = None
    L.alpha_copy_bandwidth.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    n = mib * (1 << 20) // 4 // 16384 * 16384
    src, dst = CPUStorage(4 * n), CPUStorage(4 * n)
    sec = _with_threads(threads, lambda: best_time(
        lambda: L.alpha_copy_bandwidth(dst.ptr, src.ptr, n), budget=0.3, min_reps=5))
    return 8 * n / sec / 1e9


# ---- SGEMM ------------------------------------------------------------------------------------

def numpy_sgemm(sizes, threads: int, budget: float):
    """{n: GFLOP/s} of numpy's matmul on `threads` BLAS threads, from a subprocess; None when
    numpy is not importable there."""
    env = dict(os.environ)
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "GOTOBLAS_L2_SIZE"):
        env.pop(var, None)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    try:
        proc = subprocess.run([sys.executable, "-c", _NUMPY_SCRIPT,
                               ",".join(map(str, sizes)), str(budget)],
                              capture_output=True, text=True, env=env, timeout=300)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    return {int(k): v for k, v in result.items()} if result else None


def alpha_sgemm(n: int, threads: int, budget: float) -> float:
    """Best seconds of one n^3 SGEMM through the CPU backend (alpha.tensor.cpu_matmul)."""
    from alpha.tensor import get_backend

    matmul = get_backend("cpu").matmul
    a, b, c = _filled((n, n), 1), _filled((n, n), 2), _filled((n, n), 3)
    return _with_threads(threads, lambda: best_time(lambda: matmul(c, a, b), budget=budget))


def bench_sgemm(sizes, thread_counts, peaks, rounds: int, budget: float):
    """Rounds alternate Alpha and numpy so that a noisy neighbour hurts both alike; best wins."""
    rows = {(n, t): {"n": n, "threads": t, "seconds": float("inf"), "numpy_gflops": None}
            for t in thread_counts for n in sizes}
    numpy_ok = True
    for r in range(rounds):
        for t in thread_counts:
            for n in sizes:
                _progress(f"sgemm {n}^3, {t} thread(s), round {r + 1}/{rounds}")
                row = rows[(n, t)]
                row["seconds"] = min(row["seconds"], alpha_sgemm(n, t, budget))
            if numpy_ok:
                _progress(f"numpy sgemm, {t} thread(s), round {r + 1}/{rounds}")
                got = numpy_sgemm(sizes, t, budget)
                if got is None:
                    numpy_ok = False
                    continue
                for n in sizes:
                    prev = rows[(n, t)]["numpy_gflops"]
                    rows[(n, t)]["numpy_gflops"] = max(prev or 0.0, got[n])
    out = []
    for (n, t), row in rows.items():
        row["gflops"] = 2.0 * n ** 3 / row["seconds"] / 1e9
        row["numpy_ratio"] = row["gflops"] / row["numpy_gflops"] if row["numpy_gflops"] else None
        out.append(row)
    _fractions(out, [], peaks, 0.0)
    return out, numpy_ok


def _fractions(sgemm, ops, peaks, copy_gbs):
    for row in sgemm:
        row["peak_fraction"] = row["gflops"] / peaks[row["threads"]] if peaks else None
    for row in ops:
        if "gbps" in row:
            row["copy_fraction"] = row["gbps"] / copy_gbs if copy_gbs else None


# ---- the other kernels, through the CPU backend -------------------------------------------------

def _op_cases(be, quick: bool):
    """(name, shape text, fn, bytes moved, flops) for each op; built lazily per case."""
    BT, C = (2048, 768) if quick else (8192, 768)
    B, T, Ca, nh = (2, 256, 384, 6) if quick else (8, 256, 384, 6)
    n_adam = (1 << 22) if quick else (1 << 24)

    def f(*shape, seed=1):
        return _filled(shape, seed)

    def layernorm():
        x, w, bias = f(BT, C), f(C, seed=2), f(C, seed=3)
        out, mean, rstd = be.empty((BT, C)), be.empty((BT,)), be.empty((BT,))
        return lambda: be.layernorm_forward(out, mean, rstd, x, w, bias)

    def layernorm_bwd():
        x, w, bias, dout = f(BT, C), f(C, seed=2), f(C, seed=3), f(BT, C, seed=4)
        out, mean, rstd = be.empty((BT, C)), be.empty((BT,)), be.empty((BT,))
        be.layernorm_forward(out, mean, rstd, x, w, bias)
        dx, dw, db = be.zeros((BT, C)), be.zeros((C,)), be.zeros((C,))
        return lambda: be.layernorm_backward(dx, dw, db, dout, x, w, mean, rstd)

    def softmax():
        x, out = f(BT, C), be.empty((BT, C))
        return lambda: be.softmax_forward(out, x)

    def gelu():
        x, out = f(BT, 4 * C), be.empty((BT, 4 * C))
        return lambda: be.gelu_forward(out, x)

    def gelu_bwd():
        x, dout, dx = f(BT, 4 * C), f(BT, 4 * C, seed=2), be.zeros((BT, 4 * C))
        return lambda: be.gelu_backward(dx, dout, x)

    def attention():
        qkv, out, lse = f(B, T, 3 * Ca), be.empty((B, T, Ca)), be.empty((B, nh, T))
        return lambda: be.attention_forward(out, lse, qkv, nh)

    def attention_bwd():
        qkv, out, lse = f(B, T, 3 * Ca), be.empty((B, T, Ca)), be.empty((B, nh, T))
        be.attention_forward(out, lse, qkv, nh)
        dout, dqkv = f(B, T, Ca, seed=5), be.zeros((B, T, 3 * Ca))
        return lambda: be.attention_backward(dqkv, dout, qkv, out, lse, nh)

    def adamw():
        p, g, m, v = f(n_adam), f(n_adam, seed=2), be.zeros((n_adam,)), be.zeros((n_adam,))
        step = [0]

        def run():
            step[0] += 1
            be.adamw_step(p, g, m, v, lr=1e-4, beta1=0.9, beta2=0.95, eps=1e-8,
                          weight_decay=0.1, step=step[0])
        return run

    def gemv():
        x, w, out = f(4, C), f(C, 4 * C, seed=2), be.empty((4, 4 * C))
        return lambda: be.matmul(out, x, w)

    hs = Ca // nh
    att_flops = 2.0 * B * nh * T * T * hs  # causal: half of QK^T and PV, 2 flops per MAC
    return [
        ("layernorm_forward", f"({BT}, {C})", layernorm, 4 * (2 * BT * C + 2 * C + 2 * BT), 0),
        ("layernorm_backward", f"({BT}, {C})", layernorm_bwd,
         4 * (5 * BT * C + 6 * C + 2 * BT), 0),
        ("softmax_forward", f"({BT}, {C})", softmax, 4 * 2 * BT * C, 0),
        ("gelu_forward", f"({BT}, {4 * C})", gelu, 4 * 2 * BT * 4 * C, 0),
        ("gelu_backward", f"({BT}, {4 * C})", gelu_bwd, 4 * 4 * BT * 4 * C, 0),
        ("attention_forward", f"B={B} T={T} C={Ca} nh={nh}", attention,
         4 * (3 * B * T * Ca + B * T * Ca + B * nh * T), att_flops),
        ("attention_backward", f"B={B} T={T} C={Ca} nh={nh}", attention_bwd,
         4 * (3 * B * T * Ca * 3 + 2 * B * T * Ca + B * nh * T), 2.5 * att_flops),
        ("adamw_step", f"{n_adam} params", adamw, 4 * 7 * n_adam, 0),
        ("matmul, 4 rows", f"(4, {C}) @ ({C}, {4 * C})", gemv, 4 * (C * 4 * C + 4 * 5 * C),
         2.0 * 4 * C * 4 * C),
    ]


def bench_ops(copy_gbs: float, quick: bool):
    from alpha.tensor import get_backend

    be = get_backend("cpu")
    rows = []
    for name, shape, make, nbytes, flops in _op_cases(be, quick):
        _progress(f"{name} {shape}")
        row = {"name": name, "shape": shape}
        sec = best_time(make(), budget=0.3 if not quick else 0.1)
        row["ms"] = sec * 1e3
        row["gbps"] = nbytes / sec / 1e9
        row["copy_fraction"] = row["gbps"] / copy_gbs if copy_gbs else None
        if flops:
            row["gflops"] = flops / sec / 1e9
        rows.append(row)
    return rows


def python_overhead():
    """Microseconds per call of tiny ops (4x4 matmul, 8-element GELU and add): Python + ctypes,
    through the backend's checking front; "cpu_matmul.matmul" is the SGEMM call without it."""
    from alpha.tensor import get_backend
    from alpha.tensor.cpu_matmul import matmul

    a, b, c = _filled((4, 4)), _filled((4, 4), 2), _filled((4, 4), 3)
    be = get_backend("cpu")
    x, y, z = be.from_array([0.5] * 8), be.from_array([0.25] * 8), be.empty((8,))
    cases = [("cpu_matmul.matmul 4x4", lambda: matmul(c, a, b, False, False, False, 1.0)),
             ("backend.matmul 4x4", lambda: be.matmul(c, a, b)),
             ("backend.gelu_forward (8,)", lambda: be.gelu_forward(z, x)),
             ("backend.binary add (8,)", lambda: be.binary(z, "add", x, y))]
    return {name: _per_call(fn) for name, fn in cases}


def _per_call(fn, n: int = 5000) -> float:
    fn()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best * 1e6


# ---- the report ---------------------------------------------------------------------------------

def run_all(quick: bool = False, threads: int | None = None) -> dict:
    from alpha.tensor import build
    from alpha.tensor.cpu_matmul import kernel_info

    t0 = time.time()
    n_max = threads or build.num_threads()
    thread_counts = sorted({1, n_max})
    _progress("building kernels")
    build.lib()
    _progress("FMA peak")
    peaks = {t: fma_peak(t) for t in thread_counts}
    _progress("copy bandwidth")
    copy_gbs = copy_bandwidth(n_max, 64 if quick else 128)
    sizes = QUICK_SIZES if quick else SGEMM_SIZES
    sgemm, numpy_ok = bench_sgemm(sizes, thread_counts, peaks, rounds=1 if quick else 3,
                                  budget=0.1 if quick else 0.3)
    ops = _with_threads(n_max, lambda: bench_ops(copy_gbs, quick))
    _progress("python overhead")
    overhead = _with_threads(n_max, python_overhead)
    if not quick:  # measure the machine again: a busy neighbour at the start would flatter us
        _progress("FMA peak and copy bandwidth, again")
        for t in thread_counts:
            peaks[t] = max(peaks[t], fma_peak(t))
        copy_gbs = max(copy_gbs, copy_bandwidth(n_max))
        _fractions(sgemm, ops, peaks, copy_gbs)
    print("\r\033[K", end="", file=sys.stderr, flush=True)
    report = {
        "machine": {"threads": n_max, "cpu": _cpu_name(), **kernel_info()},
        "fma_peak_gflops": {str(t): v for t, v in peaks.items()},
        "copy_gbps": copy_gbs,
        "numpy": numpy_ok,
        "sgemm": sgemm,
        "ops": ops,
        "overhead_us": overhead,
        "seconds": time.time() - t0,
    }
    report["busy"] = _busy(report)
    return report


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _busy(r: dict) -> str | None:
    """A warning when the N-thread FMA peak did not scale: other processes held cores, so every
    N-thread figure (Alpha's and numpy's) is unreliable."""
    peaks = {int(t): v for t, v in r["fma_peak_gflops"].items()}
    n = max(peaks)
    if n > 1 and 1 in peaks and peaks[n] < 0.75 * n * peaks[1]:
        return (f"the {n}-thread FMA peak is only {peaks[n] / peaks[1]:.1f}x the 1-thread one: "
                "the machine is busy and the multi-thread figures are unreliable; rerun when idle")
    return None


def format_report(r: dict) -> str:
    m = r["machine"]
    lines = [f"machine: {m['cpu']}, {m['threads']} threads, SGEMM kernel {m['kernel']} "
             f"(MR={m['mr']} NR={m['nr']} KC={m['kc']} MC={m['mc']})"]
    peaks = ", ".join(f"{v:.1f} GFLOP/s on {t} thread(s)" for t, v in r["fma_peak_gflops"].items())
    lines.append(f"FMA peak: {peaks}")
    busy = _busy(r)
    if busy:
        lines.append(f"note: {busy}")
    lines.append(f"copy bandwidth: {r['copy_gbps']:.1f} GB/s (read + write, "
                 f"{m['threads']} threads)")
    lines.append("")
    lines.append("SGEMM (n^3, f32)         time    GFLOP/s  of peak   numpy GFLOP/s  alpha/numpy")
    for row in r["sgemm"]:
        np_txt = (f"{row['numpy_gflops']:13.1f}  {row['numpy_ratio']:10.2f}x"
                  if row["numpy_gflops"] else "   numpy not importable")
        lines.append(f"  n={row['n']:<5} {row['threads']} thr  {row['seconds'] * 1e3:9.2f} ms "
                     f"{row['gflops']:8.1f}  {100 * (row['peak_fraction'] or 0):6.1f}%  {np_txt}")
    lines.append("")
    lines.append("kernels (CPU backend)                      time       GB/s  of copy   GFLOP/s")
    for row in r["ops"]:
        label = f"  {row['name']:<19} {row.get('shape', ''):<21}"
        gf = f"{row['gflops']:9.1f}" if "gflops" in row else ""
        frac = f"{100 * row['copy_fraction']:6.1f}%" if row["copy_fraction"] else "     -"
        lines.append(f"{label}{row['ms']:8.3f} ms {row['gbps']:8.1f}  {frac}  {gf}")
    lines.append("")
    lines.append("Python overhead per call:")
    for name, us in r["overhead_us"].items():
        lines.append(f"  {name:<28} {us:6.1f} us")
    lines.append(f"(took {r['seconds']:.0f} s)")
    return "\n".join(lines)


def run(args) -> int:
    report = run_all(quick=getattr(args, "quick", False), threads=getattr(args, "threads", None))
    if getattr(args, "json", False):
        print(json.dumps(report))
    else:
        print(format_report(report))
    return 0
