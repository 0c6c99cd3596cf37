"""The trainer: exact resume, NaN-step skipping and the stop after max_bad_steps, Ctrl-C, sampling
that leaves the trajectory alone, metrics.jsonl, retention, the schedule, the optimizer's ranges,
a database recorder that fails. Tiny models on the CPU backend, a few steps each."""

from __future__ import annotations

import json
import math
import os

import pytest

from alpha.core.config import resolve
from alpha.core.errors import CheckpointError, ConfigError
from alpha.train import checkpoint as ckpt_format
from alpha.train import schedule
from alpha.train.optim import clip_coef, merge_segments
from alpha.train.progress import Progress, format_duration, format_rate
from alpha.train.trainer import Trainer, TrainingDiverged

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\n") * 12

METRIC_FIELDS = ("step", "loss", "lr", "grad_norm", "clip_coef", "tokens_per_sec", "ms_per_iter",
                 "elapsed_s", "data_ms", "forward_ms", "backward_ms", "optimizer_ms", "mfu",
                 "epoch", "nan_skips", "spike_skips")


@pytest.fixture
def data_file(tmp_path):
    p = tmp_path / "data.txt"
    p.write_text(TEXT)
    return str(p)


def tiny(data_file, run_dir, **train):
    t = {"data": data_file, "batch_size": 2, "iters": 6, "eval_interval": 3, "eval_iters": 2,
         "sample_interval": 0, "checkpoint_interval": 3, "warmup_iters": 2, "lr": 3e-3,
         "run_dir": str(run_dir), "seed": 7}
    t.update(train)
    model = {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16}
    model.update(t.pop("model", {}))
    return resolve("text", "", {"model": model, "train": t, "sample": {"max_tokens": 8}})


def rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def losses(run_dir):
    return [r["loss"] for r in rows(os.path.join(run_dir, "metrics.jsonl"))]


# ---- resume ---------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", [{}, {"pos": "rope", "rope_theta": 500.0, "attn_softcap": 3.0}],
                         ids=["gpt2", "rope-softcap"])
def test_resume_is_bit_exact(data_file, tmp_path, arch):
    """Resuming from step 3 reproduces steps 4..6 of the uninterrupted run exactly (dropout and
    gradient accumulation on, so every RNG stream and the sampler position matter), for GPT-2
    and for a model with the architecture options (saved in the checkpoint's config)."""
    cfg = tiny(data_file, tmp_path / "a", accum_steps=2, model={"dropout": 0.1, **arch},
               sample_interval=2)
    full = Trainer(cfg, out=None).train()
    assert full.status == "completed" and full.step == 6
    ck = ckpt_format.load(str(tmp_path / "a" / "checkpoints" / "step-3.ckpt"))
    for key, value in arch.items():
        assert ck.header["config"]["model"][key] == value
    resumed = Trainer(cfg, resume=ck, run_dir=str(tmp_path / "b"), out=None).train()
    a, b = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert len(a) == 6 and len(b) == 3
    assert a[3:] == b  # bit for bit: same floats, not approximately
    assert full.val_loss == resumed.val_loss
    # the final parameters and moments are identical too
    pa = ckpt_format.load(str(tmp_path / "a" / "checkpoints" / "step-6.ckpt")).tensors
    pb = ckpt_format.load(str(tmp_path / "b" / "checkpoints" / "step-6.ckpt")).tensors
    assert pa["params"] == pb["params"] and pa["v"] == pb["v"]


def test_resume_in_place_rewinds_metrics(data_file, tmp_path):
    cfg = tiny(data_file, tmp_path / "a")
    Trainer(cfg, out=None).train()
    before = losses(tmp_path / "a")
    ck = ckpt_format.load(str(tmp_path / "a" / "checkpoints" / "step-3.ckpt"))
    Trainer(cfg, resume=ck, out=None).train()  # same folder: metrics past step 3 rewritten
    after = rows(tmp_path / "a" / "metrics.jsonl")
    assert [r["step"] for r in after] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in after] == before
    kinds = [e["kind"] for e in rows(tmp_path / "a" / "events.jsonl")]
    assert "resume" in kinds


def test_resume_refuses_other_model_config(data_file, tmp_path):
    cfg = tiny(data_file, tmp_path / "a", iters=3)
    Trainer(cfg, out=None).train()
    ck = ckpt_format.load(str(tmp_path / "a" / "checkpoints" / "step-3.ckpt"))
    other = tiny(data_file, tmp_path / "b", iters=3, model={"n_embd": 32, "n_layer": 2})
    with pytest.raises(CheckpointError) as e:
        Trainer(other, resume=ck, out=None)
    assert "n_embd" in str(e.value) and "n_layer" in str(e.value)
    assert "n_head" not in str(e.value)


