"""Elementwise kernels: one generator for every op that maps operands element by element over a
shape (copy, cast, fill, unary/binary/scalar arithmetic, axpy, where_mask, activations and their
backwards, dropout, AdamW).

`map_kernel(name, shape, operands, scalars, body)` builds a grid-stride kernel over `shape`.
Operands are (dtype, strides, is_output) in elements; broadcast inputs have stride 0. Shapes and
strides are collapsed (`collapse`) and baked in as constants, so the kernel is specialised per
layout (a training step reuses a fixed set); a fully contiguous 1-D layout takes `n` from push
constants instead, so one pipeline serves every size. Element offsets are folded into the buffer
addresses by the caller. `body(k, ins, scalars)` returns the output values in operand order.
"""

from __future__ import annotations

import math

from alpha.helios.kernels.coopmat import _bf16_bits, _f16_bits
from alpha.spirv.dsl import Kernel

LOCAL = 256
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_C = 0.044715


def collapse(shape, strides_list):
    """Drop size-1 dims and merge dims that are contiguous for every operand."""
    dims = [(n, [s[d] for s in strides_list]) for d, n in enumerate(shape) if n != 1]
    if not dims:
        return (1,), [(1,) for _ in strides_list]
    merged = [dims[0]]
    for n, st in dims[1:]:
        pn, pst = merged[-1]
        if all(ps == s * n for ps, s in zip(pst, st)):
            merged[-1] = (pn * n, st)
        else:
            merged.append((n, st))
    shape = tuple(n for n, _ in merged)
    strides = [tuple(st[i] for _, st in merged) for i in range(len(strides_list))]
    return shape, strides


STORE_TYPE = {"f32": "f32", "i32": "i32", "u32": "u32"}


def map_kernel(name, shape, operands, scalars, body):
    """operands: list of (dtype, strides, role) with role "in", "out" or "inout"."""
    flat = len(shape) == 1 and all(st[0] == 1 for _, st, _ in operands)
    params = [(f"p{i}", f"{STORE_TYPE[dt]}*") for i, (dt, _, _) in enumerate(operands)]
    params += [(f"s{i}", t) for i, t in enumerate(scalars)]
    if flat:
        params.append(("n", "u32"))
    k = Kernel(name, local=(LOCAL, 1, 1), params=params)
    ps = k.params()
    ptrs = ps[:len(operands)]
    svals = ps[len(operands):len(operands) + len(scalars)]
    n = ps[-1] if flat else math.prod(shape)
    if flat:
        _flat_body(k, ptrs, svals, n, operands, body)
        return k
    with k.loop(k.gid, n, k.nthreads) as i:
        offs = [None] * len(operands)
        rem = i
        for d in range(len(shape) - 1, -1, -1):
            if d > 0:
                c = rem % shape[d]
                rem = rem / shape[d]
            else:
                c = rem
            for j, (_, st, _) in enumerate(operands):
                if st[d]:
                    term = c * st[d] if st[d] != 1 else c
                    offs[j] = term if offs[j] is None else offs[j] + term
        offs = [o if o is not None else k.const(0, "u32") for o in offs]
        ins = [ptrs[j][offs[j]] if role != "out" else None
               for j, (_, _, role) in enumerate(operands)]
        outs = body(k, ins, svals)
        oi = 0
        for j, (_, _, role) in enumerate(operands):
            if role != "in":
                ptrs[j][offs[j]] = outs[oi]
                oi += 1
    return k


UNROLL = 4


def _flat_body(k, ptrs, svals, n, operands, body):
    """Contiguous 1-D case: each invocation handles UNROLL elements per grid-stride step, all
    loads first (indices clamped to n-1, so they are always in range) to keep several memory
    requests in flight, then guarded stores."""
    step = k.nthreads
    last = n - 1
    with k.loop(k.gid, n, step * UNROLL) as base:
        idx = [base if u == 0 else base + step * u for u in range(UNROLL)]
        loaded = []
        for u in range(UNROLL):
            li = k.umin(idx[u], last) if u else idx[u]
            loaded.append([ptrs[j][li if st[0] else 0] if role != "out" else None
                           for j, (_, st, role) in enumerate(operands)])
        results = [body(k, loaded[u], svals) for u in range(UNROLL)]
        for u in range(UNROLL):
            def store(u=u):
                oi = 0
                for j, (_, st, role) in enumerate(operands):
                    if role != "in":
                        ptrs[j][idx[u] if st[0] else 0] = results[u][oi]
                        oi += 1
            if u == 0:
                store()
            else:
                with k.if_(idx[u] < n):
                    store()


