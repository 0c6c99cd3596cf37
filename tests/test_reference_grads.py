"""The reference backend's backward ops against central finite differences, in float64.

For an op y = f(x) and a random upstream gradient g, the loss L = sum(g * y) has dL/dx equal to
what the backward op must add into dx. Each test perturbs every input element by +-h and compares.
Gradient buffers start non-zero, checking that backward ops ADD into them.
Also a few known answers that pin the reference's forward definitions.
"""

from __future__ import annotations

import math
from array import array

import pytest

from alpha.core import rng as _rng
from alpha.tensor.reference import ReferenceBackend

R = ReferenceBackend()
H = 1e-6
PREFILL = 0.25  # gradient buffers start here; backward must add on top


def rand(n, lo=-1.0, hi=1.0, seed=0):
    s = _rng.Stream(_rng.stream_key(seed, "grads"))
    return [lo + (hi - lo) * u for u in s.uniform(n)]


def t(values, shape, dtype="f64"):
    return R.from_array(array("d" if dtype == "f64" else "i", values), shape, dtype)


def vals(x):
    return list(R.to_array(x))


def grad_buffer(shape):
    g = R.zeros(shape, "f64")
    R.fill(g, PREFILL)
    return g


def added(buf):
    """What a backward op added into a PREFILL-ed buffer."""
    return [v - PREFILL for v in vals(buf)]


def numeric(loss, x: list) -> list[float]:
    """Central differences of loss() with respect to the list x (mutated in place, restored)."""
    out = []
    for i in range(len(x)):
        old = x[i]
        x[i] = old + H
        lp = loss()
        x[i] = old - H
        lm = loss()
        x[i] = old
        out.append((lp - lm) / (2 * H))
    return out


def assert_close(got, want, rtol=1e-5, atol=1e-7, what=""):
    assert len(got) == len(want), what
    for i, (a, b) in enumerate(zip(got, want)):
        assert abs(a - b) <= atol + rtol * abs(b), f"{what}[{i}]: analytic {a}, numeric {b}"


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


# ---- pointwise and row-wise ops ------------------------------------------------------------


@pytest.mark.parametrize("act", ["gelu", "relu", "silu"])
def test_activation_grads(act):
    shape = (3, 7)
    x = rand(21, -3, 3, seed=1)
    if act == "relu":  # away from the kink at 0
        x = [v if abs(v) > 0.1 else v + 0.3 for v in x]
    g = rand(21, seed=2)

    def loss():
        out = R.zeros(shape, "f64")
        getattr(R, f"{act}_forward")(out, t(x, shape))
        return dot(g, vals(out))

    dx = grad_buffer(shape)
    getattr(R, f"{act}_backward")(dx, t(g, shape), t(x, shape))
    assert_close(added(dx), numeric(loss, x), what=f"{act} dx")


def test_swiglu_grads():
    x = rand(2 * 3 * 10, -3, 3, seed=3)
    g = rand(2 * 3 * 5, seed=4)

    def loss():
        out = R.zeros((2, 3, 5), "f64")
        R.swiglu_forward(out, t(x, (2, 3, 10)))
        return dot(g, vals(out))

    dx = grad_buffer((2, 3, 10))
    R.swiglu_backward(dx, t(g, (2, 3, 5)), t(x, (2, 3, 10)))
    assert_close(added(dx), numeric(loss, x), what="swiglu dx")


@pytest.mark.parametrize("kind", ["softmax", "log_softmax"])
def test_softmax_grads(kind):
    shape = (4, 6)
    x = rand(24, -3, 3, seed=5)
    g = rand(24, seed=6)
    fwd, bwd = getattr(R, f"{kind}_forward"), getattr(R, f"{kind}_backward")

    def forward():
        out = R.zeros(shape, "f64")
        fwd(out, t(x, shape))
        return out

    dx = grad_buffer(shape)
    bwd(dx, t(g, shape), forward())
    assert_close(added(dx), numeric(lambda: dot(g, vals(forward())), x), what=f"{kind} dx")


