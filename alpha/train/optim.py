"""AdamW over flat buffers, plus the global gradient norm.

The model keeps all parameters in one flat f32 buffer and all gradients in another, laid out from
its parameter table; the moments `m` and `v` are two more buffers of the same size. So one update
is a handful of `backend.adamw_step` calls: one per run of parameters that share a weight-decay
setting. Weight decay is decoupled (AdamW, Loshchilov & Hutter) and applied only inside the
model's decay ranges (matmul weights); norms, biases and embeddings are not decayed.

Clipping never touches the gradient buffer: its factor is passed as adamw's `grad_scale`.
"""

from __future__ import annotations

import math


def merge_segments(numel: int, decay_ranges) -> list[tuple[int, int, bool]]:
    """Cover [0, numel) with (start, length, decays) runs from the (start, end) decay ranges."""
    ranges = sorted((int(a), int(b)) for a, b in decay_ranges if b > a)
    out: list[tuple[int, int, bool]] = []

    def push(start, end, decays):
        if end <= start:
            return
        if out and out[-1][2] == decays and out[-1][0] + out[-1][1] == start:
            s, n, d = out[-1]
            out[-1] = (s, n + end - start, d)
        else:
            out.append((start, end - start, decays))

    pos = 0
    for a, b in ranges:
        if a < pos or b > numel:
            raise ValueError(f"decay range ({a}, {b}) overlaps another or leaves [0, {numel})")
        push(pos, a, False)
        push(a, b, True)
        pos = b
    push(pos, numel, False)
    return out


def grad_norm(backend, grads) -> float:
    """The global L2 norm of the flat gradient buffer (float64 accumulation)."""
    return math.sqrt(backend.sum_squares(grads))


def clip_coef(norm: float, max_norm: float) -> float:
    """The factor that brings `norm` down to `max_norm` (1.0 when it is already below, or off)."""
    if max_norm <= 0 or not math.isfinite(norm) or norm <= max_norm:
        return 1.0
    return max_norm / (norm + 1e-6)


class AdamW:
    """AdamW state for one flat parameter buffer: the moments and the step count."""

    def __init__(self, backend, params, grads, decay_ranges, *, beta1: float, beta2: float,
                 eps: float, weight_decay: float):
        if params.numel != grads.numel:
            raise ValueError(f"params ({params.numel}) and grads ({grads.numel}) differ in size")
        self.backend = backend
        self.params = params.view(-1)
        self.grads = grads.view(-1)
        self.m = backend.zeros((self.params.numel,), "f32")
        self.v = backend.zeros((self.params.numel,), "f32")
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.weight_decay = weight_decay
        self.step = 0  # updates applied so far (bias correction uses step + 1)
        self.segments = merge_segments(self.params.numel, decay_ranges)

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

    # ---- checkpoints ---------------------------------------------------------------------
    def state(self) -> dict:
        return {"step": self.step}

    def load_state(self, state: dict, m_data, v_data) -> None:
        n = self.params.numel
        if len(m_data) != n or len(v_data) != n:
            raise ValueError(f"optimizer moments hold {len(m_data)}/{len(v_data)} values, need {n}")
        self.step = int(state["step"])
        self.m = self.backend.from_array(m_data, (n,), "f32")
        self.v = self.backend.from_array(v_data, (n,), "f32")
