"""RunRecorder: records a run from a background thread; never raises, never blocks training."""

from __future__ import annotations

import http.server
import json
import os
import threading
import time

from alpha.db.recorder import RunRecorder
from alpha.db.sqlite_store import SqliteStore
from alpha.db.store import open_store
from alpha.db.sync import sync_from_disk
from sqld_server import db_url, free_port, sqld  # noqa: F401 - fixtures
from test_db_sync import write_run


def _trainer_like(rec, run_dir, steps=30):
    """What alpha.train.trainer does, in order."""
    config = json.load(open(os.path.join(run_dir, "config.json")))
    info = config["info"]
    rec.start(run_dir, {k: config[k] for k in ("domain", "model", "train", "sample")}, info)
    rec.event(0, "info", "start", "start", {})
    rows = [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))][:steps]
    for i in range(0, len(rows), 10):
        rec.metrics(rows[i:i + 10])
    rec.checkpoint(steps, os.path.join(run_dir, "checkpoints", f"step-{steps}.ckpt"), 123, "ab")
    rec.sample(100, 0, "sample 0")
    rec.event(0, "info", "completed", "completed", {})
    rec.finish("completed")
    rec.close()


def test_records_a_run_and_sync_agrees(db_url, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.delenv("TURSO_AUTH_TOKEN", raising=False)
    run_dir = write_run(tmp_path / "outputs", "run-a", steps=30, pid=os.getpid())
    rec = RunRecorder(db_url)
    assert rec.enabled and rec.warning is None
    _trainer_like(rec, run_dir)
    status = rec.status()
    assert status["dropped"] == 0 and status["written"] >= 34 and status["last_error"] is None
    with open_store(db_url) as store:
        run = store.run("run-a")
        assert run["status"] == "completed" and run["latest_step"] == 30
        assert run["metric_count"] == 30 and run["checkpoint_count"] == 1
        assert run["pid"] == os.getpid() and run["param_count"] == 5000
        assert run["config_hash"] == "hrun-a"  # read from config.json, like a sync
        assert [e["kind"] for e in store.events("run-a")] == ["start", "completed"]
        report = sync_from_disk(store, str(tmp_path / "outputs"))
        assert not report.problems
        # the events the trainer also wrote to events.jsonl are not duplicated
        assert [e["kind"] for e in store.events("run-a")] == ["start", "completed"]
        assert store.run("run-a")["status"] == "completed"
        assert store.query("SELECT count(*) FROM metrics") == [(30,)]


def test_default_database_is_next_to_the_run(tmp_path, monkeypatch):
    monkeypatch.delenv("TURSO_DATABASE_URL", raising=False)
    run_dir = write_run(tmp_path / "outs", "run-a", steps=5)
    _trainer_like(RunRecorder(), run_dir, steps=5)
    with SqliteStore(str(tmp_path / "outs" / "alpha.db")) as store:
        assert store.run("run-a")["metric_count"] == 5


def test_misconfigured_records_nothing_and_says_so_once(tmp_path, monkeypatch):
    monkeypatch.setenv("TURSO_DATABASE_URL", "postgres://nope")
    rec = RunRecorder()
    assert not rec.enabled and "disabled" in rec.warning
    run_dir = write_run(tmp_path, "run-a", steps=3)
    assert "disabled" in rec.start(run_dir, {}, {})
    assert rec.start(run_dir, {}, {}) is None  # said once
    rec.metrics([{"step": 1, "loss": 1.0}])
    rec.finish("completed")
    t0 = time.perf_counter()
    rec.close()
    assert time.perf_counter() - t0 < 1.0
    assert not os.path.exists(tmp_path / "alpha.db")
    assert RunRecorder(object()).enabled is False  # nonsense never raises


def test_database_down_never_blocks(tmp_path):
    run_dir = write_run(tmp_path, "run-a", steps=3)
    rec = RunRecorder(f"http://127.0.0.1:{free_port()}", timeout=0.5, retries=0,
                      close_timeout=3.0)
    rec.start(run_dir, {}, {})
    t0 = time.perf_counter()
    for step in range(5000):
        rec.metrics([{"step": step, "loss": 1.0}])
    assert time.perf_counter() - t0 < 2.5  # 5000 calls; one network wait would be 0.5 s each
    t0 = time.perf_counter()
    rec.close()
    assert time.perf_counter() - t0 < 4.0
    status = rec.status()
    assert status["dropped"] > 0 and status["last_error"]


def test_slow_database_fills_the_queue_and_drops(tmp_path):
    class Slow(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            time.sleep(1.0)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        run_dir = write_run(tmp_path, "run-a", steps=3)
        rec = RunRecorder(f"http://127.0.0.1:{httpd.server_address[1]}", queue_items=4,
                          retries=0, close_timeout=0.5)
        rec.start(run_dir, {}, {})
        worst = 0.0
        for step in range(200):
            t0 = time.perf_counter()
            rec.metrics([{"step": step, "loss": 1.0}])
            worst = max(worst, time.perf_counter() - t0)
        assert worst < 0.5 and rec.status()  # the server takes 1 s per request["dropped"] >= 190
        t0 = time.perf_counter()
        rec.close()
        assert time.perf_counter() - t0 < 1.0
    finally:
        httpd.shutdown()


def test_dropped_rows_are_backfilled_from_the_run_folder(sqld, tmp_path):  # noqa: F811
    run_dir = write_run(tmp_path / "outputs", "run-a", steps=40)
    sqld.kill()
    rec = RunRecorder(sqld.url, retries=0, timeout=1.0, close_timeout=20.0)
    rec.start(run_dir, {}, {})
    rec.metrics([{"step": s, "loss": 1.0} for s in range(1, 11)])
    deadline = time.monotonic() + 10
    while rec.status()["dropped"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rec.status()["dropped"] > 0
    sqld.start()
    rec.finish("completed")
    rec.close()
    with open_store(sqld.url) as store:
        assert store.query("SELECT count(*) FROM metrics") == [(40,)]  # all of metrics.jsonl
        assert store.run("run-a")["status"] == "completed"


def test_start_lost_while_down_is_sent_again(sqld, tmp_path):  # noqa: F811
    run_dir = write_run(tmp_path / "outputs", "run-a", steps=40)
    sqld.kill()
    rec = RunRecorder(sqld.url, retries=0, timeout=1.0, backoff_s=0.2)
    rec.start(run_dir, {}, {})
    deadline = time.monotonic() + 10
    while rec.status()["last_error"] is None and time.monotonic() < deadline:
        time.sleep(0.05)
    sqld.start()
    time.sleep(0.3)  # past the backoff
    rec.metrics([{"step": s, "loss": 1.0} for s in range(1, 6)])
    deadline = time.monotonic() + 10
    while rec.status()["written"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    with open_store(sqld.url) as store:  # recorded live, before any backfill
        assert store.run("run-a")["metric_count"] == 5
    rec.close()
