"""Integration QA: user mistakes met through the real command line (`python -m alpha ...` in a
subprocess) end in one line on stderr and exit code 2 — never a traceback, never a hang."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from array import array

from alpha.core.config import ModelConfig
from alpha.interop.export import export_checkpoint
from alpha.interop.hf_import import checkpoint_header
from alpha.model.params import num_params
from alpha.tokenizers.gpt2 import BYTE_TO_CHAR, EOT, GPT2Tokenizer
from alpha.train import checkpoint as ckpt_format

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = ModelConfig(vocab_size=260, n_layer=1, n_head=2, n_embd=16, block_size=8)


def _alpha(cwd, *args, timeout=60):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "alpha", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _one_line_exit_2(r):
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, r.stderr
    return lines[0]


def _checkpoint(path):
    rng = random.Random(0)
    n = num_params(CFG)
    tok = GPT2Tokenizer(list(BYTE_TO_CHAR.values()) + [EOT], [], vocab_size=CFG.vocab_size)
    ckpt_format.save(str(path), checkpoint_header(CFG, tok, {}),
                     {"params": (array("f", (rng.gauss(0, 0.02) for _ in range(n))), (n,),
                                 "f32")})


def test_export_and_import_into_a_path_under_a_file_say_so(tmp_path):
    _checkpoint(tmp_path / "m.ckpt")
    export_checkpoint(str(tmp_path / "m.ckpt"), str(tmp_path / "hf"))
    (tmp_path / "notes.txt").write_text("a file, not a folder\n")

    line = _one_line_exit_2(_alpha(tmp_path, "export", "--checkpoint", "m.ckpt",
                                   "--out", "notes.txt/hf"))
    assert "notes.txt is a file, not a folder" in line
    # import: the write error must not be hidden behind the safetensors map's BufferError
    line = _one_line_exit_2(_alpha(tmp_path, "import", "--from", "hf", "--out", "notes.txt/m.ckpt"))
    assert "notes.txt is a file, not a folder" in line
    assert (tmp_path / "notes.txt").read_text() == "a file, not a folder\n"


def test_init_from_a_folder_without_tokenizer_points_to_import(tmp_path):
    _checkpoint(tmp_path / "m.ckpt")
    export_checkpoint(str(tmp_path / "m.ckpt"), str(tmp_path / "hf"))
    for name in os.listdir(tmp_path / "hf"):
        if name not in ("config.json", "model.safetensors", "generation_config.json"):
            os.remove(tmp_path / "hf" / name)
    (tmp_path / "data.txt").write_text("hello world\n" * 50)
    line = _one_line_exit_2(_alpha(tmp_path, "train", "--init-from", "hf", "--data", "data.txt",
                                   "--iters", "1"))
    # train's own --tokenizer is a kind (char|bpe|word): the way out is `alpha import`
    assert "alpha import --from hf --tokenizer" in line


def test_serve_refuses_a_file_as_outputs(tmp_path):
    (tmp_path / "runs.txt").write_text("x\n")
    line = _one_line_exit_2(_alpha(tmp_path, "serve", "--outputs", "runs.txt", "--port", "0",
                                   timeout=30))
    assert "--outputs runs.txt" in line


def test_quiet_training_still_warns_that_the_remote_server_missed_the_run(tmp_path):
    """--quiet drops the progress line, not the warnings: a run whose server never answered says
    where its reports wait (and how to send them) on stderr."""
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "data.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 200)
    args = ("train", "--data", "data.txt", "--layers", "1", "--heads", "1", "--dim", "16",
            "--block", "16", "--batch", "2", "--iters", "2", "--eval-iters", "1",
            "--sample-tokens", "4", "--quiet")
    env = dict(os.environ, PYTHONPATH=ROOT, ALPHA_REMOTE_URL=f"http://127.0.0.1:{port}")
    r = subprocess.run([sys.executable, "-m", "alpha", *args, "--run-dir", "a"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "ALPHA_REMOTE_SECRET is not" in r.stderr  # the start-up warning
    env["ALPHA_REMOTE_SECRET"] = "x"
    r = subprocess.run([sys.executable, "-m", "alpha", *args, "--run-dir", "b"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "python -m alpha report b" in r.stderr, r.stderr


def test_runs_refuses_a_file_as_root(tmp_path):
    (tmp_path / "notes.txt").write_text("x\n")
    line = _one_line_exit_2(_alpha(tmp_path, "runs", "--root", "notes.txt"))
    assert "--root notes.txt" in line
