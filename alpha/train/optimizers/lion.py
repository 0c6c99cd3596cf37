"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"): one momentum buffer
`m` of the parameters' size; each update moves every parameter by exactly lr in the direction
sign(beta1 m + (1 - beta1) g), then m = beta2 m + (1 - beta2) g. Decoupled weight decay inside
the model's decay range. `backend.lion_step` per run of parameters that share a decay setting.

Its betas are the config's beta1/beta2 (the paper's defaults, 0.9 and 0.99, are Alpha's); the
paper's advice is an lr 3-10x smaller than AdamW's and a weight decay 3-10x larger.
"""

from __future__ import annotations

from alpha.train.optimizers.common import Elementwise


class Lion(Elementwise):
    name = "lion"
    buffers = (("lion_m", "m"),)

    def __init__(self, backend, model, tc):
        super().__init__(backend, model, tc.weight_decay)
        self.beta1, self.beta2 = tc.beta1, tc.beta2

    def update(self, lr: float, grad_scale: float = 1.0) -> None:
        self.step += 1
        for param, grad, (m,), wd in self.runs():
            self.backend.lion_step(param, grad, m, lr=lr, beta1=self.beta1, beta2=self.beta2,
                                   weight_decay=wd, grad_scale=grad_scale)
