"""What a run tells while it trains: per-phase times, MFU, the epoch and skip counts in every
metrics line; per-layer gradient norms; planning guardrails (warnings, --strict-planning errors);
`alpha events` on a finished run and --follow on a growing file (real subprocesses)."""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from alpha.core.config import ModelConfig
from alpha.model import params as P
from alpha.train import mfu, planning
from alpha.train.trainer import Trainer

from test_trainer import TEXT, rows, tiny

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHASES = ("data_ms", "forward_ms", "backward_ms", "optimizer_ms")


@pytest.fixture
def data_file(tmp_path):
    p = tmp_path / "data.txt"
    p.write_text(TEXT)
    return str(p)


def _alpha(*args, timeout=120, **kw):
    return subprocess.run([sys.executable, "-m", "alpha", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, PYTHONPATH=ROOT), **kw)


# ---- metrics lines ------------------------------------------------------------------------------


def test_every_metrics_line_has_phases_mfu_epoch_and_counts(data_file, tmp_path):
    cfg = tiny(data_file, tmp_path / "r", iters=4, eval_interval=2, accum_steps=2)
    t = Trainer(cfg, out=None)
    t.train()
    ms = rows(tmp_path / "r" / "metrics.jsonl")
    for r in ms:
        for key in PHASES:
            assert r[key] >= 0.0, key
        # the phases are parts of the step (timer granularity aside)
        assert sum(r[k] for k in PHASES) <= r["ms_per_iter"] * 1.001 + 0.05
        assert 0.0 < r["mfu"] < 1.0 and math.isfinite(r["mfu"])
        assert r["nan_skips"] == 0 and r["spike_skips"] == 0
        # mfu = FLOPs of the step (batch 2 x block 16 x accum 2 tokens) / seconds / peak
        step_flops = t.meter.flops_per_token * 2 * 16 * 2
        assert r["mfu"] == pytest.approx(step_flops / (r["ms_per_iter"] / 1000) / t.meter.peak,
                                         rel=1e-9)
    assert [("eval_ms" in r) for r in ms] == [False, True, False, True]
    assert all(r["eval_ms"] > 0 for r in ms if "eval_ms" in r)
    # random windows: epoch = tokens drawn / training tokens
    n_train = json.loads((tmp_path / "r" / "config.json").read_text())["info"]["train_tokens"]
    assert [r["epoch"] for r in ms] == pytest.approx([2 * 16 * 2 * s / n_train
                                                      for s in (1, 2, 3, 4)])


def test_flops_per_token_is_nanogpts_estimate():
    """6 N + 12 L C T, N the parameters less wpe. On nanoGPT's Shakespeare baby config N is
    the 10.65M nanoGPT prints (10,646,784), counted here from GPT-2's layer shapes."""
    V, L, C, T = 65, 6, 384, 256
    cfg = ModelConfig(vocab_size=V, n_layer=L, n_head=6, n_embd=C, block_size=T, bias=False)
    per_layer = C + C * 3 * C + C * C + C + C * 4 * C + 4 * C * C  # ln_1, attn, ln_2, mlp
    n = V * C + L * per_layer + C  # wte (tied head) + blocks + ln_f; no wpe
    assert n == 10_646_784
    assert mfu.flops_per_token(cfg, P.param_table(cfg)) == 6 * n + 12 * L * C * T


def test_peak_is_measured_once_and_cached(tmp_path, monkeypatch):
    from alpha.tensor import get_backend

    monkeypatch.setenv("ALPHA_CACHE_DIR", str(tmp_path))
    be = get_backend("cpu")
    first = mfu.peak_flops(be)
    assert first > 1e8  # any CPU of this decade does 0.1 GFLOP/s of vector FMAs
    cached = json.loads((tmp_path / mfu.CACHE_NAME).read_text())
    assert list(cached.values()) == [first]
    assert mfu.peak_flops(be) == first


