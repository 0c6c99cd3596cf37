"""Autograd: every op's backward against central finite differences (float64, reference backend),
gradient accumulation, and the tape's memory staying flat over 100 training steps."""

from __future__ import annotations

import gc
import math
import sys
import tracemalloc

import pytest

from alpha.autograd import ops
from alpha.autograd.tape import Tape, Var
from alpha.core.config import ModelConfig
from alpha.core.rng import Rng, Stream
from alpha.tensor import get_backend
from alpha.tensor.tensor import Tensor

REF = get_backend("reference")


CPU = get_backend("cpu")


def rand(rng: Stream, shape, scale=1.0):
    n = math.prod(shape)
    return REF.from_array([scale * z for z in rng.normal(n)], shape, "f64")


def leaf(rng, shape, scale=1.0):
    return Var(rand(rng, shape, scale), REF.zeros(shape, "f64"))


def check_grads(build, leaves: dict, *, entries=12, h=1e-5, tol=1e-6, seed=0):
    """build(tape) -> output Var; compares d(sum(R * out))/d(leaf) with finite differences."""
    tape = Tape(REF)
    out = build(tape)
    r = Stream((seed + 7, 99))
    R = REF.from_array(r.normal(out.data.numel), out.data.shape, "f64")
    Rl = list(R.to_array())
    tape.backward(out, R)

    def objective():
        tape.reset()
        tape.recording = False
        y = build(tape)
        return math.fsum(a * b for a, b in zip(y.data.to_array(), Rl))

    pick = Stream((seed + 3, 5))
    for name, v in leaves.items():
        base = list(v.data.to_array())
        grad = list(v.grad.to_array())
        n = len(base)
        idx = sorted(set(pick.randint(min(entries, n), n))) if n > entries else range(n)
        for i in idx:
            vals = list(base)
            vals[i] = base[i] + h
            REF.copy(v.data, REF.from_array(vals, v.data.shape, "f64"))
            fp = objective()
            vals[i] = base[i] - h
            REF.copy(v.data, REF.from_array(vals, v.data.shape, "f64"))
            fm = objective()
            REF.copy(v.data, REF.from_array(base, v.data.shape, "f64"))
            fd = (fp - fm) / (2 * h)
            assert abs(fd - grad[i]) <= tol * (1 + abs(fd)), (name, i, fd, grad[i])


def test_linear_in_out_layout():
    s = Stream((1, 1))
    x, w, b = leaf(s, (2, 3, 4)), leaf(s, (4, 5)), leaf(s, (5,))
    check_grads(lambda t: ops.linear(t, x, w, b), {"x": x, "w": w, "b": b})


def test_linear_transposed_weight():
    s = Stream((1, 2))
    x, w = leaf(s, (2, 3, 4)), leaf(s, (6, 4))
    check_grads(lambda t: ops.linear(t, x, w, transpose_w=True), {"x": x, "w": w})


def test_add_broadcast_and_same_shape():
    s = Stream((1, 3))
    a, b, c = leaf(s, (2, 3, 4)), leaf(s, (3, 4)), leaf(s, (2, 3, 4))
    check_grads(lambda t: ops.add(t, ops.add(t, a, b), c), {"a": a, "b": b, "c": c})


def test_reused_input_accumulates():
    """x feeds two ops: its gradient is the sum of both paths (residual-stream shape)."""
    s = Stream((1, 4))
    x, w, g, b = leaf(s, (2, 3, 4)), leaf(s, (4, 4)), leaf(s, (4,)), leaf(s, (4,))

    def build(t):
        y = ops.linear(t, ops.layernorm(t, x, g, b), w)
        return ops.add(t, x, y)

    check_grads(build, {"x": x, "w": w, "g": g, "b": b})


