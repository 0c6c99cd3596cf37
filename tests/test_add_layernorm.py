"""The residual add fused with the layernorm after it (`add_layernorm_forward`, the autograd op
`add_layernorm`): its gradients in float64 against central finite differences of a plain-Python
add + layernorm, with both outputs used (the sum feeds the residual stream, as in GPT's block);
the CPU backend's op against the two separate ops, bit for bit; and on lavapipe helios's one
kernel against its own add + layernorm, bit for bit (the sum, the norm, mean, rstd and the bf16
copy for the next matmul), with and without a bias."""

from __future__ import annotations

import math
from array import array

import pytest

from alpha.autograd import ops
from alpha.autograd.tape import Tape, Var
from alpha.core import rng as _rng
from alpha.tensor import get_backend
from test_helios import _py

SHAPE, C = (2, 3, 6), 6
N = 36
H = 1e-6


def rand(n, lo=-1.0, hi=1.0, seed=0):
    s = _rng.Stream(_rng.stream_key(seed, "add_layernorm"))
    return [lo + (hi - lo) * u for u in s.uniform(n)]


def loss64(x, y, w, b, g):
    """sum(g * (s + layernorm(s))) with s = x + y, in float64 Python."""
    total = 0.0
    for r in range(N // C):
        s = [x[r * C + j] + y[r * C + j] for j in range(C)]
        mu = math.fsum(s) / C
        var = math.fsum((v - mu) ** 2 for v in s) / C
        rs = 1.0 / math.sqrt(var + 1e-5)
        for j in range(C):
            n = (s[j] - mu) * rs * w[j] + (b[j] if b is not None else 0.0)
            total += g[r * C + j] * (s[j] + n)
    return total


def run(be, dtype, xs, ys, ws, bs, g, fused):
    """(s + n, and the gradients of x, y, w, b) from the autograd ops on `be`."""
    code = "d" if dtype == "f64" else "f"
    t = Tape(be)

    def var(v, shape, param=False):
        data = be.from_array(array(code, v), shape, dtype)
        return Var(data, grad=be.zeros(shape, dtype) if param else None)
    x, y, w = var(xs, SHAPE), var(ys, SHAPE), var(ws, (C,), True)
    b = var(bs, (C,), True) if bs is not None else None
    if fused:
        s, n = ops.add_layernorm(t, x, y, w, b, 1e-5)
    else:
        s = ops.add(t, x, y)
        n = ops.layernorm(t, s, w, b, 1e-5)
    out = ops.add(t, s, n)
    t.backward(out, grad=be.from_array(array(code, g), SHAPE, dtype))
    grads = [x.grad, y.grad, w.grad] + ([b.grad] if b is not None else [])
    return [list(be.to_array(v)) for v in [out.data] + grads]


@pytest.mark.parametrize("use_bias", [True, False])
def test_add_layernorm_gradients_against_finite_differences(use_bias):
    xs, ys, g = rand(N, -2, 2, 1), rand(N, -2, 2, 2), rand(N, seed=3)
    ws, bs = rand(C, 0.5, 1.5, 4), (rand(C, seed=5) if use_bias else None)
    got = run(get_backend("reference"), "f64", xs, ys, ws, bs, g, fused=True)
    inputs = [xs, ys, ws] + ([bs] if use_bias else [])
    for name, v, dv in zip("xywb", inputs, got[1:]):
        for i in range(len(v)):
            keep = v[i]
            v[i] = keep + H
            up = loss64(xs, ys, ws, bs, g)
            v[i] = keep - H
            down = loss64(xs, ys, ws, bs, g)
            v[i] = keep
            want = (up - down) / (2 * H)
            assert abs(dv[i] - want) <= 1e-6 + 1e-5 * abs(want), (name, i, dv[i], want)


@pytest.mark.parametrize("use_bias", [True, False])
def test_add_layernorm_is_the_add_then_the_layernorm_on_cpu(use_bias):
    xs, ys, g = rand(N, -2, 2, 6), rand(N, -2, 2, 7), rand(N, seed=8)
    ws, bs = rand(C, 0.5, 1.5, 9), (rand(C, seed=10) if use_bias else None)
    be = get_backend("cpu")
    assert run(be, "f32", xs, ys, ws, bs, g, True) == run(be, "f32", xs, ys, ws, bs, g, False)


def test_add_layernorm_checks_its_shapes():
    be = get_backend("cpu")
    f = be.empty
    with pytest.raises(ValueError, match="add_layernorm_forward"):
        be.add_layernorm_forward(f((2, 4)), f((2, 4)), f((2,)), f((2,)), f((2, 4)), f((2, 3)),
                                 f((4,)), None)


def test_helios_fused_kernel_gives_the_bits_of_add_then_layernorm():
    """On lavapipe, f32 and bf16 (tensor cores emulated: the 16-bit copy for the next matmul);
    rows longer than a workgroup and an odd count of them."""
    r = _py("""
        import random
        from array import array
        from alpha.tensor import get_backend
        base = get_backend("helios")
        rng = random.Random(3)
        shape, C = (3, 5, 302), 302
        n = 15 * C
        bad = []
        for dtype in ("f32", "bf16"):
            be = base.with_matmul_dtype(dtype)
            be.coop_emulate = True
            f = lambda v, s: be.from_array(array("f", v), s)
            x = f([rng.uniform(-3, 3) for _ in range(n)], shape)
            y = f([rng.uniform(-3, 3) for _ in range(n)], shape)
            w = f([rng.uniform(0.5, 2) for _ in range(C)], (C,))
            b = f([rng.uniform(-1, 1) for _ in range(C)], (C,))
            for bias in (b, None):
                res = []
                for fused in (True, False):
                    be.fuse_add_norm = fused
                    s, out = be.empty(shape), be.empty(shape)
                    mean, rstd = be.empty(shape[:-1]), be.empty(shape[:-1])
                    be.add_layernorm_forward(s, out, mean, rstd, x, y, w, bias, 1e-5)
                    got = [list(be.to_array(v)) for v in (s, out, mean, rstd)]
                    if dtype == "bf16":
                        got.append(list(be.to_array(be._packed(out.view(15, C), "bf16"))))
                    res.append(got)
                if res[0] != res[1]:
                    bad.append((dtype, bias is not None))
        ran = [k for k in base.rt.pipes.programs if k[0] == "add_ln_fwd"]
        print("BAD", bad, "FUSED", len(ran))
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "BAD [] FUSED 4" in r.stdout, r.stdout
