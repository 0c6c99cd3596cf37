"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"): one momentum buffer
`m` of the parameters' size; each update moves every parameter by exactly lr in the direction
sign(beta1 m + (1 - beta1) g), then m = beta2 m + (1 - beta2) g. Decoupled weight decay inside
the model's decay range. `backend.lion_step` per run of parameters that share a decay setting.

Its betas are the config's beta1/beta2 (the paper's defaults, 0.9 and 0.99, are Alpha's); the
paper's advice is an lr 3-10x smaller than AdamW's and a weight decay 3-10x larger.
"""

from __future__ import annotations

from alpha.train.optim import merge_segments
from alpha.train.optimizers.common import Optimizer


class Lion(Optimizer):
    name = "lion"

    def __init__(self, backend, model, tc):
        self.backend = backend
        self.params, self.grads = model.params.view(-1), model.grads.view(-1)
        self.m = backend.zeros((self.params.numel,), "f32")
        self.beta1, self.beta2 = tc.beta1, tc.beta2
        self.weight_decay = tc.weight_decay
        self.step = 0
        self.segments = merge_segments(self.params.numel, [model.decay_range])

    def update(self, lr: float, grad_scale: float = 1.0) -> None:
        self.step += 1
        for start, length, decays in self.segments:
            self.backend.lion_step(
                self.params.narrow(0, start, length),
                self.grads.narrow(0, start, length),
                self.m.narrow(0, start, length),
                lr=lr, beta1=self.beta1, beta2=self.beta2,
                weight_decay=self.weight_decay if decays else 0.0, grad_scale=grad_scale,
            )

    def state_tensors(self) -> dict:
        return {"lion_m": self.m}
