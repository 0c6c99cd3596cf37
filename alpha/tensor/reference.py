"""The reference backend: every op of the Backend protocol as plain float64 Python loops.

This file is the living definition of what each op computes. It is slow on purpose: no
vectorisation, no fusion, no cleverness — a loop you can check by reading it. The CPU and helios
backends are tested against it on random inputs (`tests/backend_suite.py`), and its backward ops
are tested against finite differences (`tests/test_reference_grads.py`).

Storage is a Python list per tensor. Floats are stored as Python floats and all math is float64,
whatever the dtype says; f32 data is rounded to f32 when uploaded (`from_array`) and when downloaded
(`to_array`), never in between. Integer dtypes hold Python ints. Views (shape, strides, offset) are
honoured everywhere; outputs may be strided views too.

It is not fast (a 64x64 matmul takes a tenth of a second) and not for training.
"""

from __future__ import annotations

import itertools
import math
from array import array
from typing import Sequence

from alpha.core import rng as _rng
from alpha.core.backend import BINARY_OPS, DTYPES, FLOAT_DTYPES, UNARY_OPS
from alpha.tensor import checks
from alpha.tensor.tensor import Tensor, check_shape

GELU_K = math.sqrt(2.0 / math.pi)
INF, NAN = float("inf"), float("nan")


# ---- argument checks (shared with the other backends: alpha/tensor/checks.py) ----------------


def _need_float(op: str, *named) -> None:
    """Like checks.need_f32, but the reference also takes f64 (finite-difference tests)."""
    for name, t in named:
        if t is not None:
            checks.need_dtype(op, name, t, FLOAT_DTYPES)


# ---- element access --------------------------------------------------------------------------


def _positions(shape, strides, offset) -> list[int]:
    """Storage positions of a view's elements, in row-major order of its shape."""
    pos = [offset]
    for n, s in zip(shape, strides):
        pos = [p + i * s for p in pos for i in range(n)]
    return pos


def _read(t: Tensor) -> list:
    data = t.storage
    return [data[p] for p in _positions(t.shape, t.strides, t.offset)]


def _write(t: Tensor, values: Sequence) -> None:
    data = t.storage
    conv = float if t.dtype in FLOAT_DTYPES else _to_int
    for p, v in zip(_positions(t.shape, t.strides, t.offset), values, strict=True):
        data[p] = conv(v)


def _add_into(t: Tensor, values: Sequence) -> None:
    data = t.storage
    for p, v in zip(_positions(t.shape, t.strides, t.offset), values, strict=True):
        data[p] += v


def _to_int(v) -> int:
    return int(v)  # truncates toward zero


def _round_f32(values) -> list[float]:
    return list(array("f", values))


def _read_broadcast(t: Tensor, shape: Sequence[int]) -> list:
    """t's elements repeated to `shape` (t's shape must broadcast to it)."""
    pad = len(shape) - len(t.shape)
    strides = []
    for d, n in enumerate(shape):
        if d < pad or t.shape[d - pad] == 1:
            strides.append(0)
        else:
            strides.append(t.strides[d - pad])
    data = t.storage
    return [data[p] for p in _positions(shape, strides, t.offset)]


def _rows(values: list, n: int) -> list[list]:
    return [values[i:i + n] for i in range(0, len(values), n)]


# ---- IEEE-style scalar math (Python raises where C returns inf/nan) ---------------------------


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return INF


def _log(x: float) -> float:
    if x > 0:
        return math.log(x)
    return -INF if x == 0 else NAN


def _sqrt(x: float) -> float:
    return math.sqrt(x) if x >= 0 else NAN


def _div(a: float, b: float) -> float:
    if b != 0:
        return a / b
    if a == 0 or a != a:
        return NAN
    return math.copysign(INF, a) * math.copysign(1.0, b)


def _pow(a: float, b: float) -> float:
    try:
        return math.pow(a, b)
    except ValueError:
        return NAN
    except OverflowError:
        return INF


def _max(a: float, b: float) -> float:
    if a != a or b != b:
        return NAN
    return a if a >= b else b


def _min(a: float, b: float) -> float:
    if a != a or b != b:
        return NAN
    return a if a <= b else b


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = _exp(x)
    return e / (1.0 + e)


BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": _div,
    "max": _max,
    "min": _min,
}
SCALAR = {**BINARY, "pow": _pow, "rsub": lambda a, s: s - a, "rdiv": lambda a, s: _div(s, a)}
UNARY = {
    "neg": lambda x: -x,
    "exp": _exp,
    "log": _log,
    "sqrt": _sqrt,
    "rsqrt": lambda x: _div(1.0, _sqrt(x)),
    "tanh": math.tanh,
    "abs": abs,
    "square": lambda x: x * x,
    "reciprocal": lambda x: _div(1.0, x),
}
assert set(BINARY) == set(BINARY_OPS) and set(UNARY) == set(UNARY_OPS)


def _gelu(x: float) -> float:
    return 0.5 * x * (1.0 + math.tanh(GELU_K * (x + 0.044715 * x ** 3)))


def _gelu_grad(x: float) -> float:
    t = math.tanh(GELU_K * (x + 0.044715 * x ** 3))
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_K * (1.0 + 3 * 0.044715 * x * x)


def _silu(x: float) -> float:
    return x * _sigmoid(x)


def _silu_grad(x: float) -> float:
    s = _sigmoid(x)
    return s * (1.0 + x * (1.0 - s))


class ReferenceBackend:
    name = "reference"

    # ---- memory ---------------------------------------------------------------------------
    def empty(self, shape, dtype="f32") -> Tensor:
        return self.zeros(shape, dtype)

    def zeros(self, shape, dtype="f32") -> Tensor:
        if dtype not in DTYPES:
            raise TypeError(f"unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
        shape = check_shape(shape)
        zero = 0.0 if dtype in FLOAT_DTYPES else 0
        return Tensor(self, [zero] * math.prod(shape), shape, dtype)

    def from_array(self, data, shape=None, dtype="f32") -> Tensor:
        if dtype not in DTYPES:
            raise TypeError(f"unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = array(DTYPES[dtype][0], bytes(data))
        values = list(data)
        shape = check_shape((len(values),) if shape is None else shape)
        if math.prod(shape) != len(values):
            raise ValueError(f"from_array: {len(values)} values do not fill shape {shape}")
        if dtype == "f32":
            values = _round_f32(values)
        elif dtype == "f64":
            values = [float(v) for v in values]
        else:
            values = list(array(DTYPES[dtype][0], [int(v) for v in values]))  # range-checked
        return Tensor(self, values, shape, dtype)

    def to_array(self, x: Tensor):
        return array(DTYPES[x.dtype][0], _read(x))

    def fill(self, out: Tensor, value: float) -> None:
        _write(out, [value] * out.numel)

    def copy(self, out: Tensor, x: Tensor) -> None:
        checks.need_shape("copy", "out", out, x.shape, "x")
        if out.dtype != x.dtype:
            raise TypeError(f"copy: out has dtype {out.dtype} but x has {x.dtype}; use cast")
        _write(out, _read(x))

    def cast(self, out: Tensor, x: Tensor) -> None:
        checks.need_shape("cast", "out", out, x.shape, "x")
        values = _read(x)
        if out.dtype == "f32":
            values = _round_f32(values)
        _write(out, values)

    def synchronize(self) -> None:
        pass

    # ---- random numbers -----------------------------------------------------------------------
    def rng_uniform(self, out: Tensor, key, position: int) -> None:
        _need_float("rng_uniform", ("out", out))
        ws = _rng.words(tuple(key), position, out.numel)
        _write(out, [_rng.to_uniform(w) for w in ws])

    def rng_normal(self, out: Tensor, key, position: int, mean=0.0, std=1.0) -> None:
        _need_float("rng_normal", ("out", out))
        n = out.numel
        zs = _rng.normals_from_words(_rng.words(tuple(key), position, 2 * ((n + 1) // 2)), n)
        _write(out, [mean + std * z for z in zs])

    # ---- matmul --------------------------------------------------------------------------
    def matmul(self, out, a, b, *, trans_a=False, trans_b=False, accumulate=False,
               alpha=1.0) -> None:
        _need_float("matmul", ("out", out), ("a", a), ("b", b))
        if a.ndim < 2 or b.ndim < 2:
            raise ValueError(f"matmul: a {a.shape} and b {b.shape} need at least 2 dims")
        opa = a.transpose(-2, -1) if trans_a else a  # (..., M, K)
        opb = b.transpose(-2, -1) if trans_b else b  # (..., K, N) or (K, N)
        batch = opa.shape[:-2]
        M, K = opa.shape[-2:]
        K2, N = opb.shape[-2:]
        if K != K2 or (opb.ndim > 2 and opb.shape[:-2] != batch):
            raise ValueError(
                f"matmul: a {a.shape} (trans_a={trans_a}) and b {b.shape} (trans_b={trans_b}) "
                f"do not multiply"
            )
        checks.need_shape("matmul", "out", out, batch + (M, N), f"a {a.shape} and b {b.shape}")
        A = _read(opa)
        B = _read(opb)
        C = _read(out) if accumulate else [0.0] * out.numel
        for bi in range(math.prod(batch)):
            ao = bi * M * K
            bo = bi * K * N if opb.ndim > 2 else 0
            co = bi * M * N
            for i in range(M):
                for j in range(N):
                    acc = 0.0
                    for k in range(K):
                        acc += A[ao + i * K + k] * B[bo + k * N + j]
                    C[co + i * N + j] += alpha * acc
        _write(out, C)

    # ---- elementwise ---------------------------------------------------------------------
    def binary(self, out, op, a, b) -> None:
        if op not in BINARY:
            raise ValueError(f"binary: unknown op {op!r} (known: {', '.join(BINARY)})")
        _need_float("binary", ("out", out), ("a", a), ("b", b))
        try:
            shape = checks.broadcast_shape(a.shape, b.shape)
        except ValueError as e:
            raise ValueError(f"binary {op}: {e}") from None
        checks.need_shape(f"binary {op}", "out", out, shape, f"a {a.shape} and b {b.shape}")
        fn = BINARY[op]
        xs, ys = _read_broadcast(a, shape), _read_broadcast(b, shape)
        _write(out, [fn(x, y) for x, y in zip(xs, ys)])

    def binary_scalar(self, out, op, a, s) -> None:
        if op not in SCALAR:
            raise ValueError(f"binary_scalar: unknown op {op!r} (known: {', '.join(SCALAR)})")
        _need_float("binary_scalar", ("out", out), ("a", a))
        checks.need_shape(f"binary_scalar {op}", "out", out, a.shape, "a")
        fn = SCALAR[op]
        _write(out, [fn(x, float(s)) for x in _read(a)])

    def unary(self, out, op, x) -> None:
        if op not in UNARY:
            raise ValueError(f"unary: unknown op {op!r} (known: {', '.join(UNARY)})")
        _need_float("unary", ("out", out), ("x", x))
        checks.need_shape(f"unary {op}", "out", out, x.shape, "x")
        fn = UNARY[op]
        _write(out, [fn(v) for v in _read(x)])

    def axpy(self, out, x, alpha=1.0) -> None:
        _need_float("axpy", ("out", out), ("x", x))
        checks.need_shape("axpy", "out", out, x.shape, "x")
        _write(out, [o + alpha * v for o, v in zip(_read(out), _read(x))])

    def where_mask(self, out, x, mask, value) -> None:
        _need_float("where_mask", ("out", out), ("x", x), ("mask", mask))
        checks.need_shape("where_mask", "out", out, x.shape, "x")
        checks.need_broadcasts_to("where_mask", "mask", mask, "x", x.shape)
        ms = _read_broadcast(mask, x.shape)
        _write(out, [value if m != 0 else v for v, m in zip(_read(x), ms)])

    # ---- reductions ----------------------------------------------------------------------
    def sum(self, out, x, axes, keepdim=False) -> None:
        _need_float("sum", ("out", out), ("x", x))
        axes = checks.normalize_axes("sum", axes, x.shape)
        kept = checks.reduced_shape(x.shape, axes, keepdim=True)
        shape = checks.reduced_shape(x.shape, axes, keepdim)
        checks.need_shape("sum", "out", out, shape, f"x {x.shape}")
        acc = [0.0] * math.prod(kept)
        kept_strides = _contig(kept)
        for idx, v in zip(itertools.product(*map(range, x.shape)), _read(x)):
            o = sum(0 if d in axes else i * s for d, (i, s) in enumerate(zip(idx, kept_strides)))
            acc[o] += v
        _write(out, acc)

    def sum_to(self, out, x) -> None:
        _need_float("sum_to", ("out", out), ("x", x))
        checks.need_broadcasts_to("sum_to", "out", out, "x", x.shape)
        pad = x.ndim - out.ndim
        acc = [0.0] * out.numel
        ostrides = _contig(out.shape)
        for idx, v in zip(itertools.product(*map(range, x.shape)), _read(x)):
            o = 0
            for d in range(out.ndim):
                if out.shape[d] != 1:
                    o += idx[d + pad] * ostrides[d]
            acc[o] += v
        _add_into(out, acc)

    def max(self, out, x, axis, keepdim=False) -> None:
        _need_float("max", ("out", out), ("x", x))
        (axis,) = checks.normalize_axes("max", [axis], x.shape)
        checks.need_data("max", f"axis {axis} of x", x.shape[axis], x)
        moved = x.permute([d for d in range(x.ndim) if d != axis] + [axis])
        n = x.shape[axis]
        shape = checks.reduced_shape(x.shape, [axis], keepdim)
        checks.need_shape("max", "out", out, shape, f"x {x.shape}")
        result = []
        for row in _rows(_read(moved), n):
            m = row[0]
            for v in row[1:]:
                m = _max(m, v)
            result.append(m)
        _write(out, result)

    def sum_squares(self, x) -> float:
        _need_float("sum_squares", ("x", x))
        return math.fsum(v * v for v in _read(x))

    def all_finite(self, x) -> bool:
        _need_float("all_finite", ("x", x))
        return all(math.isfinite(v) for v in _read(x))

    # ---- normalisation and activations -----------------------------------------------------
    def softmax_forward(self, out, x) -> None:
        _need_float("softmax_forward", ("out", out), ("x", x))
        checks.need_shape("softmax_forward", "out", out, x.shape, "x")
        n = checks.need_last_dim("softmax_forward", x)
        result = []
        for row in _rows(_read(x), n):
            m = max(row)
            e = [_exp(v - m) for v in row]
            s = sum(e)
            result += [v / s for v in e]
        _write(out, result)

    def softmax_backward(self, dx, dout, out) -> None:
        _need_float("softmax_backward", ("dx", dx), ("dout", dout), ("out", out))
        checks.need_shape("softmax_backward", "dout", dout, out.shape, "out")
        checks.need_shape("softmax_backward", "dx", dx, out.shape, "out")
        n = checks.need_last_dim("softmax_backward", out)
        result = []
        for g, y in zip(_rows(_read(dout), n), _rows(_read(out), n)):
            dot = sum(gi * yi for gi, yi in zip(g, y))
            result += [yi * (gi - dot) for gi, yi in zip(g, y)]
        _add_into(dx, result)

    def log_softmax_forward(self, out, x) -> None:
        _need_float("log_softmax_forward", ("out", out), ("x", x))
        checks.need_shape("log_softmax_forward", "out", out, x.shape, "x")
        n = checks.need_last_dim("log_softmax_forward", x)
        result = []
        for row in _rows(_read(x), n):
            m = max(row)
            lse = m + math.log(sum(_exp(v - m) for v in row))
            result += [v - lse for v in row]
        _write(out, result)

    def log_softmax_backward(self, dx, dout, out) -> None:
        _need_float("log_softmax_backward", ("dx", dx), ("dout", dout), ("out", out))
        checks.need_shape("log_softmax_backward", "dout", dout, out.shape, "out")
        checks.need_shape("log_softmax_backward", "dx", dx, out.shape, "out")
        n = checks.need_last_dim("log_softmax_backward", out)
        result = []
        for g, y in zip(_rows(_read(dout), n), _rows(_read(out), n)):
            s = sum(g)
            result += [gi - _exp(yi) * s for gi, yi in zip(g, y)]
        _add_into(dx, result)

    def layernorm_forward(self, out, mean, rstd, x, weight, bias, eps=1e-5) -> None:
        op = "layernorm_forward"
        _need_float(op, ("out", out), ("mean", mean), ("rstd", rstd), ("x", x),
                    ("weight", weight), ("bias", bias))
        C = checks.need_last_dim(op, x)
        checks.need_shape(op, "out", out, x.shape, "x")
        checks.need_shape(op, "weight", weight, (C,), f"x {x.shape}")
        if bias is not None:
            checks.need_shape(op, "bias", bias, (C,), f"x {x.shape}")
        checks.need_shape(op, "mean", mean, x.shape[:-1], f"x {x.shape}")
        checks.need_shape(op, "rstd", rstd, x.shape[:-1], f"x {x.shape}")
        w = _read(weight)
        b = _read(bias) if bias is not None else [0.0] * C
        ys, means, rstds = [], [], []
        for row in _rows(_read(x), C):
            mu = sum(row) / C
            var = sum((v - mu) ** 2 for v in row) / C
            r = 1.0 / math.sqrt(var + eps)
            ys += [(v - mu) * r * w[i] + b[i] for i, v in enumerate(row)]
            means.append(mu)
            rstds.append(r)
        _write(out, ys)
        _write(mean, means)
        _write(rstd, rstds)

    def layernorm_backward(self, dx, dweight, dbias, dout, x, weight, mean, rstd) -> None:
        op = "layernorm_backward"
        _need_float(op, ("dx", dx), ("dweight", dweight), ("dbias", dbias), ("dout", dout),
                    ("x", x), ("weight", weight), ("mean", mean), ("rstd", rstd))
        C = checks.need_last_dim(op, x)
        for name, t in (("dx", dx), ("dout", dout)):
            checks.need_shape(op, name, t, x.shape, "x")
        for name, t in (("dweight", dweight), ("dbias", dbias), ("weight", weight)):
            if t is not None:
                checks.need_shape(op, name, t, (C,), f"x {x.shape}")
        checks.need_shape(op, "mean", mean, x.shape[:-1], f"x {x.shape}")
        checks.need_shape(op, "rstd", rstd, x.shape[:-1], f"x {x.shape}")
        w = _read(weight)
        dw, db, dxs = [0.0] * C, [0.0] * C, []
        rows = zip(_rows(_read(x), C), _rows(_read(dout), C), _read(mean), _read(rstd))
        for row, g, mu, r in rows:
            norm = [(v - mu) * r for v in row]
            dnorm = [g[i] * w[i] for i in range(C)]
            dnorm_mean = sum(dnorm) / C
            dnorm_norm_mean = sum(dn * nv for dn, nv in zip(dnorm, norm)) / C
            dxs += [r * (dnorm[i] - dnorm_mean - norm[i] * dnorm_norm_mean) for i in range(C)]
            for i in range(C):
                dw[i] += g[i] * norm[i]
                db[i] += g[i]
        _add_into(dx, dxs)
        _add_into(dweight, dw)
        if dbias is not None:
            _add_into(dbias, db)

    def _pointwise(self, op, out, x, fn) -> None:
        _need_float(op, ("out", out), ("x", x))
        checks.need_shape(op, "out", out, x.shape, "x")
        _write(out, [fn(v) for v in _read(x)])

    def _pointwise_backward(self, op, dx, dout, x, grad) -> None:
        _need_float(op, ("dx", dx), ("dout", dout), ("x", x))
        checks.need_shape(op, "dout", dout, x.shape, "x")
        checks.need_shape(op, "dx", dx, x.shape, "x")
        _add_into(dx, [g * grad(v) for g, v in zip(_read(dout), _read(x))])

    def gelu_forward(self, out, x) -> None:
        self._pointwise("gelu_forward", out, x, _gelu)

    def gelu_backward(self, dx, dout, x) -> None:
        self._pointwise_backward("gelu_backward", dx, dout, x, _gelu_grad)

    def relu_forward(self, out, x) -> None:
        self._pointwise("relu_forward", out, x, lambda v: v if v > 0 else 0.0)

    def relu_backward(self, dx, dout, x) -> None:
        self._pointwise_backward("relu_backward", dx, dout, x, lambda v: 1.0 if v > 0 else 0.0)

    def silu_forward(self, out, x) -> None:
        self._pointwise("silu_forward", out, x, _silu)

    def silu_backward(self, dx, dout, x) -> None:
        self._pointwise_backward("silu_backward", dx, dout, x, _silu_grad)

    def _swiglu_shapes(self, op, x, other, other_name) -> int:
        if x.ndim < 1 or x.shape[-1] % 2:
            raise ValueError(f"{op}: x {x.shape} needs an even last dim")
        H = x.shape[-1] // 2
        checks.need_shape(op, other_name, other, x.shape[:-1] + (H,), f"x {x.shape}")
        return H

    def swiglu_forward(self, out, x) -> None:
        _need_float("swiglu_forward", ("out", out), ("x", x))
        H = self._swiglu_shapes("swiglu_forward", x, out, "out")
        result = []
        for row in _rows(_read(x), 2 * H):
            result += [_silu(row[i]) * row[H + i] for i in range(H)]
        _write(out, result)

    def swiglu_backward(self, dx, dout, x) -> None:
        _need_float("swiglu_backward", ("dx", dx), ("dout", dout), ("x", x))
        H = self._swiglu_shapes("swiglu_backward", x, dout, "dout")
        checks.need_shape("swiglu_backward", "dx", dx, x.shape, "x")
        result = []
        for row, g in zip(_rows(_read(x), 2 * H), _rows(_read(dout), H)):
            gate = [g[i] * row[H + i] * _silu_grad(row[i]) for i in range(H)]
            up = [g[i] * _silu(row[i]) for i in range(H)]
            result += gate + up
        _add_into(dx, result)

    def dropout_forward(self, out, x, u, p) -> None:
        _need_float("dropout_forward", ("out", out), ("x", x), ("u", u))
        checks.need_shape("dropout_forward", "out", out, x.shape, "x")
        checks.need_shape("dropout_forward", "u", u, x.shape, "x")
        if not 0 <= p < 1:
            raise ValueError(f"dropout_forward: p={p} must be in [0, 1)")
        scale = 1.0 / (1.0 - p)
        _write(out, [v * scale if ui >= p else 0.0 for v, ui in zip(_read(x), _read(u))])

    def dropout_backward(self, dx, dout, u, p) -> None:
        _need_float("dropout_backward", ("dx", dx), ("dout", dout), ("u", u))
        checks.need_shape("dropout_backward", "dout", dout, u.shape, "u")
        checks.need_shape("dropout_backward", "dx", dx, u.shape, "u")
        if not 0 <= p < 1:
            raise ValueError(f"dropout_backward: p={p} must be in [0, 1)")
        scale = 1.0 / (1.0 - p)
        _add_into(dx, [g * scale if ui >= p else 0.0 for g, ui in zip(_read(dout), _read(u))])

    # ---- embeddings ------------------------------------------------------------------------
    def _ids(self, op, ids, V) -> list[int]:
        checks.need_dtype(op, "ids", ids, ("i32",))
        values = _read(ids)
        for i in values:
            if not 0 <= i < V:
                raise ValueError(f"{op}: id {i} is outside the table's [0, {V})")
        return values

    def embedding_forward(self, out, ids, table) -> None:
        _need_float("embedding_forward", ("out", out), ("table", table))
        if table.ndim != 2:
            raise ValueError(f"embedding_forward: table {table.shape} must be (V, C)")
        V, C = table.shape
        checks.need_shape("embedding_forward", "out", out, ids.shape + (C,),
                    f"ids {ids.shape} and table {table.shape}")
        values = self._ids("embedding_forward", ids, V)
        rows = _rows(_read(table), C)
        _write(out, [v for i in values for v in rows[i]])

    def embedding_backward(self, dtable, dout, ids) -> None:
        _need_float("embedding_backward", ("dtable", dtable), ("dout", dout))
        if dtable.ndim != 2:
            raise ValueError(f"embedding_backward: dtable {dtable.shape} must be (V, C)")
        V, C = dtable.shape
        checks.need_shape("embedding_backward", "dout", dout, ids.shape + (C,),
                    f"ids {ids.shape} and dtable {dtable.shape}")
        values = self._ids("embedding_backward", ids, V)
        acc = [0.0] * (V * C)
        for i, g in zip(values, _rows(_read(dout), C)):
            for c in range(C):
                acc[i * C + c] += g[c]
        _add_into(dtable, acc)

    # ---- fused cross-entropy -----------------------------------------------------------------
    def _ce_shapes(self, op, logits, targets, other, other_name) -> tuple[int, int]:
        checks.need_dtype(op, "targets", targets, ("i32",))
        if logits.ndim != 2:
            raise ValueError(f"{op}: logits {logits.shape} must be (N, V)")
        N, V = logits.shape
        checks.need_data(op, "vocab dim of logits", V, logits)
        checks.need_shape(op, "targets", targets, (N,), f"logits {logits.shape}")
        checks.need_shape(op, other_name, other, (N,), f"logits {logits.shape}")
        for t in _read(targets):
            if not (t == -1 or 0 <= t < V):
                raise ValueError(f"{op}: target {t} is outside [0, {V}) (and is not -1)")
        return N, V

    def crossentropy_forward(self, losses, logits, targets) -> None:
        _need_float("crossentropy_forward", ("losses", losses), ("logits", logits))
        N, V = self._ce_shapes("crossentropy_forward", logits, targets, losses, "losses")
        result = []
        for row, t in zip(_rows(_read(logits), V), _read(targets)):
            if t == -1:
                result.append(0.0)
                continue
            m = max(row)
            lse = m + math.log(sum(_exp(v - m) for v in row))
            result.append(lse - row[t])
        _write(losses, result)

    def crossentropy_backward(self, dlogits, dlosses, logits, targets) -> None:
        op = "crossentropy_backward"
        _need_float(op, ("dlogits", dlogits), ("dlosses", dlosses), ("logits", logits))
        N, V = self._ce_shapes(op, logits, targets, dlosses, "dlosses")
        checks.need_shape(op, "dlogits", dlogits, logits.shape, "logits")
        result = []
        for row, t, g in zip(_rows(_read(logits), V), _read(targets), _read(dlosses)):
            if t == -1:
                result += [0.0] * V
                continue
            m = max(row)
            e = [_exp(v - m) for v in row]
            s = sum(e)
            result += [(e[j] / s - (1.0 if j == t else 0.0)) * g for j in range(V)]
        _add_into(dlogits, result)

    # ---- fused causal self-attention ----------------------------------------------------------
    def _scores(self, X, b, h, t, T, C, hs) -> list[float]:
        """Scaled scores of query t against keys 0..t (batch b, head h) from packed qkv X."""
        scale = 1.0 / math.sqrt(hs)
        qo = (b * T + t) * 3 * C + h * hs
        result = []
        for s in range(t + 1):
            ko = (b * T + s) * 3 * C + C + h * hs
            result.append(scale * sum(X[qo + d] * X[ko + d] for d in range(hs)))
        return result

    def attention_forward(self, out, lse, qkv, n_head) -> None:
        op = "attention_forward"
        _need_float(op, ("out", out), ("lse", lse), ("qkv", qkv))
        B, T, C, hs = checks.need_qkv(op, qkv, n_head)
        checks.need_shape(op, "out", out, (B, T, C), f"qkv {qkv.shape}")
        checks.need_shape(op, "lse", lse, (B, n_head, T), f"qkv {qkv.shape} and n_head={n_head}")
        X = _read(qkv)
        y = [0.0] * (B * T * C)
        lses = [0.0] * (B * n_head * T)
        for b in range(B):
            for h in range(n_head):
                for t in range(T):
                    sc = self._scores(X, b, h, t, T, C, hs)
                    m = max(sc)
                    lse_t = m + math.log(sum(_exp(v - m) for v in sc))
                    lses[(b * n_head + h) * T + t] = lse_t
                    for s, v in enumerate(sc):
                        p = _exp(v - lse_t)
                        vo = (b * T + s) * 3 * C + 2 * C + h * hs
                        for d in range(hs):
                            y[(b * T + t) * C + h * hs + d] += p * X[vo + d]
        _write(out, y)
        _write(lse, lses)

    def attention_backward(self, dqkv, dout, qkv, out, lse, n_head) -> None:
        op = "attention_backward"
        _need_float(op, ("dqkv", dqkv), ("dout", dout), ("qkv", qkv), ("out", out), ("lse", lse))
        B, T, C, hs = checks.need_qkv(op, qkv, n_head)
        checks.need_shape(op, "dqkv", dqkv, qkv.shape, "qkv")
        checks.need_shape(op, "dout", dout, (B, T, C), f"qkv {qkv.shape}")
        checks.need_shape(op, "out", out, (B, T, C), f"qkv {qkv.shape}")
        checks.need_shape(op, "lse", lse, (B, n_head, T), f"qkv {qkv.shape} and n_head={n_head}")
        X, G, L = _read(qkv), _read(dout), _read(lse)
        C3 = 3 * C
        scale = 1.0 / math.sqrt(hs)
        dX = [0.0] * len(X)
        for b in range(B):
            for h in range(n_head):
                for t in range(T):
                    sc = self._scores(X, b, h, t, T, C, hs)
                    P = [_exp(v - L[(b * n_head + h) * T + t]) for v in sc]
                    go = (b * T + t) * C + h * hs
                    qo = (b * T + t) * C3 + h * hs
                    dP = []
                    for s in range(t + 1):
                        vo = (b * T + s) * C3 + 2 * C + h * hs
                        dP.append(sum(G[go + d] * X[vo + d] for d in range(hs)))
                        for d in range(hs):
                            dX[vo + d] += P[s] * G[go + d]  # dv
                    D = sum(p * dp for p, dp in zip(P, dP))
                    for s in range(t + 1):
                        dS = P[s] * (dP[s] - D) * scale
                        ko = (b * T + s) * C3 + C + h * hs
                        for d in range(hs):
                            dX[qo + d] += dS * X[ko + d]  # dq
                            dX[ko + d] += dS * X[qo + d]  # dk
        _add_into(dqkv, dX)

    # ---- inference (the serving engine) -------------------------------------------------
    def matmul_rows(self, out, a, b, *, trans_b=False) -> None:
        """Batch-invariant rows: its matmul computes every element on its own, whatever M."""
        self.matmul(out, a, b, trans_b=trans_b)

    def block_decode(self, x, cache, slots, positions, params, n_head, activation, eps) -> None:
        raise NotImplementedError("need block_decode (the model runs the block op by op)")

    def kv_attention(self, out, q, k, v, n_head, start) -> None:
        op = "kv_attention"
        _need_float(op, ("out", out), ("q", q), ("k", k), ("v", v))
        if q.ndim != 3:
            raise ValueError(f"{op}: q {q.shape} must be (B, Tq, C)")
        B, Tq, C = q.shape
        if k.ndim != 3 or k.shape[0] != B or k.shape[2] != C:
            raise ValueError(f"{op}: k {k.shape} does not match q {q.shape}")
        checks.need_shape(op, "v", v, k.shape, f"k {k.shape}")
        checks.need_shape(op, "out", out, q.shape, "q")
        if n_head < 1 or C % n_head:
            raise ValueError(f"{op}: C={C} of q {q.shape} is not divisible by n_head={n_head}")
        if start < 0 or start + Tq > k.shape[1]:
            raise ValueError(f"{op}: positions {start}..{start + Tq - 1} do not fit k {k.shape}")
        hs = C // n_head
        Tk = k.shape[1]
        Q, K, V = _read(q), _read(k), _read(v)
        scale = 1.0 / math.sqrt(hs)
        y = [0.0] * (B * Tq * C)
        for b in range(B):
            for h in range(n_head):
                for i in range(Tq):
                    qo = (b * Tq + i) * C + h * hs
                    sc = []
                    for s in range(start + i + 1):
                        ko = (b * Tk + s) * C + h * hs
                        sc.append(scale * sum(Q[qo + d] * K[ko + d] for d in range(hs)))
                    m = max(sc)
                    e = [_exp(x - m) for x in sc]
                    tot = sum(e)
                    for s, es in enumerate(e):
                        vo = (b * Tk + s) * C + h * hs
                        for d in range(hs):
                            y[qo + d] += es / tot * V[vo + d]
        _write(out, y)

    # ---- optimizer ---------------------------------------------------------------------------
    def adamw_step(self, param, grad, m, v, *, lr, beta1, beta2, eps, weight_decay, step,
                   grad_scale=1.0) -> None:
        op = "adamw_step"
        _need_float(op, ("param", param), ("grad", grad), ("m", m), ("v", v))
        for name, t in (("grad", grad), ("m", m), ("v", v)):
            checks.need_numel(op, name, t, "param", param)
        if step < 1:
            raise ValueError(f"adamw_step: step={step} must be >= 1")
        P, G, M, Vv = _read(param), _read(grad), _read(m), _read(v)
        bc1 = 1.0 - beta1 ** step
        bc2 = 1.0 - beta2 ** step
        for i in range(len(P)):
            g = G[i] * grad_scale
            M[i] = beta1 * M[i] + (1.0 - beta1) * g
            Vv[i] = beta2 * Vv[i] + (1.0 - beta2) * g * g
            mhat = M[i] / bc1
            vhat = Vv[i] / bc2
            P[i] -= lr * (mhat / (math.sqrt(vhat) + eps) + weight_decay * P[i])
        _write(param, P)
        _write(m, M)
        _write(v, Vv)


def _contig(shape) -> list[int]:
    strides, acc = [], 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= n
    return strides[::-1]
