"""sync_from_disk against both backends: idempotent, resumable, tolerant; the run status rule."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time

import pytest

from alpha.db import sync as S
from alpha.db.sync import sync_from_disk
from sqld_server import db_url, sqld, store  # noqa: F401 - fixtures


def write_run(outputs, run_id="run-a", steps=1200, events=None, pid=None, host=None,
              checkpoints=(), samples=2):
    path = os.path.join(str(outputs), run_id)
    os.makedirs(os.path.join(path, "checkpoints"), exist_ok=True)
    config = {"run_id": run_id, "config_hash": "h" + run_id, "tokenizer": "char",
              "domain": "text", "model": {"n_layer": 2, "n_head": 2, "n_embd": 32},
              "train": {"iters": steps, "lr": 0.001}, "sample": {"temperature": 0.8},
              "info": {"host": host or "elsewhere", "pid": pid or 999999999,
                       "param_count": 5000}}
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        for step in range(1, steps + 1):
            row = {"step": step, "loss": 4.0 - step / 1000, "lr": 0.001, "grad_norm": 0.5,
                   "clip_coef": 1.0, "tokens_per_sec": 1e4, "ms_per_iter": 10.0,
                   "elapsed_s": step / 100, "timing_fwd_ms": 4.0, "timing_bwd_ms": 5.0,
                   "timing_optim_ms": 1.0, "timing_data_ms": 0.1}
            if step % 500 == 0:
                row["val_loss"] = 3.0 - step / 10000
            f.write(json.dumps(row) + "\n")
    if events is None:
        events = [("start", "2026-11-27T10:00:00Z"), ("completed", "2026-11-27T11:00:00Z")]
    with open(os.path.join(path, "events.jsonl"), "w") as f:
        for kind, when in events:
            f.write(json.dumps({"step": 0, "level": "info", "kind": kind, "message": kind,
                                "payload": {}, "time": when}) + "\n")
    with open(os.path.join(path, "samples.jsonl"), "w") as f:
        for i in range(samples):
            f.write(json.dumps({"step": 100 * (i + 1), "idx": 0, "text": f"sample {i}",
                                "payload": {"prompt": "\n"}, "time": "2026-11-27T10:30:00Z"})
                    + "\n")
    for step in checkpoints:
        body = b"ALPHACKP" + os.urandom(100)
        with open(os.path.join(path, "checkpoints", f"step-{step}.ckpt"), "wb") as f:
            f.write(body + hashlib.sha256(body).digest())
    return path


def snapshot(store):
    """Every row of every table (minus run timestamps written at import time)."""
    out = {}
    for table in ("metrics", "checkpoints", "samples", "events", "sync_state"):
        out[table] = sorted(map(repr, store.query(f"SELECT * FROM {table}")))
    out["runs"] = sorted(map(repr, store.query("SELECT * FROM runs")))
    return out


def test_sync_twice_changes_nothing(store, tmp_path):
    write_run(tmp_path, "run-a", checkpoints=(500, 1000))
    write_run(tmp_path, "run-b", steps=10)
    (tmp_path / "not-a-run").mkdir()
    first = sync_from_disk(store, str(tmp_path))
    assert first.runs == 2 and first.metrics == 1210 and first.checkpoints == 2
    assert first.events == 4 and first.samples == 4 and not first.problems
    before = snapshot(store)
    second = sync_from_disk(store, str(tmp_path))
    assert (second.metrics, second.events, second.samples, second.checkpoints) == (0, 0, 0, 0)
    assert snapshot(store) == before
    run = store.run("run-a")
    assert run["status"] == "completed" and run["latest_step"] == 1200
    assert run["metric_count"] == 1200 and run["checkpoint_count"] == 2
    assert run["latest_checkpoint_step"] == 1000 and run["best_val_loss"] == pytest.approx(2.9)
    assert run["param_count"] == 5000 and run["host"] == "elsewhere"
    ck = store.checkpoints("run-a")[0]
    with open(ck["path"], "rb") as f:
        data = f.read()
    assert ck["checksum"] == hashlib.sha256(data[:-32]).hexdigest() == data[-32:].hex()
    assert ck["size"] == len(data)


def test_appended_lines_and_torn_line(store, tmp_path):
    path = write_run(tmp_path, "run-a", steps=100)
    sync_from_disk(store, str(tmp_path))
    with open(os.path.join(path, "metrics.jsonl"), "a") as f:
        f.write(json.dumps({"step": 101, "loss": 1.0}) + "\n")
        f.write('{"step": 102, "lo')  # being written right now
    report = sync_from_disk(store, str(tmp_path))
    assert report.metrics == 1 and not report.problems
    with open(os.path.join(path, "metrics.jsonl"), "a") as f:
        f.write('ss": 0.5}\n')
    report = sync_from_disk(store, str(tmp_path))
    assert report.metrics == 1
    assert store.run("run-a")["latest_step"] == 102
    assert store.query("SELECT count(*) FROM metrics") == [(102,)]


def test_corrupt_line_reported_and_skipped(store, tmp_path):
    path = write_run(tmp_path, "run-a", steps=20)
    lines = open(os.path.join(path, "metrics.jsonl")).read().splitlines()
    lines[4] = '{"step": 5, "loss": '  # truncated JSON mid-file
    lines[7] = '{"loss": 1.0}'  # no step
    lines[9] = '{"step": 10, "loss": NaN, "extra": "kept"}'  # Python's json writes NaN
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")
    report = sync_from_disk(store, str(tmp_path))
    assert report.metrics == 18
    assert any("metrics.jsonl:5: not valid JSON" in p for p in report.problems)
    assert any("without an integer 'step'" in p for p in report.problems)
    row = store.query("SELECT loss, payload FROM metrics WHERE step = 10")[0]
    assert row[0] is None and json.loads(row[1]) == {"extra": "kept", "nonfinite": {"loss": "nan"}}
    assert sync_from_disk(store, str(tmp_path)).problems == []  # reported once, then skipped


def test_sync_killed_halfway_then_rerun(store, tmp_path):
    write_run(tmp_path, "run-a", steps=12_345)

    class Killed(Exception):
        pass

    def die(run_id, what, done):
        if what == "metrics" and done >= 5000:
            raise Killed

    with pytest.raises(Killed):
        sync_from_disk(store, str(tmp_path), progress=die)
    assert store.query("SELECT count(*) FROM metrics") == [(5000,)]
    report = sync_from_disk(store, str(tmp_path))
    assert report.metrics == 12_345 - 5000
    assert store.query("SELECT count(*), count(DISTINCT step), min(step), max(step)"
                       " FROM metrics") == [(12_345, 12_345, 1, 12_345)]


def test_rewound_file_is_read_again(store, tmp_path):
    path = write_run(tmp_path, "run-a", steps=50)
    sync_from_disk(store, str(tmp_path))
    # a resumed run rewinds metrics.jsonl to step 30 and logs new values from there
    rows = [json.loads(x) for x in open(os.path.join(path, "metrics.jsonl"))][:30]
    rows += [{"step": s, "loss": 0.125} for s in range(31, 41)]
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    sync_from_disk(store, str(tmp_path))
    assert store.query("SELECT loss FROM metrics WHERE step = 35") == [(0.125,)]


def _status_of(store, tmp_path, run_id, **kw):
    return sync_from_disk(store, str(tmp_path), **kw).statuses[run_id]


def test_status_rule(store, tmp_path):
    me = socket.gethostname()
    write_run(tmp_path, "done", events=[("start", "2026-11-27T10:00:00Z"),
                                        ("completed", "2026-11-27T11:00:00Z")])
    write_run(tmp_path, "diverged", events=[("start", "2026-11-27T10:00:00Z"),
                                            ("diverged", "2026-11-27T11:00:00Z")])
    write_run(tmp_path, "alive", events=[("start", "2026-11-27T10:00:00Z")], pid=os.getpid(),
              host=me)
    write_run(tmp_path, "dead", events=[("start", "2026-11-27T10:00:00Z")], pid=999_999_999,
              host=me)
    write_run(tmp_path, "remote", events=[("start", "2026-11-27T10:00:00Z")], host="far-away")
    statuses = sync_from_disk(store, str(tmp_path)).statuses
    assert statuses == {"done": "completed", "diverged": "failed", "alive": "active",
                        "dead": "stale", "remote": "active"}
    # another host and nothing written for longer than STALE_AFTER_S: stale
    later = time.time() + S.STALE_AFTER_S + 60
    assert _status_of(store, tmp_path, "remote", now=later) == "stale"
    assert store.run("remote")["status"] == "stale"
    # a terminal status set by the recorder's finish() is kept...
    from alpha.db import rows as R

    store.transaction([R.run_status("dead", "completed")])
    assert _status_of(store, tmp_path, "dead") == "completed"
    # ...unless the run was resumed afterwards (a start event newer than it)
    with open(tmp_path / "dead" / "events.jsonl", "a") as f:
        f.write(json.dumps({"step": 9, "kind": "resume", "time": "2999-01-01T00:00:00Z"}) + "\n")
    assert _status_of(store, tmp_path, "dead") == "stale"


def test_run_ids_filter_and_missing_config(store, tmp_path):
    write_run(tmp_path, "run-a", steps=3)
    path = write_run(tmp_path, "run-b", steps=3)
    with open(os.path.join(path, "config.json"), "w") as f:
        f.write("{broken")
    report = sync_from_disk(store, str(tmp_path), run_ids={"run-b"})
    assert report.runs == 1 and report.metrics == 3
    assert any("config.json: unreadable" in p for p in report.problems)
    assert store.run("run-b")["config_json"] is None


def test_active_run_without_folder_goes_stale(store, tmp_path):
    from alpha.db import rows as R

    store.transaction([R.run_upsert("gone", {"domain": "text"}, {"host": "far", "pid": 5},
                                    status="active"),
                       R.run_upsert("mine-dead", {}, {"host": socket.gethostname(),
                                                      "pid": 999_999_999}, status="active"),
                       R.run_upsert("mine-alive", {}, {"host": socket.gethostname(),
                                                       "pid": os.getpid()}, status="active")])
    sync_from_disk(store, str(tmp_path))
    assert store.run("gone")["status"] == "active"  # recorded moments ago, on another host
    assert store.run("mine-dead")["status"] == "stale"
    sync_from_disk(store, str(tmp_path), now=time.time() + S.STALE_AFTER_S + 60)
    assert store.run("gone")["status"] == "stale"
    assert store.run("mine-alive")["status"] == "active"