# ---- op bodies -----------------------------------------------------------------------------
def map_packed(name, fn, dtype) -> Kernel:
    """out[i] = fn(x[i]) over contiguous n = 2 * pairs elements, and out16 = those values
    rounded to 16 bits (`dtype`, pairs in u32 words): an activation that also writes the copy
    the next tensor-core matmul reads, in place of a packing pass over out."""
    k = Kernel(f"{name}_{dtype}", (LOCAL, 1, 1),
               [("out", "f32*"), ("out16", "u32*"), ("x", "f32*"), ("pairs", "u32")])
    out, out16, x, pairs = k.params()
    bits = _bf16_bits if dtype == "bf16" else _f16_bits
    with k.loop(k.gid, pairs, k.nthreads) as i:
        j = i * 2
        a, b = fn(k, x[j]), fn(k, x[j + 1])
        out[j] = a
        out[j + 1] = b
        out16[i] = bits(k, a) | (bits(k, b) << 16)
    return k


def _div(k, a, b):
    return a / b


def _fmax(k, a, b):  # NaN-propagating, like the reference
    return k.select(k.isnan(a) | k.isnan(b), a + b, k.fmax(a, b))


def _fmin(k, a, b):
    return k.select(k.isnan(a) | k.isnan(b), a + b, k.fmin(a, b))


BINARY = {
    "add": lambda k, a, b: a + b,
    "sub": lambda k, a, b: a - b,
    "mul": lambda k, a, b: a * b,
    "div": _div,
    "max": _fmax,
    "min": _fmin,
}


def _pow(k, a, s):
    # GLSL pow is undefined for a < 0; do it by hand: |a|^s with the sign for odd integer s
    mag = k.exp(k.log(k.fabs(a)) * s)
    whole = k.floor(s).eq(s)
    odd = whole & k.fabs(k.floor(s * 0.5) * 2.0 - s).eq(1.0)
    neg = a < 0.0
    res = k.select(neg & odd, -mag, mag)
    res = k.select(neg & ~whole, k.const(float("nan"), "f32"), res)
    res = k.select(a.eq(0.0) & s.eq(0.0), k.const(1.0, "f32"), res)
    return k.select(s.eq(0.0), k.const(1.0, "f32"), res)


SCALAR = dict(BINARY)
SCALAR.update({
    "pow": _pow,
    "rsub": lambda k, a, s: s - a,
    "rdiv": lambda k, a, s: s / a,
})


def _tanh(k, x):
    # GLSL Tanh overflows to NaN for large |x| on some drivers: clamp (tanh(+-10) == +-1 in f32)
    return k.tanh(k.fmax(k.fmin(x, 10.0), -10.0))


UNARY = {
    "neg": lambda k, x: -x,
    "exp": lambda k, x: k.exp(x),
    "log": lambda k, x: k.select(x < 0.0, k.const(float("nan"), "f32"), k.log(x)),
    "sqrt": lambda k, x: k.select(x < 0.0, k.const(float("nan"), "f32"), k.sqrt(x)),
    "rsqrt": lambda k, x: 1.0 / k.sqrt(x),
    "tanh": _tanh,
    "abs": lambda k, x: k.fabs(x),
    "square": lambda k, x: x * x,
    "reciprocal": lambda k, x: 1.0 / x,
}


def sigmoid(k, x):
    return 1.0 / (1.0 + k.exp(-x))


def softcap_forward(k, x, cap):
    """cap * tanh(x / cap): the logit soft-cap."""
    return cap * _tanh(k, x / cap)


def softcap_grad(k, out, cap):
    """d(softcap)/dx from the forward's output: 1 - (out / cap)^2."""
    y = out / cap
    return 1.0 - y * y


def gelu_forward(k, x):
    u = SQRT_2_OVER_PI * (x + GELU_C * x * x * x)
    return 0.5 * x * (1.0 + _tanh(k, u))


def gelu_grad(k, x):
    u = SQRT_2_OVER_PI * (x + GELU_C * x * x * x)
    t = _tanh(k, u)
    du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * x * x)
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du


def silu_forward(k, x):
    return x * sigmoid(k, x)


def silu_grad(k, x):
    s = sigmoid(k, x)
    return s * (1.0 + x * (1.0 - s))


def adamw_body(k, ins, s):
    """ins: param, grad, m, v; scalars: lr, b1, b2, eps, wd, bc1, bc2, grad_scale."""
    p, g, m, v = ins
    lr, b1, b2, eps, wd, bc1, bc2, gs = s
    g = g * gs
    m = b1 * m + (1.0 - b1) * g
    v = b2 * v + (1.0 - b2) * g * g
    mhat = m / bc1
    vhat = v / bc2
    p = p - lr * (mhat / (k.sqrt(vhat) + eps) + wd * p)
    return [p, m, v]