def test_intermediate_used_many_times_collects_every_gradient():
    """An intermediate h (no gradient buffer until its first consumer's backward) feeds four
    adds and two linears, so every way the tape ADDS into a gradient that already exists is
    taken: `accumulate` with no buffer (takes dy) and into a live one, add's same-shape b path
    fresh (copy) and existing (axpy), `grad_for_write` with accumulate=True (both linears reach
    h after its buffer exists) and fresh (x has no buffer)."""
    s = Stream((1, 9))
    x = Var(rand(s, (2, 3, 4)))
    w1, w2, w3, c, c2 = leaf(s, (4, 4)), leaf(s, (4, 4)), leaf(s, (4, 4)), leaf(s, (2, 3, 4)), \
        leaf(s, (4,))

    def build(t):
        x.grad = None  # each backward starts x without a buffer
        h = ops.linear(t, x, w1)
        m1 = ops.add(t, h, c)  # recorded early: accumulates into h's existing gradient
        p = ops.linear(t, h, w2)  # grad_for_write(h) with accumulate=True
        q = ops.linear(t, h, w3)
        r = ops.add(t, p, h)  # h as b: axpy into its existing gradient
        s_ = ops.add(t, q, h)
        m2 = ops.add(t, h, c2)  # recorded last: the first to reach h (h takes dy itself)
        return ops.add(t, ops.add(t, ops.add(t, r, s_), m1), m2)

    check_grads(build, {"x": x, "w1": w1, "w2": w2, "w3": w3, "c": c, "c2": c2})


@pytest.mark.parametrize("bias", [True, False])
def test_layernorm(bias):
    s = Stream((1, 5))
    x, g = leaf(s, (2, 3, 6)), leaf(s, (6,))
    b = leaf(s, (6,)) if bias else None
    leaves = {"x": x, "g": g, **({"b": b} if bias else {})}
    check_grads(lambda t: ops.layernorm(t, x, g, b), leaves)


def test_rmsnorm():
    s = Stream((1, 15))
    x, g = leaf(s, (2, 3, 6)), leaf(s, (6,))
    check_grads(lambda t: ops.rmsnorm(t, x, g), {"x": x, "g": g})


def test_qk_norm_on_packed_qkv():
    """q and k heads normalised with their own weights, v passed through; gradients reach the
    whole packed qkv and both weights."""
    s = Stream((1, 16))
    n_head, hs = 2, 3
    qkv, wq, wk = leaf(s, (2, 3, 3 * n_head * hs)), leaf(s, (hs,)), leaf(s, (hs,))
    check_grads(lambda t: ops.qk_norm(t, qkv, wq, wk, n_head), {"qkv": qkv, "wq": wq, "wk": wk},
                entries=36)


