"""The Hrana-over-HTTP client against a real sqld: JWT auth, retries, a server killed mid-sync;
and its value encoding and URL handling as units."""

from __future__ import annotations

import http.server
import json
import os
import threading
import time

import pytest

from alpha.core.errors import StoreError
from alpha.db import hrana
from alpha.db.store import open_store
from alpha.db.sync import sync_from_disk
from alpha.db.turso_store import TursoStore
from conftest import require_peer
from sqld_server import (SqldServer, find_sqld, free_port, have_openssl, make_keys, make_token,
                         sqld)  # noqa: F401 - fixture
from test_db_sync import write_run


# ---- units ---------------------------------------------------------------------------------

def test_value_encoding():
    assert hrana.encode_value(12) == {"type": "integer", "value": "12"}
    assert hrana.encode_value(True) == {"type": "integer", "value": "1"}
    assert hrana.encode_value(1.5) == {"type": "float", "value": 1.5}
    assert hrana.encode_value(float("nan")) == {"type": "null"}
    assert hrana.encode_value(float("-inf")) == {"type": "null"}
    assert hrana.encode_value(b"\x00\xff") == {"type": "blob", "base64": "AP8="}
    assert json.loads(hrana.encode_args_json([1, 2.5, None, "a\"b", b"x", float("inf")])) == [
        hrana.encode_value(v) for v in [1, 2.5, None, "a\"b", b"x", float("inf")]]
    with pytest.raises(StoreError, match="64 bits"):
        hrana.encode_args_json([2 ** 64])


def test_value_decoding_with_and_without_padding():
    assert hrana.decode_value({"type": "blob", "base64": "AP8"}) == b"\x00\xff"
    assert hrana.decode_value({"type": "blob", "base64": "AP8="}) == b"\x00\xff"
    assert hrana.decode_value({"type": "blob", "base64": "YWJj"}) == b"abc"
    assert hrana.decode_value({"type": "integer", "value": "-9223372036854775808"}) == -2 ** 63
    assert hrana.decode_value({"type": "float", "value": None}) == float("inf")
    assert hrana.decode_value({"type": "null"}) is None


def test_urls_and_store_choice(monkeypatch, tmp_path):
    assert hrana.parse_url("libsql://db-x.turso.io") == ("https", "db-x.turso.io", 443, "")
    assert hrana.parse_url("http://127.0.0.1:8080/base/") == ("http", "127.0.0.1", 8080, "/base")
    assert hrana.redact_url("https://u:pw@h/p?authToken=s") == "https://h/p"
    monkeypatch.setenv("TURSO_AUTH_TOKEN", "s3cret-token")
    monkeypatch.setenv("TURSO_DATABASE_URL", "libsql://db-x.turso.io")
    store = open_store()
    assert store.kind == "turso" and "s3cret" not in store.describe() + repr(store.client)
    monkeypatch.setenv("TURSO_DATABASE_URL", f"file:{tmp_path / 'x.db'}")
    assert open_store().kind == "sqlite"
    monkeypatch.delenv("TURSO_DATABASE_URL")
    s = open_store(outputs_dir=str(tmp_path / "out"))
    assert s.kind == "sqlite" and s.path.endswith(os.path.join("out", "alpha.db"))
    monkeypatch.setenv("TURSO_DATABASE_URL", "postgres://x")
    with pytest.raises(StoreError, match="not understood"):
        open_store()


# ---- against a real sqld ---------------------------------------------------------------

def _need_auth_peers():
    require_peer(find_sqld() is not None, "sqld not installed (tools/install-test-deps.sh)")
    require_peer(have_openssl(), "openssl not installed")


@pytest.fixture
def auth_server(tmp_path):
    _need_auth_peers()
    priv, pub = make_keys(str(tmp_path))
    server = SqldServer(str(tmp_path / "sqld"), jwt_key_file=pub).start()
    yield server, priv
    server.stop()


def test_jwt_auth(auth_server, tmp_path):
    server, priv = auth_server
    rw, ro = make_token(priv, "rw"), make_token(priv, "ro")
    (tmp_path / "other").mkdir()
    other_priv, _ = make_keys(str(tmp_path / "other"))  # a key the server does not trust
    forged = make_token(other_priv, "rw")
    expired = make_token(priv, "rw", exp=int(time.time()) - 3600)  # past the 60 s leeway

    writer = TursoStore(server.url, rw, retries=0)
    writer.migrate()
    assert writer.query("SELECT count(*) FROM domains")[0][0] >= 3

    for name, token in (("none", None), ("forged", forged), ("expired", expired)):
        s = TursoStore(server.url, token, retries=3)
        with pytest.raises(StoreError, match="401.*TURSO_AUTH_TOKEN") as e:
            s.query("SELECT 1")
            pytest.fail(f"{name} token accepted")
        assert s.client.requests_sent == 1  # a 4xx is never retried
        assert (token or "\0") not in str(e.value)

    reader = TursoStore(server.url, ro, retries=3)
    assert reader.query("SELECT count(*) FROM domains")[0][0] >= 3
    sent = reader.client.requests_sent
    with pytest.raises(StoreError, match="403.*read-only") as e:
        reader.execute("INSERT INTO domains (name) VALUES ('x')")
    assert reader.client.requests_sent == sent + 1
    assert ro not in str(e.value) and ro not in reader.describe()
    assert writer.query("SELECT count(*) FROM domains WHERE name = 'x'") == [(0,)]


