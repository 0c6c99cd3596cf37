"""Learning-rate schedule: linear warmup to the peak, then cosine decay to `min_lr`.

Steps count from 1 (the first optimizer step). During warmup the rate climbs linearly,
`lr * step / warmup_iters`, reaching the peak at `step == warmup_iters`; from there a half cosine
takes it down to `min_lr` at `step == iters`. Past `iters` (a resumed run asked to go further)
it stays at `min_lr`. This is nanoGPT's schedule, shifted so step 1 already has a non-zero rate.
"""

from __future__ import annotations

import math


def lr_at(step: int, *, lr: float, min_lr: float, warmup_iters: int, iters: int) -> float:
    """The learning rate for optimizer step `step` (1-based)."""
    if warmup_iters > 0 and step <= warmup_iters:
        return lr * step / warmup_iters
    if step >= iters:
        return min_lr
    decay_steps = iters - warmup_iters
    progress = (step - warmup_iters) / decay_steps  # in (0, 1)
    coeff = 0.5 * (1.0 + math.cos(math.pi * progress))  # 1 -> 0
    return min_lr + coeff * (lr - min_lr)


def lr_for(train_config, step: int) -> float:
    """`lr_at` with the fields of a TrainConfig."""
    return lr_at(
        step,
        lr=train_config.lr,
        min_lr=train_config.min_lr,
        warmup_iters=train_config.warmup_iters,
        iters=train_config.iters,
    )
