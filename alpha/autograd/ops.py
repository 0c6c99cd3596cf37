"""Differentiable ops: each computes its output with backend calls and, right below, defines its
backward (micrograd's shape). Names follow llm.c: the `layernorm` op here calls the backend's
`layernorm_forward` / `layernorm_backward`, so one grep finds the op everywhere.

Every op takes the tape first, then Vars (and plain Tensors for integer inputs), then sizes and
scalars. Outputs come from the tape's pool; backward closures add into gradient buffers.

Matmul weights are stored (in, out) — GPT-2's Conv1D layout — so `linear` computes x @ w + b; the
LM head reads the token embedding (V, C) and passes `transpose_w=True` (x @ wte^T).
"""

from __future__ import annotations

from alpha.autograd.tape import Tape, Var


# ---- linear layers --------------------------------------------------------------------------

def linear(t: Tape, x: Var, w: Var, b: Var | None = None, *, transpose_w: bool = False) -> Var:
    """out = x @ w + b. x (..., K); w (K, N), or (N, K) with transpose_w; b (N,) or None."""
    be = t.backend
    K = x.data.shape[-1]
    N = w.data.shape[0] if transpose_w else w.data.shape[1]
    out = t.buffer(x.data.shape[:-1] + (N,), x.data.dtype)
    x2 = x.data.view(-1, K)  # (BT, K)
    out2 = out.view(-1, N)  # (BT, N)
    be.matmul(out2, x2, w.data, trans_b=transpose_w, bias=None if b is None else b.data)
    y = Var(out)

    if t.recording:
        def backward():
            dy = y.grad.view(-1, N)  # (BT, N)
            if x.requires_grad:
                dx, acc = t.grad_for_write(x)
                # dx = dy @ w^T  (or dy @ w when w is stored (N, K))
                be.matmul(dx.view(-1, K), dy, w.data, trans_b=not transpose_w, accumulate=acc)
            if w.requires_grad:
                if transpose_w:
                    be.matmul(w.grad, dy, x2, trans_a=True, accumulate=True)  # (N, K) += dy^T x
                else:
                    be.matmul(w.grad, x2, dy, trans_a=True, accumulate=True)  # (K, N) += x^T dy
            if b is not None and b.requires_grad:
                be.sum_to(b.grad, dy)  # (N,) += column sums
        t.record(y, backward)
    return y


# ---- elementwise ----------------------------------------------------------------------------

def add(t: Tape, a: Var, b: Var) -> Var:
    """out = a + b; b may broadcast against a (a bias, the positional embedding)."""
    be = t.backend
    out = t.buffer(a.data.shape, a.data.dtype)
    be.binary(out, "add", a.data, b.data)
    y = Var(out)

    if t.recording:
        _record_add(t, y, a, b)
    return y


def _record_add(t: Tape, y: Var, a: Var, b: Var) -> None:
    """Records the backward of y = a + b (b may broadcast against a)."""
    be = t.backend
    same = a.data.shape == b.data.shape

    def backward():
        dy = y.grad
        if b.requires_grad:
            if same and b.grad is None:
                g = b.grad = t.buffer(dy.shape, dy.dtype)
                be.copy(g, dy)
            elif same:
                be.axpy(b.grad, dy, 1.0)
            else:
                be.sum_to(t.grad(b), dy)
        if a.requires_grad:
            t.accumulate(a, dy)  # the residual stream's gradient passes through, no copy
    t.record(y, backward)


def dropout(t: Tape, x: Var, p: float, stream) -> Var:
    """Inverted dropout with probability p; masks from uniforms of `stream` (the Rng's "dropout"
    stream). Identity (the same Var) when p is 0 or stream is None (eval)."""
    if p <= 0.0 or stream is None:
        return x
    be = t.backend
    u = t.buffer(x.data.shape, "f32")
    be.rng_uniform(u, stream.key, stream.take(u.numel))
    out = t.buffer(x.data.shape, x.data.dtype)
    be.dropout_forward(out, x.data, u, p)
    y = Var(out)

    if t.recording:
        def backward():
            be.dropout_backward(t.grad(x), y.grad, u, p)
        t.record(y, backward)
    return y