@pytest.mark.parametrize("use_bias", [True, False])
def test_layernorm_grads(use_bias):
    shape, C = (2, 3, 5), 5
    x = rand(30, -2, 2, seed=7)
    w = rand(C, 0.5, 1.5, seed=8)
    b = rand(C, seed=9)
    g = rand(30, seed=10)

    def forward():
        out, mean, rstd = R.zeros(shape, "f64"), R.zeros(shape[:-1], "f64"), \
            R.zeros(shape[:-1], "f64")
        R.layernorm_forward(out, mean, rstd, t(x, shape), t(w, (C,)),
                            t(b, (C,)) if use_bias else None, 1e-5)
        return out, mean, rstd

    def loss():
        return dot(g, vals(forward()[0]))

    _, mean, rstd = forward()
    dx, dw = grad_buffer(shape), grad_buffer((C,))
    db = grad_buffer((C,)) if use_bias else None
    R.layernorm_backward(dx, dw, db, t(g, shape), t(x, shape), t(w, (C,)), mean, rstd)
    assert_close(added(dx), numeric(loss, x), rtol=1e-5, atol=1e-6, what="layernorm dx")
    assert_close(added(dw), numeric(loss, w), what="layernorm dweight")
    if use_bias:
        assert_close(added(db), numeric(loss, b), what="layernorm dbias")


def test_dropout_grads():
    shape, p = (3, 8), 0.3
    x = rand(24, seed=11)
    u = R.zeros(shape, "f64")
    R.rng_uniform(u, _rng.stream_key(1, "dropout"), 0)
    g = rand(24, seed=12)

    def loss():
        out = R.zeros(shape, "f64")
        R.dropout_forward(out, t(x, shape), u, p)
        return dot(g, vals(out))

    dx = grad_buffer(shape)
    R.dropout_backward(dx, t(g, shape), u, p)
    assert_close(added(dx), numeric(loss, x), what="dropout dx")
    kept = sum(1 for v in vals(u) if v >= p)
    assert 0 < kept < 24


# ---- embedding, cross-entropy, matmul, broadcasting ---------------------------------------


def test_embedding_grads():
    V, C = 5, 3
    table = rand(V * C, seed=13)
    ids = t([1, 3, 1, 0, 1, 4], (2, 3), "i32")  # repeats accumulate
    g = rand(2 * 3 * C, seed=14)

    def loss():
        out = R.zeros((2, 3, C), "f64")
        R.embedding_forward(out, ids, t(table, (V, C)))
        return dot(g, vals(out))

    dtable = grad_buffer((V, C))
    R.embedding_backward(dtable, t(g, (2, 3, C)), ids)
    assert_close(added(dtable), numeric(loss, table), what="embedding dtable")
    assert added(dtable)[2 * C:3 * C] == [0.0] * C  # id 2 is never used


def test_crossentropy_grads():
    N, V = 5, 7
    logits = rand(N * V, -3, 3, seed=15)
    targets = t([3, -1, 0, 6, 3], (N,), "i32")
    dl = rand(N, seed=16)

    def loss():
        losses = R.zeros((N,), "f64")
        R.crossentropy_forward(losses, t(logits, (N, V)), targets)
        return dot(dl, vals(losses))

    dlogits = grad_buffer((N, V))
    R.crossentropy_backward(dlogits, t(dl, (N,)), t(logits, (N, V)), targets)
    got = added(dlogits)
    assert_close(got, numeric(loss, logits), what="crossentropy dlogits")
    assert got[V:2 * V] == [0.0] * V  # the ignored row


@pytest.mark.parametrize("M,K,N", [(1, 1, 1), (3, 4, 5)])
def test_matmul_grads(M, K, N):
    a, b = rand(M * K, seed=17), rand(K * N, seed=18)
    g = rand(M * N, seed=19)

    def loss():
        out = R.zeros((M, N), "f64")
        R.matmul(out, t(a, (M, K)), t(b, (K, N)))
        return dot(g, vals(out))

    # out = a @ b: da = g @ b^T, db = a^T @ g
    da, db = grad_buffer((M, K)), grad_buffer((K, N))
    R.matmul(da, t(g, (M, N)), t(b, (K, N)), trans_b=True, accumulate=True)
    R.matmul(db, t(a, (M, K)), t(g, (M, N)), trans_a=True, accumulate=True)
    assert_close(added(da), numeric(loss, a), what="matmul da")
    assert_close(added(db), numeric(loss, b), what="matmul db")


