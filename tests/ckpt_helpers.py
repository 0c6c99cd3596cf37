"""Activation checkpointing's shared check, imported by tests/test_checkpointing.py and run
inside its helios subprocess: one model's training step both ways on one backend."""

from __future__ import annotations

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