def grad_scale(t: Tape, x: Var, s: float) -> Var:
    """Identity forward; the backward multiplies the gradient by s (GLM-130B's embedding
    gradient shrink: x*s + detach(x)*(1 - s)). Returns x itself when s is 1."""
    if s == 1.0 or not t.recording:
        return x
    be = t.backend
    y = Var(x.data)

    def backward():
        dy = y.grad
        be.binary_scalar(dy, "mul", dy, s)  # in place: nothing reads y's gradient after this
        t.accumulate(x, dy)
    t.record(y, backward)
    return y


def _pointwise(t: Tape, x: Var, forward, backward_op, out_last: int | None = None) -> Var:
    """An activation: out = f(x), dx += f'(x) * dout (backend forward/backward pair)."""
    shape = x.data.shape if out_last is None else x.data.shape[:-1] + (out_last,)
    out = t.buffer(shape, x.data.dtype)
    forward(out, x.data)
    y = Var(out)

    if t.recording:
        def backward():
            backward_op(t.grad(x), y.grad, x.data)
        t.record(y, backward)
    return y


def gelu(t: Tape, x: Var) -> Var:
    return _pointwise(t, x, t.backend.gelu_forward, t.backend.gelu_backward)


def relu(t: Tape, x: Var) -> Var:
    return _pointwise(t, x, t.backend.relu_forward, t.backend.relu_backward)


def silu(t: Tape, x: Var) -> Var:
    return _pointwise(t, x, t.backend.silu_forward, t.backend.silu_backward)


