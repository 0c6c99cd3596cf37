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
from alpha.core.backend import BINARY_OPS, DTYPES, FLOAT_DTYPES, UNARY_OPS, Backend
from alpha.core.checks import reduced_shape
from alpha.tensor import reference_attention as ref_attn
from alpha.tensor import reference_optim as ref_opt
from alpha.tensor.tensor import Tensor

GELU_K = math.sqrt(2.0 / math.pi)
INF, NAN = float("inf"), float("nan")


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


class ReferenceBackend(Backend):
    name = "reference"
    floats = FLOAT_DTYPES  # f64 too: finite-difference tests need it

    # ---- memory ---------------------------------------------------------------------------
    def _empty(self, shape, dtype) -> Tensor:
        return self._zeros(shape, dtype)

    def _zeros(self, shape, dtype) -> Tensor:
        zero = 0.0 if dtype in FLOAT_DTYPES else 0
        return Tensor(self, [zero] * math.prod(shape), shape, dtype)

    def _from_array(self, host, shape, dtype) -> Tensor:
        return Tensor(self, host.tolist(), shape, dtype)  # f32 already rounded by the array

    def _to_array(self, x: Tensor):
        return array(DTYPES[x.dtype][0], _read(x))

    def _fill(self, out: Tensor, value: float) -> None:
        _write(out, [value] * out.numel)

    def _copy(self, out: Tensor, x: Tensor) -> None:
        _write(out, _read(x))

    def _cast(self, out: Tensor, x: Tensor) -> None:
        values = _read(x)
        if out.dtype == "f32":
            values = _round_f32(values)
        _write(out, values)

    # ---- random numbers -----------------------------------------------------------------------
    def _rng_uniform(self, out: Tensor, key, position: int) -> None:
        ws = _rng.words(tuple(key), position, out.numel)
        _write(out, [_rng.to_uniform(w) for w in ws])

    def _rng_normal(self, out: Tensor, key, position: int, mean, std) -> None:
        n = out.numel
        zs = _rng.normals_from_words(_rng.words(tuple(key), position, 2 * ((n + 1) // 2)), n)
        _write(out, [mean + std * z for z in zs])

    # ---- matmul --------------------------------------------------------------------------
    def _matmul(self, out, a, b, trans_a, trans_b, accumulate, alpha) -> None:
        opa = a.transpose(-2, -1) if trans_a else a  # (..., M, K)
        opb = b.transpose(-2, -1) if trans_b else b  # (..., K, N) or (K, N)
        batch = opa.shape[:-2]
        M, K = opa.shape[-2:]
        N = opb.shape[-1]
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
    def _binary(self, out, op, a, b, shape) -> None:
        fn = BINARY[op]
        xs, ys = _read_broadcast(a, shape), _read_broadcast(b, shape)
        _write(out, [fn(x, y) for x, y in zip(xs, ys)])

    def _binary_scalar(self, out, op, a, s) -> None:
        fn = SCALAR[op]
        _write(out, [fn(x, s) for x in _read(a)])

    def _unary(self, out, op, x) -> None:
        fn = UNARY[op]
        _write(out, [fn(v) for v in _read(x)])

    def _axpy(self, out, x, alpha) -> None:
        _write(out, [o + alpha * v for o, v in zip(_read(out), _read(x))])

    def _where_mask(self, out, x, mask, value) -> None:
        ms = _read_broadcast(mask, x.shape)
        _write(out, [value if m != 0 else v for v, m in zip(_read(x), ms)])

    # ---- reductions ----------------------------------------------------------------------
    def _sum(self, out, x, axes, keepdim) -> None:
        kept = reduced_shape(x.shape, axes, keepdim=True)
        acc = [0.0] * math.prod(kept)
        kept_strides = _contig(kept)
        for idx, v in zip(itertools.product(*map(range, x.shape)), _read(x)):
            o = sum(0 if d in axes else i * s for d, (i, s) in enumerate(zip(idx, kept_strides)))
            acc[o] += v
        _write(out, acc)

    def _sum_to(self, out, x) -> None:
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

    def _max(self, out, x, axis, keepdim) -> None:
        moved = x.permute([d for d in range(x.ndim) if d != axis] + [axis])
        n = x.shape[axis]
        result = []
        for row in _rows(_read(moved), n):
            m = row[0]
            for v in row[1:]:
                m = _max(m, v)
            result.append(m)
        _write(out, result)

    def _sum_squares(self, x) -> float:
        return math.fsum(v * v for v in _read(x))

    def _all_finite(self, x) -> bool:
        return all(math.isfinite(v) for v in _read(x))

    # ---- normalisation and activations -----------------------------------------------------
    def _softmax_forward(self, out, x) -> None:
        n = x.shape[-1]
        result = []
        for row in _rows(_read(x), n):
            m = max(row)
            e = [_exp(v - m) for v in row]
            s = sum(e)
            result += [v / s for v in e]
        _write(out, result)

    def _softmax_backward(self, dx, dout, out) -> None:
        n = out.shape[-1]
        result = []
        for g, y in zip(_rows(_read(dout), n), _rows(_read(out), n)):
            dot = sum(gi * yi for gi, yi in zip(g, y))
            result += [yi * (gi - dot) for gi, yi in zip(g, y)]
        _add_into(dx, result)

    def _log_softmax_forward(self, out, x) -> None:
        n = x.shape[-1]
        result = []
        for row in _rows(_read(x), n):
            m = max(row)
            lse = m + math.log(sum(_exp(v - m) for v in row))
            result += [v - lse for v in row]
        _write(out, result)

    def _log_softmax_backward(self, dx, dout, out) -> None:
        n = out.shape[-1]
        result = []
        for g, y in zip(_rows(_read(dout), n), _rows(_read(out), n)):
            s = sum(g)
            result += [gi - _exp(yi) * s for gi, yi in zip(g, y)]
        _add_into(dx, result)

    def _layernorm_forward(self, out, mean, rstd, x, weight, bias, eps) -> None:
        C = x.shape[-1]
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

    def _layernorm_backward(self, dx, dweight, dbias, dout, x, weight, mean, rstd) -> None:
        C = x.shape[-1]
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

    def _rmsnorm_forward(self, out, rstd, x, weight, eps) -> None:
        C = x.shape[-1]
        w = _read(weight)
        ys, rstds = [], []
        for row in _rows(_read(x), C):
            r = 1.0 / math.sqrt(sum(v * v for v in row) / C + eps)
            ys += [v * r * w[i] for i, v in enumerate(row)]
            rstds.append(r)
        _write(out, ys)
        _write(rstd, rstds)

    def _rmsnorm_backward(self, dx, dweight, dout, x, weight, rstd) -> None:
        C = x.shape[-1]
        w = _read(weight)
        dw, dxs = [0.0] * C, []
        for row, g, r in zip(_rows(_read(x), C), _rows(_read(dout), C), _read(rstd)):
            norm = [v * r for v in row]
            dnorm = [g[i] * w[i] for i in range(C)]
            dnorm_norm_mean = sum(dn * nv for dn, nv in zip(dnorm, norm)) / C
            dxs += [r * (dnorm[i] - norm[i] * dnorm_norm_mean) for i in range(C)]
            for i in range(C):
                dw[i] += g[i] * norm[i]
        _add_into(dx, dxs)
        _add_into(dweight, dw)

    def _pointwise(self, out, x, fn) -> None:
        _write(out, [fn(v) for v in _read(x)])

    def _pointwise_backward(self, dx, dout, x, grad) -> None:
        _add_into(dx, [g * grad(v) for g, v in zip(_read(dout), _read(x))])

    def _gelu_forward(self, out, x) -> None:
        self._pointwise(out, x, _gelu)

    def _gelu_backward(self, dx, dout, x) -> None:
        self._pointwise_backward(dx, dout, x, _gelu_grad)

    def _relu_forward(self, out, x) -> None:
        self._pointwise(out, x, lambda v: v if v > 0 else 0.0)

    def _relu_backward(self, dx, dout, x) -> None:
        self._pointwise_backward(dx, dout, x, lambda v: 1.0 if v > 0 else 0.0)

    def _silu_forward(self, out, x) -> None:
        self._pointwise(out, x, _silu)

    def _silu_backward(self, dx, dout, x) -> None:
        self._pointwise_backward(dx, dout, x, _silu_grad)

    def _relu2_forward(self, out, x) -> None:
        self._pointwise(out, x, lambda v: v * v if v > 0 else 0.0)

    def _relu2_backward(self, dx, dout, x) -> None:
        self._pointwise_backward(dx, dout, x, lambda v: 2.0 * v if v > 0 else 0.0)

    def _softcap_forward(self, out, x, cap) -> None:
        self._pointwise(out, x, lambda v: cap * math.tanh(v / cap))

    def _softcap_backward(self, dx, dout, out, cap) -> None:
        self._pointwise_backward(dx, dout, out, lambda y: 1.0 - (y / cap) * (y / cap))

    def _swiglu_forward(self, out, x, H) -> None:
        result = []
        for row in _rows(_read(x), 2 * H):
            result += [_silu(row[i]) * row[H + i] for i in range(H)]
        _write(out, result)

    def _swiglu_backward(self, dx, dout, x, H) -> None:
        result = []
        for row, g in zip(_rows(_read(x), 2 * H), _rows(_read(dout), H)):
            gate = [g[i] * row[H + i] * _silu_grad(row[i]) for i in range(H)]
            up = [g[i] * _silu(row[i]) for i in range(H)]
            result += gate + up
        _add_into(dx, result)

    def _dropout_forward(self, out, x, u, p) -> None:
        scale = 1.0 / (1.0 - p)
        _write(out, [v * scale if ui >= p else 0.0 for v, ui in zip(_read(x), _read(u))])

    def _dropout_backward(self, dx, dout, u, p) -> None:
        scale = 1.0 / (1.0 - p)
        _add_into(dx, [g * scale if ui >= p else 0.0 for g, ui in zip(_read(dout), _read(u))])

    # ---- embeddings ------------------------------------------------------------------------
    def _find_outside(self, ids, V, ignore):
        for i, v in enumerate(_read(ids)):
            if not (0 <= v < V or (ignore and v == -1)):
                return i, v
        return None

    def _embedding_forward(self, out, ids, table) -> None:
        C = table.shape[1]
        rows = _rows(_read(table), C)
        _write(out, [v for i in _read(ids) for v in rows[i]])

    def _embedding_backward(self, dtable, dout, ids) -> None:
        V, C = dtable.shape
        acc = [0.0] * (V * C)
        for i, g in zip(_read(ids), _rows(_read(dout), C)):
            for c in range(C):
                acc[i * C + c] += g[c]
        _add_into(dtable, acc)

    # ---- fused cross-entropy -----------------------------------------------------------------
    def _crossentropy_forward(self, losses, logits, targets) -> None:
        V = logits.shape[1]
        result = []
        for row, t in zip(_rows(_read(logits), V), _read(targets)):
            if t == -1:
                result.append(0.0)
                continue
            m = max(row)
            lse = m + math.log(sum(_exp(v - m) for v in row))
            result.append(lse - row[t])
        _write(losses, result)

    def _crossentropy_backward(self, dlogits, dlosses, logits, targets) -> None:
        V = logits.shape[1]
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

    # ---- fused causal self-attention (the math: alpha.tensor.reference_attention) ---------
    def _attention_forward(self, out, lse, qkv, n_head, softcap=0.0) -> None:
        B, T, C = out.shape
        y, lses = ref_attn.attention_forward(_read(qkv), B, T, C, n_head, softcap)
        _write(out, y)
        _write(lse, lses)

    def _attention_backward(self, dqkv, dout, qkv, out, lse, n_head, softcap=0.0) -> None:
        B, T, C = out.shape
        _add_into(dqkv, ref_attn.attention_backward(_read(qkv), _read(dout), _read(lse), B, T,
                                                    C, n_head, softcap))

    # ---- rotary position embedding --------------------------------------------------------
    def _rope_forward(self, out, qkv, positions, cos, sin, n_head) -> None:
        B, T, C3 = qkv.shape
        _write(out, ref_attn.rope(_read(qkv), _read(positions), _read(cos), _read(sin), B * T,
                                  C3 // 3, n_head, False))

    def _rope_backward(self, dqkv, dout, positions, cos, sin, n_head) -> None:
        B, T, C3 = dout.shape
        _add_into(dqkv, ref_attn.rope(_read(dout), _read(positions), _read(cos), _read(sin),
                                      B * T, C3 // 3, n_head, True))

    # ---- inference (the serving engine) -------------------------------------------------
    def _matmul_rows(self, out, a, b, trans_b) -> None:
        """Batch-invariant rows: its matmul computes every element on its own, whatever M."""
        self._matmul(out, a, b, False, trans_b, False, 1.0)

    # (no _block_decode: the model runs the block op by op)

    def _kv_attention(self, out, q, k, v, n_head, start, softcap=0.0) -> None:
        B, Tq, C = q.shape
        _write(out, ref_attn.kv_attention(_read(q), _read(k), _read(v), B, Tq, k.shape[1], C,
                                          n_head, start, softcap))

    # ---- optimizer ---------------------------------------------------------------------------
    def _adamw_step(self, param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step,
                    grad_scale) -> None:
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

    def _lion_step(self, param, grad, m, lr, beta1, beta2, weight_decay, grad_scale) -> None:
        P, M = _read(param), _read(m)
        ref_opt.lion(P, _read(grad), M, lr, beta1, beta2, weight_decay, grad_scale)
        _write(param, P)
        _write(m, M)

    def _sgd_step(self, param, grad, buf, lr, momentum, nesterov, weight_decay,
                  grad_scale) -> None:
        P, B = _read(param), _read(buf)
        ref_opt.sgd(P, _read(grad), B, lr, momentum, nesterov, weight_decay, grad_scale)
        _write(param, P)
        _write(buf, B)

    def _muon_momentum(self, out, grad, buf, momentum, nesterov, grad_scale) -> None:
        O, B = [0.0] * out.numel, _read(buf)
        ref_opt.muon_momentum(O, _read(grad), B, momentum, nesterov, grad_scale)
        _write(out, O)
        _write(buf, B)

    def _adafactor_step(self, param, grad, row, col, lr, beta2, eps, clip, weight_decay,
                        grad_scale) -> None:
        P, Rw = _read(param), _read(row)
        Cl = _read(col) if col is not None else None
        R, C = param.shape if col is not None else (1, param.numel)
        ref_opt.adafactor(P, _read(grad), Rw, Cl, R, C, lr, beta2, eps, clip, weight_decay,
                          grad_scale)
        _write(param, P)
        _write(row, Rw)
        if col is not None:
            _write(col, Cl)


def _contig(shape) -> list[int]:
    strides, acc = [], 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= n
    return strides[::-1]
