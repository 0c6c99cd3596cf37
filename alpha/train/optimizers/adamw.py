"""AdamW over flat buffers (Loshchilov & Hutter): the moments `m` and `v` are two more buffers of
the parameters' size, so one update is a handful of `backend.adamw_step` calls, one per run of
parameters that share a weight-decay setting. Decay is decoupled and applied only inside the
model's decay range (matmul weights); norms, biases and embeddings are not decayed.

Muon (muon.py) uses this class for everything it does not orthogonalise: `skip` leaves those
ranges out (their m and v stay zero).
"""

from __future__ import annotations

from alpha.train.optim import merge_segments
from alpha.train.optimizers.common import Optimizer


def _without(segments, skip):
    """`segments` (start, length, decays) minus the [start, end) ranges in `skip`."""
    out = []
    for start, length, decays in segments:
        pieces = [(start, start + length)]
        for a, b in skip:
            pieces = [q for s, e in pieces for q in ((s, min(e, a)), (max(s, b), e)) if q[1] > q[0]]
        out += [(s, e - s, decays) for s, e in pieces]
    return out


class AdamW(Optimizer):
    name = "adamw"

    def __init__(self, backend, model, tc, skip=()):
        params, grads = model.params.view(-1), model.grads.view(-1)
        if params.numel != grads.numel:
            raise ValueError(f"params ({params.numel}) and grads ({grads.numel}) differ in size")
        self.backend = backend
        self.params, self.grads = params, grads
        self.m = backend.zeros((params.numel,), "f32")
        self.v = backend.zeros((params.numel,), "f32")
        self.beta1, self.beta2, self.eps = tc.beta1, tc.beta2, tc.eps
        self.weight_decay = tc.weight_decay
        self.step = 0  # updates applied so far (bias correction uses step + 1)
        self.segments = _without(merge_segments(params.numel, [model.decay_range]), skip)

    def update(self, lr: float, grad_scale: float = 1.0) -> None:
        self.step += 1
        for start, length, decays in self.segments:
            self.backend.adamw_step(
                self.params.narrow(0, start, length),
                self.grads.narrow(0, start, length),
                self.m.narrow(0, start, length),
                self.v.narrow(0, start, length),
                lr=lr,
                beta1=self.beta1,
                beta2=self.beta2,
                eps=self.eps,
                weight_decay=self.weight_decay if decays else 0.0,
                step=self.step,
                grad_scale=grad_scale,
            )

    def state_tensors(self) -> dict:
        return {"m": self.m, "v": self.v}
