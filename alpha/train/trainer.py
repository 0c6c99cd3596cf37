"""The training loop: data -> forward -> backward -> clip -> AdamW -> metrics, with evals, samples,
checkpoints, bad-step skipping, clean Ctrl-C and exact resume.

    trainer = Trainer(run_config)                     # a new run
    trainer = Trainer(run_config, resume=ck)  # continue a checkpoint (alpha.train.checkpoint)
    result = trainer.train()

One optimizer step (`step` counts from 1):
  accum_steps micro-batches, each: batch from the data stream, forward (dropout stream), backward;
  the gradients of the micro-batches ADD into the model's flat gradient buffer, and the 1/accum
  averaging is folded, with the clip factor, into AdamW's `grad_scale` — the buffer is never
  rescaled. A NaN/Inf loss or gradient, or a gradient norm above `spike_threshold`, skips the
  update (the step still counts and its data is consumed) and logs an event; `max_bad_steps` of
  them in a row stop the run with a checkpoint (`TrainingDiverged`; alpha.train.stability).
  Every step writes one metrics line (alpha.train.metrics: phase times, MFU, epoch, skip counts).
  On helios the whole step is recorded once and replayed where it can be (alpha.train.device_step:
  the norm, clip and skip decided on the GPU, by the same rules).

Cadence (0 turns each off): eval_interval (and the last step), sample_interval (and the last
step), checkpoint_interval (the last step always gets one). Retention keeps the newest
keep_checkpoints checkpoints plus the best-val one; keep_checkpoints=0 keeps them all.

What makes resume exact: a checkpoint holds the parameters, the optimizer's state and step,
every RNG stream's position (data, dropout, sampling), the data sampler's state (random or packed
order, alpha.train.sampler) and the skip counters. Evaluation and sampling
(alpha.train.evaluation) use their own streams; neither touches the training trajectory.
A new run's plan is checked first (alpha.train.planning): warnings, or errors with
strict_planning.

The run folder (alpha.train.runfolder) is the source of truth; the run database and the remote
server get copies from background threads (alpha.train.reporting) and can never stop training.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import socket
import sys
import time
from dataclasses import dataclass

from alpha.core.config import RunConfig, diff_fields
from alpha.core.errors import AlphaError, CheckpointError, ConfigError
from alpha.dist import LOCAL
from alpha.train import checkpoint as ckpt_format
from alpha.model.gpt import GPT
from alpha.tensor import get_backend
from alpha.train import budget
from alpha.train import data as D
from alpha.train import device_step, evaluation, layer_stats, metrics, planning, reporting
from alpha.train import restore, signals
from alpha.train.data import BatchSampler
from alpha.train.optim import clip_coef, grad_norm
from alpha.train.optimizers import build_optimizer
from alpha.train.progress import Progress, format_duration
from alpha.train.runfolder import RunFolder
from alpha.train.schedule import lr_for
from alpha.train.stability import StepGuard

METRICS_FLUSH_EVERY = 10  # rows per recorder.metrics call
DB_WAIT_S = 2.0  # at start, how long the first database connection may take before a warning
DB_CLOSE_TROUBLE_S = 2.0  # at the end, the wait for a database that already failed at start


class TrainingDiverged(AlphaError):
    """Too many NaN/Inf steps in a row; the run stopped with a checkpoint."""


@dataclass
class TrainResult:
    status: str  # completed | interrupted | diverged
    run_dir: str
    step: int
    loss: float | None
    val_loss: float | None
    best_val_loss: float | None
    checkpoint: str | None
    elapsed_s: float
    sample: str | None
    signal: str | None = None  # what stopped an interrupted run: "SIGINT" or "SIGTERM"


class Trainer:
    """One training run. `out` gets the progress line and messages (None = quiet)."""

    def __init__(self, config: RunConfig, *, resume: "ckpt_format.Checkpoint | None" = None,
                 init_from: "ckpt_format.Checkpoint | None" = None,
                 run_dir: str = "", out=sys.stderr, hooks: dict | None = None,
                 handle_sigint: bool = True, upload_checkpoints: bool = False, dist=None):
        self.out = out
        # data-parallel training (alpha.dist): which rank this is, its share of each batch, the
        # gradient all-reduce; LOCAL is the single process, where every call is a no-op
        self.dist = dist or LOCAL
        self.dist.check_config(config)
        self.upload_checkpoints = upload_checkpoints  # remote reporting: every checkpoint
        self.hooks = hooks or {}  # test hooks: {"after_backward": fn(trainer, step)}
        self.handle_sigint = handle_sigint
        self._stop_requested = False
        self._stop_signal: str | None = None  # "SIGINT" | "SIGTERM" once a stop is requested
        self._db_trouble = False  # the run database failed or did not answer at start

        # the run folder first: one writer at a time, and the second one is told at once
        if not run_dir and resume:
            candidate = os.path.dirname(os.path.dirname(os.path.abspath(resume.path)))
            if os.path.isfile(os.path.join(candidate, "config.json")):
                run_dir = candidate
        run_dir = run_dir or config.train.run_dir
        existed = bool(run_dir) and os.path.isdir(run_dir)
        # rank 0 alone opens (and writes) the folder; other ranks get a stand-in with its path
        self.folder = self.dist.open_folder(lambda: RunFolder.create(run_dir, config.domain))
        try:
            self.folder.lock()
            if run_dir and not resume and self.folder.holds_a_run():
                raise ConfigError(
                    f"run folder {run_dir} already holds a run; pick another --run-dir, or "
                    "continue it with --resume CHECKPOINT"
                )
            self._repairs = self.folder.repair()
            self._setup(config, resume, init_from)
        except BaseException:
            self.folder.close()
            if not existed and self.dist.is_main:
                _remove_if_empty(self.folder)
            raise

    def _setup(self, config: RunConfig, resume, init_from=None) -> None:
        # what the run is built from: backend, tokenizer (new, or the checkpoint's), tokens
        log = self.say if self.out is not None else None
        self.backend = get_backend(config.train.backend)
        if config.train.dtype != "f32":  # mixed precision: the same backend with bf16 matmuls
            self.backend = self.backend.with_matmul_dtype(config.train.dtype)
        source = resume or init_from
        self.tokenizer = restore.tokenizer_of(source) if source else D.run_tokenizer(config, log)
        self.tokenizer_json = self.tokenizer.to_json_str()
        model_cfg = dataclasses.replace(config.model, vocab_size=self.tokenizer.vocab_size)
        self.config = dataclasses.replace(config, model=model_cfg)
        self.model_config = self.config.model
        self.train_config = tc = self.config.train
        if self.backend.name == "cpu":  # host memory; a GPU's is the device's to refuse
            warning = budget.check(self.model_config, tc.batch_size, tc.accum_steps,
                                   checkpointing=tc.activation_checkpointing,
                                   optimizer=tc.optimizer)
            if warning:
                self.warn(f"warning: {warning}")
        self.data = D.run_data(config, self.tokenizer, log)
        if resume:
            saved = restore.config_of(resume).model
            differ = diff_fields(saved, self.model_config)
            if differ:
                now = self.model_config
                detail = ", ".join(
                    f"{f} ({getattr(saved, f)!r} in the checkpoint, {getattr(now, f)!r} now)"
                    for f in differ
                )
                raise CheckpointError(
                    f"cannot resume {resume.path}: the model config differs in {detail}; "
                    "drop those flags or start a new run"
                )

        self.rng = self.dist.rng(tc.seed)  # distributed: dropout masks of the global batch
        self.model = GPT(self.model_config, self.backend, self.rng)
        self.model.checkpointing = tc.activation_checkpointing  # recompute blocks in backward
        if init_from is not None:
            # a new run from another model's weights (train --init-from, alpha.interop): its
            # tokenizer and model config, step 0, a fresh optimizer
            restore.load_params(self.model, init_from)
        self.optimizer = build_optimizer(self.backend, self.model, tc)  # --optimizer
        self.model.emb_grad_scale = tc.emb_grad_scale
        self.sampler = BatchSampler(self.data.train, tc.batch_size, self.model_config.block_size,
                                    self.rng, mode="packed" if tc.packed else "random")
        self.step = 0
        self.best_val_loss: float | None = None
        self.last_val_loss: float | None = None
        self.guard = StepGuard(tc.spike_threshold)  # NaN/Inf and spike skips, counted
        self._device_step = None  # helios: the step recorded once and replayed (device_step)
        self._device_step_said = None  # what train.log last said about it
        self.meter = metrics.StepMeter(self)  # derived figures of a metrics line (MFU, epoch)
        self.plan_warnings = [] if resume else planning.check(
            tc, self.model.n_params, self.model_config.block_size, len(self.data.train),
            len(self.data.val))
        if self.plan_warnings and tc.strict_planning:
            raise planning.PlanningError(self.plan_warnings)
        self.elapsed_before = 0.0  # training seconds before a resume
        self._t_start = time.perf_counter()
        if resume:
            self._restore(resume)
            self.folder.rewind(self.step)
        self.folder.write_config(
            self.config.to_dict(), config_hash=self.config.hash, tokenizer=self.tokenizer.kind,
            extra={"info": self.info()},
        )
        self.folder.write_tokenizer(self.tokenizer_json)
        self.checkpoints = ckpt_format.val_losses(self.folder.checkpoints)
        self.recorder = reporting.Recorder(self)
        self._metrics_buffer: list[dict] = []

    # ---- facts ---------------------------------------------------------------------------
    def info(self) -> dict:
        return {
            "param_count": self.model.n_params,
            "backend": self.backend.name,
            "ranks": self.dist.size,  # data-parallel processes (alpha.dist)
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "data": self.data.description,
            "train_tokens": len(self.data.train),
            "val_tokens": len(self.data.val),
        }

    def say(self, text: str) -> None:
        if self.out is not None:
            if getattr(self, "_progress", None) is not None:
                self._progress.message(text)
            else:
                self.out.write(text + "\n")
                self.out.flush()

    def warn(self, text: str) -> None:
        """A warning the user must see even with --quiet (out=None): it goes to stderr."""
        if self.out is not None:
            self.say(text)
        else:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def _close_recorder(self) -> None:
        """Give the database a bounded time for the last rows, saying so when it takes long, and
        say what did not reach it (the second warning of a run whose database is in trouble)."""
        rec = self.recorder
        timeout = DB_CLOSE_TROUBLE_S if self._db_trouble else None
        rec.close(timeout, lambda left: self.warn(
            f"waiting up to {left:.0f}s for the run database to take the last rows..."))
        problem = rec.call("problem")
        if problem:
            self.warn(f"warning: run {self.folder.run_id} is not (fully) recorded in the run "
                      f"database ({problem}); its folder has everything: run "
                      "`python -m alpha db sync` later")

    def event(self, kind: str, message: str, level: str = "info", payload: dict | None = None,
              record: bool = True) -> None:
        row = {"step": self.step, "level": level, "kind": kind, "message": message,
               "payload": payload or {}, "time": _now()}
        self.folder.event(row)
        self.folder.log(f"[{level}] {kind}: {message}")
        if record:
            self.recorder.call("event", self.step, level, kind, message, payload or {})

    # ---- resume --------------------------------------------------------------------------
    def _restore(self, ck: "ckpt_format.Checkpoint") -> None:
        h = ck.header
        try:
            restore.load_params(self.model, ck)
            self.optimizer.load_state(h["optimizer"], ck.tensors)
            if int(h["rng"]["seed"]) != self.rng.seed:
                raise ValueError(f"seed {h['rng']['seed']} in the checkpoint, {self.rng.seed} now")
            for name, position in h["rng"]["positions"].items():
                self.rng.stream(name).position = int(position)  # in place: the model holds rng
            self.sampler.restore(h["data"])
            self.guard.restore(h.get("counters"))
        except (KeyError, ValueError, TypeError, AttributeError) as e:  # DataError: a ValueError
            why = f"it lacks {e}" if isinstance(e, KeyError) else str(e)
            raise CheckpointError(f"checkpoint {ck.path} cannot be restored: {why}") from None
        self.step = ck.step  # checked by the checkpoint reader
        self.best_val_loss = _number(h.get("best_val_loss"))
        self.last_val_loss = _number(h.get("val_loss"))
        self.elapsed_before = _number(h.get("elapsed_s")) or 0.0

    # ---- the loop ------------------------------------------------------------------------
    def train(self) -> TrainResult:
        tc = self.train_config
        start_step = self.step
        resumed = start_step > 0
        for note in self._repairs:
            self.event("repair", note, level="warning", record=False)
            self.say(f"note: {note}")
        warning = self.recorder.call("start", self.folder.path, self.config.to_dict(), self.info())
        problem = warning or self.recorder.call("wait_ready", DB_WAIT_S)
        if problem:
            self._db_trouble = True
            self.event("recorder", str(problem), level="warning", record=False)
            self.warn(f"warning: run database {problem}; this run is not being recorded there "
                      "(its folder has everything: run `python -m alpha db sync` later)")
        self.remote = reporting.start_remote(self)
        self.event("resume" if resumed else "start",
                   f"{'resumed at step ' + str(start_step) if resumed else 'started'}: "
                   f"{self.model.n_params:,} parameters, {tc.iters} steps, "
                   f"backend {self.backend.name}",
                   payload={"step": start_step, "config_hash": self.config.hash})
        self.say(f"run {self.folder.path}: {self.model.n_params / 1e6:.2f}M parameters, "
                 f"vocab {self.model_config.vocab_size}, {len(self.data.train):,} training "
                 f"tokens ({self.data.description})")
        for warning in self.plan_warnings:  # planning guardrails (alpha.train.planning)
            self.event("planning", warning, level="warning", record=False)
            self.warn(f"warning: {warning}")
        self._progress = Progress(tc.iters, stream=self.out, every=max(1, tc.log_interval),
                                  start=start_step) if self.out is not None else None

        old_handlers = signals.install(self) if self.handle_sigint else {}
        t_start = self._t_start = time.perf_counter()
        status, last_loss, final_ckpt, sample_text = "completed", None, None, None
        torn = False
        try:
            self.dist.check_params(self.model, self.step, force=True)  # same start on every rank
            self._device_step = device_step.make(self)
            while self.step < tc.iters:
                if self.dist.agree(self._stop_requested):  # every rank stops at the same step
                    status = "interrupted"
                    break
                row = self._one_step()
                self.dist.check_params(self.model, self.step)
                last_loss = row["loss"] if math.isfinite(row["loss"]) else last_loss
                step = self.step
                last = step == tc.iters
                if _due(step, tc.eval_interval) or (last and tc.eval_interval):
                    t_eval = time.perf_counter()
                    row["val_loss"] = evaluation.evaluate(self)
                    row["eval_ms"] = (time.perf_counter() - t_eval) * 1000.0
                self._emit_metrics(row, t_start)
                if not math.isfinite(row["loss"]) or row.get("skipped"):
                    if self.bad_in_a_row >= tc.max_bad_steps:
                        status = "diverged"
                        break
                if _due(step, tc.sample_interval) or (last and tc.sample_interval):
                    sample_text = evaluation.sample(self)
                if _due(step, tc.checkpoint_interval) or last:
                    final_ckpt = self.save_checkpoint(row.get("val_loss"))
        except KeyboardInterrupt:
            # a second Ctrl-C (or one outside the main thread) may have landed mid-step: the
            # state can be torn, so no checkpoint; the last one saved is the resume point
            status, torn = "interrupted", True
        except BaseException as e:
            try:  # the failure may be the disk itself: recording it is best effort
                self.event("failed", f"{type(e).__name__}: {e}", level="error")
            except AlphaError:
                pass
            self.recorder.call("finish", "failed")
            self._close_recorder()
            reporting.close_remote(self)
            self.folder.close()
            raise
        finally:
            signals.restore(old_handlers)
            if self._progress is not None:
                self._progress.close()
            self._flush_metrics()

        elapsed = time.perf_counter() - t_start
        if torn:
            final_ckpt = self._latest_checkpoint()
        elif status != "completed" and self.step not in self.checkpoints:
            final_ckpt = self.save_checkpoint(None)
        elif status != "completed":
            final_ckpt = self.folder.checkpoint_path(self.step)
        if status == "completed":
            self.event("completed", f"finished {self.step} steps in {format_duration(elapsed)}",
                       payload={"loss": last_loss, "val_loss": self.last_val_loss})
            self.recorder.call("finish", "completed")
        elif status == "interrupted":
            who = "by SIGTERM" if self._stop_signal == "SIGTERM" else "by the user"
            self.event("interrupted", f"stopped {who} at step {self.step}; resume with "
                       f"--resume {final_ckpt}", level="warning",
                       payload={"signal": self._stop_signal or "SIGINT"})
            self.recorder.call("finish", "stopped")
        else:
            what, todo = self.guard.why_stopped()
            self.event("diverged", f"{self.bad_in_a_row} steps in a row {what}; stopped at step "
                       f"{self.step}", level="error")
            self.recorder.call("finish", "failed")
        self._close_recorder()
        reporting.close_remote(self)
        self.folder.close()
        result = TrainResult(status=status, run_dir=self.folder.path, step=self.step,
                             loss=last_loss, val_loss=self.last_val_loss,
                             best_val_loss=self.best_val_loss, checkpoint=final_ckpt,
                             elapsed_s=elapsed, sample=sample_text, signal=self._stop_signal)
        if status == "diverged":
            raise TrainingDiverged(
                f"training stopped at step {self.step}: {self.bad_in_a_row} steps in a row "
                f"{what} (checkpoint {final_ckpt}); {todo}, then --resume it"
            )
        return result

    def _one_step(self) -> dict:
        tc = self.train_config
        if self._device_step is not None and not _due(self.step + 1, tc.layer_stats_interval):
            return device_step.one_step(self, self._device_step)
        be = self.backend
        model = self.model
        t0 = time.perf_counter()
        t_data = t_fwd = t_bwd = 0.0
        self.step += 1
        step = self.step
        # where this step's batches come from, for a spike_skip event (a small dict)
        drawn_from = self.sampler.state() if tc.spike_threshold > 0 else None
        model.zero_grad()
        loss_sum = 0.0
        for micro in range(tc.accum_steps):
            ta = time.perf_counter()
            x, y = self.dist.shard(*self.sampler.next_batch())  # this rank's rows
            ids, targets = evaluation.upload(be, x, y, self.model_config.block_size)
            tb = time.perf_counter()
            _, loss = model.forward(ids, targets)
            loss_value = float(loss.to_array()[0])  # a read-back: the forward has run
            tc_ = time.perf_counter()
            if micro == tc.accum_steps - 1:
                self.dist.begin_grad_sync(model)  # all-reduce buckets as backward fills them
            model.backward()
            # a GPU runs the backward after it is recorded: wait here so backward_ms holds it
            # (the finite check below reads back the gradients at once anyway)
            be.synchronize()
            td = time.perf_counter()
            loss_sum += loss_value
            t_data += tb - ta
            t_fwd += tc_ - tb
            t_bwd += td - tc_
        self.dist.end_grad_sync(model)  # every rank now holds the sum of all ranks' gradients
        hook = self.hooks.get("after_backward")
        if hook is not None:
            hook(self, step)
        te = time.perf_counter()
        t_bwd += te - td  # the gradient all-reduce's wait (distributed) counts as backward
        loss_mean = self.dist.mean(loss_sum) / tc.accum_steps
        summed = tc.accum_steps * self.dist.size  # gradients summed over micro-batches and ranks
        lr = lr_for(tc, step)
        finite = math.isfinite(loss_mean) and be.all_finite(model.grads)
        norm = grad_norm(be, model.grads) / summed if finite else None
        stats = None
        t_stats_start = time.perf_counter()
        if _due(step, tc.layer_stats_interval):
            stats = layer_stats.layer_norms(model, summed)
        t_stats = time.perf_counter()
        verdict = self.guard.verdict(loss_mean, finite, norm)
        coef = None
        if verdict is None:
            coef = clip_coef(norm, tc.grad_clip)
            self.optimizer.update(lr, grad_scale=coef / summed)
        else:
            self.skip_event(verdict, step, norm, loss_mean, drawn_from)
        be.synchronize()
        t_end = time.perf_counter()
        if stats is not None:
            self.folder.layer_stats({"step": step, **stats})
        # the phases; a layer-stats row's own cost is in that row, not in optimizer_ms
        phases = {"data_ms": t_data, "forward_ms": t_fwd, "backward_ms": t_bwd,
                  "optimizer_ms": (t_end - te) - (t_stats - t_stats_start)}
        row = self.meter.row(step, loss_mean, lr, norm, coef, t_end - t0, phases)
        if verdict is not None:
            row["skipped"] = True
        return row

    def skip_event(self, verdict: str, step: int, norm, loss: float, drawn_from) -> None:
        """The event of a skipped update ("spike" or "nan", alpha.train.stability)."""
        tc = self.train_config
        if verdict == "spike":
            self.event("spike_skip", f"step {step}: gradient norm {norm:.4g} > spike threshold "
                       f"{tc.spike_threshold:g}, update skipped ({self.bad_in_a_row} in a row)",
                       level="warning",
                       payload={"step": step, "grad_norm": norm, "loss": loss,
                                "threshold": tc.spike_threshold, "batch": drawn_from,
                                "bad_in_a_row": self.bad_in_a_row})
            return
        what = "loss" if not math.isfinite(loss) else "gradient"
        self.event("bad_step", f"step {step}: NaN/Inf {what}, update skipped "
                   f"({self.bad_in_a_row} in a row)", level="warning",
                   payload={"loss": loss, "bad_in_a_row": self.bad_in_a_row})

    @property
    def bad_in_a_row(self) -> int:
        """Skipped steps in a row (NaN/Inf or spikes), from the step guard."""
        return self.guard.bad_in_a_row

    def _emit_metrics(self, row: dict, t_start: float) -> None:
        row["elapsed_s"] = self.elapsed_before + time.perf_counter() - t_start
        self.folder.metric(row)
        self._metrics_buffer.append(row)
        if len(self._metrics_buffer) >= METRICS_FLUSH_EVERY or "val_loss" in row:
            self._flush_metrics()
        if self._progress is not None:
            fields = {"loss": row["loss"]}
            if "val_loss" in row:
                fields["val"] = row["val_loss"]
            fields["tok_s"] = row["tokens_per_sec"]
            fields["ms"] = row["ms_per_iter"]
            line = self._progress.update(row["step"], keep="val_loss" in row, **fields)
            if _due(row["step"], self.train_config.log_interval) or "val_loss" in row:
                self.folder.log(line)

    def _flush_metrics(self) -> None:
        if self._metrics_buffer:
            rows, self._metrics_buffer = self._metrics_buffer, []
            self.recorder.call("metrics", rows)

    # ---- checkpoints ---------------------------------------------------------------------
    def checkpoint_header(self, val_loss: float | None) -> dict:
        return {
            "format": "alpha-checkpoint",
            "run_id": self.folder.run_id,
            "step": self.step,
            "config": self.config.to_dict(),
            "config_hash": self.config.hash,
            "tokenizer_name": self.tokenizer.kind,
            "tokenizer": json.loads(self.tokenizer_json),
            "rng": self.rng.state(),
            "data": self.sampler.state(),
            "counters": {**self.guard.counts(), "bad_in_a_row": self.guard.bad_in_a_row},
            "optimizer": self.optimizer.state(),
            "val_loss": val_loss,
            "best_val_loss": self.best_val_loss,
            "elapsed_s": self.elapsed_before + time.perf_counter() - self._t_start,
            "param_table": ckpt_format.param_layout(self.model_config),
            "created": _now(),
        }

    def save_checkpoint(self, val_loss: float | None) -> str:
        path = self.folder.checkpoint_path(self.step)
        if not self.dist.is_main:
            return path  # rank 0 writes it (every rank holds the same state)
        be = self.backend
        n = self.model.params.numel
        tensors = {
            "params": (be.to_array(self.model.params), (n,), "f32"),
        }
        for name, t in self.optimizer.state_tensors().items():  # AdamW's m, v; Lion's lion_m...
            tensors[name] = (be.to_array(t), (t.numel,), "f32")
        size, checksum = ckpt_format.save(path, self.checkpoint_header(val_loss), tensors)
        self.checkpoints[self.step] = val_loss
        removed = ckpt_format.prune(self.checkpoints, self.train_config.keep_checkpoints,
                                        self.folder.checkpoint_path)
        self.event("checkpoint", f"saved {path} ({size / 1e6:.1f} MB)",
                   payload={"path": path, "size": size, "checksum": checksum,
                            "removed": removed}, record=False)
        self.recorder.call("checkpoint", self.step, path, size, checksum)
        self.folder.log(f"checkpoint {path}")
        return path

    def _latest_checkpoint(self) -> str | None:
        return self.folder.checkpoint_path(max(self.checkpoints)) if self.checkpoints else None

    @property
    def stop_signal(self) -> str | None:
        """The signal that stopped the run ("SIGINT", "SIGTERM"), None when none did."""
        return self._stop_signal


# --------------------------------------------------------------------------------------------


def _number(v) -> float | None:
    """A float from a checkpoint header field, None when it holds something else."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _due(step: int, interval: int) -> bool:
    return interval > 0 and step % interval == 0


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _remove_if_empty(folder: RunFolder) -> None:
    """A run that failed before it began leaves no folder behind (just its lock file)."""
    try:
        os.rmdir(folder.checkpoints)
        os.unlink(folder.lock_path)
        os.rmdir(folder.path)
    except OSError:
        pass
