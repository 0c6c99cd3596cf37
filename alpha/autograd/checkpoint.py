"""Activation checkpointing: run a segment of the forward (a transformer block) without keeping
its intermediates, and recompute them in the backward pass.

    y = checkpoint(t, sub, fn, x, stream, params)  # y = fn(sub, x, stream); keeps x, not the rest

The forward runs `fn` on `sub`, a second tape that does not record, and copies the result into a
buffer of the main tape `t`: of the whole segment only its input x (already a buffer of `t`) and
that copy stay alive until the backward. The main tape records ONE op for the segment. Its
backward resets `sub`, runs `fn` again on it — recording this time — from the same x, walks `sub`
backward from y's gradient, and hands x its gradient. Every checkpointed segment runs on the same
`sub`, and `sub` hands out its pooled buffers again at each reset, so at any moment the
intermediates of ONE segment exist, not of all of them: that is the memory saved, at the price of
a second forward per segment — but for the last one (`recompute=False`), whose backward comes
right after the forward ends: it records on `sub` at once, and nothing else runs on `sub` before
its backward walks it.

Why the gradients are the same bits as without checkpointing:
- the recompute calls the same ops on the same input values and parameters, in the same order,
  so every value it recomputes is the one the first forward computed (the kernels are
  deterministic: none of them depends on where its buffers live);
- dropout masks come from a counter-based stream (alpha.core.rng): the recompute replays the
  draws from the position the first forward started at, on a copy of the stream, so the masks
  are the same and the real stream moves once, as without checkpointing;
- inside the segment the backward closures run in the same order as they would on the main tape,
  so each gradient buffer receives the same additions in the same order; x's gradient is copied
  out (never added to a zero buffer, which could turn a -0.0 into 0.0).

`params` are the Vars whose gradients the segment's backward writes (the block's parameters). The
closure recorded on the main tape holds them, which is how the data-parallel gradient sync
(alpha.dist.grads.first_uses, which reads the recorded closures) learns that their buckets are
complete once this op's backward has run.
"""

from __future__ import annotations

import copy

from alpha.autograd.tape import Tape, Var


def checkpoint(t: Tape, sub: Tape, fn, x: Var, stream, params: tuple, *,
               recompute: bool = True) -> Var:
    """y = fn(sub, x, stream) with its intermediates recomputed in the backward pass.

    fn(tape, x, stream) -> Var builds the segment on `tape` from x, drawing dropout masks from
    `stream` (or None). When `t` is not recording (eval) this is simply fn on `t`.

    recompute=False is for the segment whose backward runs first of all those on `sub` (the last
    block): it records on `sub` in the forward already, and its backward walks those buffers
    without a second forward. Nothing else resets `sub` between the two, so it costs no memory
    (its intermediates are the one segment's worth `sub` holds) and saves one recompute."""
    if not t.recording:
        return fn(t, x, stream)
    be = t.backend
    start = None if stream is None else stream.position  # where the segment's draws begin

    sub.reset()
    sub.recording = not recompute
    xin = Var(x.data)  # the segment's own input Var: its gradient starts empty
    out = fn(sub, xin, stream)  # the buffers go back to `sub` at its next reset
    y = Var(t.buffer(out.data.shape, out.data.dtype))
    be.copy(y.data, out.data)

    def backward():
        _ = params  # held by this closure for the gradient sync's sake (see the module doc)
        nonlocal xin, out
        if recompute:
            replay = None
            if stream is not None:
                replay = copy.copy(stream)  # the same key (and rank layout), back at `start`
                replay.position = start
            sub.reset()
            sub.recording = True
            xin = Var(x.data)
            out = fn(sub, xin, replay)
        sub.backward(out, y.grad)
        if not x.requires_grad or xin.grad is None:
            return
        if x.grad is None:
            x.grad = t.buffer(x.data.shape, x.data.dtype)
            be.copy(x.grad, xin.grad)  # xin.grad is a buffer of `sub`: reused by the next segment
        else:
            be.axpy(x.grad, xin.grad, 1.0)
    t.record(y, backward)
    return y
