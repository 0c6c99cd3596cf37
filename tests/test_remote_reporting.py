"""Remote reporting end to end, with real processes: `python -m alpha train` reports to
`python -m alpha serve`; the server is killed mid-run, the trainer is killed too and resumed while
the server is down, then the server comes back. Afterwards the server's database holds every step
exactly once, the samples and events once each, the final checkpoint byte for byte, and the
trainer's outbox is empty."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from watch_helpers import ROOT, SECRET, ServeProcess, get_json

TINY = ["--layers", "1", "--heads", "2", "--dim", "16", "--block", "16", "--batch", "2",
        "--eval-iters", "2", "--warmup", "1", "--quiet", "--eval-interval", "250",
        "--sample-interval", "500", "--checkpoint-interval", "400", "--keep-checkpoints", "0"]
ITERS = 3000


def _wait(cond, timeout: float, what: str, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if proc is not None and proc.poll() is not None and not cond():
            raise AssertionError(f"{what}: the trainer exited ({proc.returncode}) first: "
                                 f"{proc.stderr.read()[-2000:] if proc.stderr else ''}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _lines(path) -> int:
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return 0


def _train(args, env):
    return subprocess.Popen([sys.executable, "-m", "alpha", "train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "data.txt"
    with open(os.__file__, encoding="utf-8") as f:
        path.write_text(f.read()[:60_000])
    return str(path)


def test_exactly_once_through_server_and_trainer_kills(tmp_path, data_file):
    server_out = tmp_path / "server-outputs"
    server_out.mkdir()
    env = {**os.environ, "UPLOAD_SECRET": SECRET, "ALPHA_REMOTE_SECRET": SECRET}
    env.pop("TURSO_DATABASE_URL", None)
    env.pop("ALPHA_WEBHOOK_URL", None)
    server = ServeProcess(server_out, env).start()
    env["ALPHA_REMOTE_URL"] = server.url
    run_dir = tmp_path / "client" / "run-x1"
    metrics = run_dir / "metrics.jsonl"
    api = f"{server.url}/api/runs/run-x1"
    trainer = None
    try:
        trainer = _train(["--data", data_file, *TINY, "--iters", str(ITERS),
                          "--run-dir", str(run_dir)], env)

        def server_has_metrics():
            try:
                return bool(get_json(api + "/metrics?last=1")["metrics"])
            except (AssertionError, OSError):
                return False

        _wait(server_has_metrics, 60, "the first metrics on the server", trainer)
        server.kill()  # the server dies mid-run; training goes on
        ckpt = run_dir / "checkpoints" / "step-800.ckpt"
        _wait(ckpt.exists, 60, "a checkpoint while the server is down", trainer)
        trainer.send_signal(signal.SIGKILL)  # and so does the trainer
        trainer.wait(10)
        killed_at = _lines(metrics)
        assert killed_at < ITERS
        outbox = json.loads((run_dir / "remote-outbox.json").read_text())
        assert outbox["files"]["metrics.jsonl"]["offset"] < os.path.getsize(metrics)

        # resumed while the server is still down; the server returns mid-run
        trainer = _train(["--resume", str(ckpt), "--quiet"], env)
        _wait(lambda: _lines(metrics) >= 800 + 300, 60, "the resumed run to progress", trainer)
        server.start()
        out, err = trainer.communicate(timeout=180)
        assert trainer.returncode == 0, err[-2000:]
        assert "did not take everything" not in err
    finally:
        if trainer is not None and trainer.poll() is None:
            trainer.kill()

    try:
        steps = [r["step"] for r in get_json(api + "/metrics")["metrics"]]
        assert steps == list(range(1, ITERS + 1))  # every step, once, in order
        local = [json.loads(x) for x in metrics.read_text().splitlines()]
        remote = {r["step"]: r for r in get_json(api + "/metrics")["metrics"]}
        assert all(remote[r["step"]]["loss"] == pytest.approx(r["loss"]) for r in local)
        run = get_json(api)
        assert run["status"] == "completed" and run["latest_step"] == ITERS
        samples = get_json(api + "/samples")["samples"]
        local_samples = {(s["step"], s.get("idx", 0)) for s in
                         map(json.loads, (run_dir / "samples.jsonl").read_text().splitlines())}
        assert {(s["step"], s["idx"]) for s in samples} == local_samples
        kinds = [e["kind"] for e in get_json(api + "/events")["events"]]
        assert kinds.count("start") == 1 and kinds.count("resume") == 1
        assert kinds.count("completed") == 1
        # the final checkpoint arrived whole
        final = run_dir / "checkpoints" / f"step-{ITERS}.ckpt"
        uploaded = server_out / "run-x1" / "checkpoints" / f"step-{ITERS}.ckpt"
        assert hashlib.sha256(uploaded.read_bytes()).digest() == \
            hashlib.sha256(final.read_bytes()).digest()
        assert ITERS in [c["step"] for c in get_json(api + "/checkpoints")["checkpoints"]]
    finally:
        server.kill()

    from alpha.train.remote import outbox_pending

    assert outbox_pending(str(run_dir)) == {"bytes": 0, "uploads": []}


def _append(path, row):
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def test_reporter_waits_out_a_wrong_secret_and_announces_to_a_webhook(tmp_path, monkeypatch):
    """The reporter in this process, following a run folder written by hand, against the real
    server app (a wrong secret first: nothing is lost) and a real webhook receiver."""
    import http.server
    import threading

    from alpha.train.remote import RemoteReporter, outbox_pending
    from watch_helpers import LocalServer

    posts = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    monkeypatch.setenv("UPLOAD_SECRET", SECRET)
    monkeypatch.delenv("TURSO_DATABASE_URL", raising=False)
    run_dir = tmp_path / "client" / "hand-1"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"run_id": "hand-1", "domain": "text"}))
    (tmp_path / "srv").mkdir()
    with LocalServer(tmp_path / "srv") as server:
        env = {"ALPHA_REMOTE_URL": server.url, "ALPHA_REMOTE_SECRET": "wrong",
               "ALPHA_WEBHOOK_URL": f"http://127.0.0.1:{hook.server_port}/hook"}
        rep, warning = RemoteReporter.from_env(str(run_dir), environ=env)
        assert warning is None
        rep.poll_s = 0.05
        rep.start()
        _append(run_dir / "events.jsonl", {"step": 0, "kind": "start", "message": "started"})
        for step in range(1, 21):
            _append(run_dir / "metrics.jsonl", {"step": step, "loss": 3.0 - step / 10})
        _append(run_dir / "samples.jsonl", {"step": 20, "idx": 0, "text": "once upon"})
        _append(run_dir / "events.jsonl", {"step": 20, "kind": "completed", "message": "done"})
        _wait(lambda: rep.last_error and "401" in rep.last_error, 10, "a refusal")
        assert outbox_pending(str(run_dir))["bytes"] > 0  # refused: it all waits on disk
        rep.close(timeout=1)
        # `alpha report`, with the right secret, delivers all of it, once
        env["ALPHA_REMOTE_SECRET"] = SECRET
        env.pop("ALPHA_WEBHOOK_URL")
        r = subprocess.run([sys.executable, "-m", "alpha", "report", str(run_dir)], cwd=ROOT,
                           env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "sent 20 metrics, 1 samples, 2 events" in r.stdout
        assert outbox_pending(str(run_dir)) == {"bytes": 0, "uploads": []}
        r = subprocess.run([sys.executable, "-m", "alpha", "report", str(tmp_path)], cwd=ROOT,
                           env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and "not a run folder" in r.stderr and "Traceback" not in r.stderr
        api = f"{server.url}/api/runs/hand-1"
        assert [r["step"] for r in get_json(api + "/metrics")["metrics"]] == list(range(1, 21))
        assert get_json(api)["status"] == "completed"
        assert [s["text"] for s in get_json(api + "/samples")["samples"]] == ["once upon"]
    hook.shutdown()
    texts = [p["content"] for p in posts]
    assert any("started" in t for t in texts) and any("once upon" in t for t in texts)
    assert any("finished" in t for t in texts) and "wrong" not in " ".join(texts)


def test_report_with_the_server_down_exits_3(tmp_path):
    """`alpha report` against a server that is not there: exit 3 (README: not delivered, try
    again later), one accurate message, no traceback; nothing lost."""
    import socket

    from alpha.train.remote import outbox_pending

    run_dir = tmp_path / "down-1"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"run_id": "down-1", "domain": "text"}))
    _append(run_dir / "metrics.jsonl", {"step": 1, "loss": 3.0})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    env = {**os.environ, "ALPHA_REMOTE_URL": f"http://127.0.0.1:{port}",
           "ALPHA_REMOTE_SECRET": SECRET}
    env.pop("ALPHA_WEBHOOK_URL", None)
    r = subprocess.run([sys.executable, "-m", "alpha", "report", str(run_dir), "--timeout", "3"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "not delivered" in r.stderr
    assert "run this again later" in r.stderr
    assert outbox_pending(str(run_dir))["bytes"] > 0
