"""Activation checkpointing's shared checks, imported by tests/test_checkpointing.py and run
inside its helios subprocess: one model's training steps both ways on one backend."""

from __future__ import annotations

from alpha.core.config import ModelConfig
from alpha.core.rng import Rng
from alpha.model.gpt import GPT


def step_both_ways(be, cfg) -> dict:
    """{checkpointing: [loss hex, loss hex, flat gradient buffer hex, dropout stream position]}
    after two micro-batches (each a forward and a backward adding into the gradient buffer)."""
    out = {}
    for checkpointing in (False, True):
        model = GPT(cfg, be, Rng(5)).train()
        model.checkpointing = checkpointing
        data = Rng(9).stream("data")
        B, T, V = 3, cfg.block_size, cfg.vocab_size
        got = []
        for _ in range(2):
            ids = be.from_array(data.randint(B * T, V), (B, T), "i32")
            targets = be.from_array(data.randint(B * T, V), (B, T), "i32")
            _, loss = model.forward(ids, targets)
            got.append(be.to_array(loss).tobytes().hex())
            model.backward()
        got.append(be.to_array(model.grads).tobytes().hex())
        got.append(model.rng.state()["positions"]["dropout"])
        out[checkpointing] = got
    return out


def peak_of_step(be, checkpointing: bool) -> int:
    """Bytes of tensor storage at the high-water mark of one training step of a six-block model,
    over what the model held before it (parameters and gradients)."""
    cfg = ModelConfig(n_layer=6, n_head=2, n_embd=32, block_size=32, vocab_size=64, dropout=0.1)
    model = GPT(cfg, be, Rng(1)).train()
    model.checkpointing = checkpointing
    ids = be.from_array(Rng(2).stream("data").randint(4 * 32, 64), (4, 32), "i32")
    be.synchronize()
    be.reset_peak_memory()
    before = be.memory_stats()["in_use"]
    model.forward(ids, ids)
    model.backward()
    be.synchronize()
    return be.memory_stats()["peak"] - before