def swiglu(t: Tape, x: Var) -> Var:
    """x (..., 2H) -> (..., H) = silu(x[..., :H]) * x[..., H:]."""
    return _pointwise(t, x, t.backend.swiglu_forward, t.backend.swiglu_backward,
                      out_last=x.data.shape[-1] // 2)


def relu2(t: Tape, x: Var) -> Var:
    """relu(x)^2, the nanoGPT speedrun's MLP activation."""
    return _pointwise(t, x, t.backend.relu2_forward, t.backend.relu2_backward)


ACTIVATIONS = {"gelu": gelu, "relu": relu, "silu": silu, "swiglu": swiglu, "relu2": relu2}


# ---- normalisation --------------------------------------------------------------------------

def layernorm(t: Tape, x: Var, w: Var, b: Var | None, eps: float = 1e-5) -> Var:
    """LayerNorm over the last dim. x (..., C); w, b (C,) (b may be None)."""
    be = t.backend
    dtype = x.data.dtype
    out = t.buffer(x.data.shape, dtype)
    mean = t.buffer(x.data.shape[:-1], dtype)  # (...,) saved for the backward
    rstd = t.buffer(x.data.shape[:-1], dtype)
    be.layernorm_forward(out, mean, rstd, x.data, w.data, None if b is None else b.data, eps)
    y = Var(out)

    if t.recording:
        def backward():
            be.layernorm_backward(t.grad(x), w.grad, None if b is None else b.grad, y.grad,
                                  x.data, w.data, mean, rstd)
        t.record(y, backward)
    return y


def add_layernorm(t: Tape, x: Var, y: Var, w: Var, b: Var | None,
                  eps: float = 1e-5) -> tuple[Var, Var]:
    """(s, layernorm(s)) with s = x + y: a residual add and the layernorm after it, computed by
    one backend call (one pass on helios). x, y (..., C) of one shape; w, b (C,) (b may be
    None). The backward is `add`'s and `layernorm`'s, recorded in the same order as the two ops
    (the same bits): the layernorm's dx kernel adds into s's gradient, which already holds the
    residual stream's (the later add passed it through), so that sum costs no pass either."""
    be = t.backend
    dtype = x.data.dtype
    s = t.buffer(x.data.shape, dtype)
    out = t.buffer(x.data.shape, dtype)
    mean = t.buffer(x.data.shape[:-1], dtype)  # (...,) saved for the backward
    rstd = t.buffer(x.data.shape[:-1], dtype)
    be.add_layernorm_forward(s, out, mean, rstd, x.data, y.data, w.data,
                             None if b is None else b.data, eps)
    sv, n = Var(s), Var(out)

    if t.recording:
        _record_add(t, sv, x, y)

        def backward():
            be.layernorm_backward(t.grad(sv), w.grad, None if b is None else b.grad, n.grad,
                                  s, w.data, mean, rstd)
        t.record(n, backward)
    return sv, n


def rmsnorm(t: Tape, x: Var, w: Var, eps: float = 1e-5) -> Var:
    """RMSNorm over the last dim: x * rsqrt(mean(x^2) + eps) * w. x (..., C); w (C,)."""
    be = t.backend
    out = t.buffer(x.data.shape, x.data.dtype)
    rstd = t.buffer(x.data.shape[:-1], x.data.dtype)  # (...,) saved for the backward
    be.rmsnorm_forward(out, rstd, x.data, w.data, eps)
    y = Var(out)

    if t.recording:
        def backward():
            be.rmsnorm_backward(t.grad(x), w.grad, y.grad, x.data, w.data, rstd)
        t.record(y, backward)
    return y


def qk_norm(t: Tape, qkv: Var, wq: Var, wk: Var, n_head: int, eps: float = 1e-5) -> Var:
    """QK-norm on a packed qkv (B, T, 3C) -> a new packed qkv: every head of q is RMS-normalised
    over its hs = C / n_head dims with the weight wq (hs,), every head of k with wk (hs,) (one
    weight per projection, shared by the heads: Gemma 3's and Qwen 3's q_norm/k_norm); v is
    copied. The kernels walk the heads in place: rows (B*T, n_head) at strides (3C, hs)."""
    be = t.backend
    B, T, C3 = qkv.data.shape
    H, hs = 3 * n_head, C3 // (3 * n_head)
    dtype = qkv.data.dtype
    out = t.buffer((B, T, C3), dtype)
    x3 = qkv.data.view(B * T, H, hs)  # (BT, [q heads | k heads | v heads], hs)
    o3 = out.view(B * T, H, hs)
    parts = ((0, wq), (n_head, wk))  # (first head, weight) of q and of k
    rstds = [t.buffer((B * T, n_head), dtype) for _ in parts]
    for (h0, w), rstd in zip(parts, rstds):
        be.rmsnorm_forward(o3.narrow(1, h0, n_head), rstd, x3.narrow(1, h0, n_head), w.data, eps)
    be.copy(o3.narrow(1, 2 * n_head, n_head), x3.narrow(1, 2 * n_head, n_head))  # v
    y = Var(out)

    if t.recording:
        def backward():
            g3 = t.grad(qkv).view(B * T, H, hs)
            dy = y.grad
            if not dy.is_contiguous:
                dy = t.buffer((B, T, C3), dtype)
                be.copy(dy, y.grad)
            dy3 = dy.view(B * T, H, hs)
            for (h0, w), rstd in zip(parts, rstds):
                be.rmsnorm_backward(g3.narrow(1, h0, n_head), w.grad, dy3.narrow(1, h0, n_head),
                                    x3.narrow(1, h0, n_head), w.data, rstd)
            be.axpy(g3.narrow(1, 2 * n_head, n_head), dy3.narrow(1, 2 * n_head, n_head))
        t.record(y, backward)
    return y


# ---- embeddings -----------------------------------------------------------------------------

def embedding(t: Tape, ids, table: Var) -> Var:
    """out (..., C) = table[ids]; ids an i32 Tensor (...,), table (V, C)."""
    be = t.backend
    out = t.buffer(ids.shape + (table.data.shape[1],), table.data.dtype)
    be.embedding_forward(out, ids, table.data)
    y = Var(out)

    if t.recording:
        def backward():
            if table.requires_grad:
                be.embedding_backward(table.grad, y.grad, ids)
        t.record(y, backward)
    return y


# ---- attention ------------------------------------------------------------------------------

def attention(t: Tape, qkv: Var, n_head: int, softcap: float = 0.0) -> Var:
    """Fused causal self-attention: qkv (B, T, 3C) packed [q | k | v] -> out (B, T, C). With
    softcap c > 0 the scaled scores are capped to c * tanh(s / c) before the softmax."""
    be = t.backend
    B, T, C3 = qkv.data.shape
    dtype = qkv.data.dtype
    out = t.buffer((B, T, C3 // 3), dtype)
    lse = t.buffer((B, n_head, T), dtype)  # log-sum-exp per query, saved for the backward
    be.attention_forward(out, lse, qkv.data, n_head, softcap)
    y = Var(out)

    if t.recording:
        def backward():
            be.attention_backward(t.grad(qkv), y.grad, qkv.data, out, lse, n_head, softcap)
        t.record(y, backward)
    return y


def rope(t: Tape, qkv: Var, positions, cos, sin, n_head: int) -> Var:
    """Rotary positions on packed qkv (B, T, 3C): q and k of every head turned by their
    positions (i32 (B, T) or (T,)), v unchanged; cos, sin the (L, hs/2) tables of
    `alpha.model.rope.tables`. Returns a new packed qkv."""
    be = t.backend
    out = t.buffer(qkv.data.shape, qkv.data.dtype)
    be.rope_forward(out, qkv.data, positions, cos, sin, n_head)
    y = Var(out)

    if t.recording:
        def backward():
            be.rope_backward(t.grad(qkv), y.grad, positions, cos, sin, n_head)
        t.record(y, backward)
    return y


# ---- loss -----------------------------------------------------------------------------------

def softcap(t: Tape, x: Var, cap: float) -> Var:
    """cap * tanh(x / cap): Gemma 2's logit soft-cap, before the cross-entropy (and in sampling).
    Its own elementwise op rather than fused into the cross-entropy, because the capped logits
    are what the model returns and what inference samples from."""
    be = t.backend
    out = t.buffer(x.data.shape, x.data.dtype)
    be.softcap_forward(out, x.data, cap)
    y = Var(out)

    if t.recording:
        def backward():
            be.softcap_backward(t.grad(x), y.grad, out, cap)
        t.record(y, backward)
    return y


def crossentropy(t: Tape, logits: Var, targets) -> Var:
    """Mean cross-entropy over the positions whose target is not -1 (PyTorch's ignore_index
    mean): a target of -1 adds nothing to the sum nor to the count. logits (..., V); targets
    i32 (...,). Returns a (1,) Var (NaN when every target is -1, as in PyTorch)."""
    be = t.backend
    V = logits.data.shape[-1]
    dtype = logits.data.dtype
    logits2 = logits.data.view(-1, V)  # (N, V)
    targets1 = targets.view(-1)  # (N,)
    N = logits2.shape[0]
    losses = t.buffer((N,), dtype)
    be.crossentropy_forward(losses, logits2, targets1)
    # the count of kept targets, on the device: min(target + 1, 1) is 0 for -1 and 1 otherwise
    kept = t.buffer((N,), dtype)
    be.cast(kept, targets1)
    be.binary_scalar(kept, "add", kept, 1.0)
    be.binary_scalar(kept, "min", kept, 1.0)
    count = t.buffer((1,), dtype)
    be.sum(count, kept, (0,), keepdim=True)
    loss = t.buffer((1,), dtype)
    be.sum(loss, losses, (0,), keepdim=True)
    be.binary(loss, "div", loss, count)
    y = Var(loss)

    if t.recording:
        def backward():
            dlosses = t.buffer((N,), dtype)
            be.fill(dlosses, 1.0)
            be.binary(dlosses, "mul", dlosses, y.grad)  # (N,) * (1,)
            be.binary(dlosses, "div", dlosses, count)  # d(mean)/d(loss_i) * dloss
            be.crossentropy_backward(t.grad(logits).view(-1, V), dlosses, logits2, targets1)
        t.record(y, backward)
    return y
