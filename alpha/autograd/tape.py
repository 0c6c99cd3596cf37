"""The tape: reverse-mode automatic differentiation over the Backend protocol.

A `Var` is a value Tensor plus a gradient Tensor (None until something needs it). Each op in
`alpha.autograd.ops` computes its output with backend calls and, while the tape is recording, pushes
a backward closure. `Tape.backward(loss)` seeds d(loss) = 1 and runs the closures in reverse order
(the recording order is a topological order, so its reverse is too — micrograd's walk, without the
sort). Backward closures ADD into gradient buffers, the backend's convention, so a tensor used twice
collects both contributions.

Memory: every buffer an op needs (outputs, saved statistics, intermediate gradients) comes from the
tape's pool, keyed by (shape, dtype): the k-th request for a given (shape, dtype) after `reset()`
returns the same buffer every step. Nothing big is allocated after the first step, and a tensor the
caller got from a forward stays valid only until the next `reset()` (the next forward).

Parameter gradients are not pooled: they are views into the model's one flat gradient buffer, set
on the parameter Vars once; zeroing them is the model's job (one fill).

What this is not: a general tensor library. There is no graph object, no higher-order gradients,
and no gradients for integer inputs (token ids, targets).
"""

from __future__ import annotations


class Var:
    """A value in the computation: `data` (Tensor), `grad` (Tensor of data's shape, or None)."""

    __slots__ = ("data", "grad", "requires_grad")

    def __init__(self, data, grad=None, requires_grad: bool = True):
        self.data = data
        self.grad = grad
        self.requires_grad = requires_grad

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    def __repr__(self) -> str:
        d = self.data
        return f"Var(shape={d.shape}, dtype={d.dtype}, grad={self.grad is not None})"


class Tape:
    """Records backward closures and owns the pooled buffers of one model's steps."""

    def __init__(self, backend):
        self.backend = backend
        self.recording = True  # False: ops compute values only (eval, no gradients)
        self._ops: list = []  # [(output Var, backward closure)] in forward order
        self._pool: dict = {}  # (shape, dtype) -> [Tensor, ...]
        self._taken: dict = {}  # (shape, dtype) -> how many of the pool's buffers this step uses
        # after_op(i) runs right after the backward of recorded op i (None: nothing runs).
        # Data-parallel training starts a gradient bucket's all-reduce there (alpha.dist.grads).
        self.after_op = None

    # ---- buffers ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Start a new step: drop the recorded ops, hand every pooled buffer out again."""
        self._ops.clear()
        self._taken.clear()

    def buffer(self, shape: tuple, dtype: str = "f32"):
        """An uninitialised buffer for this step (the same one, step after step)."""
        key = (shape, dtype)
        k = self._taken.get(key, 0)
        self._taken[key] = k + 1
        bufs = self._pool.get(key)
        if bufs is None:
            bufs = self._pool[key] = []
        if k == len(bufs):
            bufs.append(self.backend.empty(shape, dtype))
        return bufs[k]

    # ---- gradients -------------------------------------------------------------------------
    def grad(self, v: Var):
        """v's gradient buffer to ADD into: allocated and zeroed on first use."""
        g = v.grad
        if g is None:
            g = v.grad = self.buffer(v.data.shape, v.data.dtype)
            self.backend.fill(g, 0.0)
        return g

    def grad_for_write(self, v: Var):
        """(buffer, accumulate): a fresh buffer may be overwritten (accumulate False), which saves
        the zero fill for ops that can overwrite (matmul)."""
        g = v.grad
        if g is None:
            g = v.grad = self.buffer(v.data.shape, v.data.dtype)
            return g, False
        return g, True

    def accumulate(self, v: Var, g) -> None:
        """v.grad += g. When v has no gradient yet it takes g itself (no copy). Safe because g is
        the gradient of an op's output, which nothing reads after that op's backward."""
        if v.grad is None:
            v.grad = g
        else:
            self.backend.axpy(v.grad, g, 1.0)

    # ---- recording and the backward walk -----------------------------------------------------
    def record(self, out: Var, backward) -> None:
        self._ops.append((out, backward))

    def recorded(self) -> list:
        """[(output Var, backward closure)] of this step, in recording order (read-only use)."""
        return self._ops

    def backward(self, loss: Var, grad=None) -> None:
        """d(loss)/d(every recorded input), added into the gradient buffers. loss has one element
        (seeded with 1), or `grad` (a Tensor of loss's shape) seeds a vector-Jacobian product."""
        if not self._ops:
            raise RuntimeError("nothing recorded: run a forward in training mode before backward")
        loss.grad = self.buffer(loss.data.shape, loss.data.dtype)
        if grad is not None:
            self.backend.copy(loss.grad, grad)
        elif loss.data.numel == 1:
            self.backend.fill(loss.grad, 1.0)
        else:
            raise ValueError(f"backward needs a one-element loss (or grad), got {loss.data.shape}")
        ops, after = self._ops, self.after_op
        for i in range(len(ops) - 1, -1, -1):
            out, backward = ops[i]
            if out.grad is not None:  # an output nothing used contributes nothing
                backward()
            if after is not None:
                after(i)
        self._ops.clear()  # closures hold Vars: let them go now