def test_sync_through_auth_and_cli_status_hides_token(auth_server, tmp_path, monkeypatch,
                                                      capsys):
    server, priv = auth_server
    monkeypatch.chdir(tmp_path)  # main() reads .env.local from the working folder
    token = make_token(priv, "rw")
    write_run(tmp_path / "outputs", "run-a", steps=50)
    monkeypatch.setenv("TURSO_DATABASE_URL", server.url)
    monkeypatch.setenv("TURSO_AUTH_TOKEN", token)
    from alpha.cli.main import main

    assert main(["db", "sync", "--outputs", str(tmp_path / "outputs")]) == 0
    assert main(["db", "status", "--outputs", str(tmp_path / "outputs")]) == 0
    out = capsys.readouterr().out
    assert token not in out and "token set" in out and "metrics         50" in out
    monkeypatch.setenv("TURSO_AUTH_TOKEN", make_token(priv, "ro"))
    assert main(["db", "sync", "--outputs", str(tmp_path / "outputs")]) == 0  # nothing to write
    write_run(tmp_path / "outputs", "run-b", steps=5)
    assert main(["db", "sync", "--outputs", str(tmp_path / "outputs")]) == 2
    err = capsys.readouterr().err
    assert "403" in err and len(err.strip().splitlines()) == 1


def test_server_killed_mid_sync_then_restarted(sqld, tmp_path):
    write_run(tmp_path / "outputs", "run-a", steps=30_000)
    store = TursoStore(sqld.url, retries=1, backoff=0.05, timeout=5)
    store.migrate()

    def kill_after_first(run_id, what, done):
        if what == "metrics" and done >= 10_000:
            sqld.kill()

    with pytest.raises(StoreError, match="cannot reach"):
        sync_from_disk(store, str(tmp_path / "outputs"), progress=kill_after_first)
    sqld.start()  # same port, same data
    report = sync_from_disk(store, str(tmp_path / "outputs"))
    assert 0 < report.metrics <= 20_000
    assert store.query("SELECT count(*), count(DISTINCT step), max(step) FROM metrics") == [
        (30_000, 30_000, 30_000)]
    assert sync_from_disk(store, str(tmp_path / "outputs")).metrics == 0


def test_retries_on_connection_errors_and_5xx(tmp_path):
    port = free_port()  # nothing listens here
    s = TursoStore(f"http://127.0.0.1:{port}", retries=2, backoff=0.01, timeout=2)
    with pytest.raises(StoreError, match="cannot reach.*after 3 tries"):
        s.query("SELECT 1")
    assert s.client.requests_sent == 3

    hits = []

    class Flaky(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            hits.append(1)
            if len(hits) < 3:
                self.send_response(503)
                self.send_header("Content-Length", "4")
                self.end_headers()
                self.wfile.write(b"busy")
                return
            body = json.dumps({"baton": None, "results": [
                {"type": "ok", "response": {"type": "execute", "result": {
                    "cols": [{"name": "x"}], "rows": [[{"type": "integer", "value": "7"}]],
                    "affected_row_count": 0, "last_insert_rowid": None}}},
                {"type": "ok", "response": {"type": "close"}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        s = TursoStore(f"http://127.0.0.1:{httpd.server_address[1]}", retries=3, backoff=0.01)
        assert s.query("SELECT 7") == [(7,)]
        assert len(hits) == 3
        hits.clear()
        s = TursoStore(f"http://127.0.0.1:{httpd.server_address[1]}", retries=1, backoff=0.01)
        with pytest.raises(StoreError, match="HTTP 503: busy"):
            s.query("SELECT 7")
    finally:
        httpd.shutdown()


def test_no_pragma_sent_remotely(sqld, tmp_path, monkeypatch):
    sent = []
    real = hrana.HranaClient._post

    def spy(self, body):
        sent.append(body.decode())
        return real(self, body)

    monkeypatch.setattr(hrana.HranaClient, "_post", spy)
    write_run(tmp_path / "outputs", "run-a", steps=10)
    store = TursoStore(sqld.url)
    store.migrate()
    sync_from_disk(store, str(tmp_path / "outputs"))
    sqls = []
    for body in sent:
        requests = json.loads(body)["requests"]
        assert requests[-1] == {"type": "close"}  # every pipeline closes its stream
        for r in requests:
            steps = r["batch"]["steps"] if r["type"] == "batch" else [r] if "stmt" in r else []
            sqls += [step["stmt"]["sql"] for step in steps]
    assert len(sqls) > 10 and not any("PRAGMA" in sql.upper() for sql in sqls)


def test_keep_alive_reuses_one_connection(sqld):
    store = TursoStore(sqld.url)
    store.query("SELECT 1")
    conn = store.client._conn
    for _ in range(5):
        store.query("SELECT 1")
    assert store.client._conn is conn


def test_connection_closed_while_idle_is_reopened(sqld):
    store = TursoStore(sqld.url, retries=0)
    assert store.query("SELECT 1") == [(1,)]
    sqld.stop()
    sqld.start()  # the kept-alive connection is now dead
    assert store.query("SELECT 2") == [(2,)]  # reconnects at once, even with retries=0
