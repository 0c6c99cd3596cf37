"""The train / sample / eval / runs commands as a user runs them (subprocesses): user mistakes are
one line on stderr and exit code 2, never a traceback; a tiny run trains, samples and evaluates."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT = ("ROMEO:\nBut, soft! what light through yonder window breaks?\nIt is the east, and Juliet "
        "is the sun.\n\n") * 20
TINY = ["--layers", "1", "--heads", "2", "--dim", "16", "--block", "16", "--batch", "2",
        "--eval-iters", "2", "--warmup", "1", "--quiet"]


def alpha(*args, cwd=None, timeout=300):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "alpha", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=timeout)


def one_line_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert lines and "Traceback" not in r.stderr, r.stderr
    err = lines[-1]  # progress notes may come first; the error is the one last line
    assert err.startswith(("error:", "python -m alpha")), r.stderr
    assert sum(line.startswith("error:") for line in lines) <= 1, r.stderr
    for n in needles:
        assert n in err, err
    return err


@pytest.fixture
def data_file(tmp_path):
    p = tmp_path / "data.txt"
    p.write_text(TEXT)
    return str(p)


def test_user_mistakes_exit_2_with_one_line(tmp_path, data_file):
    one_line_error(alpha("train", "--data", str(tmp_path / "nope.txt")), "not found")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    one_line_error(alpha("train", "--data", str(empty)), "empty")
    one_line_error(alpha("train", "--layers", "abc"), "--layers", "invalid int")
    one_line_error(alpha("train", "--activation", "tanh"), "--activation")
    one_line_error(alpha("train", "--data", data_file, "--dim", "30", "--heads", "4"),
                   "n_embd=30", "n_head=4")
    one_line_error(alpha("train", "--data", data_file, "--lr", "-1"), "lr=")
    one_line_error(alpha("train", "--config", str(tmp_path / "none.json")), "config file")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"train": {"iterz": 3}}')
    one_line_error(alpha("train", "--config", str(bad_json)), "iterz")
    short = tmp_path / "short.txt"
    short.write_text("tiny text\n")
    one_line_error(alpha("train", "--data", str(short), "--block", "64", "--run-dir",
                         str(tmp_path / "r")), "block_size")
    one_line_error(alpha("train", "--resume", str(tmp_path / "missing.ckpt")), "not found")
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"garbage" * 10)
    one_line_error(alpha("train", "--resume", str(junk)), "not an Alpha checkpoint")
    one_line_error(alpha("sample", "--checkpoint", str(junk)), "not an Alpha checkpoint")
    one_line_error(alpha("sample", "--run", str(tmp_path / "no-run")), "no run folder")
    one_line_error(alpha("eval", "--checkpoint", str(junk), "--data", data_file))


def test_train_sample_eval_runs(tmp_path, data_file):
    outputs = tmp_path / "outputs"
    run_dir = outputs / "tiny"
    r = alpha("train", "--data", data_file, *TINY, "--iters", "4", "--eval-interval", "2",
              "--sample-interval", "4", "--checkpoint-interval", "2", "--run-dir", str(run_dir),
              "--sample-tokens", "5")
    assert r.returncode == 0, r.stderr
    assert "done: 4 steps" in r.stdout
    ckpt = run_dir / "checkpoints" / "step-4.ckpt"
    assert ckpt.is_file() and (run_dir / "checkpoints" / "step-2.ckpt").is_file()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["n_embd"] == 16 and config["train"]["iters"] == 4
    assert config["train"]["lr"] == 1e-3  # not given: the dataclass default

    r = alpha("sample", "--checkpoint", str(ckpt), "--prompt", "ROMEO:", "--max-tokens", "12",
              "--seed", "3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ROMEO:")
    assert "prefill" in r.stderr and "decode" in r.stderr and "tok/s" in r.stderr
    again = alpha("sample", "--run", str(run_dir), "--prompt", "ROMEO:", "--max-tokens", "12",
                  "--seed", "3")
    assert again.stdout == r.stdout  # same seed, same text; --run finds the latest checkpoint

    r = alpha("eval", "--checkpoint", str(ckpt), "--data", data_file)
    assert r.returncode == 0, r.stderr
    assert "perplexity" in r.stdout and "loss" in r.stdout

    r = alpha("runs", "--root", str(outputs))
    assert r.returncode == 0 and "tiny" in r.stdout and "completed" in r.stdout
    assert "4/4" in r.stdout

    # resume with a longer schedule into a new folder; a changed model field is refused
    r = alpha("train", "--resume", str(ckpt), "--iters", "6", "--run-dir",
              str(outputs / "more"), "--quiet")
    assert r.returncode == 0, r.stderr
    assert (outputs / "more" / "checkpoints" / "step-6.ckpt").is_file()
    one_line_error(alpha("train", "--resume", str(ckpt), "--dim", "32", "--heads", "2"),
                   "n_embd")


def test_ctrl_c_stops_with_a_checkpoint(tmp_path, data_file):
    import signal
    import time

    run_dir = tmp_path / "r"
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.Popen([sys.executable, "-m", "alpha", "train", "--data", data_file, *TINY,
                          "--iters", "100000", "--eval-interval", "0", "--sample-interval", "0",
                          "--checkpoint-interval", "0", "--run-dir", str(run_dir)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                         env=env)
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.is_file() or
                                      len(metrics.read_text().splitlines()) < 3):
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "Traceback" not in err and "resume with" in err
    ckpts = os.listdir(run_dir / "checkpoints")
    assert len(ckpts) == 1
    step = int(ckpts[0][5:-5])
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert rows[-1]["step"] == step  # the checkpoint is the last completed step
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert events[-1]["kind"] == "interrupted"


def test_every_config_field_has_a_flag_and_only_given_flags_override(tmp_path):
    import dataclasses

    from alpha.cli.main import build_parser
    from alpha.cli.train import FLAGS, resolve_run_config
    from alpha.core.config import ModelConfig, TrainConfig

    covered = set(FLAGS.values())
    for section, cls in (("model", ModelConfig), ("train", TrainConfig)):
        for f in dataclasses.fields(cls):
            assert (section, f.name) in covered, f"no flag for {section}.{f.name}"

    parser = build_parser()
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text(json.dumps({"train": {"lr": 5e-3, "iters": 7}, "model": {"n_layer": 2}}))
    args = parser.parse_args(["train", "--config", str(cfg_file), "--iters", "9", "--no-bias"])
    config, ck = resolve_run_config(args)
    assert ck is None
    assert config.train.iters == 9  # CLI beats the file
    assert config.train.lr == 5e-3 and config.model.n_layer == 2  # the file beats the defaults
    assert config.model.bias is False
    assert config.train.warmup_iters == 50  # no data given: the embedded default run's layer

    args = parser.parse_args(["train", "--data", "x.txt"])
    config, _ = resolve_run_config(args)
    assert config.train.iters == TrainConfig().iters and config.train.data == "x.txt"


def test_default_corpus_is_bounded_and_deterministic():
    from alpha.train import default_data

    a = default_data.default_corpus(max_bytes=20_000)
    b = default_data.default_corpus(max_bytes=20_000)
    assert a == b and len(a) == 20_000 and a.startswith("# file: ")
    assert a.isascii()


def test_every_listed_command_exists_and_every_command_module_is_listed():
    """COMMANDS names exactly the modules alpha/cli/<name>.py that define a command: no entry is
    silently skipped, no command module is left out of the parser."""
    import importlib
    import pkgutil

    import alpha.cli
    from alpha.cli.main import COMMANDS, build_parser

    modules = {m.name.rstrip("_") for m in pkgutil.iter_modules(alpha.cli.__path__)
               if hasattr(importlib.import_module(f"alpha.cli.{m.name}"), "register")}
    assert set(COMMANDS) == modules
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)
