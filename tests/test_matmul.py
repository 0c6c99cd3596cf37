"""The CPU SGEMM (`alpha.tensor.cpu_matmul`) against a float64 pure-Python matmul.

Shapes are chosen to hit every edge of the blocking: sizes 1, odd sizes, M/N/K that are not
multiples of the micro-tile, K past one KC block, N past one NC panel, batches that do and do not
collapse to one stride, a 2-D b shared by a batch, all four transpose combos, accumulate and alpha,
and transposed/sliced views passed without copies. Results must be bit-identical for 1 and 2
threads. `CPUBackend.matmul` itself is checked against the reference backend in the backend suite.
"""

from __future__ import annotations

import math
import random

import pytest

from alpha.tensor import build, get_backend
from alpha.tensor.cpu_matmul import kernel_info
from alpha.tensor.cpu_storage import CPUStorage
from alpha.tensor.tensor import Tensor

matmul = get_backend("cpu").matmul  # through the checking front, as every caller does


class _Host:
    name = "cpu"


def tensor(shape, rng=None, dtype="f32", fill=None):
    """A contiguous CPU tensor of uniform values in [-1, 1) (or `fill`)."""
    n = math.prod(shape)
    size = {"f32": 4, "f64": 8, "i32": 4}[dtype]
    t = Tensor(_Host(), CPUStorage(n * size), shape, dtype)
    if rng is not None and n:
        mv = t.storage.view(dtype)
        for i in range(n):
            mv[i] = rng.uniform(-1.0, 1.0)
    elif fill is not None:
        mv = t.storage.view(dtype)
        for i in range(n):
            mv[i] = fill
    return t


def values(t) -> list[float]:
    """The elements of a (possibly strided) view in row-major order of its shape."""
    mv = t.storage.view(t.dtype)
    out = []

    def walk(d, off):
        if d == len(t.shape):
            out.append(mv[off])
            return
        for i in range(t.shape[d]):
            walk(d + 1, off + i * t.strides[d])

    walk(0, t.offset)
    return out


def reference(a, b, trans_a, trans_b, alpha, c0):
    """float64 op(a) @ op(b) * alpha + c0 (c0 a list or None), batched; returns (values, bound)
    where bound is sum |a||b| per element (for the tolerance)."""
    av, bv = values(a), values(b)
    ash, bsh = a.shape, b.shape
    if trans_a:
        K, M = ash[-2:]
    else:
        M, K = ash[-2:]
    N = bsh[-1] if not trans_b else bsh[-2]
    batch = math.prod(ash[:-2])
    b_batched = len(bsh) == len(ash) and len(ash) > 2
    res, bound = [], []
    for t in range(batch):
        ab = t * M * K
        bb = t * K * N if b_batched else 0
        for i in range(M):
            for j in range(N):
                s = s_abs = 0.0
                for k in range(K):
                    x = av[ab + (k * M + i if trans_a else i * K + k)]
                    y = bv[bb + (j * K + k if trans_b else k * N + j)]
                    s += x * y
                    s_abs += abs(x * y)
                res.append(alpha * s)
                bound.append(abs(alpha) * s_abs)
    if c0 is not None:
        res = [r + c for r, c in zip(res, c0)]
        bound = [x + abs(c) for x, c in zip(bound, c0)]
    return res, bound


def assert_close(got, want, bound, what):
    assert len(got) == len(want), what
    for i, (g, w, s) in enumerate(zip(got, want, bound)):
        if not abs(g - w) <= 1e-5 * s + 1e-6:  # (a NaN left in out fails too)
            raise AssertionError(f"{what}: element {i}: got {g}, want {w} (|a||b| {s})")


def operands(rng, batch, M, N, K, trans_a, trans_b, b_2d=False):
    a_shape = (*batch, K, M) if trans_a else (*batch, M, K)
    b_core = (N, K) if trans_b else (K, N)
    b_shape = b_core if b_2d else (*batch, *b_core)
    return tensor(a_shape, rng), tensor(b_shape, rng), tensor((*batch, M, N))


