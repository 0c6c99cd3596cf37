"""A few AdamW steps of a tiny GPT on one helios backend view, for the checks that two ways of
computing a training step (bias epilogue on/off, write record trusted or not) give the same bits.
Imported by the test scripts that run in a subprocess (`sys.path.insert(0, "tests")`)."""

from __future__ import annotations

from array import array

from alpha.core.config import ModelConfig, TrainConfig
from alpha.core.rng import Rng
from alpha.model.gpt import GPT
from alpha.train.optim import clip_coef, grad_norm
from alpha.train.optimizers import build_optimizer


def train_tiny(lp, cfg: ModelConfig, batch: int, steps: int) -> tuple[list, list, int]:
    """(losses, final parameters, dispatches) of `steps` steps on fixed ids (the same every call,
    so two views of one backend can be compared bit for bit)."""
    n0 = lp.dev.dispatches
    model = GPT(cfg, lp, Rng(0))
    opt = build_optimizer(lp, model, TrainConfig(optimizer="adamw"))
    T, V = cfg.block_size, cfg.vocab_size
    xs = array("i", [(7 * i) % V for i in range(batch * T)])
    ys = array("i", [(5 * i + 3) % V for i in range(batch * T)])
    losses = []
    for _ in range(steps):
        ids, tg = lp.from_array(xs, (batch, T), "i32"), lp.from_array(ys, (batch, T), "i32")
        model.zero_grad()
        _, loss = model.forward(ids, tg)
        losses.append(float(loss.to_array()[0]))
        model.backward()
        opt.update(1e-2, grad_scale=clip_coef(grad_norm(lp, model.grads), 1.0))
    return losses, list(lp.to_array(model.params)), lp.dev.dispatches - n0