def test_layer_stats_rows_every_n_steps(data_file, tmp_path):
    cfg = tiny(data_file, tmp_path / "r", iters=6, layer_stats_interval=2,
               model={"n_layer": 2})
    Trainer(cfg, out=None).train()
    stats = rows(tmp_path / "r" / "layer_stats.jsonl")
    ms = {r["step"]: r for r in rows(tmp_path / "r" / "metrics.jsonl")}
    assert [r["step"] for r in stats] == [2, 4, 6]
    for r in stats:
        assert list(r["grad_norm"]) == ["embed", "h.0", "h.1", "head"]
        assert list(r["param_norm"]) == ["embed", "h.0", "h.1", "head"]
        # the layers' squares add up to the global (pre-clip) norm of the metrics line
        total = math.sqrt(sum(v * v for v in r["grad_norm"].values()))
        assert total == pytest.approx(ms[r["step"]]["grad_norm"], rel=1e-4)
        assert r["ms"] >= 0
    assert "layer_stats" not in json.dumps(list(ms.values()))  # metrics.jsonl unchanged in kind


# ---- planning guardrails ------------------------------------------------------------------------


def test_planning_warnings_are_printed_and_recorded(data_file, tmp_path):
    out = io.StringIO()
    cfg = tiny(data_file, tmp_path / "r", iters=3, eval_interval=5, checkpoint_interval=10,
               warmup_iters=3)
    Trainer(cfg, out=out).train()
    text = out.getvalue()
    assert "tokens per parameter" in text
    assert "warmup_iters=3 >= iters=3" in text
    assert "eval_interval=5 > iters=3" in text and "checkpoint_interval=10 > iters=3" in text
    events = [e for e in rows(tmp_path / "r" / "events.jsonl") if e["kind"] == "planning"]
    assert len(events) == 4 and all(e["level"] == "warning" for e in events)


def test_planning_check_thresholds():
    from alpha.core.config import TrainConfig

    fine = TrainConfig(iters=1000, batch_size=16, warmup_iters=10, eval_interval=100,
                       eval_iters=10, sample_interval=500, checkpoint_interval=500)
    assert planning.check(fine, n_params=100_000, block_size=64, train_tokens=1_000_000,
                          val_tokens=100_000) == []
    many = planning.check(fine, n_params=100_000, block_size=64, train_tokens=5_000,
                          val_tokens=500)
    assert any("passes over the" in w for w in many)
    assert any("validation tokens" in w for w in many)


def test_strict_planning_is_exit_2_one_line_each(data_file, tmp_path):
    run_dir = tmp_path / "strict"
    r = _alpha("train", "--data", data_file, "--layers", "1", "--heads", "2", "--dim", "16",
               "--block", "16", "--batch", "2", "--iters", "3", "--eval-interval", "5",
               "--warmup", "1", "--sample-interval", "0", "--checkpoint-interval", "0",
               "--run-dir", str(run_dir), "--strict-planning", "--quiet")
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 2, r.stderr
    assert all(line.startswith("error: planning: ") for line in lines)
    assert "Traceback" not in r.stderr
    assert not run_dir.exists()  # refused before the run began: nothing left behind


# ---- alpha events -------------------------------------------------------------------------------


def test_events_of_a_finished_run(data_file, tmp_path):
    cfg = tiny(data_file, tmp_path / "r", iters=3, eval_interval=3)
    Trainer(cfg, out=None).train()
    r = _alpha("events", "--run", str(tmp_path / "r"))
    assert r.returncode == 0, r.stderr
    events = rows(tmp_path / "r" / "events.jsonl")
    lines = r.stdout.splitlines()
    assert len(lines) == len(events)
    for line, e in zip(lines, events):
        assert e["kind"] in line and e["message"] in line and e["level"] in line
    assert "completed" in lines[-1]
    # a run id under --outputs resolves too; --kind filters
    r = _alpha("events", "--run", "r", "--outputs", str(tmp_path), "--kind", "eval")
    assert r.returncode == 0 and r.stdout.count("\n") == 1 and "val loss" in r.stdout
    r = _alpha("events", "--run", "nothing-here", "--outputs", str(tmp_path))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "nothing-here" in r.stderr