def check(rng, batch, M, N, K, trans_a=False, trans_b=False, accumulate=False, alpha=1.0,
          b_2d=False):
    a, b, out = operands(rng, batch, M, N, K, trans_a, trans_b, b_2d)
    c0 = None
    if accumulate:
        mv = out.storage.view("f32")
        for i in range(out.numel):
            mv[i] = rng.uniform(-1.0, 1.0)
        c0 = values(out)
    else:
        mv = out.storage.view("f32")
        for i in range(out.numel):
            mv[i] = float("nan")  # the kernel must overwrite every element
    matmul(out, a, b, trans_a=trans_a, trans_b=trans_b, accumulate=accumulate, alpha=alpha)
    want, bound = reference(a, b, trans_a, trans_b, alpha, c0)
    assert_close(values(out), want, bound,
                 f"batch={batch} M={M} N={N} K={K} ta={trans_a} tb={trans_b} acc={accumulate}")


SHAPES = [
    (1, 1, 1), (1, 7, 3), (5, 1, 9), (3, 4, 1), (2, 3, 0), (13, 17, 19), (14, 32, 8), (15, 33, 31),
    (29, 65, 7), (6, 16, 64), (33, 5, 47),
]


@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (False, True), (True, False),
                                             (True, True)])
def test_matches_reference_all_transposes(trans_a, trans_b):
    rng = random.Random(1 + 2 * trans_a + trans_b)
    for M, N, K in SHAPES:
        check(rng, (), M, N, K, trans_a, trans_b)
    check(rng, (), 9, 11, 13, trans_a, trans_b, accumulate=True, alpha=-0.5)
    check(rng, (3,), 7, 10, 6, trans_a, trans_b)
    check(rng, (2,), 5, 34, 9, trans_a, trans_b, b_2d=True, accumulate=True)


def test_blocking_edges():
    rng = random.Random(7)
    check(rng, (), 3, 5, 1100)                     # K past one KC block: beta after the first
    check(rng, (), 2, 3100, 3, trans_b=True)       # N past one NC panel
    check(rng, (), 4100, 1, 2, trans_a=True)       # M past one MBIG chunk (threaded path)
    check(rng, (), 100, 97, 101, accumulate=True, alpha=0.25)  # the threaded path, edges
    check(rng, (2, 3), 6, 7, 5, accumulate=True)   # two batch dims
    check(rng, (4,), 3, 2, 600, trans_a=True, b_2d=True)


def test_few_rows():
    """M <= 4 takes the unpacked path: B contiguous along n (axpy form) or along k (dot form)."""
    rng = random.Random(13)
    for trans_a in (False, True):
        check(rng, (), 1, 200, 700, trans_a=trans_a)                 # axpy, several chunks
        check(rng, (), 4, 130, 37, trans_a=trans_a, accumulate=True, alpha=2.0)
        check(rng, (), 2, 50, 1000, trans_a=trans_a, trans_b=True)   # dot, several chunks
        check(rng, (), 3, 9, 31, trans_a=trans_a, trans_b=True, accumulate=True, alpha=-1.5)
        check(rng, (3,), 1, 70, 33, trans_a=trans_a, trans_b=True, b_2d=True)
    # B with neither dim unit-stride: the packed path
    b = tensor((40, 30), rng)[::2, ::2]   # (20, 15)
    a, out = tensor((2, 20), rng), tensor((2, 15))
    matmul(out, a, b)
    want, bound = reference_from_values(values(a), values(b), 2, 15, 20)
    assert_close(values(out), want, bound, "few rows, strided B")


@pytest.mark.parametrize("M", [1, 2, 3, 4])
def test_few_rows_every_row_count_and_tail(M):
    """Each row count has its own unrolled case, in both forms. N = 2 * 64 + 3 crosses whole
    column blocks of the axpy form (16 or 64 wide) and its scalar tail, and the dot form's
    2-column blocks and 1-column tail; K = 2 * 32 + 5 crosses whole k blocks of the dot form
    (16 or 32 lanes) and its tail."""
    rng = random.Random(20 + M)
    N, K = 2 * 64 + 3, 2 * 32 + 5
    check(rng, (), M, N, K)                                          # axpy form
    check(rng, (), M, N, K, trans_b=True, accumulate=True, alpha=0.5)  # dot form
    check(rng, (), M, N, K, trans_a=True, trans_b=True)              # dot form, A rows copied


