"""Spike skipping, the skip counters and --emb-grad-scale: real trainer runs on a tiny model (CPU),
and the embedding gradient checked against the unscaled model's own gradients."""

from __future__ import annotations

import json
import os

import pytest

from alpha.core.rng import Rng
from alpha.model.gpt import GPT
from alpha.tensor import get_backend
from alpha.train import checkpoint as ckpt_format
from alpha.train.sampler import BatchSampler
from alpha.train.trainer import Trainer, TrainingDiverged

from test_trainer import TEXT, rows, tiny  # noqa: F401  (the shared tiny-run helpers)


@pytest.fixture
def data_file(tmp_path):
    p = tmp_path / "data.txt"
    p.write_text(TEXT)
    return str(p)


def _blow_up_at(step_to_hit):
    """A hook that multiplies step `step_to_hit`'s gradients by 1000: a spike on a known step."""
    def hook(trainer, step):
        if step == step_to_hit:
            be = trainer.backend
            be.binary_scalar(trainer.model.grads, "mul", trainer.model.grads, 1000.0)
    return hook


def test_spike_threshold_skips_the_known_step(data_file, tmp_path):
    seen = {}

    def hook(trainer, step):
        if step == 3:
            seen["params"] = list(trainer.backend.to_array(trainer.model.params))
            seen["batch"] = trainer.sampler.state()  # after step 3's batch was drawn
        _blow_up_at(3)(trainer, step)

    cfg = tiny(data_file, tmp_path / "r", iters=5, spike_threshold=50.0, checkpoint_interval=0)
    t = Trainer(cfg, out=None, hooks={"after_backward": hook})
    assert t.train().status == "completed"
    ms = rows(tmp_path / "r" / "metrics.jsonl")
    assert [r["spike_skips"] for r in ms] == [0, 0, 1, 1, 1]
    assert [r["nan_skips"] for r in ms] == [0] * 5
    assert ms[2].get("skipped") is True and ms[2]["grad_norm"] > 50.0
    assert all(r["grad_norm"] < 50.0 for i, r in enumerate(ms) if i != 2)
    assert ms[2]["clip_coef"] is None  # no update, no clip
    assert t.optimizer.step == 4
    events = [e for e in rows(tmp_path / "r" / "events.jsonl") if e["kind"] == "spike_skip"]
    assert len(events) == 1
    ev = events[0]
    assert ev["step"] == 3 and ev["level"] == "warning"
    p = ev["payload"]
    assert p["step"] == 3 and p["grad_norm"] == ms[2]["grad_norm"] and p["threshold"] == 50.0
    # the batch position: the sampler state that drew step 3's batch; a sampler restored from it
    # draws exactly that batch again
    assert p["batch"]["batches"] == 2 and p["batch"]["mode"] == "random"
    again = BatchSampler(t.data.train, 2, 16, Rng(7))
    again.restore(p["batch"])
    x3, _ = again.next_batch()
    assert again.state() == seen["batch"]
    replay = BatchSampler(t.data.train, 2, 16, Rng(7))
    for _ in range(2):
        replay.next_batch()
    assert replay.next_batch()[0] == x3


def test_nan_and_spike_counts_survive_resume(data_file, tmp_path):
    """nan_skips and spike_skips count since the run began: a resumed run continues them, and the
    resumed lines equal the uninterrupted run's (counts, losses, epoch) bit for bit."""
    def hook(trainer, step):
        if step == 2:
            trainer.backend.fill(trainer.model.grads, float("nan"))
        _blow_up_at(4)(trainer, step)

    cfg = tiny(data_file, tmp_path / "a", iters=6, spike_threshold=50.0, checkpoint_interval=5)
    Trainer(cfg, out=None, hooks={"after_backward": hook}).train()
    a = rows(tmp_path / "a" / "metrics.jsonl")
    assert [(r["nan_skips"], r["spike_skips"]) for r in a] == [
        (0, 0), (1, 0), (1, 0), (1, 1), (1, 1), (1, 1)]
    ck = ckpt_format.load(str(tmp_path / "a" / "checkpoints" / "step-5.ckpt"))
    assert ck.header["counters"]["nan_skips"] == 1 and ck.header["counters"]["spike_skips"] == 1
    Trainer(cfg, resume=ck, run_dir=str(tmp_path / "b"), out=None,
            hooks={"after_backward": hook}).train()
    b = rows(tmp_path / "b" / "metrics.jsonl")
    keys = ("loss", "grad_norm", "nan_skips", "spike_skips", "epoch")
    assert [[r[k] for k in keys] for r in b] == [[r[k] for k in keys] for r in a[5:]]