def test_qk_norm_forward_is_rmsnorm_per_head():
    s = Stream((1, 17))
    n_head, hs, C = 2, 4, 8
    qkv, wq, wk = leaf(s, (1, 2, 3 * C)), leaf(s, (hs,)), leaf(s, (hs,))
    y = ops.qk_norm(Tape(REF), qkv, wq, wk, n_head, 1e-5).data.to_array()
    x = qkv.data.to_array()
    for row in range(2):
        for part, w in ((0, wq), (1, wk), (2, None)):
            for h in range(n_head):
                at = row * 3 * C + part * C + h * hs
                head = x[at:at + hs]
                if w is None:
                    want = head
                else:
                    r = 1.0 / math.sqrt(math.fsum(v * v for v in head) / hs + 1e-5)
                    want = [v * r * wi for v, wi in zip(head, w.data.to_array())]
                assert y[at:at + hs] == pytest.approx(want, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("cap", [0.5, 30.0])
def test_softcap(cap):
    s = Stream((1, 18))
    x = leaf(s, (2, 3, 5), scale=2.0 * cap)
    check_grads(lambda t: ops.softcap(t, x, cap), {"x": x}, entries=30)


@pytest.mark.parametrize("act", ["gelu", "relu", "silu", "swiglu", "relu2"])
def test_activations(act):
    s = Stream((1, 6))
    x = leaf(s, (2, 3, 8))
    check_grads(lambda t: ops.ACTIVATIONS[act](t, x), {"x": x}, entries=48)


def test_dropout_same_mask_forward_and_backward():
    s = Stream((1, 7))
    x = leaf(s, (2, 3, 8))
    stream = Stream((42, 43))

    def build(t):
        stream.position = 0  # the same mask every evaluation
        return ops.dropout(t, x, 0.4, stream)

    check_grads(build, {"x": x}, entries=48)
    tape = Tape(REF)
    tape.recording = False
    stream.position = 0
    y = ops.dropout(tape, x, 0.4, stream).data.to_array()
    zeros = sum(1 for v in y if v == 0.0)
    assert 0 < zeros < len(y)
    assert stream.position == 48  # one word per element
    assert ops.dropout(tape, x, 0.0, stream) is x  # p = 0: identity
    assert ops.dropout(tape, x, 0.4, None) is x  # eval: identity


def test_embedding():
    s = Stream((1, 8))
    table = leaf(s, (5, 3))
    ids = REF.from_array([0, 4, 4, 1, 2, 0], (2, 3), "i32")
    check_grads(lambda t: ops.embedding(t, ids, table), {"table": table})


def test_attention():
    s = Stream((1, 9))
    qkv = leaf(s, (2, 4, 12))
    check_grads(lambda t: ops.attention(t, qkv, 2), {"qkv": qkv}, entries=40)


def test_crossentropy_mean():
    s = Stream((1, 10))
    logits = leaf(s, (2, 3, 5))
    targets = REF.from_array([0, 4, 2, 1, -1, 3], (2, 3), "i32")
    check_grads(lambda t: ops.crossentropy(t, logits, targets), {"logits": logits}, entries=30)
    tape = Tape(REF)
    tape.recording = False
    loss = ops.crossentropy(tape, logits, targets).data.item()
    rows = [list(logits.data.to_array())[i * 5:(i + 1) * 5] for i in range(6)]
    ref = 0.0
    for row, tg in zip(rows, [0, 4, 2, 1, -1, 3]):
        if tg >= 0:
            ref += math.log(sum(math.exp(v) for v in row)) - row[tg]
    assert abs(loss - ref / 5) < 1e-12  # the mean over the 5 kept targets (-1 is ignored)


def test_backward_errors():
    tape = Tape(REF)
    x = leaf(Stream((1, 11)), (2, 2))
    with pytest.raises(RuntimeError):
        tape.backward(x)
    y = ops.gelu(tape, x)
    with pytest.raises(ValueError):
        tape.backward(y)  # not a scalar and no grad given


# ---- memory stays flat over many steps ------------------------------------------------------

def _count_tensors() -> int:
    return sum(1 for o in gc.get_objects() if type(o) is Tensor)


def _run_steps(backend, steps, trace):
    """`steps` training steps after warm-up: the pool, the live Tensor count and the number of
    live Python allocations stay put (tracemalloc too where the backend's math is in C: under
    tracemalloc the reference backend's per-float allocations make it 15x slower)."""
    from alpha.model import GPT

    cfg = ModelConfig(vocab_size=11, n_layer=1, n_head=2, n_embd=8, block_size=8, dropout=0.1)
    model = GPT(cfg, backend, Rng(3))
    ids = backend.from_array([i % 11 for i in range(8)], (2, 4), "i32")
    tg = backend.from_array([(i + 1) % 11 for i in range(8)], (2, 4), "i32")

    def step():
        model.zero_grad()
        model.forward(ids, tg)
        model.backward()

    for _ in range(3):  # warm up: the pool fills on the first step
        step()
    pooled = _pooled_bytes(model.tape)
    if trace:
        tracemalloc.start()
    try:
        for _ in range(10 if trace else 1):  # under tracing, reused objects first count as new
            step()
        gc.collect()
        tensors = _count_tensors()
        before = tracemalloc.get_traced_memory()[0] if trace else 0
        blocks = sys.getallocatedblocks()
        for _ in range(steps):
            step()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0] if trace else 0
        blocks_after = sys.getallocatedblocks()
    finally:
        if trace:
            tracemalloc.stop()
    assert _pooled_bytes(model.tape) == pooled
    assert _count_tensors() <= tensors
    assert blocks_after - blocks < 300, f"{blocks_after - blocks} more live allocations"
    assert after - before < 16 * 1024, f"memory grew by {after - before} bytes over {steps} steps"


def _pooled_bytes(tape) -> int:
    return sum(t.nbytes for bufs in tape._pool.values() for t in bufs)


def test_memory_flat_over_100_steps_reference():
    _run_steps(REF, 100, trace=False)


def test_memory_flat_over_100_steps_cpu():
    _run_steps(CPU, 100, trace=True)
