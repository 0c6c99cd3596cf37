"""Adafactor (Shazeer & Stern 2018, "Adafactor: Adaptive Learning Rates with Sublinear Memory
Cost"), the variant of fairseq and Hugging Face with relative_step=False, scale_parameter=False
and no first moment: the learning rate is the schedule's, as for every other optimizer.

Each 2-D parameter keeps only the running means of g^2 + eps over its rows and over its columns
(R + C values instead of R * C); vectors keep the full running mean. The decay of step t is
beta2_t = 1 - t^-decay (decay 0.8 in the paper), so step 1 starts from the first gradient alone.
Each tensor's update is clipped to an RMS of at most `clip` (the paper's d = 1). Decoupled weight
decay inside the model's decay range. One `backend.adafactor_step` per parameter tensor: the
clipping is per tensor.

State: one flat buffer `adafactor_v` holding, in table order, (row, col) for each matrix and v
for each vector.
"""

from __future__ import annotations

from alpha.train.optimizers.common import Optimizer, entries, view


class Adafactor(Optimizer):
    name = "adafactor"

    def __init__(self, backend, model, tc):
        self.backend = backend
        self.eps, self.clip, self.decay = tc.adafactor_eps, tc.adafactor_clip, tc.adafactor_decay
        self.weight_decay = tc.weight_decay
        self.step = 0
        table = entries(model)
        size = sum(sum(e.shape) if len(e.shape) == 2 else e.numel for e in table)
        self.v = backend.zeros((size,), "f32")
        # (param view, grad view, row view, col view or None, decays)
        self.groups = []
        off = 0
        for e in table:
            if len(e.shape) == 2:
                R, C = e.shape
                row, col = self.v.narrow(0, off, R), self.v.narrow(0, off + R, C)
                off += R + C
            else:
                row, col = self.v.narrow(0, off, e.numel).view(e.shape), None
                off += e.numel
            self.groups.append((view(model.params, e), view(model.grads, e), row, col, e.decays))

    def beta2(self, step: int) -> float:
        """This step's second-moment decay, 1 - step^-decay (0 at step 1)."""
        return 1.0 - step ** (-self.decay)

    def update(self, lr: float, grad_scale: float = 1.0) -> None:
        self.step += 1
        beta2 = self.beta2(self.step)
        for param, grad, row, col, decays in self.groups:
            self.backend.adafactor_step(
                param, grad, row, col, lr=lr, beta2=beta2, eps=self.eps, clip=self.clip,
                weight_decay=self.weight_decay if decays else 0.0, grad_scale=grad_scale,
            )

    def state_tensors(self) -> dict:
        return {"adafactor_v": self.v}
