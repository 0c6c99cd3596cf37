"""A tiny GPT trained on cpu and on helios from the same seed: the losses of 20 steps agree
within relative 1e-3. helios runs in a subprocess (a driver crash fails the test, not pytest)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from test_helios import ROOT, _py  # noqa: F401  (require_peer lives in _py)

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
        "First Citizen:\nYou are all resolved rather to die than to famish?\n\n") * 12

RUN = """
    import sys
    from alpha.core.config import resolve
    from alpha.train.trainer import Trainer
    backend, data, run_dir = sys.argv[1:4]
    t = {"data": data, "batch_size": 2, "iters": 20, "eval_interval": 0, "eval_iters": 1,
         "sample_interval": 0, "checkpoint_interval": 0, "warmup_iters": 2, "lr": 3e-3,
         "run_dir": run_dir, "seed": 7, "backend": backend}
    model = {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16}
    cfg = resolve("text", "", {"model": model, "train": t, "sample": {"max_tokens": 8}})
    Trainer(cfg, out=None, handle_sigint=False).train()
"""


def _losses(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line)["loss"] for line in f if line.strip()]


def _cpu(code, data, run_dir):
    return subprocess.run([sys.executable, "-c", code, "cpu", str(data), str(run_dir)],
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True,
                          text=True, timeout=600)


def test_cpu_and_helios_losses_agree(tmp_path):
    data = tmp_path / "data.txt"
    data.write_text(TEXT)
    runs = {}
    for backend in ("cpu", "helios"):
        run_dir = tmp_path / backend
        code = textwrap.dedent(RUN)
        if backend == "helios":
            r = _py("import sys; sys.argv = ['x', %r, %r, %r]\n" % (backend, str(data),
                                                                   str(run_dir)) + code,
                    timeout=600)
        else:
            r = _cpu(code, data, run_dir)
        assert r.returncode == 0, f"{backend}: {r.stdout[-2000:]}{r.stderr[-4000:]}"
        runs[backend] = _losses(run_dir)
    cpu, gpu = runs["cpu"], runs["helios"]
    assert len(cpu) == len(gpu) == 20
    for step, (a, b) in enumerate(zip(cpu, gpu), 1):
        assert abs(a - b) <= 1e-3 * abs(a), f"step {step}: cpu {a} helios {b}\n{cpu}\n{gpu}"
