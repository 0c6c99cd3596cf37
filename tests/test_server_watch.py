"""The run API, ingest, checkpoint upload/download and the live stream, over real HTTP on
127.0.0.1 (the app in a thread of this process; its database a SQLite file in a temporary folder,
or a real sqld for the tests that run over both)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time

import pytest

from sqld_server import db_url, sqld  # noqa: F401 - fixtures
from watch_helpers import AUTH, SECRET, SSE, LocalServer, call, get_json


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("UPLOAD_SECRET", SECRET)
    monkeypatch.delenv("TURSO_DATABASE_URL", raising=False)
    monkeypatch.delenv("ALPHA_UPLOAD_MAX_BYTES", raising=False)
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    with LocalServer(outputs) as s:
        yield s


@pytest.fixture
def any_server(tmp_path, monkeypatch, db_url):  # noqa: F811
    """The server over each database: SQLite, and a real sqld (Turso's protocol)."""
    monkeypatch.setenv("UPLOAD_SECRET", SECRET)
    monkeypatch.setenv("TURSO_DATABASE_URL", db_url)
    monkeypatch.delenv("TURSO_AUTH_TOKEN", raising=False)
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    with LocalServer(outputs) as s:
        yield s


def ingest(server, messages, headers=AUTH):
    return call("POST", server.url + "/api/ingest", messages, headers)


def seed_run(server, run_id="r1", steps=30, status_event=None):
    msgs = [
        {"type": "run_start", "run_id": run_id,
         "config": {"domain": "text", "model": {"n_layer": 2, "n_head": 2, "n_embd": 32,
                                                "block_size": 16},
                    "train": {"iters": 100, "lr": 1e-3}},
         "info": {"param_count": 12345, "host": "box"}},
        {"type": "metrics", "run_id": run_id,
         "rows": [{"step": i, "loss": 4.0 - i * 0.05, "lr": 1e-3, "tokens_per_sec": 900.0,
                   **({"val_loss": 4.1 - i * 0.05} if i % 10 == 0 else {})}
                  for i in range(1, steps + 1)]},
        {"type": "samples", "run_id": run_id, "rows": [{"step": 10, "text": "hello"},
                                                       {"step": 20, "idx": 0, "text": "world"}]},
        {"type": "events", "run_id": run_id,
         "rows": [{"step": 0, "kind": "start", "message": "started"},
                  {"step": 10, "level": "warning", "kind": "bad_step", "message": "nan"},
                  {"step": 10, "kind": "eval", "message": "val 3.6"}]},
    ]
    if status_event:
        msgs.append({"type": "event", "run_id": run_id,
                     "event": {"step": steps, "kind": status_event, "message": "end"}})
    status, _, body = ingest(server, msgs)
    assert status == 200, body
    return json.loads(body)


def test_read_routes(any_server):
    server = any_server
    seed_run(server, "r1", status_event="completed")
    seed_run(server, "r2", steps=5)
    runs = get_json(server.url + "/api/runs")["runs"]
    assert {r["run_id"] for r in runs} == {"r1", "r2"}
    assert [r["run_id"] for r in get_json(server.url + "/api/runs?status=completed")["runs"]] \
        == ["r1"]
    assert get_json(server.url + "/api/runs?domain=code")["runs"] == []
    assert len(get_json(server.url + "/api/runs?limit=1")["runs"]) == 1
    assert len(get_json(server.url + "/api/runs?limit=1&offset=1")["runs"]) == 1

    run = get_json(server.url + "/api/runs/r1")
    assert run["status"] == "completed" and run["n_layer"] == 2 and run["latest_step"] == 30
    assert run["param_count"] == 12345 and run["config"]["train"]["iters"] == 100
    assert run["best_val_loss"] == pytest.approx(4.1 - 30 * 0.05)
    assert call("GET", server.url + "/api/runs/nope")[0] == 404

    m = get_json(server.url + "/api/runs/r1/metrics")["metrics"]
    assert [r["step"] for r in m] == list(range(1, 31))
    assert m[9]["val_loss"] == pytest.approx(3.6) and "val_loss" not in m[8]
    assert [r["step"] for r in get_json(server.url + "/api/runs/r1/metrics?last=3")["metrics"]] \
        == [28, 29, 30]
    assert get_json(server.url + "/api/runs/r1/metrics?from_step=29")["metrics"][0]["step"] == 29
    assert call("GET", server.url + "/api/runs/r1/metrics?last=x")[0] == 400

    s = get_json(server.url + "/api/runs/r1/samples")["samples"]
    assert [(x["step"], x["text"]) for x in s] == [(10, "hello"), (20, "world")]
    assert [x["text"] for x in get_json(server.url + "/api/runs/r1/samples?step=20")["samples"]] \
        == ["world"]

    ev = get_json(server.url + "/api/runs/r1/events")["events"]
    assert [e["kind"] for e in ev] == ["start", "bad_step", "eval", "completed"]
    assert [e["kind"] for e in get_json(server.url + "/api/runs/r1/events?level=warning")
            ["events"]] == ["bad_step"]
    assert [e["kind"] for e in get_json(server.url + "/api/runs/r1/events?kind=eval")
            ["events"]] == ["eval"]
    second = ev[1]["id"]
    assert [e["id"] for e in get_json(server.url + f"/api/runs/r1/events?from_id={second}"
                                                   "&limit=2")["events"]] == [second, ev[2]["id"]]

    assert get_json(server.url + "/api/runs/r1/checkpoints")["checkpoints"] == []
    assert "text" in {d["name"] for d in get_json(server.url + "/api/domains")["domains"]}
    version = get_json(server.url + "/api/version")
    assert version["api"] == 1 and version["uploads"] is True
    over = get_json(server.url + "/api/overview")
    assert over["totals"]["runs"] == 2 and over["best"][0]["run_id"] == "r1"
    assert len(over["recent"][0]["spark"]) > 1


def test_ingest_is_idempotent_and_guarded(any_server, monkeypatch):
    server = any_server
    first = seed_run(server)
    again = seed_run(server)  # a retried batch
    assert first == again
    assert len(get_json(server.url + "/api/runs/r1/metrics")["metrics"]) == 30
    assert len(get_json(server.url + "/api/runs/r1/events")["events"]) == 3
    assert len(get_json(server.url + "/api/runs/r1/samples")["samples"]) == 2
    # metrics before run_start create the run; NaN-free JSON with odd fields is kept
    status, _, _ = ingest(server, {"type": "metrics", "run_id": "late",
                                   "rows": [{"step": 1, "loss": 2.0, "mfu": 0.1}]})
    assert status == 200
    assert get_json(server.url + "/api/runs/late/metrics")["metrics"] == \
        [{"step": 1, "loss": 2.0, "mfu": 0.1}]

    assert ingest(server, {"type": "metrics", "run_id": "r1", "rows": []}, {})[0] == 401
    status, _, body = ingest(server, {"type": "metrics", "run_id": "r1", "rows": []},
                             {"Authorization": "Bearer wrong"})
    assert status == 401 and SECRET not in body.decode()
    assert ingest(server, {"type": "nope", "run_id": "r1"})[0] == 400
    assert ingest(server, {"type": "metrics", "run_id": "../etc", "rows": []})[0] == 400
    assert call("POST", server.url + "/api/ingest", b"{not json", AUTH)[0] == 400

    monkeypatch.delenv("UPLOAD_SECRET")
    status, _, body = ingest(server, {"type": "heartbeat", "run_id": "r1"})
    assert status == 503 and b"UPLOAD_SECRET" in body


def test_oversize_body_is_refused(server):
    """A body declared past the route's limit gets 413 before it is read."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /api/ingest HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                     + SECRET.encode() + b"\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 999999999\r\n\r\n")
        reply = sock.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 413"), reply[:200]


def _upload_url(server, run, name, size, sha, offset=None):
    url = f"{server.url}/api/upload/{run}/{name}?size={size}&sha256={sha}"
    return url if offset is None else f"{url}&offset={offset}"


def test_checkpoint_upload_resume_verify_and_download(server, tmp_path, monkeypatch):
    data = os.urandom(300_000)
    sha = hashlib.sha256(data).hexdigest()
    name = "step-40.ckpt"
    size = len(data)

    def put(offset, chunk, chunk_sha=None):
        headers = dict(AUTH)
        headers["X-Chunk-Sha256"] = chunk_sha or hashlib.sha256(chunk).hexdigest()
        return call("PUT", _upload_url(server, "r9", name, size, sha, offset), chunk, headers)

    status, _, body = call("GET", _upload_url(server, "r9", name, size, sha), headers=AUTH)
    assert status == 200 and json.loads(body) == {"received": 0, "complete": False}
    assert put(0, data[:100_000])[0] == 200
    # the client "crashed": it asks where the upload stands and continues from there
    got = json.loads(call("GET", _upload_url(server, "r9", name, size, sha), headers=AUTH)[2])
    assert got == {"received": 100_000, "complete": False}
    # a corrupt chunk (its bytes do not match its sha256) is refused and not kept
    bad = bytearray(data[100_000:200_000])
    bad[5] ^= 0xFF
    status, _, body = put(100_000, bytes(bad), hashlib.sha256(data[100_000:200_000]).hexdigest())
    assert status == 422 and b"sha256" in body
    assert put(150_000, data[150_000:200_000])[0] == 409  # not where the upload stands
    assert put(100_000, data[100_000:200_000])[0] == 200
    status, _, body = put(200_000, data[200_000:])
    assert status == 201 and json.loads(body)["complete"] is True
    final = tmp_path / "outputs" / "r9" / "checkpoints" / name
    assert final.read_bytes() == data
    assert not [n for n in os.listdir(final.parent) if n.startswith(".upload-")]
    ck = get_json(server.url + "/api/runs/r9/checkpoints")["checkpoints"]
    assert [(c["step"], c["size"], c["file"]) for c in ck] == [(40, size, name)]
    # uploading it again is a no-op
    assert json.loads(call("GET", _upload_url(server, "r9", name, size, sha),
                           headers=AUTH)[2])["complete"] is True

    # a whole file whose bytes do not match the declared sha256 is discarded
    other = os.urandom(1000)
    url = _upload_url(server, "r9", "step-50.ckpt", 1000, "0" * 64, 0)
    status, _, _ = call("PUT", url, other, AUTH)
    assert status == 422
    assert not (final.parent / "step-50.ckpt").exists()
    assert not [n for n in os.listdir(final.parent) if n.startswith(".upload-")]

    # names never leave the run's checkpoints folder
    for run, fname in (("r9", "..%2F..%2Fevil"), ("..", "x.ckpt"), ("r9", ".hidden"),
                       ("r9", "a%2Fb.ckpt"), ("%2E%2E", "x.ckpt")):
        status, _, _ = call("PUT", _upload_url(server, run, fname, 3, sha, 0), b"abc", AUTH)
        assert status in (400, 404), (run, fname, status)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "outputs" / "x.ckpt").exists()
    # auth and size limits
    assert call("PUT", _upload_url(server, "r9", "a.ckpt", 3, sha, 0), b"abc")[0] == 401
    monkeypatch.setenv("ALPHA_UPLOAD_MAX_BYTES", "1000")
    status, _, body = call("GET", _upload_url(server, "r9", "big.ckpt", 5000, sha), headers=AUTH)
    assert status == 413 and b"ALPHA_UPLOAD_MAX_BYTES" in body

    # downloads: whole, ranges, refusals
    dl = f"{server.url}/api/runs/r9/download/checkpoints/{name}"
    status, headers, body = call("GET", dl)
    assert status == 200 and body == data and headers["Accept-Ranges"] == "bytes"
    status, headers, body = call("GET", dl, headers={"Range": "bytes=100-199"})
    assert status == 206 and body == data[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{size}"
    status, _, body = call("GET", dl, headers={"Range": "bytes=-10"})
    assert status == 206 and body == data[-10:]
    status, _, body = call("GET", dl, headers={"Range": "bytes=299990-"})
    assert status == 206 and body == data[299990:]
    status, headers, _ = call("GET", dl, headers={"Range": f"bytes={size}-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{size}"
    (tmp_path / "secret.txt").write_text("no")
    for path in ("..%2F..%2Fsecret.txt", "checkpoints%2F..%2F..%2F..%2Fsecret.txt",
                 "checkpoints/missing.ckpt", "..", "%2e%2e/secret.txt"):
        status, _, body = call("GET", f"{server.url}/api/runs/r9/download/{path}")
        assert status in (400, 404) and b"no" != body, path
    assert call("GET", f"{server.url}/api/runs/..%2F/download/secret.txt")[0] in (400, 404)


def test_live_stream_snapshot_ingest_resume_and_local_tail(server, tmp_path):
    seed_run(server, "r1", steps=3)
    sse = SSE(server.url)
    first = sse.next_event()
    assert first["event"] == "snapshot" and "id" not in first
    assert [r["run_id"] for r in first["data"]["runs"]] == ["r1"]
    assert first["data"]["runs"][0] == get_json(server.url + "/api/runs")["runs"][0]

    t0 = time.monotonic()
    ingest(server, {"type": "metrics", "run_id": "r1", "rows": [{"step": 4, "loss": 1.5}]})
    ev = sse.next_event()
    assert time.monotonic() - t0 < 1.0
    assert ev["event"] == "metrics" and ev["data"] == {"run_id": "r1",
                                                       "rows": [{"step": 4, "loss": 1.5}]}
    last_id = int(ev["id"])
    sse.close()

    # missed while disconnected: resumed after Last-Event-ID, in order, without a snapshot
    ingest(server, [{"type": "metrics", "run_id": "r1", "rows": [{"step": 5, "loss": 1.4}]},
                    {"type": "heartbeat", "run_id": "r1", "step": 5},
                    {"type": "complete", "run_id": "r1", "status": "stopped"}])
    sse = SSE(server.url, last_event_id=str(last_id))
    got = [sse.next_event() for _ in range(3)]
    assert [e["event"] for e in got] == ["metrics", "heartbeat", "run_complete"]
    assert [int(e["id"]) for e in got] == sorted(int(e["id"]) for e in got)
    assert int(got[0]["id"]) > last_id and got[0]["data"]["rows"][0]["step"] == 5
    assert got[2]["data"] == {"run_id": "r1", "status": "stopped"}
    assert get_json(server.url + "/api/runs/r1")["status"] == "stopped"

    # a local run folder: appended lines arrive within a second; a torn line waits
    run_dir = tmp_path / "outputs" / "local1"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"run_id": "local1", "domain": "text",
                                                     "train": {"iters": 10}}))
    ev = sse.next_event(timeout=5)
    assert ev["event"] == "run_start" and ev["data"]["run_id"] == "local1"
    assert ev["data"]["run"]["config"]["train"]["iters"] == 10
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 1, "loss": 3.0}) + "\n" + '{"step": 2, "lo')
        f.flush()
        t0 = time.monotonic()
        ev = sse.next_event(timeout=5)
        assert time.monotonic() - t0 < 1.0
        assert ev["event"] == "metrics" and ev["data"]["rows"] == [{"step": 1, "loss": 3.0}]
        f.write('ss": 2.9}\n')
        f.flush()
        ev = sse.next_event(timeout=5)
        assert ev["data"]["rows"] == [{"step": 2, "loss": 2.9}]
    with open(run_dir / "events.jsonl", "a") as f:
        f.write(json.dumps({"step": 2, "kind": "completed", "message": "done"}) + "\n")
    got = [sse.next_event(timeout=5) for _ in range(2)]
    assert [e["event"] for e in got] == ["events", "run_complete"]
    assert got[1]["data"]["status"] == "completed"
    assert [r["step"] for r in get_json(server.url + "/api/runs/local1/metrics")["metrics"]] \
        == [1, 2]
    assert get_json(server.url + "/api/runs/local1")["status"] == "completed"
    sse.close()

    status, _, _ = call("GET", server.url + "/api/training/live",
                        headers={"Last-Event-ID": "abc"})
    assert status == 400


def test_checkpoint_list_matches_download_and_skips_deleted(server, tmp_path):
    """Each listed checkpoint downloads by its `path` and by its bare `file` name; one that
    retention deleted is listed with exists: false (and its download is 404)."""
    blobs = {}
    for step in (10, 20):
        name, data = f"step-{step}.ckpt", os.urandom(1000 + step)
        sha = hashlib.sha256(data).hexdigest()
        status, _, body = call("PUT", _upload_url(server, "r7", name, len(data), sha, 0), data,
                               dict(AUTH))
        assert status == 201, body
        blobs[name] = data
    os.remove(tmp_path / "outputs" / "r7" / "checkpoints" / "step-10.ckpt")  # retention
    ck = get_json(server.url + "/api/runs/r7/checkpoints")["checkpoints"]
    assert [(c["file"], c["path"], c["exists"]) for c in ck] == [
        ("step-10.ckpt", "checkpoints/step-10.ckpt", False),
        ("step-20.ckpt", "checkpoints/step-20.ckpt", True)]
    base = server.url + "/api/runs/r7/download/"
    for ref in (ck[1]["path"], ck[1]["file"]):
        status, _, body = call("GET", base + ref)
        assert status == 200 and body == blobs["step-20.ckpt"], (ref, status)
    for ref in (ck[0]["path"], ck[0]["file"]):
        assert call("GET", base + ref)[0] == 404
