"""SGD with momentum, PyTorch's rule (torch.optim.SGD with dampening 0): g += wd * param (L2
weight decay, coupled, inside the model's decay range), buf = momentum buf + g, param -= lr *
(nesterov ? g + momentum buf : buf). One momentum buffer of the parameters' size;
`backend.sgd_step` per run of parameters that share a decay setting. momentum 0 is plain SGD.
"""

from __future__ import annotations

from alpha.train.optim import merge_segments
from alpha.train.optimizers.common import Optimizer


class SGD(Optimizer):
    name = "sgd"

    def __init__(self, backend, model, tc):
        self.backend = backend
        self.params, self.grads = model.params.view(-1), model.grads.view(-1)
        self.buf = backend.zeros((self.params.numel,), "f32")
        self.momentum, self.nesterov = tc.sgd_momentum, tc.sgd_nesterov
        self.weight_decay = tc.weight_decay
        self.step = 0
        self.segments = merge_segments(self.params.numel, [model.decay_range])

    def update(self, lr: float, grad_scale: float = 1.0) -> None:
        self.step += 1
        for start, length, decays in self.segments:
            self.backend.sgd_step(
                self.params.narrow(0, start, length),
                self.grads.narrow(0, start, length),
                self.buf.narrow(0, start, length),
                lr=lr, momentum=self.momentum, nesterov=self.nesterov,
                weight_decay=self.weight_decay if decays else 0.0, grad_scale=grad_scale,
            )

    def state_tensors(self) -> dict:
        return {"sgd_momentum": self.buf}
