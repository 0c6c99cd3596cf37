"""Validation passes and samples while training. Neither touches the training trajectory:
evaluation draws from its own stream ("eval", restarted at each eval so every eval sees the same
batches) and sampling from its own ("sampling").

    val = evaluate(trainer)     # mean loss over eval_iters validation batches; logs an event
    text = sample(trainer)      # one sample, logged to samples.jsonl (rank 0 only)
"""

from __future__ import annotations

import math
import time

from alpha.core.rng import Rng
from alpha.train.generate import generate
from alpha.train.sampler import BatchSampler


def upload(backend, x, y, block_size: int):
    """(ids, targets) on the backend, (B, T) i32, from the sampler's flat arrays."""
    B = len(x) // block_size
    shape = (B, block_size)
    return backend.from_array(x, shape, "i32"), backend.from_array(y, shape, "i32")


def evaluate(trainer) -> float:
    """Mean loss over eval_iters validation batches (the same batches at every eval)."""
    t = trainer
    tc = t.train_config
    T = t.model_config.block_size
    sampler = BatchSampler(t.data.val, tc.batch_size, T, Rng(tc.seed), stream="eval")
    total = 0.0
    t.model.eval()
    try:
        for _ in range(tc.eval_iters):
            x, y = t.dist.shard(*sampler.next_batch())
            _, loss = t.model.forward(*upload(t.backend, x, y, T))
            total += float(loss.to_array()[0])
    finally:
        t.model.train()
    val = t.dist.mean(total) / tc.eval_iters
    t.last_val_loss = val
    if math.isfinite(val) and (t.best_val_loss is None or val < t.best_val_loss):
        t.best_val_loss = val
    t.event("eval", f"step {t.step}: val loss {val:.4f}", payload={"val_loss": val},
            record=False)
    return val


def sample(trainer) -> str:
    """One sample from the sampling stream, logged to samples.jsonl (never alters training)."""
    t = trainer
    if not t.dist.is_main:
        return ""  # rank 0 samples; the sampling stream never touches training
    sc = t.config.sample
    prompt = sc.prompt or "\n"
    text = generate(t.model, t.tokenizer, prompt, sc, t.rng.stream("sampling"))
    payload = {"prompt": prompt, "temperature": sc.temperature, "top_k": sc.top_k,
               "top_p": sc.top_p, "max_tokens": sc.max_tokens}
    t.folder.sample({"step": t.step, "idx": 0, "text": text, "payload": payload,
                     "time": _now()})
    t.recorder.call("sample", t.step, 0, text)
    t.say(f"--- sample at step {t.step} ---\n{prompt if prompt != chr(10) else ''}{text}\n---")
    return text


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
