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


def test_serve_refuses_an_outputs_folder_that_does_not_exist(tmp_path):
    r = _alpha(tmp_path, "serve", "--outputs", str(tmp_path / "typo"), "--port", "0", timeout=30)
    line = _one_line_exit_2(r)
    assert f"outputs folder {tmp_path / 'typo'} does not exist" in line
    assert "--outputs DIR" in line
    assert not (tmp_path / "typo").exists()  # no folder, no alpha.db


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


def test_a_broken_env_local_is_one_line_not_a_traceback(tmp_path):
    (tmp_path / ".env.local").write_bytes(b"ALPHA_NUM_THREADS=1\n\xff\xfe\n")
    line = _one_line_exit_2(_alpha(tmp_path, "runs"))
    assert ".env.local" in line
    # lines the OS cannot hold as variables are skipped; the good ones still count
    (tmp_path / ".env.local").write_bytes(b"=x\nA\x00B=1\nQA_ENV_OK=yes\n")
    r = _alpha(tmp_path, "runs")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    from alpha.cli.main import load_env_file
    os.environ.pop("QA_ENV_OK", None)
    try:
        load_env_file(str(tmp_path / ".env.local"))
        assert os.environ.get("QA_ENV_OK") == "yes"
    finally:
        os.environ.pop("QA_ENV_OK", None)


def test_serve_answers_a_corrupt_checkpoint_with_a_clear_error(tmp_path):
    """A served run whose checkpoint is damaged gets OpenAI's error JSON naming the problem (and
    one log line), not "internal server error" and a traceback in the log."""
    import json
    import urllib.error
    import urllib.request

    (tmp_path / "data.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 200)
    r = _alpha(tmp_path, "train", "--data", "data.txt", "--layers", "1", "--heads", "1", "--dim",
               "16", "--block", "16", "--batch", "2", "--iters", "2", "--eval-iters", "1",
               "--sample-tokens", "4", "--quiet", "--run-dir", "outputs/r1")
    assert r.returncode == 0, r.stderr
    ckpt = tmp_path / "outputs" / "r1" / "checkpoints" / "step-2.ckpt"
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    ckpt.write_bytes(bytes(data))

    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("ALPHA_API_KEY", None)
    proc = subprocess.Popen([sys.executable, "-m", "alpha", "serve", "--port", "0"], cwd=tmp_path,
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert line.startswith("serving on http://"), line
        url = line.split()[2]
        req = urllib.request.Request(url + "/v1/completions", method="POST",
                                     data=json.dumps({"model": "r1", "prompt": "the",
                                                      "max_tokens": 2}).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=30)
            raise AssertionError("a corrupt checkpoint was served")
        except urllib.error.HTTPError as e:
            body = json.loads(e.read())
        assert body["error"]["code"] == "model_load_failed", body
        assert "corrupt" in body["error"]["message"], body
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "Traceback" not in err, err
    assert "cannot load model r1" in err


def test_a_webhook_url_that_is_not_a_url_is_warned_about(tmp_path):
    (tmp_path / "data.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 200)
    env = dict(os.environ, PYTHONPATH=ROOT, ALPHA_WEBHOOK_URL="discord.com/api/webhooks/1/x")
    for name in ("ALPHA_REMOTE_URL", "ALPHA_REMOTE_SECRET"):
        env.pop(name, None)
    r = subprocess.run([sys.executable, "-m", "alpha", "train", "--data", "data.txt", "--layers",
                        "1", "--heads", "1", "--dim", "16", "--block", "16", "--batch", "2",
                        "--iters", "2", "--eval-iters", "1", "--sample-tokens", "4", "--quiet"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "ALPHA_WEBHOOK_URL must start with http" in r.stderr, r.stderr


def test_report_with_the_wrong_secret_says_so_and_exits_2(tmp_path):
    (tmp_path / "data.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 200)
    r = _alpha(tmp_path, "train", "--data", "data.txt", "--layers", "1", "--heads", "1", "--dim",
               "16", "--block", "16", "--batch", "2", "--iters", "2", "--eval-iters", "1",
               "--sample-tokens", "4", "--quiet", "--run-dir", "runs/r1")
    assert r.returncode == 0, r.stderr
    (tmp_path / "srv").mkdir()
    env = dict(os.environ, PYTHONPATH=ROOT, UPLOAD_SECRET="right")
    proc = subprocess.Popen([sys.executable, "-m", "alpha", "serve", "--port", "0"],
                            cwd=tmp_path / "srv", env=env, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert line.startswith("serving on http://"), line
        url = line.split()[2]
        env = dict(os.environ, PYTHONPATH=ROOT, ALPHA_REMOTE_URL=url, ALPHA_REMOTE_SECRET="wrong")
        r = subprocess.run([sys.executable, "-m", "alpha", "report", "runs/r1", "--timeout", "3"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        line = _one_line_exit_2(r)
        assert "ALPHA_REMOTE_SECRET" in line and "401" in line
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
