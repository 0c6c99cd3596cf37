"""The numbers the trainer logs and applies, against an independent float64 computation: the
global gradient norm, the clip coefficient and the AdamW update, with and without gradient
accumulation (where the micro-batches' gradients add into one buffer and the 1/accum average is
folded into the update's scale), with clipping active and idle.

A bug in any of them (a norm of the summed instead of the mean gradient, a clip coefficient
applied twice or not at all, the average forgotten) trains on quietly with a slightly different
loss curve; these tests catch it at the first step."""

from __future__ import annotations

import math

import pytest

from alpha.core.config import resolve
from alpha.train.trainer import Trainer

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
        ) * 20


def run_steps(tmp_path, accum: int, clip: float, steps: int = 3):
    data = tmp_path / "data.txt"
    data.write_text(TEXT)
    cfg = resolve("text", "", {
        "model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16},
        "train": {"data": str(data), "batch_size": 2, "iters": steps, "accum_steps": accum,
                  "grad_clip": clip, "eval_interval": 0, "sample_interval": 0,
                  "checkpoint_interval": 0, "warmup_iters": 1, "lr": 3e-3,
                  "weight_decay": 0.1, "run_dir": str(tmp_path / f"run-{accum}-{clip}")}})
    seen = []

    def after_backward(trainer, step):
        be = trainer.backend
        seen.append({
            "grads": list(be.to_array(trainer.model.grads)),
            "params": list(be.to_array(trainer.model.params)),
            "m": list(be.to_array(trainer.optimizer.m)),
            "v": list(be.to_array(trainer.optimizer.v)),
        })

    trainer = Trainer(cfg, out=None, hooks={"after_backward": after_backward})
    rows = [trainer._one_step() for _ in range(steps)]
    final = list(trainer.backend.to_array(trainer.model.params))
    segments = trainer.optimizer.segments
    trainer.folder.close()
    return cfg.train, rows, seen, final, segments


def adamw64(p, g, m, v, lr, tc, step, decays):
    """One AdamW update of one value in float64 (what adamw_step documents)."""
    m = tc.beta1 * m + (1 - tc.beta1) * g
    v = tc.beta2 * v + (1 - tc.beta2) * g * g
    mhat = m / (1 - tc.beta1 ** step)
    vhat = v / (1 - tc.beta2 ** step)
    wd = tc.weight_decay if decays else 0.0
    return p - lr * (mhat / (math.sqrt(vhat) + tc.eps) + wd * p)


@pytest.mark.parametrize("accum,clip", [(1, 1e9), (1, 0.05), (3, 1e9), (3, 0.05)])
def test_grad_norm_clip_and_update_against_float64(tmp_path, accum, clip):
    tc, rows, seen, final, segments = run_steps(tmp_path, accum, clip)
    clipped = 0
    for i, (row, state) in enumerate(zip(rows, seen)):
        # the buffer holds the SUM over micro-batches; the logged norm is the mean gradient's
        norm64 = math.sqrt(math.fsum(g * g for g in state["grads"])) / accum
        assert row["grad_norm"] == pytest.approx(norm64, rel=1e-6)
        coef64 = 1.0 if norm64 <= clip else clip / (norm64 + 1e-6)
        assert row["clip_coef"] == pytest.approx(coef64, rel=1e-6)
        clipped += coef64 < 1.0
        if i + 1 < len(seen):  # the next step's "before" is this step's "after"
            after = seen[i + 1]["params"]
        else:
            after = final
        step = i + 1
        scale = coef64 / accum
        worst = 0.0
        for start, length, decays in segments:
            for j in range(start, start + length):
                want = adamw64(state["params"][j], state["grads"][j] * scale, state["m"][j],
                               state["v"][j], row["lr"], tc, step, decays)
                worst = max(worst, abs(after[j] - want) / (abs(want) + 1e-3))
        assert worst < 1e-5, (step, worst)
    # with clip 0.05 every step is clipped (these gradients are far larger); with 1e9 none is
    assert clipped == (len(rows) if clip < 1 else 0)