# ---- bad steps, interrupts ------------------------------------------------------------------


def _poison(trainer, step):
    trainer.backend.fill(trainer.model.grads, float("nan"))


def test_nan_step_is_skipped_and_training_goes_on(data_file, tmp_path):
    seen = {}

    def hook(trainer, step):
        if step == 2:
            seen["before"] = list(trainer.backend.to_array(trainer.model.params))
            _poison(trainer, step)

    def after(trainer, step):
        pass

    t = Trainer(tiny(data_file, tmp_path / "r", iters=4, checkpoint_interval=0), out=None,
                hooks={"after_backward": hook})
    result = t.train()
    assert result.status == "completed" and result.step == 4
    ms = rows(tmp_path / "r" / "metrics.jsonl")
    assert [r["step"] for r in ms] == [1, 2, 3, 4]
    assert ms[1].get("skipped") is True and ms[1]["grad_norm"] is None
    assert t.optimizer.step == 3  # the skipped step applied no update
    events = rows(tmp_path / "r" / "events.jsonl")
    bad = [e for e in events if e["kind"] == "bad_step"]
    assert len(bad) == 1 and bad[0]["step"] == 2 and bad[0]["level"] == "warning"


def test_too_many_bad_steps_stop_with_a_checkpoint(data_file, tmp_path):
    cfg = tiny(data_file, tmp_path / "r", iters=20, max_bad_steps=3, checkpoint_interval=0)
    t = Trainer(cfg, out=None, hooks={"after_backward": _poison})
    with pytest.raises(TrainingDiverged) as e:
        t.train()
    msg = str(e.value)
    assert "3 steps in a row" in msg and "NaN/Inf" in msg and "step-3.ckpt" in msg
    assert os.path.isfile(tmp_path / "r" / "checkpoints" / "step-3.ckpt")
    kinds = [e["kind"] for e in rows(tmp_path / "r" / "events.jsonl")]
    assert kinds.count("bad_step") == 3 and kinds[-1] == "diverged"
    # the saved parameters are the (finite) initial ones, ready to resume with a lower lr
    ck = ckpt_format.load(str(tmp_path / "r" / "checkpoints" / "step-3.ckpt"))
    assert all(math.isfinite(x) for x in ck.tensors["params"])


def test_stop_request_checkpoints_and_resumes(data_file, tmp_path):
    def hook(trainer, step):
        if step == 2:
            trainer._stop_requested = True  # what the SIGINT handler does

    cfg = tiny(data_file, tmp_path / "r", iters=6, checkpoint_interval=0)
    result = Trainer(cfg, out=None, hooks={"after_backward": hook}).train()
    assert result.status == "interrupted" and result.step == 2
    assert result.checkpoint.endswith("step-2.ckpt") and os.path.isfile(result.checkpoint)
    resumed = Trainer(cfg, resume=ckpt_format.load(result.checkpoint), out=None).train()
    assert resumed.status == "completed" and resumed.step == 6


# ---- what the loop writes -------------------------------------------------------------------


def test_metrics_events_samples_and_config(data_file, tmp_path):
    cfg = tiny(data_file, tmp_path / "r", iters=4, eval_interval=2, sample_interval=2)
    result = Trainer(cfg, out=None).train()
    ms = rows(tmp_path / "r" / "metrics.jsonl")
    assert [r["step"] for r in ms] == [1, 2, 3, 4]
    for r in ms:
        for f in METRIC_FIELDS:
            assert f in r, f
        assert r["tokens_per_sec"] > 0 and r["ms_per_iter"] > 0
    assert [("val_loss" in r) for r in ms] == [False, True, False, True]
    assert ms[0]["lr"] == pytest.approx(cfg.train.lr / 2)  # warmup 2: step 1 at half the peak
    assert result.val_loss == ms[-1]["val_loss"]
    samples = rows(tmp_path / "r" / "samples.jsonl")
    assert [s["step"] for s in samples] == [2, 4] and all(isinstance(s["text"], str)
                                                          for s in samples)
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["model"]["vocab_size"] == result_vocab(tmp_path / "r")
    assert config["config_hash"] and config["tokenizer"] == "char"
    assert os.path.isfile(tmp_path / "r" / "train.log")


