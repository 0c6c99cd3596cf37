"""The trainer's stability/data/observability options on helios (lavapipe here): --packed,
--spike-threshold, --emb-grad-scale and --layer-stats-interval train the same losses as on the
CPU (relative 1e-3), and every metrics line carries the phases, MFU (the matmul peak measured on
the device), epoch and skip counts. helios runs in a subprocess, as in test_helios_train."""

from __future__ import annotations

import json
import os
import textwrap

from alpha.tensor import build
from alpha.train import mfu

from test_helios import _py
from test_helios_train import TEXT, _cpu

RUN = """
    import sys
    from alpha.core.config import resolve
    from alpha.train.trainer import Trainer
    backend, data, run_dir = sys.argv[1:4]
    t = {"data": data, "batch_size": 2, "iters": 8, "eval_interval": 4, "eval_iters": 1,
         "sample_interval": 0, "checkpoint_interval": 0, "warmup_iters": 2, "lr": 3e-3,
         "run_dir": run_dir, "seed": 7, "backend": backend, "packed": True,
         "spike_threshold": 50.0, "emb_grad_scale": 0.5, "layer_stats_interval": 4}
    model = {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16}
    cfg = resolve("text", "", {"model": model, "train": t, "sample": {"max_tokens": 8}})
    Trainer(cfg, out=None, handle_sigint=False).train()
"""

KEYS = ("data_ms", "forward_ms", "backward_ms", "optimizer_ms", "mfu", "epoch", "nan_skips",
        "spike_skips")


def _rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_new_options_on_helios_match_cpu(tmp_path):
    data = tmp_path / "data.txt"
    data.write_text(TEXT)
    code = textwrap.dedent(RUN)
    r = _py("import sys; sys.argv = ['x', 'helios', %r, %r]\n" % (str(data),
                                                               str(tmp_path / "helios")) + code,
            timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    c = _cpu(code, data, tmp_path / "cpu")
    assert c.returncode == 0, c.stderr[-4000:]
    gpu = _rows(tmp_path / "helios" / "metrics.jsonl")
    cpu = _rows(tmp_path / "cpu" / "metrics.jsonl")
    assert len(gpu) == len(cpu) == 8
    for a, b in zip(cpu, gpu):
        assert abs(a["loss"] - b["loss"]) <= 1e-3 * abs(a["loss"]), (a["loss"], b["loss"])
        assert a["epoch"] == b["epoch"]  # the packed order is the host's: the same windows
        for key in KEYS:
            assert key in b, key
        assert b["mfu"] > 0 and b["spike_skips"] == 0 and b["nan_skips"] == 0
    assert [("eval_ms" in r) for r in gpu] == [False, False, False, True] * 2
    stats = _rows(tmp_path / "helios" / "layer_stats.jsonl")
    assert [s["step"] for s in stats] == [4, 8]
    assert list(stats[0]["grad_norm"]) == ["embed", "h.0", "h.1", "head"]
    cache = json.loads((build.cache_dir() / mfu.CACHE_NAME).read_text())
    assert any(key.startswith("helios|") for key in cache)  # the device's measured peak
    assert os.path.isfile(tmp_path / "helios" / "config.json")
