"""AdamW over flat buffers (Loshchilov & Hutter): the moments `m` and `v` are two more buffers of
the parameters' size, so one update is a handful of `backend.adamw_step` calls, one per run of
parameters that share a weight-decay setting. Decay is decoupled and applied only inside the
model's decay range (matmul weights); norms, biases and embeddings are not decayed.

Muon (muon.py) uses this class for everything it does not orthogonalise: `skip` leaves those
ranges out (their m and v stay zero).
"""

from __future__ import annotations

from alpha.train.optimizers.common import Elementwise


class AdamW(Elementwise):
    name = "adamw"
    buffers = (("m", "m"), ("v", "v"))

    def __init__(self, backend, model, tc, skip=()):
        super().__init__(backend, model, tc.weight_decay, skip)
        self.beta1, self.beta2, self.eps = tc.beta1, tc.beta2, tc.eps

    def update(self, lr: float, grad_scale: float = 1.0) -> None:
        self.step += 1  # bias correction uses the count including this update
        for param, grad, (m, v), wd in self.runs():
            self.backend.adamw_step(param, grad, m, v, lr=lr, beta1=self.beta1,
                                    beta2=self.beta2, eps=self.eps, weight_decay=wd,
                                    step=self.step, grad_scale=grad_scale)
