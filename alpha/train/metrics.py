"""One metrics line per optimizer step: what the trainer measured, and the figures derived from it.

    {"step", "loss", "lr", "grad_norm", "clip_coef",          the step (grad_norm: pre-clip)
     "tokens_per_sec", "ms_per_iter", "elapsed_s",            speed (elapsed_s: since the run
                                                              began, across resumes)
     "data_ms", "forward_ms", "backward_ms", "optimizer_ms",  the step's phases (see below)
     "mfu",                                                   model FLOPs utilisation (alpha.train.mfu)
     "epoch",                                                 passes over the training tokens
     "nan_skips", "spike_skips",                              skipped steps since the run began
     ["val_loss", "eval_ms"], ["skipped": true]}              on eval steps; on skipped steps

The phases, summed over the micro-batches: data_ms draws and uploads the batch; forward_ms runs
the forward up to reading the loss back; backward_ms runs the backward and waits for it (one
synchronize per micro-batch: on helios the GPU works through the recorded backward there, where
the finite check would otherwise wait for it) plus, distributed, the gradient all-reduce;
optimizer_ms is the finite check, the gradient norm, the update and the final synchronize. A
helios step recorded once and replayed (alpha.train.device_step) is one GPU submission: its
time is all in backward_ms, and forward_ms and optimizer_ms are 0.
ms_per_iter is the whole step; eval_ms is the validation pass of an eval step (not in
ms_per_iter). On a layer-stats step (alpha.train.layer_stats) that row's cost is in ms_per_iter
but not in optimizer_ms.
"""

from __future__ import annotations

from alpha.train import mfu


class StepMeter:
    """Builds metrics lines for one trainer (its model, sampler, step guard, backend, ranks)."""

    def __init__(self, trainer):
        self.trainer = trainer
        cfg = trainer.model_config
        tc = trainer.train_config
        self.tokens_per_step = tc.batch_size * cfg.block_size * tc.accum_steps  # every rank's
        self.flops_per_token = mfu.flops_per_token(cfg, trainer.model.table)
        self._peak: float | None = None  # FLOP/s of one device, measured on first use

    @property
    def peak(self) -> float:
        if self._peak is None:
            self._peak = mfu.peak_flops(self.trainer.backend)
        return self._peak

    def row(self, step: int, loss: float, lr: float, norm, coef, seconds: float,
            phases: dict) -> dict:
        t = self.trainer
        flops = self.flops_per_token * self.tokens_per_step
        row = {
            "step": step,
            "loss": loss,
            "lr": lr,
            "grad_norm": norm,
            "clip_coef": coef,
            "tokens_per_sec": self.tokens_per_step / seconds if seconds > 0 else 0.0,
            "ms_per_iter": seconds * 1000.0,
            "elapsed_s": 0.0,  # filled in when the line is written (the trainer's clock)
        }
        for name, sec in phases.items():
            row[name] = sec * 1000.0
        devices = t.dist.size
        row["mfu"] = flops / seconds / (self.peak * devices) if seconds > 0 else 0.0
        row["epoch"] = t.sampler.epochs
        row.update(t.guard.counts())
        return row
