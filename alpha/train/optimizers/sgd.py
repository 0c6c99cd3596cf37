"""SGD with momentum, PyTorch's rule (torch.optim.SGD with dampening 0): g += wd * param (L2
weight decay, coupled, inside the model's decay range), buf = momentum buf + g, param -= lr *
(nesterov ? g + momentum buf : buf). One momentum buffer of the parameters' size;
`backend.sgd_step` per run of parameters that share a decay setting. momentum 0 is plain SGD.
"""

from __future__ import annotations

from alpha.train.optimizers.common import Elementwise


class SGD(Elementwise):
    name = "sgd"
    buffers = (("sgd_momentum", "buf"),)

    def __init__(self, backend, model, tc):
        super().__init__(backend, model, tc.weight_decay)
        self.momentum, self.nesterov = tc.sgd_momentum, tc.sgd_nesterov

    def update(self, lr: float, grad_scale: float = 1.0) -> None:
        self.step += 1
        for param, grad, (buf,), wd in self.runs():
            self.backend.sgd_step(param, grad, buf, lr=lr, momentum=self.momentum,
                                  nesterov=self.nesterov, weight_decay=wd, grad_scale=grad_scale)