def test_spikes_in_a_row_stop_the_run_saying_why(data_file, tmp_path):
    cfg = tiny(data_file, tmp_path / "r", iters=20, spike_threshold=1e-6, max_bad_steps=2,
               checkpoint_interval=0)
    with pytest.raises(TrainingDiverged) as e:
        Trainer(cfg, out=None).train()
    assert "2 steps in a row" in str(e.value) and "--spike-threshold" in str(e.value)


# ---- emb_grad_scale -----------------------------------------------------------------------------


def _grads(tie: bool, scale: float) -> dict:
    from alpha.core.config import ModelConfig

    be = get_backend("cpu")
    cfg = ModelConfig(vocab_size=11, n_layer=1, n_head=2, n_embd=8, block_size=6,
                      tie_embeddings=tie)
    model = GPT(cfg, be, Rng(3))
    model.emb_grad_scale = scale
    ids = be.from_array([(3 * i) % 11 for i in range(12)], (2, 6), "i32")
    targets = be.from_array([(5 * i + 1) % 11 for i in range(12)], (2, 6), "i32")
    model.zero_grad()
    model.forward(ids, targets)
    model.backward()
    return {name: list(be.to_array(v.grad)) for name, v in model.vars.items()}


def test_emb_grad_scale_scales_only_the_lookup_gradient():
    """Untied: wte's and wpe's gradients scale by S, every other gradient is unchanged, bit for
    bit. Tied: wte's gradient is the head's share (S=0) plus S times the lookup's share."""
    base, half = _grads(False, 1.0), _grads(False, 0.5)
    for name in base:
        if name in ("wte", "wpe"):
            assert half[name] == pytest.approx([0.5 * g for g in base[name]], rel=1e-6, abs=1e-9)
        else:
            assert half[name] == base[name], name
    t1, t0, tq = _grads(True, 1.0), _grads(True, 0.0), _grads(True, 0.25)
    assert any(abs(a - b) > 1e-6 for a, b in zip(t1["wte"], t0["wte"]))  # the lookup's share
    assert any(abs(g) > 1e-6 for g in t0["wte"])  # the head's share stays at S=0
    want = [h + 0.25 * (full - h) for full, h in zip(t1["wte"], t0["wte"])]
    assert tq["wte"] == pytest.approx(want, rel=1e-5, abs=1e-8)
    assert tq["h.0.mlp.c_fc.weight"] == t1["h.0.mlp.c_fc.weight"]


def test_emb_grad_scale_is_saved_and_changes_training(data_file, tmp_path):
    Trainer(tiny(data_file, tmp_path / "a", iters=3), out=None).train()
    Trainer(tiny(data_file, tmp_path / "b", iters=3, emb_grad_scale=0.1), out=None).train()
    a, b = rows(tmp_path / "a" / "metrics.jsonl"), rows(tmp_path / "b" / "metrics.jsonl")
    assert a[0]["loss"] == b[0]["loss"]  # the forward is the same
    assert a[0]["grad_norm"] != b[0]["grad_norm"] and a[2]["loss"] != b[2]["loss"]
    config = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config["train"]["emb_grad_scale"] == 0.1
    ck = ckpt_format.load(os.path.join(tmp_path, "b", "checkpoints", "step-3.ckpt"))
    assert ck.header["config"]["train"]["emb_grad_scale"] == 0.1


def test_all_new_options_resume_bit_exactly_in_place(data_file, tmp_path):
    """emb_grad_scale, packed, spike_threshold and layer stats together, dropout on: resuming in
    the same folder from step 3 rewrites steps 4..6 (metrics and layer stats) with the same bits."""
    cfg = tiny(data_file, tmp_path / "a", iters=6, emb_grad_scale=0.3, packed=True,
               spike_threshold=100.0, layer_stats_interval=2, model={"dropout": 0.1})
    Trainer(cfg, out=None).train()
    keys = ("loss", "grad_norm", "epoch", "nan_skips", "spike_skips")
    before = [[r[k] for k in keys] for r in rows(tmp_path / "a" / "metrics.jsonl")]
    stats_before = [(r["step"], r["grad_norm"], r["param_norm"])
                    for r in rows(tmp_path / "a" / "layer_stats.jsonl")]
    ck = ckpt_format.load(str(tmp_path / "a" / "checkpoints" / "step-3.ckpt"))
    Trainer(cfg, resume=ck, out=None).train()
    after = [[r[k] for k in keys] for r in rows(tmp_path / "a" / "metrics.jsonl")]
    stats_after = [(r["step"], r["grad_norm"], r["param_norm"])
                   for r in rows(tmp_path / "a" / "layer_stats.jsonl")]
    assert after == before
    assert stats_after == stats_before and [s[0] for s in stats_after] == [2, 4, 6]
