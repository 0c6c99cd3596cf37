"""One suite of checks for every backend: each op of the Backend protocol, forward and backward,
compared on seeded random inputs against the float64 reference backend (`alpha.tensor.reference`).

What it covers: every protocol op; odd sizes, size 1, sizes past SIMD widths; non-contiguous
inputs (transposed, narrowed and stepped views); broadcasting; backward ops adding into pre-filled
gradients; outputs aliasing inputs; bad input (shape mismatch -> ValueError naming the shapes,
wrong dtype -> TypeError naming it, empty where data is needed -> ValueError, ids out of range).
Thread-count determinism is checked (bit-exact, 1 vs 4 threads) for a backend that offers
`set_num_threads(n)` and `num_threads()` (for "cpu": alpha.tensor.build's); speed is not.

Use it three ways:
    pytest tests/test_backends.py                # every available backend, one test per check
    python tests/backend_suite.py cpu [-k matmul] [-v]
        exit 0: all passed; 1: failures (listed); 2: the backend is not available here
    from backend_suite import run_suite; failures = run_suite("helios")   # list of strings

Each check is a function `check_<name>(ctx)`; `ctx` holds the backend under test (`ctx.be`), the
reference (`ctx.ref`), a seeded Philox stream for test data, and collects soft failures, so one
run reports every mismatching case of a check rather than the first.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
import time
import traceback
from array import array

if __name__ == "__main__":  # run as a script: make `alpha` importable from the repo root
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from alpha.core import rng as _rng  # noqa: E402
from alpha.core.backend import BINARY_OPS, DTYPES, UNARY_OPS  # noqa: E402
from alpha.core.errors import BackendUnavailable  # noqa: E402

SEED = 20261127
RTOL, ATOL = 1e-4, 1e-5  # f32 elementwise; reductions scale atol with their length
CHECKS: dict = {}


def check(fn):
    CHECKS[fn.__name__.removeprefix("check_")] = fn
    return fn


# ---- loading backends ----------------------------------------------------------------------


def load_backend(name: str):
    """(backend, "") or (None, reason it is not available here)."""
    from alpha.tensor import get_backend

    try:
        if name == "helios":
            importlib.import_module("alpha.helios")
        return get_backend(name), ""
    except BackendUnavailable as e:
        return None, f"backend {name!r} unavailable: {e}"
    except ImportError as e:
        if name == "helios" or getattr(e, "name", "") in ("alpha.tensor.cpu", "alpha.helios",
                                                         "alpha.helios.backend"):
            return None, f"backend {name!r} is not importable: {e}"
        raise
    except (OSError, RuntimeError) as e:
        if name == "helios":
            return None, f"backend {name!r} unavailable: {type(e).__name__}: {e}"
        raise


# ---- test context ----------------------------------------------------------------------------


class Pair:
    """The same logical tensor on the backend under test (`be`) and on the reference (`ref`)."""

    __slots__ = ("be", "ref")

    def __init__(self, be, ref):
        self.be, self.ref = be, ref

    @property
    def shape(self):
        return self.ref.shape

    def _map(self, name, *args):
        return Pair(getattr(self.be, name)(*args), getattr(self.ref, name)(*args))

    def view(self, *shape):
        return self._map("view", *shape)

    def transpose(self, d0=-2, d1=-1):
        return self._map("transpose", d0, d1)

    def narrow(self, dim, start, length):
        return self._map("narrow", dim, start, length)

    def permute(self, *dims):
        return self._map("permute", *dims)

    def __getitem__(self, idx):
        return Pair(self.be[idx], self.ref[idx])


def _side(x, which):
    if isinstance(x, Pair):
        return getattr(x, which)
    return x


def _names_shape(msg: str, shape) -> bool:
    shape = tuple(shape)
    forms = {str(shape), str(list(shape)), "x".join(map(str, shape)),
             "(" + ",".join(map(str, shape)) + ")", "(" + ", ".join(map(str, shape)) + ")"}
    return any(f in msg for f in forms)


class Ctx:
    def __init__(self, be, ref, name: str):
        self.be, self.ref, self.name = be, ref, name
        self.stream = _rng.Stream(_rng.stream_key(SEED, name))
        self.failures: list[str] = []
        self.messages: dict[str, str] = {}  # label of a bad-input case -> "Type: message"

    # -- data
    def floats(self, n, lo=-1.0, hi=1.0) -> list[float]:
        return list(array("f", [lo + (hi - lo) * u for u in self.stream.uniform(n)]))

    def tensor(self, values, shape, dtype="f32", layout="c") -> Pair:
        """Upload `values` (row-major over the STORAGE shape) and view it as logical `shape`.
        layout: "c" contiguous; "t" stored transposed (last two dims); "n" narrowed from a
        wider last dim; "s" every other entry of the first dim."""
        shape = tuple(shape)
        store = list(shape)
        if layout == "t":
            store[-2], store[-1] = store[-1], store[-2]
        elif layout == "n":
            store[-1] += 3
        elif layout == "s":
            store[0] *= 2
        assert len(values) == math.prod(store), (len(values), store)
        pair = Pair(self.be.from_array(array(DTYPES[dtype][0], values), store, dtype),
                    self.ref.from_array(array(DTYPES[dtype][0], values), store, dtype))
        if layout == "t":
            pair = pair.transpose(-2, -1)
        elif layout == "n":
            pair = pair.narrow(-1, 2, shape[-1])
        elif layout == "s":
            pair = pair[::2]
        assert pair.shape == shape
        return pair

    def _store_numel(self, shape, layout):
        n = math.prod(shape)
        if layout == "n":
            return n // shape[-1] * (shape[-1] + 3) if shape[-1] else math.prod(shape[:-1]) * 3
        if layout == "s":
            return 2 * n
        return n

    def rand(self, shape, lo=-1.0, hi=1.0, layout="c", dtype="f32") -> Pair:
        return self.tensor(self.floats(self._store_numel(shape, layout), lo, hi), shape, dtype,
                           layout)

    def randn(self, shape, std=1.0, layout="c") -> Pair:
        n = self._store_numel(shape, layout)
        return self.tensor(list(array("f", self.stream.normal(n, 0.0, std))), shape, "f32",
                           layout)

    def ints(self, shape, high, low=0, dtype="i32") -> Pair:
        n = math.prod(shape)
        return self.tensor([low + r for r in self.stream.randint(n, high - low)] if n else [],
                           shape, dtype)

    def zeros(self, shape, dtype="f32") -> Pair:
        return Pair(self.be.zeros(shape, dtype), self.ref.zeros(shape, dtype))

    # -- running
    def call(self, op, *args, **kwargs):
        """Run one op on both backends with the same arguments; returns (be result, ref result)."""
        results = []
        for which in ("be", "ref"):
            backend = getattr(self, which)
            a = [_side(x, which) for x in args]
            kw = {k: _side(v, which) for k, v in kwargs.items()}
            results.append(getattr(backend, op)(*a, **kw))
        return tuple(results)

    # -- comparing
    def fail(self, msg: str) -> None:
        self.failures.append(f"{self.name}: {msg}")

    def close(self, label, p: Pair, rtol=RTOL, atol=ATOL) -> bool:
        """Backend vs reference, elementwise |got - want| <= atol + rtol * |want|."""
        if tuple(p.be.shape) != tuple(p.ref.shape):
            self.fail(f"{label}: shape {p.be.shape}, reference {p.ref.shape}")
            return False
        got = list(self.be.to_array(p.be))
        want = list(self.ref.to_array(p.ref))
        return self.close_values(label, got, want, p.ref.shape, rtol, atol)

    def close_values(self, label, got, want, shape, rtol=RTOL, atol=ATOL) -> bool:
        if len(got) != len(want):
            self.fail(f"{label}: {len(got)} values, expected {len(want)}")
            return False
        bad, worst, worst_i = 0, -1.0, 0
        for i, (g, w) in enumerate(zip(got, want)):
            if math.isnan(w) or math.isinf(w):
                ok = (math.isnan(g) and math.isnan(w)) or g == w
                err = 0.0 if ok else math.inf
            else:
                err = abs(g - w) if math.isfinite(g) else math.inf
                ok = err <= atol + rtol * abs(w)
            if not ok:
                bad += 1
                if err > worst:
                    worst, worst_i = err, i
        if bad:
            idx = _unravel(worst_i, shape)
            self.fail(f"{label}: {bad}/{len(want)} elements differ (rtol={rtol:g}, atol={atol:g});"
                      f" worst at {idx}: got {got[worst_i]!r}, reference {want[worst_i]!r}")
            return False
        return True

    def equal(self, label, p: Pair) -> bool:
        return self.close(label, p, rtol=0.0, atol=0.0)

    def raises(self, label, exc_type, op, *args, names=(), **kwargs) -> None:
        """Call op on the backend under test only; expect exc_type whose message contains every
        item of `names` (shapes as tuples, or strings)."""
        a = [_side(x, "be") for x in args]
        kw = {k: _side(v, "be") for k, v in kwargs.items()}
        try:
            getattr(self.be, op)(*a, **kw)
        except exc_type as e:
            msg = str(e)
            self.messages[label] = f"{type(e).__name__}: {msg}"
            for n in names:
                found = _names_shape(msg, n) if isinstance(n, tuple) else n in msg
                if not found:
                    self.fail(f"{label}: {type(e).__name__} message {msg!r} does not name {n}")
            return
        except NotImplementedError as e:
            self.fail(f"{label}: not implemented: {e}")
            return
        except Exception as e:  # noqa: BLE001 - reported, not swallowed
            self.fail(f"{label}: raised {type(e).__name__}({e}), expected {exc_type.__name__}")
            return
        self.fail(f"{label}: no error raised, expected {exc_type.__name__}")


def error_messages(be) -> dict[str, str]:
    """The "Type: message" each bad-input case of the suite raises on backend `be`."""
    from alpha.tensor import get_backend

    messages = {}
    for name in ("errors_shape", "errors_dtype", "errors_data", "errors_args"):
        ctx = Ctx(be, get_backend("reference"), name)
        CHECKS[name](ctx)
        messages.update(ctx.messages)
    return messages


def _unravel(i, shape):
    idx = []
    for n in reversed(shape):
        idx.append(i % n if n else 0)
        i = i // n if n else 0
    return tuple(reversed(idx))


# ---- running ---------------------------------------------------------------------------------


def run_check(be, name: str, reraise: bool = False) -> list[str]:
    """Run one check against backend object `be`; return its failures (empty when it passed)."""
    from alpha.tensor import get_backend

    ctx = Ctx(be, get_backend("reference"), name)
    try:
        CHECKS[name](ctx)
    except NotImplementedError as e:
        if reraise:
            raise
        ctx.fail(f"not implemented: {e}")
    except Exception as e:  # noqa: BLE001 - a crash is a failure of this check
        if reraise:
            raise
        where = traceback.extract_tb(e.__traceback__)[-1]
        ctx.fail(f"crashed: {type(e).__name__}: {e} (at {os.path.basename(where.filename)}:"
                 f"{where.lineno})")
    return ctx.failures


def run_suite(backend_name: str, only: str = "", verbose: bool = False) -> list[str]:
    """Run every check (names containing `only`) on a backend; return all failures.
    Raises BackendUnavailable when the backend cannot run here."""
    be, reason = load_backend(backend_name)
    if be is None:
        raise BackendUnavailable(reason)
    failures = []
    for name in CHECKS:
        if only and only not in name:
            continue
        t0 = time.perf_counter()
        got = run_check(be, name)
        failures += got
        if verbose:
            status = "ok" if not got else f"FAIL ({len(got)})"
            print(f"{name:24s} {status:10s} {time.perf_counter() - t0:6.2f}s", flush=True)
    return failures


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="Check a backend against the reference backend.")
    p.add_argument("backend", help="cpu | helios | reference")
    p.add_argument("-k", default="", help="run only checks whose name contains this")
    p.add_argument("-v", action="store_true", help="one line per check with its time")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        failures = run_suite(args.backend, args.k, args.v)
    except BackendUnavailable as e:
        print(f"SKIP: {e}")
        return 2
    for f in failures:
        print(f"FAIL {f}")
    n = sum(1 for c in CHECKS if args.k in c)
    print(f"{args.backend}: {n} checks, {len(failures)} failures, "
          f"{time.perf_counter() - t0:.1f}s")
    return 1 if failures else 0


# =============================================================================================
# the checks
# =============================================================================================


# ---- memory -------------------------------------------------------------------------------


@check
def check_memory(ctx):
    be = ctx.be
    for dtype in DTYPES:
        for shape in [(1,), (7,), (3, 5), (2, 1, 33)]:
            n = math.prod(shape)
            z = be.zeros(shape, dtype)
            if z.shape != shape or z.dtype != dtype:
                ctx.fail(f"zeros{shape} {dtype}: got shape {z.shape} dtype {z.dtype}")
            if list(be.to_array(z)) != [0] * n:
                ctx.fail(f"zeros{shape} {dtype}: not all zero")
            e = be.empty(shape, dtype)
            if e.shape != shape or e.dtype != dtype:
                ctx.fail(f"empty{shape} {dtype}: got shape {e.shape} dtype {e.dtype}")
            vals = ctx.floats(n, -3, 3) if dtype in ("f32", "f64") else \
                [int(v) for v in ctx.floats(n, 0, 1000)]
            if dtype == "i32":
                vals = [v - 500 for v in vals]
            host = array(DTYPES[dtype][0], vals)
            t = be.from_array(host, shape, dtype)
            back = be.to_array(t)
            if not isinstance(back, array) or back.typecode != host.typecode:
                ctx.fail(f"to_array {dtype}: want array('{host.typecode}'), got {type(back)}")
            elif back != host:
                ctx.fail(f"from_array/to_array {dtype}{shape}: round trip changed the data")
    t = be.from_array(array("f", [1.0, 2.0, 3.0]))
    if t.shape != (3,):
        ctx.fail(f"from_array without shape: shape {t.shape}, want (3,)")
    # fill, including a strided view: the rest of the storage must be untouched
    base = ctx.rand((4, 6))
    ctx.call("fill", base.narrow(1, 1, 3), 2.5)
    ctx.equal("fill of a narrowed view", base)
    ctx.call("fill", base.transpose(), -1.0)
    ctx.equal("fill of a transposed view", base)
    ints = ctx.ints((5,), 10)
    ctx.call("fill", ints, 7)
    ctx.equal("fill i32", ints)
    be.synchronize()


@check
def check_copy(ctx):
    for shape, layout in [((5,), "c"), ((3, 4), "t"), ((3, 4), "n"), ((2, 3, 5), "s"),
                          ((1, 1), "t"), ((4, 33), "n")]:
        src = ctx.rand(shape, layout=layout)
        dst = ctx.rand(shape)
        ctx.call("copy", dst, src)
        ctx.equal(f"copy {layout}{shape} -> contiguous", dst)
    # into strided destinations (how KV-cache slices are written)
    big = ctx.rand((2, 9, 12))
    part = ctx.rand((2, 3, 4))
    ctx.call("copy", big.narrow(1, 4, 3).narrow(2, 4, 4), part)
    ctx.equal("copy into a narrowed 3-D view", big)
    sq = ctx.rand((5, 5))
    ctx.call("copy", sq.transpose(), ctx.rand((5, 5)))
    ctx.equal("copy into a transposed view", sq)
    ids = ctx.ints((2, 7), 100)
    out = ctx.zeros((2, 7), "i32")
    ctx.call("copy", out, ids)
    ctx.equal("copy i32", out)


@check
def check_cast(ctx):
    vals = [-2.75, -1.5, -0.5, 0.0, 0.5, 1.25, 2.999, 3.0, 100.5, -100.5, 7.0]
    x = ctx.tensor(vals, (11,))
    out = ctx.zeros((11,), "i32")
    ctx.call("cast", out, x)
    ctx.equal("cast f32 -> i32 (truncating)", out)
    ids = ctx.ints((3, 5), 1000, -500)
    f = ctx.zeros((3, 5))
    ctx.call("cast", f, ids)
    ctx.equal("cast i32 -> f32", f)
    tok = ctx.ints((9,), 65535, dtype="u16")
    f = ctx.zeros((9,))
    ctx.call("cast", f, tok)
    ctx.equal("cast u16 -> f32", f)
    tok = ctx.ints((9,), 2 ** 20, dtype="u32")
    i = ctx.zeros((9,), "i32")
    ctx.call("cast", i, tok)
    ctx.equal("cast u32 -> i32", i)
    x = ctx.rand((4, 6), layout="t")
    d = ctx.zeros((4, 6), "f64")
    ctx.call("cast", d, x)
    ctx.equal("cast f32 (transposed view) -> f64", d)
    back = ctx.zeros((4, 6))
    ctx.call("cast", back, d)
    ctx.equal("cast f64 -> f32", back)


@check
def check_rng(ctx):
    key = _rng.stream_key(7, "dropout")
    for n, pos in [(1, 0), (7, 5), (33, 1), (100, 4096 + 3)]:
        out = ctx.zeros((n,))
        ctx.call("rng_uniform", out, key, pos)
        want = list(array("f", [_rng.to_uniform(w) for w in _rng.words(key, pos, n)]))
        got = list(ctx.be.to_array(out.be))
        if got != want:
            ctx.close_values(f"rng_uniform n={n} position={pos} (must be bit-exact)", got, want,
                             (n,), 0.0, 0.0)
        for mean, std in [(0.0, 1.0), (0.5, 0.02)]:
            out = ctx.zeros((n,))
            ctx.call("rng_normal", out, key, pos, mean, std)
            zs = _rng.normals_from_words(_rng.words(key, pos, 2 * ((n + 1) // 2)), n)
            want = list(array("f", [mean + std * z for z in zs]))
            ctx.close_values(f"rng_normal n={n} position={pos} mean={mean} std={std}",
                             list(ctx.be.to_array(out.be)), want, (n,), 1e-6, 1e-7)
    out = ctx.zeros((3, 5))
    pos = 2 ** 34 + 5  # block number past 32 bits: the counter's second word is used
    ctx.call("rng_uniform", out, key, pos)
    want = list(array("f", [_rng.to_uniform(w) for w in _rng.words(key, pos, 15)]))
    ctx.close_values("rng_uniform at position 2**34+5", list(ctx.be.to_array(out.be)), want,
                     (15,), 0.0, 0.0)


# ---- matmul --------------------------------------------------------------------------------


def _mm_tol(K):
    return dict(rtol=RTOL, atol=ATOL + 2e-6 * K)


@check
def check_matmul(ctx):
    cases = [(1, 1, 1), (1, 7, 1), (3, 5, 7), (17, 33, 9), (8, 1, 8), (40, 65, 33),
             (70, 130, 67)]
    for M, K, N in cases:
        for ta in (False, True):
            for tb in (False, True):
                a = ctx.rand((K, M) if ta else (M, K))
                b = ctx.rand((N, K) if tb else (K, N))
                out = ctx.zeros((M, N))
                ctx.call("matmul", out, a, b, trans_a=ta, trans_b=tb)
                ctx.close(f"matmul M,K,N={M},{K},{N} trans_a={ta} trans_b={tb}", out,
                          **_mm_tol(K))
    # accumulate and alpha
    a, b = ctx.rand((6, 9)), ctx.rand((9, 5))
    out = ctx.rand((6, 5))
    ctx.call("matmul", out, a, b, accumulate=True, alpha=0.5)
    ctx.close("matmul accumulate=True alpha=0.5", out, **_mm_tol(9))
    out = ctx.rand((6, 5))
    ctx.call("matmul", out, a, b, alpha=-2.0)
    ctx.close("matmul alpha=-2 (overwrites)", out, **_mm_tol(9))
    # batched: 3-D b, 2-D b shared by every batch entry, 4-D
    a, b = ctx.rand((3, 5, 7)), ctx.rand((3, 7, 4))
    out = ctx.zeros((3, 5, 4))
    ctx.call("matmul", out, a, b)
    ctx.close("matmul batched (3,5,7)@(3,7,4)", out, **_mm_tol(7))
    a, w = ctx.rand((2, 5, 7)), ctx.rand((11, 7))
    out = ctx.zeros((2, 5, 11))
    ctx.call("matmul", out, a, w, trans_b=True)
    ctx.close("matmul (2,5,7)@(11,7)^T, 2-D b", out, **_mm_tol(7))
    q, k = ctx.rand((2, 3, 6, 4)), ctx.rand((2, 3, 6, 4))
    out = ctx.zeros((2, 3, 6, 6))
    ctx.call("matmul", out, q, k, trans_b=True, alpha=0.5)
    ctx.close("matmul 4-D q@k^T", out, **_mm_tol(4))
    x, g = ctx.rand((2, 5, 7)), ctx.rand((2, 5, 3))
    out = ctx.zeros((2, 7, 3))
    ctx.call("matmul", out, x, g, trans_a=True)
    ctx.close("matmul batched trans_a", out, **_mm_tol(5))
    # weight gradient: flatten (B, T, C) with view, trans_a, accumulate
    x, g = ctx.rand((2, 5, 7)), ctx.rand((2, 5, 3))
    dw = ctx.rand((7, 3))
    ctx.call("matmul", dw, x.view(10, 7), g.view(-1, 3), trans_a=True, accumulate=True)
    ctx.close("matmul weight grad (B*T,C)^T@(B*T,N) accumulate", dw, **_mm_tol(10))
    # non-contiguous inputs
    for la, lb in [("t", "c"), ("c", "t"), ("n", "n"), ("s", "t")]:
        a, b = ctx.rand((6, 13), layout=la), ctx.rand((13, 10), layout=lb)
        out = ctx.zeros((6, 10))
        ctx.call("matmul", out, a, b)
        ctx.close(f"matmul with a layout {la}, b layout {lb}", out, **_mm_tol(13))
    a, b = ctx.rand((2, 6, 9), layout="n"), ctx.rand((2, 9, 4), layout="s")
    out = ctx.zeros((2, 6, 4))
    ctx.call("matmul", out, a, b)
    ctx.close("matmul batched, narrowed a and stepped b", out, **_mm_tol(9))


# ---- elementwise -------------------------------------------------------------------------


BROADCAST_CASES = [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)), ((2, 3, 4), (3, 1)),
                   ((1,), (5,)), ((7,), (1,)), ((2, 1, 5), (1, 3, 1)), ((4, 33), (33,)),
                   ((1, 1), (1, 1)), ((5, 1), (5, 17))]


def _ranged(ctx, shape, lo, hi, layout="c", both_signs=False):
    """Values in [lo, hi), or with both_signs in +-[lo, hi) (away from zero when lo > 0)."""
    n = ctx._store_numel(shape, layout)
    vals = ctx.floats(n, lo, hi)
    if both_signs:
        vals = [-v if s < 0.5 else v for v, s in zip(vals, ctx.floats(n, 0.0, 1.0))]
    return ctx.tensor(vals, shape, layout=layout)


def _operand_b(ctx, op, shape, layout="c"):
    if op == "div":  # keep away from zero
        return _ranged(ctx, shape, 0.5, 1.5, layout, both_signs=True)
    return ctx.rand(shape, layout=layout)


@check
def check_binary(ctx):
    from alpha.core.checks import broadcast_shape

    for op in BINARY_OPS:
        for sa, sb in BROADCAST_CASES:
            a, b = ctx.rand(sa), _operand_b(ctx, op, sb)
            out = ctx.zeros(broadcast_shape(sa, sb))
            ctx.call("binary", out, op, a, b)
            ctx.close(f"binary {op} {sa} {sb}", out)
        a, b = ctx.rand((5, 6), layout="t"), _operand_b(ctx, op, (5, 6), "n")
        out = ctx.zeros((5, 6))
        ctx.call("binary", out, op, a, b)
        ctx.close(f"binary {op} transposed a, narrowed b", out)
        a, b = ctx.rand((4, 6)), _operand_b(ctx, op, (6,))
        ctx.call("binary", a, op, a, b)
        ctx.close(f"binary {op} in place (out is a)", a)
        a, b = ctx.rand((4, 6)), _operand_b(ctx, op, (4, 6))
        ctx.call("binary", b, op, a, b)
        ctx.close(f"binary {op} in place (out is b)", b)


@check
def check_binary_scalar(ctx):
    cases = [(op, s) for op in BINARY_OPS for s in (0.75, -2.0)] + [
        ("pow", 2.0), ("pow", 3.0), ("pow", 0.5), ("pow", -1.5), ("rsub", 1.0), ("rdiv", 1.0),
        ("rdiv", -3.0)]
    for op, s in cases:
        for shape, layout in [((1,), "c"), ((7,), "c"), ((3, 33), "c"), ((4, 5), "t")]:
            if op == "pow" and s != int(s):
                x = ctx.rand(shape, 0.1, 2.0, layout=layout)
            elif op == "rdiv":
                x = ctx.rand(shape, 0.5, 1.5, layout=layout)
            else:
                x = ctx.rand(shape, -2.0, 2.0, layout=layout)
            out = ctx.zeros(shape)
            ctx.call("binary_scalar", out, op, x, s)
            ctx.close(f"binary_scalar {op} s={s} {layout}{shape}", out)
    x = ctx.rand((3, 8))
    ctx.call("binary_scalar", x, "mul", x, 3.0)
    ctx.close("binary_scalar in place", x)


UNARY_DOMAIN = {"log": (0.05, 3.0), "sqrt": (0.0, 3.0), "rsqrt": (0.05, 3.0),
                "reciprocal": (0.2, 2.0), "exp": (-5.0, 5.0)}


@check
def check_unary(ctx):
    for op in UNARY_OPS:
        lo, hi = UNARY_DOMAIN.get(op, (-3.0, 3.0))
        for shape, layout in [((1,), "c"), ((7,), "c"), ((2, 3, 17), "c"), ((6, 9), "t"),
                              ((4, 5), "n")]:
            x = _ranged(ctx, shape, lo, hi, layout, both_signs=(op == "reciprocal"))
            out = ctx.zeros(shape)
            ctx.call("unary", out, op, x)
            ctx.close(f"unary {op} {layout}{shape}", out)
        x = _ranged(ctx, (3, 9), lo, hi, "c", both_signs=(op == "reciprocal"))
        ctx.call("unary", x, op, x)
        ctx.close(f"unary {op} in place", x)


@check
def check_axpy_where(ctx):
    for shape, layout, alpha in [((1,), "c", 1.0), ((7,), "c", 0.5), ((3, 33), "t", -2.0),
                                 ((2, 4, 5), "n", 1.0)]:
        out = ctx.rand(shape)
        ctx.call("axpy", out, ctx.rand(shape, layout=layout), alpha)
        ctx.close(f"axpy alpha={alpha} {layout}{shape}", out)
    for xs, ms, value in [((3, 7), (3, 7), 0.0), ((2, 3, 5, 5), (5, 5), -1e9),
                          ((2, 3, 5, 5), (5, 5), float("-inf")), ((4, 6), (6,), 2.5),
                          ((4, 6), (4, 1), -1.0)]:
        x = ctx.rand(xs)
        mask = ctx.tensor([1.0 if v > 0 else 0.0 for v in ctx.floats(math.prod(ms))], ms)
        out = ctx.zeros(xs)
        ctx.call("where_mask", out, x, mask, value)
        ctx.close(f"where_mask x{xs} mask{ms} value={value}", out)


# ---- reductions ------------------------------------------------------------------------------


def _red_tol(n):
    return dict(rtol=RTOL, atol=ATOL + 1e-6 * n)


@check
def check_sum(ctx):
    cases = [((3, 4, 5), [0]), ((3, 4, 5), [1]), ((3, 4, 5), [2]), ((3, 4, 5), [-1]),
             ((3, 4, 5), [0, 2]), ((3, 4, 5), [0, 1, 2]), ((1, 1), [0]), ((7,), [0]),
             ((8, 300), [-1]), ((300, 3), [0])]
    for shape, axes in cases:
        n = math.prod(shape[a] for a in axes) if axes else 1
        for keepdim in (False, True):
            for layout in ("c", "t") if len(shape) > 1 else ("c",):
                x = ctx.rand(shape, layout=layout)
                ax = [a % len(shape) for a in axes]
                oshape = [1 if d in ax else s for d, s in enumerate(shape)] if keepdim else \
                    [s for d, s in enumerate(shape) if d not in ax]
                out = ctx.rand(oshape)
                ctx.call("sum", out, x, axes, keepdim)
                ctx.close(f"sum {layout}{shape} axes={axes} keepdim={keepdim}", out,
                          **_red_tol(n))


@check
def check_sum_to(ctx):
    cases = [((3, 4), (4,)), ((3, 4), (3, 1)), ((3, 4), (1, 4)), ((2, 3, 4), (1, 3, 1)),
             ((2, 3, 4), (3, 4)), ((5,), (1,)), ((2, 3), (2, 3)), ((6, 33), (33,)),
             ((2, 3, 4), (1,)), ((4, 1, 5), (1, 1, 5))]
    for xs, os_ in cases:
        for layout in ("c", "t") if len(xs) > 1 else ("c",):
            out = ctx.rand(os_)  # sum_to ADDS into out
            x = ctx.rand(xs, layout=layout)
            ctx.call("sum_to", out, x)
            ctx.close(f"sum_to {layout}{xs} -> {os_}", out, **_red_tol(math.prod(xs)))


@check
def check_max(ctx):
    for shape, axis in [((3, 4, 5), 0), ((3, 4, 5), 1), ((3, 4, 5), -1), ((1,), 0), ((7, 1), 1),
                        ((4, 300), -1), ((33, 2), 0)]:
        for keepdim in (False, True):
            for layout in ("c", "t") if len(shape) > 1 else ("c",):
                x = ctx.rand(shape, -5, 5, layout=layout)
                a = axis % len(shape)
                oshape = [1 if d == a else s for d, s in enumerate(shape)] if keepdim else \
                    [s for d, s in enumerate(shape) if d != a]
                out = ctx.zeros(oshape)
                ctx.call("max", out, x, axis, keepdim)
                ctx.equal(f"max {layout}{shape} axis={axis} keepdim={keepdim}", out)


@check
def check_sum_squares_finite(ctx):
    for shape, layout in [((1,), "c"), ((7,), "c"), ((3, 33), "c"), ((1000,), "c"),
                          ((6, 5), "t"), ((4, 9), "n")]:
        x = ctx.rand(shape, -2, 2, layout=layout)
        got, want = ctx.call("sum_squares", x)
        if not isinstance(got, float):
            ctx.fail(f"sum_squares returned {type(got).__name__}, want float")
        n = math.prod(shape)
        ctx.close_values(f"sum_squares {layout}{shape}", [got], [want], (1,), 1e-6, 1e-6 * n)
        got, want = ctx.call("all_finite", x)
        if got is not True or want is not True:
            ctx.fail(f"all_finite {layout}{shape} of finite data: got {got!r}")
    for n in (1, 7, 8, 9, 33, 100):
        for bad in (float("nan"), float("inf"), float("-inf")):
            for pos in sorted({0, n // 2, n - 1}):
                vals = ctx.floats(n)
                vals[pos] = bad
                x = ctx.tensor(vals, (n,))
                got, want = ctx.call("all_finite", x)
                if got is not False or want is not False:
                    ctx.fail(f"all_finite with {bad} at {pos} of {n}: got {got!r}")
    vals = [float("nan") if j % 6 == 5 else v for j, v in enumerate(ctx.floats(24))]
    x = ctx.tensor(vals, (4, 6)).narrow(1, 0, 5)
    got, _ = ctx.call("all_finite", x)  # the NaNs sit outside the view
    if got is not True:
        ctx.fail("all_finite looked outside a narrowed view")


# ---- softmax, layernorm, activations ---------------------------------------------------------


SOFTMAX_SHAPES = [((1, 1), "c", 1.0), ((3, 7), "c", 1.0), ((2, 3, 17), "c", 3.0),
                  ((4, 130), "c", 1.0), ((5, 6), "t", 1.0), ((3, 9), "n", 1.0),
                  ((3, 11), "c", 40.0)]


@check
def check_softmax(ctx):
    for fwd, bwd in [("softmax_forward", "softmax_backward"),
                     ("log_softmax_forward", "log_softmax_backward")]:
        for shape, layout, scale in SOFTMAX_SHAPES:
            x = ctx.rand(shape, -scale, scale, layout=layout)
            out = ctx.zeros(shape)
            ctx.call(fwd, out, x)
            ctx.close(f"{fwd} {layout}{shape} scale={scale}", out, atol=1e-5 * max(1, scale))
            dout = ctx.rand(shape, layout=layout)
            dx = ctx.rand(shape)
            ctx.call(bwd, dx, dout, out)
            ctx.close(f"{bwd} {layout}{shape} scale={scale} (adds into dx)", dx,
                      **_red_tol(shape[-1]))
        x = ctx.rand((2, 5), 1000.0, 1001.0)  # large offsets: needs the max subtraction
        out = ctx.zeros((2, 5))
        ctx.call(fwd, out, x)
        ctx.close(f"{fwd} of values near 1000", out, atol=1e-4)


@check
def check_layernorm(ctx):
    for shape, layout, use_bias in [((1, 1), "c", True), ((3, 7), "c", True),
                                    ((2, 3, 33), "c", False), ((4, 64), "c", True),
                                    ((5, 6), "t", True), ((3, 9), "n", True),
                                    ((2, 5, 8), "s", False)]:
        C = shape[-1]
        x = ctx.rand(shape, -2, 2, layout=layout)
        w = ctx.rand((C,), 0.5, 1.5)
        b = ctx.rand((C,)) if use_bias else None
        out, mean, rstd = ctx.zeros(shape), ctx.zeros(shape[:-1]), ctx.zeros(shape[:-1])
        ctx.call("layernorm_forward", out, mean, rstd, x, w, b, 1e-5)
        label = f"layernorm {layout}{shape} bias={use_bias}"
        ctx.close(f"{label} out", out, atol=1e-4)
        ctx.close(f"{label} mean", mean)
        ctx.close(f"{label} rstd", rstd)
        dout = ctx.rand(shape)
        dx, dw = ctx.rand(shape), ctx.rand((C,))
        db = ctx.rand((C,)) if use_bias else None
        ctx.call("layernorm_backward", dx, dw, db, dout, x, w, mean, rstd)
        rows = math.prod(shape[:-1])
        ctx.close(f"{label} dx", dx, rtol=1e-4, atol=1e-4)
        ctx.close(f"{label} dweight", dw, **_red_tol(rows * 4))
        if use_bias:
            ctx.close(f"{label} dbias", db, **_red_tol(rows))


@check
def check_rmsnorm(ctx):
    for shape, layout in [((1, 1), "c"), ((3, 7), "c"), ((2, 3, 33), "c"), ((4, 64), "c"),
                          ((5, 6), "t"), ((3, 9), "n"), ((2, 5, 8), "s")]:
        C = shape[-1]
        x = ctx.rand(shape, -2, 2, layout=layout)
        w = ctx.rand((C,), 0.5, 1.5)
        out, rstd = ctx.zeros(shape), ctx.zeros(shape[:-1])
        ctx.call("rmsnorm_forward", out, rstd, x, w, 1e-5)
        label = f"rmsnorm {layout}{shape}"
        ctx.close(f"{label} out", out, atol=1e-4)
        ctx.close(f"{label} rstd", rstd)
        dout = ctx.rand(shape)
        dx, dw = ctx.rand(shape), ctx.rand((C,))
        ctx.call("rmsnorm_backward", dx, dw, dout, x, w, rstd)
        ctx.close(f"{label} dx", dx, rtol=1e-4, atol=1e-4)
        ctx.close(f"{label} dweight", dw, **_red_tol(math.prod(shape[:-1]) * 4))
    # qk-norm's layout: the heads of q inside a packed qkv (B, T, 3C) -> rows (B*T, H) of hs,
    # written into another packed qkv (strided outputs, gradients added into strided views)
    B, T, H, hs = 2, 3, 4, 5
    qkv = ctx.rand((B * T, 3 * H, hs), -2, 2)
    out3, dx3 = ctx.zeros((B * T, 3 * H, hs)), ctx.rand((B * T, 3 * H, hs))
    dout3 = ctx.rand((B * T, 3 * H, hs))
    w, dw = ctx.rand((hs,), 0.5, 1.5), ctx.rand((hs,))
    rstd = ctx.zeros((B * T, H))
    heads = [t.narrow(1, H, H) for t in (out3, qkv, dx3, dout3)]  # the k part
    ctx.call("rmsnorm_forward", heads[0], rstd, heads[1], w, 1e-5)
    ctx.call("rmsnorm_backward", heads[2], dw, heads[3], heads[1], w, rstd)
    ctx.close("rmsnorm of k heads in a packed qkv (the rest untouched)", out3, atol=1e-4)
    ctx.close("rmsnorm_backward into k heads of a packed dqkv", dx3, rtol=1e-4, atol=1e-4)
    ctx.close("rmsnorm_backward dweight over heads", dw, **_red_tol(B * T * H * 4))


@check
def check_softcap(ctx):
    for cap in (1.0, 15.0):
        for shape, layout in [((1,), "c"), ((7,), "c"), ((3, 33), "c"), ((5, 6), "t"),
                              ((3, 9), "n")]:
            x = ctx.rand(shape, -4 * cap, 4 * cap, layout=layout)
            out = ctx.zeros(shape)
            ctx.call("softcap_forward", out, x, cap)
            ctx.close(f"softcap_forward cap={cap} {layout}{shape}", out, atol=1e-5 * cap)
            dx = ctx.rand(shape)
            ctx.call("softcap_backward", dx, ctx.rand(shape, layout=layout), out, cap)
            ctx.close(f"softcap_backward cap={cap} {layout}{shape} (adds into dx)", dx)
    x = ctx.tensor([-1e30, -50.0, 0.0, 50.0, 1e30], (5,))  # saturates at +-cap, no NaN
    out = ctx.zeros((5,))
    ctx.call("softcap_forward", out, x, 30.0)
    ctx.close("softcap_forward saturates", out)
    x = ctx.rand((4, 6), -3, 3)
    ctx.call("softcap_forward", x, x, 2.0)
    ctx.close("softcap_forward in place (out aliases x)", x)


ACT_SHAPES = [((1,), "c"), ((7,), "c"), ((3, 33), "c"), ((2, 3, 65), "c"), ((5, 6), "t"),
              ((3, 9), "n")]


@check
def check_activations(ctx):
    for act in ("gelu", "relu", "silu", "relu2"):
        for shape, layout in ACT_SHAPES:
            x = ctx.rand(shape, -4, 4, layout=layout)
            out = ctx.zeros(shape)
            ctx.call(f"{act}_forward", out, x)
            ctx.close(f"{act}_forward {layout}{shape}", out)
            dx = ctx.rand(shape)
            ctx.call(f"{act}_backward", dx, ctx.rand(shape, layout=layout), x)
            ctx.close(f"{act}_backward {layout}{shape} (adds into dx)", dx)
            dx = ctx.zeros(shape)  # helios writes a fresh gradient without reading it
            ctx.call(f"{act}_backward", dx, ctx.rand(shape, layout=layout), x)
            ctx.close(f"{act}_backward {layout}{shape} (into zeros)", dx)
    x = ctx.tensor([-1.0, -0.0, 0.0, 1e-30, 2.0], (5,))
    out, dx = ctx.zeros((5,)), ctx.zeros((5,))
    ctx.call("relu_forward", out, x)
    ctx.call("relu_backward", dx, ctx.tensor([1.0] * 5, (5,)), x)
    ctx.equal("relu_forward at 0", out)
    ctx.equal("relu_backward at 0 (x > 0 only)", dx)
    out, dx = ctx.zeros((5,)), ctx.zeros((5,))
    ctx.call("relu2_forward", out, x)
    ctx.call("relu2_backward", dx, ctx.tensor([1.0] * 5, (5,)), x)
    ctx.equal("relu2_forward at 0", out)
    ctx.equal("relu2_backward at 0", dx)
    for shape, layout in [((1, 2), "c"), ((3, 14), "c"), ((2, 3, 66), "c"), ((4, 8), "n"),
                          ((6, 4), "t")]:
        x = ctx.rand(shape, -4, 4, layout=layout)
        oshape = shape[:-1] + (shape[-1] // 2,)
        out = ctx.zeros(oshape)
        ctx.call("swiglu_forward", out, x)
        ctx.close(f"swiglu_forward {layout}{shape}", out)
        dx = ctx.rand(shape)
        ctx.call("swiglu_backward", dx, ctx.rand(oshape), x)
        ctx.close(f"swiglu_backward {layout}{shape} (adds into dx)", dx)


@check
def check_dropout(ctx):
    for p in (0.0, 0.1, 0.5):
        for shape, layout in [((1,), "c"), ((7,), "c"), ((3, 33), "c"), ((5, 6), "t")]:
            n = math.prod(shape)
            uvals = [_rng.to_uniform(w) for w in ctx.stream.words(n)]
            uvals[0] = p  # u == p keeps the element
            u = ctx.tensor(uvals, shape)
            x = ctx.rand(shape, layout=layout)
            out = ctx.zeros(shape)
            ctx.call("dropout_forward", out, x, u, p)
            ctx.close(f"dropout_forward p={p} {layout}{shape}", out)
            dx = ctx.rand(shape)
            ctx.call("dropout_backward", dx, ctx.rand(shape, layout=layout), u, p)
            ctx.close(f"dropout_backward p={p} {layout}{shape} (adds into dx)", dx)


# ---- embeddings, cross-entropy -----------------------------------------------------------


@check
def check_embedding(ctx):
    for V, C, ids_shape in [(11, 7, (2, 5)), (1, 1, (1,)), (5, 65, (3, 4)), (50, 16, (40,))]:
        table = ctx.rand((V, C))
        ids = ctx.ints(ids_shape, V)  # repeats are likely
        out = ctx.zeros(ids_shape + (C,))
        ctx.call("embedding_forward", out, ids, table)
        ctx.equal(f"embedding_forward V={V} C={C} ids{ids_shape}", out)
        dtable = ctx.rand((V, C))
        ctx.call("embedding_backward", dtable, ctx.rand(ids_shape + (C,)), ids)
        ctx.close(f"embedding_backward V={V} C={C} ids{ids_shape} (adds)", dtable,
                  **_red_tol(math.prod(ids_shape)))
    # a narrowed table (e.g. the used rows of a padded vocabulary)
    table = ctx.rand((9, 6), layout="n")
    ids = ctx.ints((4,), 9)
    out = ctx.zeros((4, 6))
    ctx.call("embedding_forward", out, ids, table)
    ctx.equal("embedding_forward from a narrowed table", out)


@check
def check_crossentropy(ctx):
    for N, V, scale, ignore in [(1, 1, 1.0, False), (1, 5, 1.0, False), (5, 3, 1.0, True),
                                (9, 17, 3.0, True), (4, 300, 1.0, False), (6, 33, 30.0, True)]:
        logits = ctx.rand((N, V), -scale, scale)
        tvals = ctx.stream.randint(N, V)
        if ignore:
            tvals[N // 2] = -1
        targets = ctx.tensor(tvals, (N,), "i32")
        losses = ctx.zeros((N,))
        ctx.call("crossentropy_forward", losses, logits, targets)
        label = f"crossentropy N={N} V={V} scale={scale} ignore={ignore}"
        ctx.close(f"{label} losses", losses, atol=1e-5 * max(1, scale))
        dlogits = ctx.rand((N, V))
        ctx.call("crossentropy_backward", dlogits, ctx.rand((N,)), logits, targets)
        ctx.close(f"{label} dlogits (adds)", dlogits)
        # into zeros (helios writes a fresh gradient without reading it), and for logits
        # no forward has seen since they were written (helios: no saved log-sum-exp)
        dlogits = ctx.zeros((N, V))
        ctx.call("crossentropy_backward", dlogits, ctx.rand((N,)), logits, targets)
        ctx.close(f"{label} dlogits (into zeros)", dlogits)
        ctx.call("fill", logits, 0.5)
        ctx.call("crossentropy_backward", dlogits, ctx.rand((N,)), logits, targets)
        ctx.close(f"{label} dlogits (logits written since)", dlogits)


# ---- attention -------------------------------------------------------------------------------


# (B, T, C, n_head). The last reaches the CPU kernel's vector paths (keys and head dim past 16
# lanes, with tails) and, on lavapipe, helios's row kernels (head size past the tiled limit).
ATTN_CASES = [(1, 1, 4, 1), (2, 5, 12, 3), (1, 9, 16, 2), (2, 17, 32, 4), (1, 3, 6, 6),
              (1, 37, 38, 2)]


@check
def check_attention(ctx):
    for B, T, C, nh in ATTN_CASES:
        for layout in ("c", "s") if B == 2 else ("c",):
            qkv = ctx.rand((B, T, 3 * C), -1.5, 1.5, layout=layout)
            out, lse = ctx.zeros((B, T, C)), ctx.zeros((B, nh, T))
            ctx.call("attention_forward", out, lse, qkv, nh)
            label = f"attention B,T,C,nh={B},{T},{C},{nh} {layout}"
            ctx.close(f"{label} out", out)
            ctx.close(f"{label} lse", lse)
            dqkv = ctx.rand((B, T, 3 * C))
            ctx.call("attention_backward", dqkv, ctx.rand((B, T, C)), qkv, out, lse, nh)
            ctx.close(f"{label} dqkv (adds)", dqkv, rtol=1e-4, atol=1e-4)


@check
def check_kv_attention(ctx):
    B, Tmax, C, nh = 2, 9, 12, 3
    for start, Tq in [(0, 1), (0, 4), (4, 1), (3, 3), (0, 9), (8, 1)]:
        cache = ctx.rand((B, Tmax, 3 * C), -1.5, 1.5)  # q | k | v packed: strided views
        q = cache.narrow(1, start, Tq).narrow(2, 0, C)
        k, v = cache.narrow(2, C, C), cache.narrow(2, 2 * C, C)
        out = ctx.zeros((B, Tq, C))
        ctx.call("kv_attention", out, q, k, v, nh, start)
        ctx.close(f"kv_attention start={start} Tq={Tq} (strided q, k, v)", out)
    qc, kc, vc = ctx.rand((1, 5, 8)), ctx.rand((1, 7, 8)), ctx.rand((1, 7, 8))
    out = ctx.zeros((1, 5, 8))
    ctx.call("kv_attention", out, qc, kc, vc, 2, 2)
    ctx.close("kv_attention contiguous q, k, v, start=2", out)
    # the same numbers as attention_forward on the whole sequence
    qkv = ctx.rand((2, 6, 24))
    full, lse = ctx.zeros((2, 6, 8)), ctx.zeros((2, 2, 6))
    ctx.call("attention_forward", full, lse, qkv, 2)
    kv = ctx.zeros((2, 6, 8))
    ctx.call("kv_attention", kv, qkv.narrow(2, 0, 8), qkv.narrow(2, 8, 8), qkv.narrow(2, 16, 8),
             2, 0)
    ctx.close_values("kv_attention(start=0) vs attention_forward on the backend",
                     list(ctx.be.to_array(kv.be)), list(ctx.be.to_array(full.be)), (2, 6, 8))


# (B, T, C, n_head, softcap): small caps bend every score; hs 4 takes helios's tiled kernels,
# hs 19 its row kernels (and the CPU kernel's tails).
SOFTCAP_CASES = [(2, 5, 12, 3, 0.5), (1, 37, 38, 2, 2.0)]


@check
def check_attention_softcap(ctx):
    for B, T, C, nh, cap in SOFTCAP_CASES:
        qkv = ctx.rand((B, T, 3 * C), -1.5, 1.5)
        out, lse = ctx.zeros((B, T, C)), ctx.zeros((B, nh, T))
        ctx.call("attention_forward", out, lse, qkv, nh, cap)
        label = f"attention softcap={cap} B,T,C,nh={B},{T},{C},{nh}"
        ctx.close(f"{label} out", out)
        ctx.close(f"{label} lse", lse)
        dqkv = ctx.rand((B, T, 3 * C))
        ctx.call("attention_backward", dqkv, ctx.rand((B, T, C)), qkv, out, lse, nh, cap)
        ctx.close(f"{label} dqkv (adds)", dqkv, rtol=1e-4, atol=1e-4)
    # kv_attention with the cap: strided views, a start offset
    B, Tmax, C, nh, cap = 2, 9, 12, 3, 0.7
    for start, Tq in [(0, 4), (5, 1)]:
        cache = ctx.rand((B, Tmax, 3 * C), -1.5, 1.5)
        q = cache.narrow(1, start, Tq).narrow(2, 0, C)
        out = ctx.zeros((B, Tq, C))
        ctx.call("kv_attention", out, q, cache.narrow(2, C, C), cache.narrow(2, 2 * C, C), nh,
                 start, cap)
        ctx.close(f"kv_attention softcap={cap} start={start} Tq={Tq}", out)


@check
def check_rope(ctx):
    from alpha.model.rope import tables

    for B, T, C, nh, L in [(2, 5, 12, 3, 8), (1, 3, 40, 2, 16)]:
        hs = C // nh
        cos, sin = (ctx.tensor(list(a), (L, hs // 2)) for a in tables(L, hs, 10000.0))
        qkv = ctx.rand((B, T, 3 * C), -2.0, 2.0, layout="s" if B == 2 else "c")
        for shape in ((T,), (B, T)):  # shared positions, then each row's own
            pos = ctx.ints(shape, L)
            label = f"rope B,T,C,nh={B},{T},{C},{nh} positions {shape}"
            out = ctx.zeros((B, T, 3 * C))
            ctx.call("rope_forward", out, qkv, pos, cos, sin, nh)
            ctx.close(f"{label} forward", out)
            dqkv = ctx.rand((B, T, 3 * C))
            ctx.call("rope_backward", dqkv, ctx.rand((B, T, 3 * C)), pos, cos, sin, nh)
            ctx.close(f"{label} backward (adds)", dqkv)
    cos, sin = (ctx.tensor(list(a), (4, 2)) for a in tables(4, 4, 10000.0))
    ctx.raises("rope position past the tables", ValueError, "rope_forward",
               ctx.zeros((1, 2, 12)), ctx.zeros((1, 2, 12)), ctx.tensor([0, 4], (2,), "i32"),
               cos, sin, 1, names=("position 4", "[0, 4)"))
    ctx.raises("rope odd head size", ValueError, "rope_forward", ctx.zeros((1, 2, 9)),
               ctx.zeros((1, 2, 9)), ctx.tensor([0, 1], (2,), "i32"), cos, sin, 1,
               names=("head size 3",))


# ---- optimizer -------------------------------------------------------------------------------


@check
def check_adamw(ctx):
    for n, wd, scale in [(1, 0.0, 1.0), (37, 0.1, 1.0), (300, 0.1, 0.5)]:
        param, m, v = ctx.rand((n,)), ctx.zeros((n,)), ctx.zeros((n,))
        for step in (1, 2, 3):
            grad = ctx.rand((n,), -0.5, 0.5)
            ctx.call("adamw_step", param, grad, m, v, lr=1e-2, beta1=0.9, beta2=0.99, eps=1e-8,
                     weight_decay=wd, step=step, grad_scale=scale)
            label = f"adamw n={n} wd={wd} grad_scale={scale} step={step}"
            ctx.close(f"{label} param", param, atol=1e-6)
            ctx.close(f"{label} m", m, atol=1e-6)
            ctx.close(f"{label} v", v, atol=1e-7)
    param, grad = ctx.rand((4, 6)), ctx.rand((4, 6))  # 2-D buffers of equal size work too
    m, v = ctx.zeros((4, 6)), ctx.zeros((4, 6))
    ctx.call("adamw_step", param, grad, m, v, lr=0.1, beta1=0.8, beta2=0.9, eps=1e-6,
             weight_decay=0.0, step=1)
    ctx.close("adamw 2-D buffers param", param, atol=1e-6)


# ---- threads ---------------------------------------------------------------------------------


@check
def check_threads(ctx):
    """Results must not depend on the thread count: bit-identical for 1 and 4 threads. Runs only
    on backends with set_num_threads/num_threads (the CPU backend's live in alpha.tensor.build);
    sizes are large enough to be split."""
    be = ctx.be
    threads = be
    if be.name == "cpu" and not hasattr(be, "set_num_threads"):
        threads = importlib.import_module("alpha.tensor.build")
    if not (hasattr(threads, "set_num_threads") and hasattr(threads, "num_threads")):
        return
    f32 = lambda shape, lo=-1.0, hi=1.0: be.from_array(  # noqa: E731
        array("f", ctx.floats(math.prod(shape), lo, hi)), shape)
    x, w, g = f32((256, 320)), f32((320, 192)), f32((256, 192))
    big, ids = f32((4096, 300)), be.from_array(array("i", ctx.stream.randint(2048, 50)),
                                               (2048,), "i32")
    qkv, gq = f32((4, 64, 192)), f32((4, 64, 64))
    targets = be.from_array(array("i", ctx.stream.randint(256, 300)), (256,), "i32")

    w1, b1, dy = f32((320,), 0.5, 1.5), f32((320,)), f32((256, 320))
    missing = set()

    def run():
        results = {}

        def out(name, shape, fill=0.0):
            t = be.zeros(shape)
            if fill:
                be.fill(t, fill)
            results[name] = t
            return t

        def step(name, fn):
            try:
                fn()
            except NotImplementedError:
                missing.add(name)

        step("matmul", lambda: be.matmul(out("matmul", (256, 192)), x, w))
        step("matmul trans_a",
             lambda: be.matmul(out("matmul trans_a", (320, 192)), x, g, trans_a=True))
        step("sum", lambda: be.sum(out("sum axis 0", (300,)), big, [0]))
        step("sum_to", lambda: be.sum_to(out("sum_to", (300,), 0.5), big))
        lsm = out("log_softmax", (4096, 300))
        step("log_softmax", lambda: be.log_softmax_forward(lsm, big))
        step("log_softmax_backward", lambda: be.log_softmax_backward(
            out("log_softmax_backward", (4096, 300)), big, lsm))
        ln, mean, rstd = out("layernorm", (256, 320)), out("mean", (256,)), out("rstd", (256,))
        step("layernorm", lambda: be.layernorm_forward(ln, mean, rstd, x, w1, b1, 1e-5))
        step("layernorm_backward", lambda: be.layernorm_backward(
            out("ln dx", (256, 320)), out("ln dweight", (320,)), out("ln dbias", (320,)), dy, x,
            w1, mean, rstd))
        rms, rrstd = out("rmsnorm", (256, 320)), out("rms rstd", (256,))
        step("rmsnorm", lambda: be.rmsnorm_forward(rms, rrstd, x, w1, 1e-5))
        step("rmsnorm_backward", lambda: be.rmsnorm_backward(
            out("rms dx", (256, 320)), out("rms dweight", (320,)), dy, x, w1, rrstd))
        step("embedding_backward", lambda: be.embedding_backward(
            out("embedding_backward", (50, 300)), big.narrow(0, 0, 2048), ids))
        step("crossentropy", lambda: be.crossentropy_forward(
            out("crossentropy", (256,)), big.narrow(0, 0, 256), targets))
        att, lse = out("attention", (4, 64, 64)), out("lse", (4, 4, 64))
        step("attention", lambda: be.attention_forward(att, lse, qkv, 4))
        step("attention_backward", lambda: be.attention_backward(
            out("attention_backward", (4, 64, 192)), gq, qkv, att, lse, 4))
        p, m, v = out("adamw", (4096, 300), 0.1), out("m", (4096, 300)), out("v", (4096, 300))
        step("adamw", lambda: be.adamw_step(p, big, m, v, lr=1e-3, beta1=0.9, beta2=0.99,
                                            eps=1e-8, weight_decay=0.1, step=1))
        return {k: be.to_array(t) for k, t in results.items()}, be.sum_squares(big)

    before = threads.num_threads()
    try:
        threads.set_num_threads(1)
        one, sq1 = run()
        threads.set_num_threads(4)
        four, sq4 = run()
    finally:
        threads.set_num_threads(before)
    for name in one:
        if one[name] != four[name]:
            diff = sum(1 for a, b in zip(one[name], four[name]) if a != b)
            ctx.fail(f"{name}: {diff} elements differ between 1 and 4 threads")
    if sq1 != sq4:
        ctx.fail(f"sum_squares: {sq1!r} with 1 thread, {sq4!r} with 4")
    for name in sorted(missing):
        ctx.fail(f"{name}: not implemented (thread determinism unchecked)")


# ---- bad input ---------------------------------------------------------------------------------


@check
def check_errors_shape(ctx):
    be = ctx.be
    f = lambda *s: be.zeros(s)  # noqa: E731
    i = lambda *s: be.zeros(s, "i32")  # noqa: E731
    r = ctx.raises
    r("matmul inner dims", ValueError, "matmul", f(2, 4), f(2, 3), f(4, 5),
      names=[(2, 3), (4, 5)])
    r("matmul out shape", ValueError, "matmul", f(2, 5), f(2, 3), f(3, 4), names=[(2, 5)])
    r("matmul batch dims", ValueError, "matmul", f(2, 3, 4), f(2, 3, 5), f(3, 5, 4),
      names=[(2, 3, 5), (3, 5, 4)])
    r("binary broadcast", ValueError, "binary", f(3, 4), "add", f(3, 4), f(5,),
      names=[(3, 4), (5,)])
    r("binary out shape", ValueError, "binary", f(3, 5), "mul", f(3, 4), f(3, 4), names=[(3, 5)])
    r("binary_scalar out shape", ValueError, "binary_scalar", f(4,), "add", f(5,), 1.0,
      names=[(4,), (5,)])
    r("unary out shape", ValueError, "unary", f(3, 4), "exp", f(4, 3), names=[(3, 4), (4, 3)])
    r("axpy", ValueError, "axpy", f(3,), f(4,), names=[(3,), (4,)])
    r("copy", ValueError, "copy", f(2, 3), f(3, 2), names=[(2, 3), (3, 2)])
    r("where_mask", ValueError, "where_mask", f(3, 4), f(3, 4), f(5,), 0.0,
      names=[(3, 4), (5,)])
    r("sum out shape", ValueError, "sum", f(4,), f(3, 5), [0], names=[(4,)])
    r("sum_to", ValueError, "sum_to", f(3,), f(2, 4), names=[(3,), (2, 4)])
    r("max out shape", ValueError, "max", f(3,), f(4, 5), 1, names=[(3,)])
    r("softmax_forward", ValueError, "softmax_forward", f(2, 3), f(2, 4), names=[(2, 3), (2, 4)])
    r("softmax_backward", ValueError, "softmax_backward", f(2, 4), f(2, 5), f(2, 4),
      names=[(2, 5)])
    r("log_softmax_forward", ValueError, "log_softmax_forward", f(2, 3), f(3, 3),
      names=[(2, 3), (3, 3)])
    r("layernorm weight", ValueError, "layernorm_forward", f(2, 4), f(2), f(2), f(2, 4), f(5),
      f(4), names=[(5,)])
    r("layernorm mean", ValueError, "layernorm_forward", f(2, 4), f(3), f(2), f(2, 4), f(4),
      None, names=[(3,)])
    r("layernorm_backward dx", ValueError, "layernorm_backward", f(2, 5), f(4), f(4), f(2, 4),
      f(2, 4), f(4), f(2), f(2), names=[(2, 5)])
    r("rmsnorm weight", ValueError, "rmsnorm_forward", f(2, 4), f(2), f(2, 4), f(5),
      names=[(5,)])
    r("rmsnorm_backward rstd", ValueError, "rmsnorm_backward", f(2, 4), f(4), f(2, 4), f(2, 4),
      f(4), f(3), names=[(3,)])
    r("relu2_backward", ValueError, "relu2_backward", f(6,), f(6,), f(7,), names=[(7,)])
    r("softcap_forward", ValueError, "softcap_forward", f(5,), f(6,), 30.0, names=[(5,), (6,)])
    r("gelu_forward", ValueError, "gelu_forward", f(5,), f(6,), names=[(5,), (6,)])
    r("gelu_backward", ValueError, "gelu_backward", f(6,), f(5,), f(6,), names=[(5,)])
    r("relu_backward", ValueError, "relu_backward", f(6,), f(6,), f(7,), names=[(7,)])
    r("silu_forward", ValueError, "silu_forward", f(2, 3), f(3, 2), names=[(2, 3), (3, 2)])
    r("swiglu_forward", ValueError, "swiglu_forward", f(2, 4), f(2, 4), names=[(2, 4)])
    r("dropout_forward", ValueError, "dropout_forward", f(4,), f(4,), f(5,), 0.1, names=[(5,)])
    r("embedding_forward", ValueError, "embedding_forward", f(2, 3, 4), i(2, 3), f(10, 5),
      names=[(2, 3, 4)])
    r("embedding_backward", ValueError, "embedding_backward", f(10, 5), f(2, 4), i(3,),
      names=[(2, 4)])
    r("crossentropy targets", ValueError, "crossentropy_forward", f(3,), f(3, 5), i(4,),
      names=[(4,)])
    r("crossentropy losses", ValueError, "crossentropy_forward", f(2,), f(3, 5), i(3,),
      names=[(2,)])
    r("attention out", ValueError, "attention_forward", f(1, 4, 5), f(1, 2, 4), f(1, 4, 12), 2,
      names=[(1, 4, 5)])
    r("attention lse", ValueError, "attention_forward", f(1, 4, 4), f(1, 3, 4), f(1, 4, 12), 2,
      names=[(1, 3, 4)])
    r("attention_backward dqkv", ValueError, "attention_backward", f(1, 4, 9), f(1, 4, 4),
      f(1, 4, 12), f(1, 4, 4), f(1, 2, 4), 2, names=[(1, 4, 9)])
    r("kv_attention", ValueError, "kv_attention", f(1, 2, 8), f(1, 2, 8), f(1, 5, 6),
      f(1, 5, 6), 2, 0, names=[(1, 5, 6)])
    r("adamw_step", ValueError, "adamw_step", f(5,), f(6,), f(5,), f(5,), lr=0.1, beta1=0.9,
      beta2=0.99, eps=1e-8, weight_decay=0.0, step=1, names=[(6,)])


@check
def check_errors_dtype(ctx):
    be = ctx.be
    f = lambda *s: be.zeros(s)  # noqa: E731
    i = lambda *s: be.zeros(s, "i32")  # noqa: E731
    r = ctx.raises
    r("matmul a i32", TypeError, "matmul", f(2, 2), i(2, 3), f(3, 2), names=["i32"])
    r("binary b i32", TypeError, "binary", f(3,), "add", f(3,), i(3,), names=["i32"])
    r("unary x i32", TypeError, "unary", f(3,), "exp", i(3,), names=["i32"])
    r("sum x i32", TypeError, "sum", f(1,), i(3,), [0], True, names=["i32"])
    r("softmax x i32", TypeError, "softmax_forward", f(2, 3), i(2, 3), names=["i32"])
    r("layernorm weight i32", TypeError, "layernorm_forward", f(2, 4), f(2), f(2), f(2, 4),
      i(4), f(4), names=["i32"])
    r("gelu x i32", TypeError, "gelu_forward", f(3,), i(3,), names=["i32"])
    r("embedding ids f32", TypeError, "embedding_forward", f(3, 4), f(3,), f(10, 4),
      names=["f32"])
    r("embedding table i32", TypeError, "embedding_forward", f(3, 4), i(3,), i(10, 4),
      names=["i32"])
    r("crossentropy targets f32", TypeError, "crossentropy_forward", f(3,), f(3, 5), f(3,),
      names=["f32"])
    r("crossentropy logits i32", TypeError, "crossentropy_forward", f(3,), i(3, 5), i(3,),
      names=["i32"])
    r("attention qkv i32", TypeError, "attention_forward", f(1, 4, 4), f(1, 2, 4), i(1, 4, 12),
      2, names=["i32"])
    r("adamw grad i32", TypeError, "adamw_step", f(5,), i(5,), f(5,), f(5,), lr=0.1, beta1=0.9,
      beta2=0.99, eps=1e-8, weight_decay=0.0, step=1, names=["i32"])


@check
def check_errors_data(ctx):
    be = ctx.be
    f = lambda *s: be.zeros(s)  # noqa: E731
    r = ctx.raises
    r("softmax over an empty last dim", ValueError, "softmax_forward", f(3, 0), f(3, 0))
    r("log_softmax over an empty last dim", ValueError, "log_softmax_forward", f(3, 0), f(3, 0))
    r("layernorm with C=0", ValueError, "layernorm_forward", f(2, 0), f(2), f(2), f(2, 0),
      f(0), f(0))
    r("max over an empty axis", ValueError, "max", f(3), f(3, 0), 1)
    r("crossentropy with V=0", ValueError, "crossentropy_forward", f(2), f(2, 0),
      be.zeros((2,), "i32"))
    # ids out of range: ValueError, and nothing written
    table = be.from_array(array("f", range(15)), (5, 3))
    for bad in (5, -1, 1000):
        ids = be.from_array(array("i", [0, bad, 1]), (3,), "i32")
        out = be.from_array(array("f", [7.0] * 9), (3, 3))
        r(f"embedding id {bad} of V=5", ValueError, "embedding_forward", out, ids, table)
        if list(be.to_array(out)) != [7.0] * 9:
            ctx.fail(f"embedding_forward wrote into out before rejecting id {bad}")
        dtable = be.zeros((5, 3))
        r(f"embedding_backward id {bad} of V=5", ValueError, "embedding_backward", dtable,
          f(3, 3), ids)
    logits = be.zeros((2, 4))
    r("crossentropy target 4 of V=4", ValueError, "crossentropy_forward", f(2), logits,
      be.from_array(array("i", [0, 4]), (2,), "i32"))
    r("crossentropy target -2", ValueError, "crossentropy_forward", f(2), logits,
      be.from_array(array("i", [-2, 0]), (2,), "i32"))


@check
def check_errors_args(ctx):
    """Bad arguments other than shapes and dtypes of tensors."""
    be = ctx.be
    f = lambda *s: be.zeros(s)  # noqa: E731
    r = ctx.raises
    r("unknown dtype", TypeError, "empty", (2,), "f16", names=["f16"])
    r("bad shape", ValueError, "zeros", (2, -1), names=["(2, -1)"])
    r("from_array count", ValueError, "from_array", [1.0, 2.0, 3.0], (2, 2), names=["(2, 2)"])
    r("from_array bytes", ValueError, "from_array", b"abcde", None, "f32", names=["5 bytes"])
    r("binary unknown op", ValueError, "binary", f(2), "pow", f(2), f(2), names=["pow"])
    r("binary_scalar unknown op", ValueError, "binary_scalar", f(2), "exp", f(2), 1.0,
      names=["exp"])
    r("unary unknown op", ValueError, "unary", f(2), "sin", f(2), names=["sin"])
    r("matmul rank", ValueError, "matmul", f(3), f(3), f(3, 3), names=["rank"])
    r("sum axis", ValueError, "sum", f(1), f(2, 3), [2], names=["axis 2"])
    r("sum repeated axis", ValueError, "sum", f(1), f(2, 3), [0, -2], names=["repeated"])
    r("swiglu odd", ValueError, "swiglu_forward", f(2, 1), f(2, 3), names=[(2, 3)])
    r("dropout p", ValueError, "dropout_forward", f(4), f(4), f(4), 1.0, names=["p=1.0"])
    r("softcap cap", ValueError, "softcap_forward", f(4), f(4), 0.0, names=["cap=0.0"])
    r("attention n_head", ValueError, "attention_forward", f(1, 4, 4), f(1, 3, 4), f(1, 4, 12),
      3, names=["n_head=3"])
    r("kv_attention positions", ValueError, "kv_attention", f(1, 2, 4), f(1, 2, 4),
      f(1, 3, 4), f(1, 3, 4), 2, 2, names=["2..3"])
    r("adamw step", ValueError, "adamw_step", f(5), f(5), f(5), f(5), lr=0.1, beta1=0.9,
      beta2=0.99, eps=1e-8, weight_decay=0.0, step=0, names=["step=0"])


CHECK_NAMES = list(CHECKS)

if __name__ == "__main__":
    sys.exit(main())
