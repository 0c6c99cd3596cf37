"""One Store test-suite, run against both backends: SQLite (file:) and a real sqld over HTTP."""

from __future__ import annotations

import math

import pytest

from alpha.core.domains import all_domains
from alpha.core.errors import StoreError
from alpha.db import rows as R
from alpha.db import schema
from sqld_server import db_url, sqld, store  # noqa: F401 - fixtures


def _make_run(store, run_id="r1", **config):
    store.transaction([R.run_upsert(run_id, {"domain": "text", "config_hash": "abc",
                                             "model": {"n_layer": 2, "n_embd": 64},
                                             "train": {"lr": 1e-3, "iters": 10}, **config},
                                    {"host": "h", "pid": 1, "param_count": 1234})])


def test_migrate_once_and_seed_domains(store):
    assert store.schema_version() == schema.LATEST_VERSION
    assert store.migrate() == []  # a second migrate applies nothing
    versions = store.query("SELECT version FROM schema_version ORDER BY version")
    assert [v for (v,) in versions] == [m[0] for m in schema.MIGRATIONS]
    names = [n for (n,) in store.query("SELECT name FROM domains ORDER BY name")]
    assert names == sorted(d.name for d in all_domains())
    counts = store.counts()
    assert set(schema.TABLES) <= set(counts) and min(counts.values()) >= 0


@pytest.mark.parametrize("blob", [b"", b"\x00", b"\x00\xff", b"abc", b"\x01\x02\x03\x04\xfe"])
def test_blob_roundtrip_any_padding(store, blob):
    store.execute("CREATE TABLE t (b BLOB)")
    store.execute("INSERT INTO t VALUES (?)", (blob,))
    assert store.query("SELECT b FROM t") == [(blob,)]


def test_value_roundtrip(store):
    store.execute("CREATE TABLE v (i INTEGER, f REAL, t TEXT, n)")
    values = [(2 ** 63 - 1, 1.5, "héllo \"q\" \n ☃", None), (-(2 ** 63), -0.25, "", None),
              (0, 1e-300, "x" * 1000, None)]
    for row in values:
        store.execute("INSERT INTO v VALUES (?, ?, ?, ?)", row)
    assert store.query("SELECT i, f, t, n FROM v ORDER BY rowid") == values
    store.execute("INSERT INTO v (f) VALUES (?)", (math.nan,))  # NaN is stored as NULL
    assert store.query("SELECT f FROM v WHERE i IS NULL") == [(None,)]
    columns, rows = store.fetch("SELECT 1 AS one, 'a' AS two")
    assert columns == ["one", "two"] and rows == [(1, "a")]


def test_failing_statement_rolls_back_whole_transaction(store):
    _make_run(store)
    good = R.checkpoint_upsert("r1", 1, "p", 1, "c")
    bad = ("INSERT INTO no_such_table VALUES (1)", ())
    with pytest.raises(StoreError, match="no_such_table"):
        store.transaction([good, R.checkpoint_upsert("r1", 2, "p", 2, "c"), bad])
    assert store.query("SELECT count(*) FROM checkpoints") == [(0,)]
    store.transaction([good])  # the connection is still usable
    assert store.query("SELECT count(*) FROM checkpoints") == [(1,)]


def test_constraint_violation_names_statement(store):
    with pytest.raises(StoreError, match="INSERT INTO runs"):
        store.transaction([("INSERT INTO runs (run_id, status, created_at, updated_at)"
                            " VALUES ('x', 'bogus', '', '')", ())])


def test_sql_error_outside_transaction(store):
    with pytest.raises(StoreError, match="SELEC"):
        store.query("SELEC 1")


def test_metrics_chunks_nan_and_idempotence(store):
    _make_run(store)
    rows = [{"step": s, "loss": 3.0 - s / 1000, "lr": 1e-3, "tokens_per_sec": 100.0,
             "custom": s % 3} for s in range(1, 1235)]
    rows[10]["loss"] = math.nan
    rows[11]["grad_norm"] = math.inf
    rows[20]["val_loss"] = 2.5
    values = [R.metric_values(r) for r in rows]
    stmts = R.metrics_upserts("r1", values)
    assert len(stmts) == 3  # 500 + 500 + 234 rows
    store.transaction(stmts + [R.run_progress("r1")])
    store.transaction(stmts + [R.run_progress("r1")])  # idempotent
    assert store.query("SELECT count(*) FROM metrics") == [(1234,)]
    nan_row = store.query("SELECT loss, payload FROM metrics WHERE step = 11")[0]
    assert nan_row[0] is None and '"loss":"nan"' in nan_row[1]
    inf_row = store.query("SELECT grad_norm, payload FROM metrics WHERE step = 12")[0]
    assert inf_row[0] is None and '"grad_norm":"inf"' in inf_row[1]
    last = store.metrics("r1", last=5)
    assert [m["step"] for m in last] == [1230, 1231, 1232, 1233, 1234]
    run = store.run("r1")
    assert run["latest_step"] == 1234 and run["metric_count"] == 1234
    assert run["best_val_loss"] == 2.5
    assert run["last_loss"] == pytest.approx(3.0 - 1.234)
    assert run["n_layer"] == 2 and run["param_count"] == 1234 and run["status"] == "active"


def test_run_upsert_keeps_known_columns(store):
    _make_run(store)
    store.transaction([R.run_upsert("r1", {"domain": "text"}, None)])  # no info: host kept
    run = store.run("r1")
    assert run["host"] == "h" and run["config_hash"] == "abc"
    store.transaction([R.run_status("r1", "completed")])
    assert store.run("r1")["status"] == "completed"


def test_summary_view_checkpoints_samples_events(store):
    _make_run(store)
    store.transaction([R.checkpoint_upsert("r1", 100, "a", 10, "x"),
                       R.checkpoint_upsert("r1", 200, "b", 20, "y"),
                       R.sample_upsert("r1", 100, 0, "hello"),
                       R.sample_upsert("r1", 100, 0, "hello again"),
                       R.event_insert("r1", 5, "info", "eval", "val", {"val_loss": 2.0}),
                       R.event_insert("r1", 5, "info", "eval", "val", {"val_loss": 2.0})])
    run = store.run("r1")
    assert run["checkpoint_count"] == 2 and run["latest_checkpoint_step"] == 200
    assert [s["text"] for s in store.samples("r1")] == ["hello again"]
    assert len(store.events("r1")) == 1  # the same event twice is one row
    recent = store.runs(limit=5)
    assert [r["run_id"] for r in recent] == ["r1"]


def test_require_schema_on_empty_database(db_url, tmp_path, monkeypatch):
    from alpha.db.store import open_store

    monkeypatch.delenv("TURSO_AUTH_TOKEN", raising=False)
    with open_store(db_url, timeout=5.0, retries=0) as s:
        with pytest.raises(StoreError, match="db migrate"):
            s.require_schema()


def test_concurrent_migrate_applies_each_version_once(db_url, monkeypatch):
    import threading

    from alpha.db.store import open_store

    monkeypatch.delenv("TURSO_AUTH_TOKEN", raising=False)
    stores = [open_store(db_url, timeout=10.0) for _ in range(3)]
    results, errors = [], []

    def go(s):
        try:
            results.append(s.migrate())
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=go, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(v for r in results for v in r) == [m[0] for m in schema.MIGRATIONS]
    assert stores[0].query("SELECT count(*) FROM schema_version") == [(len(schema.MIGRATIONS),)]
    for s in stores:
        s.close()
