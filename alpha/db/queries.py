"""The read queries of the web API and dashboards, written once over the Store primitives (so SQLite
and Turso answer the same SQL). Rows come back as JSON-ready dicts:

- a run: the `run_summary` columns, with the JSON columns parsed (`config`, `info`) instead of
  their text (`*_json`);
- a metric: the metrics.jsonl shape again — `step`, the metric columns, and the fields that were
  kept in `payload` merged back in;
- a sample or an event: its columns, `payload` parsed.

Every list is ordered, and bounded by `limit` (default and maximum MAX_ROWS) and `offset`.
"""

from __future__ import annotations

import json

from alpha.db.schema import METRIC_FIELDS

MAX_ROWS = 10_000

_RUN_JSON = {"config_json": "config", "info_json": "info"}
_RUN_DROP = ("model_json", "train_json", "sample_json")


def _bound(limit, offset) -> tuple[int, int]:
    limit = MAX_ROWS if limit is None else max(0, min(int(limit), MAX_ROWS))
    return limit, max(0, int(offset or 0))


def _loads(text):
    if text is None or text == "":
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def _dicts(store, sql: str, args=()) -> list[dict]:
    columns, rows = store.fetch(sql, args)
    return [dict(zip(columns, r)) for r in rows]


def run_object(row: dict) -> dict:
    out = {}
    for key, value in row.items():
        if key in _RUN_DROP:
            continue
        if key in _RUN_JSON:
            out[_RUN_JSON[key]] = _loads(value)
        else:
            out[key] = value
    return out


def runs(store, *, status: str | None = None, domain: str | None = None,
         limit: int | None = None, offset: int = 0) -> list[dict]:
    """Runs, most recently updated first."""
    where, args = [], []
    if status:
        where.append("status = ?")
        args.append(status)
    if domain:
        where.append("domain = ?")
        args.append(domain)
    limit, offset = _bound(limit, offset)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = _dicts(store, f"SELECT * FROM run_summary {clause} ORDER BY updated_at DESC, run_id"
                         " LIMIT ? OFFSET ?", (*args, limit, offset))
    return [run_object(r) for r in rows]


def run(store, run_id: str) -> dict | None:
    rows = _dicts(store, "SELECT * FROM run_summary WHERE run_id = ?", (run_id,))
    return run_object(rows[0]) if rows else None


def metric_row(row: dict) -> dict:
    out = {"step": row["step"]}
    for name in METRIC_FIELDS:
        if row.get(name) is not None:
            out[name] = row[name]
    payload = _loads(row.get("payload"))
    if isinstance(payload, dict):
        for key, value in payload.items():
            out.setdefault(key, value)
    return out


def metrics(store, run_id: str, *, last: int | None = None, from_step: int | None = None,
            limit: int | None = None, offset: int = 0) -> list[dict]:
    """A run's metrics in step order: all (bounded), those from `from_step` on, or the last N."""
    cols = f"step, {', '.join(METRIC_FIELDS)}, payload"
    args: list = [run_id]
    where = "run_id = ?"
    if from_step is not None:
        where += " AND step >= ?"
        args.append(int(from_step))
    if last is not None:
        n = max(0, min(int(last), MAX_ROWS))
        rows = _dicts(store, f"SELECT {cols} FROM metrics WHERE {where} ORDER BY step DESC"
                             " LIMIT ?", (*args, n))[::-1]
    else:
        limit, offset = _bound(limit, offset)
        rows = _dicts(store, f"SELECT {cols} FROM metrics WHERE {where} ORDER BY step"
                             " LIMIT ? OFFSET ?", (*args, limit, offset))
    return [metric_row(r) for r in rows]


def _with_payload(rows: list[dict]) -> list[dict]:
    for r in rows:
        if "payload" in r:
            r["payload"] = _loads(r["payload"])
        r.pop("event_key", None)
    return rows


