"""Faults as a user meets them, through real subprocesses: two trainers on one run folder, SIGTERM
from a scheduler, a run killed mid-line, a run folder that cannot be made, a full disk (a real
small tmpfs when we may mount one, else /dev/full), and what each leaves behind.

Every case asserts the exit code, one clear line on stderr (no traceback), and that no data was
lost or mixed: the checkpoints that existed still load, every log line parses, a resume is still
bit-exact."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from alpha.core.config import RunConfig
from alpha.train import checkpoint as ckpt_format
from alpha.train.trainer import Trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT = ("ROMEO:\nBut, soft! what light through yonder window breaks?\nIt is the east, and Juliet "
        "is the sun.\n\n") * 20
TINY = ["--layers", "1", "--heads", "2", "--dim", "16", "--block", "16", "--batch", "2",
        "--eval-iters", "2", "--warmup", "1", "--quiet", "--eval-interval", "0",
        "--sample-interval", "0"]
FOREVER = ["--iters", "1000000", "--checkpoint-interval", "0"]
WAIT_S = 120  # generous: the machine may be loaded by other work


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = ROOT + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("TURSO_DATABASE_URL", None)
    return e


def alpha(*args, cwd=None, timeout=WAIT_S, extra_env=None):
    return subprocess.run([sys.executable, "-m", "alpha", *args], capture_output=True,
                          text=True, cwd=cwd or ROOT, env={**env(), **(extra_env or {})},
                          timeout=timeout)


def start(*args, cwd=None):
    return subprocess.Popen([sys.executable, "-m", "alpha", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd or ROOT, env=env())


def one_line_error(returncode, stderr, *needles):
    assert returncode == 2, (returncode, stderr)
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error:"), stderr
    assert sum(line.startswith("error:") for line in lines) == 1, stderr
    for n in needles:
        assert n in lines[-1], lines[-1]
    return lines[-1]


def wait_for_lines(path, n, proc=None):
    deadline = time.time() + WAIT_S
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"exited early ({proc.returncode}): {proc.stderr.read()}")
        try:
            with open(path) as f:
                if len(f.read().splitlines()) >= n:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{path} never reached {n} lines")


def jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]  # every line must parse


@pytest.fixture
def data_file(tmp_path):
    p = tmp_path / "data.txt"
    p.write_text(TEXT)
    return str(p)


# ---- one writer per run folder ----------------------------------------------------------------


def test_two_trainers_on_one_run_folder(tmp_path, data_file):
    """Started at the same moment: one trains, the other exits 2 naming the holder's pid; the
    same for two resumes of one checkpoint into one folder."""
    run = str(tmp_path / "r")
    procs = [start("train", "--data", data_file, *TINY, *FOREVER, "--run-dir", run)
             for _ in range(2)]
    try:
        deadline = time.time() + WAIT_S
        while time.time() < deadline and all(p.poll() is None for p in procs):
            time.sleep(0.05)
        loser = next(p for p in procs if p.poll() is not None)
        winner = next(p for p in procs if p is not loser)
        _, err = loser.communicate()
        one_line_error(loser.returncode, err, "in use by another Alpha process",
                       f"pid {winner.pid}")
        wait_for_lines(os.path.join(run, "metrics.jsonl"), 3, winner)
        winner.send_signal(signal.SIGTERM)
        _, err = winner.communicate(timeout=WAIT_S)
        assert winner.returncode == 143, err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    steps = [r["step"] for r in jsonl(os.path.join(run, "metrics.jsonl"))]
    assert steps == list(range(1, len(steps) + 1))  # one writer: no interleaving
    ckpt = ckpt_format.list_steps(os.path.join(run, "checkpoints"))[steps[-1]]

    procs = [start("train", "--resume", ckpt, *FOREVER, "--quiet") for _ in range(2)]
    try:
        deadline = time.time() + WAIT_S
        while time.time() < deadline and all(p.poll() is None for p in procs):
            time.sleep(0.05)
        loser = next(p for p in procs if p.poll() is not None)
        winner = next(p for p in procs if p is not loser)
        _, err = loser.communicate()
        one_line_error(loser.returncode, err, f"pid {winner.pid}")
        wait_for_lines(os.path.join(run, "metrics.jsonl"), len(steps) + 2, winner)
        winner.send_signal(signal.SIGTERM)
        winner.communicate(timeout=WAIT_S)
        assert winner.returncode == 143
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    steps = [r["step"] for r in jsonl(os.path.join(run, "metrics.jsonl"))]
    assert steps == list(range(1, len(steps) + 1))


def test_a_killed_holder_leaves_the_folder_free(tmp_path, data_file):
    """kill -9 cannot release anything by hand: the OS drops the lock, so the next start works."""
    run = str(tmp_path / "r")
    p = start("train", "--data", data_file, *TINY, "--iters", "1000000",
              "--checkpoint-interval", "5", "--run-dir", run)
    try:
        wait_for_lines(os.path.join(run, "metrics.jsonl"), 12, p)
    finally:
        p.kill()
        p.wait()
    ckpts = ckpt_format.list_steps(os.path.join(run, "checkpoints"))
    r = alpha("train", "--resume", ckpts[max(ckpts)], "--iters", str(max(ckpts) + 2), "--quiet")
    assert r.returncode == 0, r.stderr


# ---- SIGTERM ------------------------------------------------------------------------------------


def test_sigterm_stops_with_a_checkpoint_and_resumes_bit_exact(tmp_path, data_file):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    p = start("train", "--data", data_file, *TINY, *FOREVER, "--run-dir", a)
    wait_for_lines(os.path.join(a, "metrics.jsonl"), 3, p)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=WAIT_S)
    assert p.returncode == 143, err
    assert "Traceback" not in err and "resume with" in err
    ckpts = ckpt_format.list_steps(os.path.join(a, "checkpoints"))
    assert len(ckpts) == 1
    k = max(ckpts)
    rows_a = jsonl(os.path.join(a, "metrics.jsonl"))
    assert rows_a[-1]["step"] == k  # the checkpoint is the last completed step
    last = jsonl(os.path.join(a, "events.jsonl"))[-1]
    assert last["kind"] == "interrupted" and last["payload"]["signal"] == "SIGTERM"

    # resume into b, SIGTERM again a few steps later
    p = start("train", "--resume", ckpts[k], "--run-dir", b, "--quiet")
    wait_for_lines(os.path.join(b, "metrics.jsonl"), 3, p)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=WAIT_S)
    assert p.returncode == 143, err
    rows_b = jsonl(os.path.join(b, "metrics.jsonl"))
    m = rows_b[-1]["step"]
    assert rows_b[0]["step"] == k + 1 and m > k

    # the reference: one uninterrupted run of the same config to step m (a stop request after
    # step m is what the first SIGTERM does)
    config = RunConfig.from_dict(ckpt_format.load(ckpts[k]).header["config"])

    def stop_at_m(trainer, step):
        if step == m:
            trainer._stop_requested = True

    ref = Trainer(config, run_dir=str(tmp_path / "ref"), out=None,
                  hooks={"after_backward": stop_at_m}).train()
    assert ref.step == m
    want = [r["loss"] for r in jsonl(os.path.join(str(tmp_path / "ref"), "metrics.jsonl"))]
    got = [r["loss"] for r in rows_a] + [r["loss"] for r in rows_b]
    assert got == want  # bit for bit
    final_b = ckpt_format.list_steps(os.path.join(b, "checkpoints"))[m]
    assert ckpt_format.load(final_b).tensors["params"] == \
        ckpt_format.load(ref.checkpoint).tensors["params"]


# ---- torn files ---------------------------------------------------------------------------------


def test_a_torn_last_line_is_cut_before_the_resume_appends(tmp_path, data_file):
    """A run killed while writing step 4's line (after step 3's checkpoint) resumes with every
    line whole: the torn bytes are dropped and said so, never glued to the next line. Leftover
    temporary files of a checkpoint write are removed."""
    run = tmp_path / "r"
    r = alpha("train", "--data", data_file, *TINY, "--iters", "3", "--run-dir", str(run))
    assert r.returncode == 0, r.stderr
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "loss": 2.71')  # the line being written when the power went
    with open(run / "events.jsonl", "a") as f:
        f.write('{"step": 4, "lev')
    with open(run / "samples.jsonl", "wb") as f:
        f.write('{"step": 1, "text": "caf\u00e9"}\n{"step": 2, "text": "caf'.encode()[:-1])
    (run / "checkpoints" / ".tmp-ckpt-abc123").write_bytes(b"\0" * 1000)
    (run / ".tmp-xyz").write_bytes(b"{")
    r = alpha("train", "--resume", str(run / "checkpoints" / "step-3.ckpt"), "--iters", "6")
    assert r.returncode == 0, r.stderr
    assert "dropped a torn last line of metrics.jsonl" in r.stderr
    assert [x["step"] for x in jsonl(run / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]
    kinds = [x["kind"] for x in jsonl(run / "events.jsonl")]
    assert kinds.count("repair") >= 4 and kinds[-1] == "completed"
    assert [x["step"] for x in jsonl(run / "samples.jsonl")] == [1]
    assert sorted(os.listdir(run / "checkpoints")) == ["step-3.ckpt", "step-6.ckpt"]
    assert not (run / ".tmp-xyz").exists()


# ---- run folders that cannot be made -----------------------------------------------------------


@contextlib.contextmanager
def mounted_tmpfs(path, options):
    """A real tmpfs at `path` (root, and a kernel that lets us mount), else None."""
    os.makedirs(path, exist_ok=True)
    if os.geteuid() != 0:
        yield None
        return
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        yield None
        return
    try:
        yield str(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_a_run_folder_that_cannot_be_made(tmp_path, data_file):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    err = one_line_error(*_train(data_file, "--run-dir", str(a_file)))
    assert "a-file is a file" in err
    one_line_error(*_train(data_file, "--run-dir", str(a_file / "run")), "a-file is a file")
    # outputs/ is a file, no --run-dir: the default place is in the way
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "outputs").write_text("oops")
    r = alpha("train", "--data", data_file, *TINY, "--iters", "2", cwd=str(cwd))
    one_line_error(r.returncode, r.stderr, "outputs is a file")
    assert (cwd / "outputs").read_text() == "oops"

    # read-only: a read-only tmpfs (root bypasses file modes), else a folder without write bits
    with mounted_tmpfs(tmp_path / "ro", "ro,size=64k") as ro:
        if ro is None:
            ro = str(tmp_path / "ro")
            os.chmod(ro, 0o555)
            if os.geteuid() == 0:  # root without mount: /proc refuses new folders to anyone
                ro = "/proc/alpha-test"
        one_line_error(*_train(data_file, "--run-dir", os.path.join(ro, "run")),
                       "cannot create the run folder")


def _train(data_file, *args, extra_env=None):
    r = alpha("train", "--data", data_file, *TINY, "--iters", "2", *args, extra_env=extra_env)
    return r.returncode, r.stderr


# ---- a full disk --------------------------------------------------------------------------------


def test_disk_full_keeps_earlier_checkpoints_and_says_how_much(tmp_path, data_file):
    """A small tmpfs with room for two checkpoints (the atomic write needs the old and the new
    side by side) but not a third: the run stops with one line naming the bytes needed and
    free; the checkpoints written before still verify. Without mount rights, /dev/full gives a
    real ENOSPC on the metrics log instead."""
    probe = alpha("train", "--data", data_file, *TINY, "--iters", "1",
                  "--run-dir", str(tmp_path / "probe"))
    assert probe.returncode == 0, probe.stderr
    ck_size = os.path.getsize(tmp_path / "probe" / "checkpoints" / "step-1.ckpt")
    with mounted_tmpfs(tmp_path / "small", "size=1m") as small:
        if small is not None:
            filler = os.path.join(small, "filler")
            st = os.statvfs(small)
            free = st.f_bavail * st.f_frsize
            with open(filler, "wb") as f:  # leave room for ~2.5 checkpoints and the logs
                f.write(b"\0" * max(0, free - int(2.5 * ck_size) - 24 * 1024))
            run = os.path.join(small, "run")
            db = {"TURSO_DATABASE_URL": f"file:{tmp_path / 'runs.db'}"}  # not on the small disk
            code, err = _train(data_file, "--iters", "1000", "--checkpoint-interval", "2",
                               "--keep-checkpoints", "5", "--run-dir", run, extra_env=db)
            line = one_line_error(code, err, "no space left", "needs", "free")
            assert "step-" in line
            ckpts = ckpt_format.list_steps(os.path.join(run, "checkpoints"))
            assert len(ckpts) >= 1
            for path in ckpts.values():
                ckpt_format.load(path)  # verifies the checksum
            assert not [n for n in os.listdir(os.path.join(run, "checkpoints"))
                        if n.startswith(".tmp")]
            jsonl(os.path.join(run, "metrics.jsonl"))
            # free space and resume from the last good checkpoint
            os.unlink(filler)
            r = alpha("train", "--resume", ckpts[max(ckpts)], "--iters", str(max(ckpts) + 2),
                      "--quiet", extra_env=db)
            assert r.returncode == 0, r.stderr

    # a real ENOSPC from /dev/full on the metrics log (works in any container)
    run = tmp_path / "devfull"
    run.mkdir()
    os.symlink("/dev/full", run / "metrics.jsonl")
    code, err = _train(data_file, "--run-dir", str(run))
    one_line_error(code, err, "no space left", "metrics.jsonl", "needs")


# ---- the run database in trouble ---------------------------------------------------------------


def _quick_run(data_file, run_dir, extra_env):
    t0 = time.monotonic()
    r = alpha("train", "--data", data_file, *TINY, "--iters", "3", "--run-dir", str(run_dir),
              extra_env=extra_env)
    return r, time.monotonic() - t0


def _warned_twice(r):
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines()
                if line.startswith("warning:") and "database" in line]  # (not planning's)
    assert len(warnings) == 2, r.stderr  # once at the start, once at the end
    assert "not being recorded" in warnings[0]
    assert "not (fully) recorded" in warnings[1] and "db sync" in warnings[1]
    return warnings


def test_an_unreachable_database_warns_at_start_and_end_and_exits_promptly(tmp_path, data_file):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r, took = _quick_run(data_file, tmp_path / "a", {"TURSO_DATABASE_URL":
                                                     f"http://127.0.0.1:{port}"})
    warnings = _warned_twice(r)
    assert "Connection refused" in warnings[0]
    assert took < 30

    # frozen: the server takes the connection and never answers
    with socket.socket() as frozen:
        frozen.bind(("127.0.0.1", 0))
        frozen.listen(8)
        url = f"http://127.0.0.1:{frozen.getsockname()[1]}"
        r, took = _quick_run(data_file, tmp_path / "b", {"TURSO_DATABASE_URL": url})
    warnings = _warned_twice(r)
    assert "has not answered" in warnings[0]
    assert "waiting up to" in r.stderr  # the wait at exit is said, and bounded
    assert took < 30

    # corrupt: a SQLite file that is not a database
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not a database" * 100)
    r, _ = _quick_run(data_file, tmp_path / "c", {"TURSO_DATABASE_URL": f"file:{bad}"})
    assert "not a database" in _warned_twice(r)[0]
    assert bad.read_bytes() == b"this is not a database" * 100
    # the runs were kept whole in their folders, and `db sync` records them later
    good = {"TURSO_DATABASE_URL": f"file:{tmp_path / 'good.db'}"}
    for run in ("a", "b", "c"):
        assert [x["step"] for x in jsonl(tmp_path / run / "metrics.jsonl")] == [1, 2, 3]
    r = alpha("db", "sync", "--outputs", str(tmp_path), extra_env=good)
    assert r.returncode == 0 and "a  completed" in r.stdout, r.stdout + r.stderr


def test_db_status_creates_nothing(tmp_path):
    r = alpha("db", "status", cwd=str(tmp_path))
    assert r.returncode == 0 and "none yet" in r.stdout, r.stderr
    r = alpha("db", "status", cwd=str(tmp_path),
              extra_env={"TURSO_DATABASE_URL": "file:sub/x.db"})
    assert r.returncode == 0 and "none yet" in r.stdout
    one_line_error(*_rc_err(alpha("db", "runs", cwd=str(tmp_path))), "does not exist yet")
    one_line_error(*_rc_err(alpha("db", "export", cwd=str(tmp_path))), "does not exist yet")
    assert os.listdir(tmp_path) == []


def _rc_err(r):
    return r.returncode, r.stderr


def test_a_copied_run_folder_is_reported_not_merged(tmp_path, data_file):
    import shutil

    db = {"TURSO_DATABASE_URL": f"file:{tmp_path / 'runs.db'}"}
    outputs = tmp_path / "outputs"
    r = alpha("train", "--data", data_file, *TINY, "--iters", "3", "--run-dir",
              str(outputs / "run1"), extra_env=db)
    assert r.returncode == 0, r.stderr
    copy = tmp_path / "elsewhere" / "run1"
    shutil.copytree(outputs / "run1", copy)
    # training on in the copy: recorded nowhere, and said so twice
    r = alpha("train", "--resume", str(copy / "checkpoints" / "step-3.ckpt"), "--iters", "5",
              extra_env=db)
    warnings = _warned_twice(r)
    assert "copy of run run1" in warnings[0] and str(outputs / "run1") in warnings[0]
    r = alpha("db", "sync", "--outputs", str(tmp_path / "elsewhere"), extra_env=db)
    assert r.returncode == 0
    assert "is a copy of run run1" in r.stderr and "not merged" in r.stderr
    import sqlite3

    with sqlite3.connect(tmp_path / "runs.db") as conn:
        steps = [s for (s,) in conn.execute("SELECT step FROM metrics ORDER BY step")]
    assert steps == [1, 2, 3]  # the original's rows only


# ---- what a user is told ------------------------------------------------------------------------


def test_a_model_too_large_for_memory_is_refused_with_the_numbers(tmp_path, data_file):
    from alpha.core.config import ModelConfig
    from alpha.core.errors import MemoryBudgetError
    from alpha.train import budget

    t0 = time.monotonic()
    code, err = _train(data_file, "--layers", "48", "--dim", "4096", "--heads", "32",
                       "--block", "1024", "--batch", "16", "--run-dir", str(tmp_path / "big"))
    line = one_line_error(code, err, "needs about", "parameters", "activations", "available")
    assert "GiB" in line and time.monotonic() - t0 < 60  # refused before allocating anything
    assert not (tmp_path / "big").exists()
    # the thresholds, with the memory given: refuse above it, warn above WARN_ABOVE of it
    cfg = ModelConfig(vocab_size=100, n_layer=2, n_head=2, n_embd=64, block_size=64)
    need = budget.estimate(cfg, 8).total_bytes
    assert budget.check(cfg, 8, available=need * 10) is None
    assert "may swap" in budget.check(cfg, 8, available=int(need * 1.2))
    with pytest.raises(MemoryBudgetError):
        budget.check(cfg, 8, available=need // 2)


def test_resume_names_the_flags_it_ignores(tmp_path, data_file):
    run = tmp_path / "r"
    r = alpha("train", "--data", data_file, *TINY, "--iters", "2", "--run-dir", str(run))
    assert r.returncode == 0, r.stderr
    r = alpha("train", "--resume", str(run / "checkpoints" / "step-2.ckpt"), "--iters", "3",
              "--tokenizer", "bpe", "--vocab-size", "300", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "ignoring --tokenizer bpe, --vocab-size 300" in r.stderr
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["tokenizer"] == "" and config["tokenizer"] == "char"


def test_sigterm_run_is_stopped_in_db_api_and_runs(tmp_path, data_file, monkeypatch):
    """One word for a run the user stopped: `stopped` in the database (after `db sync`), in
    /api/runs over real HTTP, and in `alpha runs`."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from watch_helpers import LocalServer, get_json

    outputs = tmp_path / "outputs"
    p = start("train", "--data", data_file, *TINY, *FOREVER, "--run-dir", str(outputs / "r1"),
              cwd=str(tmp_path))
    wait_for_lines(str(outputs / "r1" / "metrics.jsonl"), 3, p)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=WAIT_S)
    assert p.returncode == 143, err
    r = alpha("db", "sync", "--outputs", str(outputs), cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    r = alpha("db", "runs", "--outputs", str(outputs), "--status", "stopped", cwd=str(tmp_path))
    assert r.returncode == 0 and "r1" in r.stdout, (r.stdout, r.stderr)
    r = alpha("runs", "--root", str(outputs), "--json", cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert [json.loads(line)["status"] for line in r.stdout.splitlines()] == ["stopped"]
    monkeypatch.delenv("TURSO_DATABASE_URL", raising=False)
    with LocalServer(outputs) as s:
        got = get_json(s.url + "/api/runs")
        runs = got["runs"] if isinstance(got, dict) else got
        assert [(x["run_id"], x["status"]) for x in runs] == [("r1", "stopped")]
        assert get_json(s.url + "/api/runs/r1")["status"] == "stopped"


def test_memory_budget_counts_the_optimizer_state():
    """Lion and SGD keep one value per parameter, AdamW two: the estimate says so."""
    from alpha.core.config import ModelConfig
    from alpha.train import budget

    cfg = ModelConfig(n_layer=2, n_head=2, n_embd=64, block_size=32, vocab_size=100)
    P = budget.estimate(cfg, 4).params
    adamw = budget.estimate(cfg, 4, optimizer="adamw").weights_bytes
    lion = budget.estimate(cfg, 4, optimizer="lion").weights_bytes
    assert adamw == 7 * 4 * P  # params, grads, m, v + three host copies
    assert adamw - lion == 2 * 4 * P  # one state buffer on the device and its host copy
    assert budget.estimate(cfg, 4, optimizer="muon").weights_bytes == adamw