def test_zero_k_and_empty():
    rng = random.Random(3)
    a, b, out = operands(rng, (), 3, 4, 0, False, False)
    for i in range(out.numel):
        out.storage.view("f32")[i] = 5.0
    matmul(out, a, b, accumulate=True)
    assert values(out) == [5.0] * 12
    matmul(out, a, b)
    assert values(out) == [0.0] * 12
    a, b, out = operands(rng, (0,), 3, 4, 5, False, False)
    matmul(out, a, b)  # an empty batch is a no-op
    a, b, out = operands(rng, (), 0, 4, 5, False, False)
    matmul(out, a, b)


def test_views_without_copies():
    rng = random.Random(11)
    # a transposed view is the same as trans_a on the base tensor
    base = tensor((9, 7), rng)
    b = tensor((9, 5), rng)
    out1, out2 = tensor((7, 5)), tensor((7, 5))
    matmul(out1, base.T, b)
    matmul(out2, base, b, trans_a=True)
    assert values(out1) == values(out2)
    # views whose rows are strided (narrowed columns) and whose columns are strided
    big = tensor((12, 20), rng)
    a = big.narrow(1, 3, 8).narrow(0, 2, 6)       # (6, 8), row stride 20
    bb = tensor((10, 8), rng).T                    # (8, 10), column stride 8
    out = tensor((6, 10))
    matmul(out, a, bb)
    want, bound = reference_from_values(values(a), values(bb), 6, 10, 8)
    assert_close(values(out), want, bound, "strided views")
    # neither dim unit-stride: every other row and column
    c = tensor((14, 18), rng)
    a2 = c[::2, ::2]  # (7, 9), strides (36, 2)
    b2 = tensor((9, 4), rng)
    out = tensor((7, 4))
    matmul(out, a2, b2)
    want, bound = reference_from_values(values(a2), values(b2), 7, 4, 9)
    assert_close(values(out), want, bound, "stride-2 view")
    # batch dims that do not collapse: (B, H, T, D) permuted to (H, B, T, D)
    q = tensor((2, 3, 4, 5), rng).permute(1, 0, 2, 3)
    k = tensor((2, 3, 6, 5), rng).permute(1, 0, 2, 3)
    out = tensor((3, 2, 4, 6))
    matmul(out, q, k, trans_b=True)
    qv, kv, ov = values(q), values(k), values(out)
    for e in range(6):
        want, bound = reference_from_values(qv[e * 20:(e + 1) * 20],
                                            transpose(kv[e * 30:(e + 1) * 30], 6, 5), 4, 6, 5)
        assert_close(ov[e * 24:(e + 1) * 24], want, bound, f"permuted batch entry {e}")


def transpose(v, rows, cols):
    return [v[r * cols + c] for c in range(cols) for r in range(rows)]


def reference_from_values(av, bv, M, N, K):
    res, bound = [], []
    for i in range(M):
        for j in range(N):
            prods = [av[i * K + k] * bv[k * N + j] for k in range(K)]
            res.append(sum(prods))
            bound.append(sum(abs(p) for p in prods))
    return res, bound


def _run_with_threads(n, fn):
    before = build.num_threads()
    build.set_num_threads(n)
    try:
        return fn()
    finally:
        build.set_num_threads(before)


