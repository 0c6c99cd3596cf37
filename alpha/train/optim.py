"""What every optimizer step shares: the global gradient norm, the clip factor, and the runs of
the flat buffers that share a weight-decay setting. The optimizers themselves are in
`alpha.train.optimizers` (one file each).

Clipping never touches the gradient buffer: its factor is passed as the update's `grad_scale`.
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
