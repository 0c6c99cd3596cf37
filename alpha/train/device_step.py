"""The trainer's optimizer step as one GPU step on helios (alpha/helios/train_step.py): forward,
backward, the gradient norm and clip, and the update recorded once and replayed every step;
the host draws the batches, writes them and lr, and reads (loss, norm, skipped) once.

Taken when nothing in the step needs the host between its phases: backend helios, AdamW, Lion
or SGD, one process, no `after_backward` hook (with --accum-steps, all the micro-batches are in
the one step). A layer-stats step runs the trainer's own step (it reads the parameter norms
before the update). Otherwise every step is the trainer's own, and train.log says why once.
The skip rules are the trainer's (alpha.train.stability), decided on the GPU. Phases of its
metrics line: data_ms draws the batches; backward_ms is the whole GPU step (forward, backward
and update are one submission); forward_ms and optimizer_ms are 0.
"""

from __future__ import annotations

import math
import time

from alpha.train.optim import clip_coef
from alpha.train.schedule import lr_for


def make(trainer):
    """The trainer's TrainStep, or None (the trainer's own step)."""
    tc = trainer.train_config
    if trainer.backend.name != "helios":
        return None
    why = None
    if tc.optimizer not in ("adamw", "lion", "sgd"):
        why = f"--optimizer {tc.optimizer}"
    elif trainer.dist.size != 1:
        why = "several processes"
    elif trainer.hooks.get("after_backward") is not None:
        why = "an after_backward hook"
    if why is not None:
        trainer.folder.log(f"helios: the training step is recorded op by op ({why})")
        return None
    from alpha.helios.train_step import TrainStep
    return TrainStep(trainer.model, trainer.optimizer, grad_clip=tc.grad_clip,
                     spike_threshold=tc.spike_threshold)


def one_step(trainer, ts) -> dict:
    """One optimizer step through `ts`: the trainer's metrics row."""
    t = trainer
    tc = t.train_config
    t0 = time.perf_counter()
    t.step += 1
    step = t.step
    drawn_from = t.sampler.state() if tc.spike_threshold > 0 else None
    batches = [t.dist.shard(*t.sampler.next_batch()) for _ in range(tc.accum_steps)]
    T = t.model_config.block_size
    lr = lr_for(tc, step)
    ta = time.perf_counter()
    loss, norm, skipped = ts.run(batches, (len(batches[0][0]) // T, T), lr)
    tb = time.perf_counter()
    said = ("replayed" if ts.why_not is None else ts.why_not)
    if said != t._device_step_said:
        t._device_step_said = said
        t.folder.log("helios: the training step is recorded once and replayed"
                     if ts.why_not is None else
                     f"helios: the training step is recorded op by op ({ts.why_not})")
    finite = math.isfinite(loss) and math.isfinite(norm)
    verdict = t.guard.count(None if not skipped else "spike" if finite else "nan")
    coef = clip_coef(norm, tc.grad_clip) if verdict is None else None
    if verdict is not None:
        t.skip_event(verdict, step, norm, loss, drawn_from)
    phases = {"data_ms": ta - t0, "forward_ms": 0.0, "backward_ms": tb - ta,
              "optimizer_ms": 0.0}
    row = t.meter.row(step, loss, lr, norm if finite else None, coef,
                      time.perf_counter() - t0, phases)
    if verdict is not None:
        row["skipped"] = True
    return row