def test_bit_identical_across_thread_counts():
    rng = random.Random(5)
    cases = [
        ((), 301, 203, 517, False, False, False),   # one big matrix: pack-then-tiles path
        ((), 130, 700, 64, True, True, True),
        ((8,), 70, 33, 45, False, True, False),     # batch-parallel path
        ((3,), 200, 150, 120, True, False, True),   # per-entry threaded path
        ((), 1, 3000, 300, False, False, True),     # few rows, axpy form
        ((), 3, 700, 900, True, True, False),       # few rows, dot form
    ]
    for batch, M, N, K, ta, tb, acc in cases:
        a, b, _ = operands(rng, batch, M, N, K, ta, tb)
        init = tensor((*batch, M, N), rng)
        results = []
        for threads in (1, 2, 3):
            out = tensor((*batch, M, N))
            out.storage.view("f32")[:] = init.storage.view("f32")

            def run(out=out):
                matmul(out, a, b, trans_a=ta, trans_b=tb, accumulate=acc, alpha=0.75)

            _run_with_threads(threads, run)
            results.append(out.storage.view("f32").tobytes())
        assert results[0] == results[1] == results[2], (batch, M, N, K)


def test_bad_inputs():
    rng = random.Random(2)
    a, b, out = tensor((3, 4), rng), tensor((4, 5), rng), tensor((3, 5))
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5, 4\)"):
        matmul(out, a, tensor((5, 4)))
    with pytest.raises(ValueError, match="out"):
        matmul(tensor((3, 6)), a, b)
    with pytest.raises(ValueError, match="rank"):
        matmul(tensor((5,)), tensor((4,)), b)
    with pytest.raises(ValueError):
        matmul(tensor((2, 3, 5)), tensor((2, 3, 4)), tensor((3, 4, 5)))  # batch mismatch
    with pytest.raises(TypeError, match="f64"):
        matmul(out, tensor((3, 4), dtype="f64"), b)
    with pytest.raises(TypeError, match="i32"):
        matmul(tensor((3, 5), dtype="i32"), a, b)
    with pytest.raises(ValueError, match="overlaps"):
        sq = tensor((4, 4), rng)
        matmul(sq, sq, tensor((4, 4), rng))
    with pytest.raises(ValueError, match="unit stride"):
        matmul(tensor((5, 3)).T, a, b)


def test_kernel_info():
    info = kernel_info()
    assert info["mr"] >= 1 and info["nr"] >= 1 and info["kernel"]


def test_concurrent_callers():
    """Two Python threads calling at once (ctypes drops the GIL): the shared workspace and the
    pool serialise them, and every result is the single-caller one."""
    import threading

    rng = random.Random(9)
    jobs = []
    for M, N, K in ((150, 140, 530), (3, 300, 200), (60, 70, 80)):
        a, b, _ = operands(rng, (), M, N, K, False, False)
        want = tensor((M, N))
        matmul(want, a, b)
        jobs.append((a, b, want.storage.view("f32").tobytes(), (M, N)))
    errors = []

    def worker():
        for _ in range(15):
            for a, b, want, shape in jobs:
                out = tensor(shape)
                matmul(out, a, b)
                if out.storage.view("f32").tobytes() != want:
                    errors.append(shape)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_bench_kernels_pieces():
    """The kernel benchmark's parts on tiny sizes (the full run takes about a minute)."""
    from alpha.bench import kernels as bench_kernels
    from alpha.cli.main import build_parser

    args = build_parser().parse_args(["bench", "kernels", "--json", "--quick"])
    assert args.json and args.quick and args.func is not None
    rows, _ = bench_kernels.bench_sgemm((64,), [1], {1: 100.0}, rounds=1, budget=0.01)
    assert rows[0]["n"] == 64 and rows[0]["gflops"] > 0
    assert bench_kernels.fma_peak(1) > 0
    report = {"machine": {"cpu": "x", "threads": 1, **kernel_info()},
              "fma_peak_gflops": {"1": 100.0}, "copy_gbps": 10.0, "numpy": False,
              "sgemm": rows, "overhead_us": {"cpu_matmul.matmul 4x4": 3.0}, "seconds": 1.0,
              "ops": [{"name": "softmax_forward", "shape": "(8,)", "ms": 1.0, "gbps": 5.0,
                       "copy_fraction": 0.5}]}
    text = bench_kernels.format_report(report)
    assert "n=64" in text and "softmax_forward" in text and "50.0%" in text
    assert set(bench_kernels.python_overhead()) == {
        "cpu_matmul.matmul 4x4", "backend.matmul 4x4", "backend.gelu_forward (8,)",
        "backend.binary add (8,)"}