def result_vocab(run_dir):
    return json.loads((run_dir / "tokenizer.json").read_text())["vocab_size"]


def test_a_new_run_refuses_a_used_folder(data_file, tmp_path):
    cfg = tiny(data_file, tmp_path / "r", iters=1)
    Trainer(cfg, out=None).train()
    with pytest.raises(ConfigError, match="already holds a run"):
        Trainer(cfg, out=None)


def test_sampling_does_not_change_the_trajectory(data_file, tmp_path):
    a = tiny(data_file, tmp_path / "a", sample_interval=1, checkpoint_interval=0)
    b = tiny(data_file, tmp_path / "b", sample_interval=0, eval_interval=0,
             checkpoint_interval=0)
    Trainer(a, out=None).train()
    Trainer(b, out=None).train()
    assert losses(tmp_path / "a") == losses(tmp_path / "b")


def test_retention_keeps_last_k_and_best(data_file, tmp_path):
    cfg = tiny(data_file, tmp_path / "r", iters=6, checkpoint_interval=1, eval_interval=1,
               keep_checkpoints=2)
    t = Trainer(cfg, out=None)
    t.train()
    names = sorted(os.listdir(tmp_path / "r" / "checkpoints"))
    vals = {r["step"]: r["val_loss"] for r in rows(tmp_path / "r" / "metrics.jsonl")}
    best = min(vals, key=vals.get)
    expect = {5, 6, best}
    assert names == sorted(f"step-{s}.ckpt" for s in expect)


def test_recorder_failures_never_stop_training(data_file, tmp_path, monkeypatch):
    import alpha.db.recorder as recorder_mod

    class Broken:
        def __init__(self, *a, **k):
            pass

        def __getattr__(self, name):
            def fail(*a, **k):
                raise RuntimeError("database on fire")
            return fail

    monkeypatch.setattr(recorder_mod, "RunRecorder", Broken)
    result = Trainer(tiny(data_file, tmp_path / "r", iters=2), out=None).train()
    assert result.status == "completed"
    errs = [e for e in rows(tmp_path / "r" / "events.jsonl") if e["kind"] == "recorder_error"]
    assert errs and "database on fire" in errs[0]["message"]


# ---- pieces ----------------------------------------------------------------------------------


def test_schedule_warmup_then_cosine():
    kw = dict(lr=1e-3, min_lr=1e-4, warmup_iters=10, iters=110)
    assert schedule.lr_at(1, **kw) == pytest.approx(1e-4)
    assert schedule.lr_at(5, **kw) == pytest.approx(5e-4)
    assert schedule.lr_at(10, **kw) == pytest.approx(1e-3)
    assert schedule.lr_at(60, **kw) == pytest.approx(0.5 * (1e-3 + 1e-4))
    assert schedule.lr_at(110, **kw) == pytest.approx(1e-4)
    assert schedule.lr_at(500, **kw) == pytest.approx(1e-4)
    values = [schedule.lr_at(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # monotone decay
    assert schedule.lr_at(1, lr=1e-3, min_lr=0.0, warmup_iters=0, iters=100) == \
        pytest.approx(1e-3, rel=1e-3)


def test_decay_segments_and_clip():
    assert merge_segments(10, [(0, 4)]) == [(0, 4, True), (4, 6, False)]
    assert merge_segments(10, [(2, 4), (4, 6)]) == [(0, 2, False), (2, 4, True), (6, 4, False)]
    assert merge_segments(5, []) == [(0, 5, False)]
    with pytest.raises(ValueError):
        merge_segments(5, [(0, 6)])
    assert clip_coef(0.5, 1.0) == 1.0
    assert clip_coef(4.0, 1.0) == pytest.approx(0.25, rel=1e-5)
    assert clip_coef(4.0, 0.0) == 1.0  # off


def test_progress_line(tmp_path):
    out = open(tmp_path / "log.txt", "w")
    bar = Progress(100, stream=out, every=50)
    for step in range(1, 101):
        bar.update(step, loss=1.5, tok_s=12345.0, ms=20.0)
    bar.close()
    out.close()
    lines = (tmp_path / "log.txt").read_text().splitlines()
    assert len(lines) == 2 and lines[0].startswith("step 50/100 | loss 1.5000 | 12.3k tok/s")
    assert "ETA" in lines[0]
    assert format_duration(75) == "1m15s" and format_duration(4000) == "1h06m"
    assert format_rate(2.5e6) == "2.50M"