def test_linear_layer_grads():
    """y = x @ W^T with x (B, T, C), W (N, C): the model's linear layer."""
    B, T, C, N = 2, 3, 4, 5
    x, w = rand(B * T * C, seed=20), rand(N * C, seed=21)
    g = rand(B * T * N, seed=22)

    def loss():
        out = R.zeros((B, T, N), "f64")
        R.matmul(out, t(x, (B, T, C)), t(w, (N, C)), trans_b=True)
        return dot(g, vals(out))

    dx, dw = grad_buffer((B, T, C)), grad_buffer((N, C))
    gt = t(g, (B, T, N))
    R.matmul(dx, gt, t(w, (N, C)), accumulate=True)
    R.matmul(dw, gt.view(B * T, N), t(x, (B, T, C)).view(-1, C), trans_a=True, accumulate=True)
    assert_close(added(dx), numeric(loss, x), what="linear dx")
    assert_close(added(dw), numeric(loss, w), what="linear dweight")


def test_broadcast_mul_grads_via_sum_to():
    a, b = rand(12, seed=23), rand(4, seed=24)
    g = rand(12, seed=25)

    def loss():
        out = R.zeros((3, 4), "f64")
        R.binary(out, "mul", t(a, (3, 4)), t(b, (4,)))
        return dot(g, vals(out))

    ga = R.zeros((3, 4), "f64")
    R.binary(ga, "mul", t(g, (3, 4)), t(a, (3, 4)))  # dout * a, then reduce to b's shape
    db = grad_buffer((4,))
    R.sum_to(db, ga)
    assert_close(added(db), numeric(loss, b), what="broadcast mul db")


# ---- attention ----------------------------------------------------------------------------


@pytest.mark.parametrize("B,T,C,nh", [(1, 1, 2, 1), (2, 4, 6, 2), (1, 5, 4, 1)])
def test_attention_grads(B, T, C, nh):
    qkv = rand(B * T * 3 * C, -1.5, 1.5, seed=26)
    g = rand(B * T * C, seed=27)

    def forward():
        out, lse = R.zeros((B, T, C), "f64"), R.zeros((B, nh, T), "f64")
        R.attention_forward(out, lse, t(qkv, (B, T, 3 * C)), nh)
        return out, lse

    out, lse = forward()
    dqkv = grad_buffer((B, T, 3 * C))
    R.attention_backward(dqkv, t(g, (B, T, C)), t(qkv, (B, T, 3 * C)), out, lse, nh)
    assert_close(added(dqkv), numeric(lambda: dot(g, vals(forward()[0])), qkv),
                 rtol=1e-5, atol=1e-6, what="attention dqkv")


# ---- known answers for the forward definitions ------------------------------------------------


def test_forward_known_answers():
    out = R.zeros((2, 2), "f64")
    R.matmul(out, t([1, 2, 3, 4, 5, 6], (2, 3)), t([1, 0, 0, 1, 1, 1], (3, 2)))
    assert vals(out) == [4.0, 5.0, 10.0, 11.0]
    sm = R.zeros((2, 4), "f64")
    R.softmax_forward(sm, t(rand(8, -5, 5), (2, 4)))
    assert math.isclose(sum(vals(sm)[:4]), 1.0) and math.isclose(sum(vals(sm)[4:]), 1.0)
    losses = R.zeros((2,), "f64")
    R.crossentropy_forward(losses, t([0.0] * 10, (2, 5)), t([2, -1], (2,), "i32"))
    assert math.isclose(vals(losses)[0], math.log(5)) and vals(losses)[1] == 0.0
    ln, mean, rstd = R.zeros((1, 6), "f64"), R.zeros((1,), "f64"), R.zeros((1,), "f64")
    R.layernorm_forward(ln, mean, rstd, t(rand(6, 0, 4), (1, 6)), t([1.0] * 6, (6,)), None, 0.0)
    y = vals(ln)
    assert abs(sum(y)) < 1e-12 and math.isclose(sum(v * v for v in y) / 6, 1.0)
    gl = R.zeros((3,), "f64")
    R.gelu_forward(gl, t([0.0, 10.0, -10.0], (3,)))
    assert vals(gl)[0] == 0.0 and math.isclose(vals(gl)[1], 10.0) and abs(vals(gl)[2]) < 1e-12