def test_events_follow_a_growing_file_and_stop_on_ctrl_c(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    path = run / "events.jsonl"

    def event(step, kind, message):
        with open(path, "a") as f:
            f.write(json.dumps({"step": step, "level": "info", "kind": kind, "message": message,
                                "payload": {}, "time": "2026-01-01T00:00:00Z"}) + "\n")

    event(0, "start", "started: tiny")
    p = subprocess.Popen([sys.executable, "-m", "alpha", "events", "--run", str(run), "--follow"],
                         cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.extend(iter(p.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        _wait(lambda: len(got) == 1, p)
        event(5, "eval", "step 5: val loss 2.5")
        with open(path, "a") as f:  # half a line: printed only once its newline arrives
            f.write('{"step": 6, "level": "warning", "kind": "spike_skip", "mess')
        _wait(lambda: len(got) == 2, p)
        time.sleep(0.5)
        assert len(got) == 2
        with open(path, "a") as f:
            f.write('age": "step 6: gradient norm 9", "payload": {}, "time": "t"}\n')
        _wait(lambda: len(got) == 3, p)
    finally:
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=30)
    reader.join(timeout=5)
    err = p.stderr.read()
    assert rc == 0 and "Traceback" not in err, err
    assert "start" in got[0] and "val loss 2.5" in got[1] and "spike_skip" in got[2]
    assert "gradient norm 9" in got[2]


def _wait(cond, proc, timeout=30.0):
    end = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"events --follow ended early: {proc.stderr.read()}")
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for events --follow")
        time.sleep(0.05)


# ---- the readers of a run folder ----------------------------------------------------------------


def test_dashboard_and_database_read_the_new_lines(data_file, tmp_path):
    """The TUI's run model and the database sync take a run with every new option (spike skip
    included): no errors, the new keys come back from the database as they were written, and
    layer_stats.jsonl is a file of its own that neither reads as metrics."""
    from alpha.db import queries
    from alpha.db.store import open_store
    from alpha.db.sync import sync_from_disk
    from alpha.tui.model import Run

    outputs = tmp_path / "outputs"
    cfg = tiny(data_file, outputs / "run-new", iters=4, packed=True, spike_threshold=50.0,
               layer_stats_interval=2, emb_grad_scale=0.5, eval_interval=2)

    def hook(trainer, step):
        if step == 3:
            be = trainer.backend
            be.binary_scalar(trainer.model.grads, "mul", trainer.model.grads, 1000.0)

    Trainer(cfg, out=None, hooks={"after_backward": hook}).train()
    metrics = rows(outputs / "run-new" / "metrics.jsonl")
    events = rows(outputs / "run-new" / "events.jsonl")
    assert any(e["kind"] == "spike_skip" for e in events)

    run = Run("run-new", str(outputs / "run-new"))
    for row in metrics:
        run.add_metric(row)
    for row in events:
        run.add_event(row)
    assert run.last_row["step"] == 4 and run.status == "completed"

    store = open_store(f"file:{tmp_path / 'alpha.db'}", timeout=5.0, retries=1)
    try:
        store.migrate()
        report = sync_from_disk(store, str(outputs))
        assert report.problems == []
        back = queries.metrics(store, "run-new")
        assert [r["step"] for r in back] == [1, 2, 3, 4]
        for got, want in zip(back, metrics):
            for key in ("forward_ms", "mfu", "epoch", "nan_skips", "spike_skips"):
                assert got[key] == pytest.approx(want[key], rel=1e-12), key
        kinds = [e["kind"] for e in queries.events(store, "run-new")]
        assert "spike_skip" in kinds and "layer_stats" not in kinds
    finally:
        store.close()