def checkpoints(store, run_id: str, *, limit=None, offset=0) -> list[dict]:
    limit, offset = _bound(limit, offset)
    rows = _dicts(store, "SELECT step, path, size, checksum, created_at FROM checkpoints"
                         " WHERE run_id = ? ORDER BY step LIMIT ? OFFSET ?",
                  (run_id, limit, offset))
    for r in rows:  # only the file name leaves the server, never its path on disk
        r["file"] = (r.pop("path") or "").replace("\\", "/").rsplit("/", 1)[-1]
    return rows


def samples(store, run_id: str, *, step: int | None = None, limit=None, offset=0) -> list[dict]:
    limit, offset = _bound(limit, offset)
    where, args = "run_id = ?", [run_id]
    if step is not None:
        where += " AND step = ?"
        args.append(int(step))
    return _with_payload(_dicts(
        store, f"SELECT step, idx, text, payload, created_at FROM samples WHERE {where}"
               " ORDER BY step, idx LIMIT ? OFFSET ?", (*args, limit, offset)))


def events(store, run_id: str, *, level: str | None = None, kind: str | None = None,
           from_id: int | None = None, limit=None, offset=0) -> list[dict]:
    where, args = ["run_id = ?"], [run_id]
    if level:
        where.append("level = ?")
        args.append(level)
    if kind:
        where.append("kind = ?")
        args.append(kind)
    if from_id is not None:
        where.append("id >= ?")
        args.append(int(from_id))
    limit, offset = _bound(limit, offset)
    return _with_payload(_dicts(
        store, f"SELECT id, step, level, kind, message, payload, time FROM events"
               f" WHERE {' AND '.join(where)} ORDER BY id LIMIT ? OFFSET ?",
        (*args, limit, offset)))


def domains(store) -> list[dict]:
    rows = _dicts(store, "SELECT name, description, tokenizer, special_tokens, defaults"
                         " FROM domains ORDER BY name")
    for r in rows:
        r["special_tokens"] = _loads(r["special_tokens"]) or []
        r["defaults"] = _loads(r["defaults"]) or {}
    return rows


def overview(store, *, recent: int = 12, best: int = 10, spark_points: int = 60) -> dict:
    """The home page: counts by status, the recent runs with a loss sparkline each, and the
    best validation losses."""
    counts = {s: n for s, n in store.query("SELECT status, count(*) FROM runs GROUP BY status")}
    totals = {
        "runs": sum(counts.values()),
        "metrics": int(store.query("SELECT count(*) FROM metrics")[0][0]),
        "checkpoints": int(store.query("SELECT count(*) FROM checkpoints")[0][0]),
        "samples": int(store.query("SELECT count(*) FROM samples")[0][0]),
    }
    recent_runs = runs(store, limit=recent)
    for r in recent_runs:
        r["spark"] = sparkline(store, r["run_id"], spark_points)
    best_rows = _dicts(store, "SELECT run_id, domain, best_val_loss, latest_step, status"
                              " FROM runs WHERE best_val_loss IS NOT NULL"
                              " ORDER BY best_val_loss LIMIT ?", (int(best),))
    return {"status_counts": counts, "totals": totals, "recent": recent_runs, "best": best_rows}


def sparkline(store, run_id: str, points: int = 60) -> list[list]:
    """About `points` evenly spaced [step, loss] pairs of a run (cheap: one indexed scan)."""
    rows = store.query("SELECT count(*), min(step), max(step) FROM metrics WHERE run_id = ?",
                       (run_id,))
    n, lo, hi = rows[0] if rows else (0, None, None)
    if not n:
        return []
    stride = max(1, (int(hi) - int(lo) + 1) // points)
    pairs = store.query("SELECT step, loss FROM metrics WHERE run_id = ? AND loss IS NOT NULL"
                        " AND (step - ?) % ? = 0 ORDER BY step", (run_id, int(lo), stride))
    return [[s, v] for s, v in pairs]