def test_attention_known_answers():
    # T = 1: the only key is itself, so out = v and lse = q.k / sqrt(hs)
    qkv = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]  # C = 2, one head: q=(1,2) k=(3,4) v=(5,6)
    out, lse = R.zeros((1, 1, 2), "f64"), R.zeros((1, 1, 1), "f64")
    R.attention_forward(out, lse, t(qkv, (1, 1, 6)), 1)
    assert vals(out) == [5.0, 6.0]
    assert math.isclose(vals(lse)[0], 11.0 / math.sqrt(2))
    # causal: the first query never sees later keys
    x = rand(2 * 4 * 12, seed=30)
    out1, lse1 = R.zeros((2, 4, 4), "f64"), R.zeros((2, 2, 4), "f64")
    R.attention_forward(out1, lse1, t(x, (2, 4, 12)), 2)
    x2 = list(x)
    for b in range(2):
        for s in range(1, 4):
            for c in range(4, 12):  # change k and v of every later position
                x2[(b * 4 + s) * 12 + c] += 1.0
    out2 = R.zeros((2, 4, 4), "f64")
    R.attention_forward(out2, R.zeros((2, 2, 4), "f64"), t(x2, (2, 4, 12)), 2)
    for b in range(2):
        assert vals(out1)[b * 16:b * 16 + 4] == vals(out2)[b * 16:b * 16 + 4]


def test_kv_attention_matches_attention_forward():
    B, T, C, nh = 2, 5, 6, 3
    qkv = t(rand(B * T * 3 * C, seed=31), (B, T, 3 * C))
    full = R.zeros((B, T, C), "f64")
    R.attention_forward(full, R.zeros((B, nh, T), "f64"), qkv, nh)
    q, k, v = qkv.narrow(2, 0, C), qkv.narrow(2, C, C), qkv.narrow(2, 2 * C, C)
    for start in range(T):  # one query at a time, as generation does
        step = R.zeros((B, 1, C), "f64")
        R.kv_attention(step, q.narrow(1, start, 1), k, v, nh, start)
        want = R.zeros((B, 1, C), "f64")
        R.copy(want, full.narrow(1, start, 1))
        assert_close(vals(step), vals(want), rtol=1e-12, atol=1e-12, what=f"start={start}")


def test_adamw_first_step():
    p, g = [0.5, -0.5, 1.0], [0.1, -0.2, 0.0]
    param, m, v = t(p, (3,)), R.zeros((3,), "f64"), R.zeros((3,), "f64")
    R.adamw_step(param, t(g, (3,)), m, v, lr=0.1, beta1=0.9, beta2=0.99, eps=1e-8,
                 weight_decay=0.01, step=1)
    # step 1: mhat = g, vhat = g^2, so the update is lr * (sign(g) + wd * p) (eps aside)
    for got, pi, gi in zip(vals(param), p, g):
        sign = (gi > 0) - (gi < 0)
        assert math.isclose(got, pi - 0.1 * (sign * abs(gi) / (abs(gi) + 1e-8) + 0.01 * pi))
    assert_close(vals(m), [0.1 * gi for gi in g], rtol=1e-12, atol=0)


def test_rng_ops_match_core_rng():
    key = _rng.stream_key(3, "init")
    u = R.zeros((9,), "f64")
    R.rng_uniform(u, key, 2)
    assert vals(u) == [_rng.to_uniform(w) for w in _rng.words(key, 2, 9)]
    z = R.zeros((5,), "f64")
    R.rng_normal(z, key, 4, 1.0, 2.0)
    want = [1.0 + 2.0 * v for v in _rng.normals_from_words(_rng.words(key, 4, 6), 5)]
    assert vals(z) == want
