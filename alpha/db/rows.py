"""Run-folder records -> SQL statements. Pure functions, no I/O: each returns (sql, args) pairs
that a Store applies in one transaction. Every statement is idempotent (an upsert or INSERT OR
IGNORE), so applying the same records twice, or retrying after a lost reply, changes nothing.

Tolerant of what the trainer writes: unknown fields are kept as JSON in a `payload` column; a
NaN/Inf value becomes NULL and is noted in payload["nonfinite"] ({"loss": "nan"}), a value that is
not a number becomes NULL and is kept in payload["invalid"]; the row itself is always kept.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import operator
import time

from alpha.db.schema import METRIC_FIELDS

CHUNK_ROWS = 500  # metric rows per INSERT statement

Statement = tuple[str, tuple]


def now_iso(t: float | None = None) -> str:
    t = time.time() if t is None else t
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def to_iso(value) -> str | None:
    """A time from a log line (epoch seconds or an ISO string) as ISO-8601 UTC text."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return now_iso(float(value))
        except (OverflowError, ValueError, OSError):  # NaN, or past what time_t holds
            return None
    return text_value(value)


def dumps(obj) -> str:
    """Canonical compact JSON (sorted keys), as stored in the JSON columns."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str, allow_nan=False)


def _finite_or_none(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def clean_json(obj):
    """JSON-safe copy: non-finite floats become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    return obj


def text_value(value) -> str:
    """A str a database TEXT column takes: lone surrogates (from a JSON escape cut in half)
    become U+FFFD instead of failing the whole write."""
    text = str(value)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


_INT64 = 1 << 63


def as_step(value) -> int | None:
    """An integer step (or index) from a log line, None when there is none that a database
    INTEGER column can hold."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        step = value
    elif isinstance(value, float) and value.is_integer():
        step = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 24:
        step = int(value)
    else:
        return None
    return step if -_INT64 <= step < _INT64 else None


# --------------------------------------------------------------------------------------------
# runs

_MODEL_COLS = ("vocab_size", "n_layer", "n_head", "n_embd", "block_size", "ffn_dim", "activation",
               "dropout")
_TRAIN_COLS = ("backend", "batch_size", "iters", "lr", "min_lr", "warmup_iters", "weight_decay",
               "grad_clip", "accum_steps", "seed")
_INFO_COLS = ("host", "pid", "cpu", "gpu", "param_count")


def _scalar(v):
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float, str)) or v is None:
        return _finite_or_none(v)
    return dumps(clean_json(v))


def run_upsert(run_id: str, config: dict | None = None, info: dict | None = None, *,
               status: str | None = None, run_dir: str | None = None,
               now: str | None = None) -> Statement:
    """Insert or update a run. Columns given as None keep the value already stored, so a sync
    (config only) never erases what the recorder learnt (host, pid, param count)."""
    config = config or {}
    info = info or {}
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    sample = config.get("sample") if isinstance(config.get("sample"), dict) else None
    tokenizer = config.get("tokenizer") or train.get("tokenizer") or None
    param_count = info.get("param_count", config.get("param_count"))
    cols = {
        "config_hash": config.get("config_hash"),
        "domain": config.get("domain"),
        "tokenizer": _scalar(tokenizer),
        **{c: _scalar(model.get(c)) for c in _MODEL_COLS},
        **{c: _scalar(train.get(c)) for c in _TRAIN_COLS},
        "model_json": dumps(clean_json(model)) if model else None,
        "train_json": dumps(clean_json(train)) if train else None,
        "sample_json": dumps(clean_json(sample)) if sample is not None else None,
        "config_json": dumps(clean_json(config)) if config else None,
        "param_count": _scalar(param_count),
        "host": _scalar(info.get("host")),
        "pid": _scalar(info.get("pid")),
        "cpu": _scalar(info.get("cpu")),
        "gpu": _scalar(info.get("gpu")),
        "info_json": dumps(clean_json(info)) if info else None,
        "run_dir": run_dir,
    }
    now = now or now_iso()
    names = list(cols)
    sets = [f"{n} = coalesce(excluded.{n}, runs.{n})" for n in names]
    if status is not None:
        names.append("status")
        sets.append("status = excluded.status")
    values = [cols[n] for n in names if n != "status"] + ([status] if status is not None else [])
    sql = (
        f"INSERT INTO runs (run_id, {', '.join(names)}, created_at, updated_at)"
        f" VALUES (?, {', '.join('?' for _ in names)}, ?, ?)"
        f" ON CONFLICT (run_id) DO UPDATE SET {', '.join(sets)}, updated_at = excluded.updated_at"
    )
    return sql, (run_id, *values, now, now)


def run_status(run_id: str, status: str, now: str | None = None) -> Statement:
    return ("UPDATE runs SET status = ?, updated_at = ? WHERE run_id = ? AND status <> ?",
            (status, now or now_iso(), run_id, status))


def run_progress(run_id: str, now: str | None = None) -> Statement:
    """Recompute latest_step, last_loss and best_val_loss from the metrics table."""
    return (
        "UPDATE runs SET"
        " latest_step = (SELECT max(step) FROM metrics WHERE run_id = ?),"
        " last_loss = (SELECT loss FROM metrics WHERE run_id = ? ORDER BY step DESC LIMIT 1),"
        " best_val_loss = (SELECT min(val_loss) FROM metrics WHERE run_id = ?"
        " AND val_loss IS NOT NULL),"
        " updated_at = ? WHERE run_id = ?",
        (run_id, run_id, run_id, now or now_iso(), run_id),
    )


# --------------------------------------------------------------------------------------------
# metrics

_METRIC_SQL_HEAD = (
    f"INSERT INTO metrics (run_id, step, {', '.join(METRIC_FIELDS)}, payload) VALUES "
)
_METRIC_ROW = "(" + ", ".join("?" for _ in range(len(METRIC_FIELDS) + 3)) + ")"
_METRIC_SQL_TAIL = (
    " ON CONFLICT (run_id, step) DO UPDATE SET "
    + ", ".join(f"{n} = excluded.{n}" for n in (*METRIC_FIELDS, "payload"))
)
_KNOWN = frozenset(("step", *METRIC_FIELDS))
_not_none = functools.partial(operator.is_not, None)


def metric_values(row: dict) -> tuple | None:
    """(step, *METRIC_FIELDS, payload) for one metrics line, or None without a usable step."""
    step = as_step(row.get("step"))
    if step is None:
        return None
    values = list(map(row.get, METRIC_FIELDS))
    if _KNOWN.issuperset(row):
        try:  # fast path: numbers only, all finite (a sum of finite values is finite or overflows)
            total = sum(filter(_not_none, values))
            if total - total == 0:
                return (step, *values, None)
        except TypeError:
            pass
    return _metric_values_slow(step, row, values, row.keys() - _KNOWN)


def _metric_values_slow(step: int, row: dict, raw: list, extra_keys) -> tuple:
    values = []
    nonfinite, invalid = {}, {}
    for name, v in zip(METRIC_FIELDS, raw):
        if v is None or type(v) is float and math.isfinite(v):
            values.append(v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            v = float(v)
            if math.isfinite(v):
                values.append(v)
            else:
                values.append(None)
                nonfinite[name] = "nan" if v != v else ("inf" if v > 0 else "-inf")
        else:  # a string, a bool or something else: kept in the payload, not the REAL column
            values.append(None)
            invalid[name] = v
    extra = {k: row[k] for k in extra_keys}
    if nonfinite:
        extra["nonfinite"] = nonfinite
    if invalid:
        extra["invalid"] = invalid
    payload = dumps(clean_json(extra)) if extra else None
    return (step, *values, payload)


def metrics_upserts(run_id: str, rows: list[tuple], chunk: int = CHUNK_ROWS) -> list[Statement]:
    """Statements for metric tuples (from `metric_values`), `chunk` rows per INSERT."""
    out = []
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        args: list = []
        for values in part:
            args.append(run_id)
            args.extend(values)
        sql = _METRIC_SQL_HEAD + ", ".join([_METRIC_ROW] * len(part)) + _METRIC_SQL_TAIL
        out.append((sql, tuple(args)))
    return out


# --------------------------------------------------------------------------------------------
# checkpoints, samples, events

def checkpoint_upsert(run_id: str, step: int, path: str, size: int | None,
                      checksum: str | None, now: str | None = None) -> Statement:
    return (
        "INSERT INTO checkpoints (run_id, step, path, size, checksum, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, step) DO UPDATE SET"
        " path = excluded.path, size = excluded.size,"
        " checksum = coalesce(excluded.checksum, checkpoints.checksum)",
        (run_id, int(step), path, size, checksum, now or now_iso()),
    )


def sample_upsert(run_id: str, step: int, idx: int, text: str, payload: dict | None = None,
                  now: str | None = None) -> Statement:
    return (
        "INSERT INTO samples (run_id, step, idx, text, payload, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, step, idx) DO UPDATE SET"
        " text = excluded.text, payload = coalesce(excluded.payload, samples.payload)",
        (run_id, int(step), int(idx), text_value(text),
         dumps(clean_json(payload)) if payload else None, now or now_iso()),
    )


def event_key(step, level: str, kind: str, message: str, payload) -> str:
    blob = dumps(clean_json([step, level, kind, message, payload or None]))
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def event_insert(run_id: str, step, level: str, kind: str, message: str, payload=None,
                 time_: str | None = None) -> Statement:
    """INSERT OR IGNORE keyed by the event's content: the recorder's live copy and the import
    of events.jsonl collapse into one row (two identical events at one step do too)."""
    step = as_step(step)
    level = text_value(level or "info")
    kind = text_value(kind or "")
    message = text_value(message or "")
    key = event_key(step, level, kind, message, payload)
    return (
        "INSERT OR IGNORE INTO events (run_id, step, level, kind, message, payload, time,"
        " event_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (run_id, step, level, kind, message,
         dumps(clean_json(payload)) if payload else None, time_ or now_iso(), key),
    )


_EVENT_FIELDS = frozenset(("step", "level", "kind", "event", "type", "message", "msg", "time",
                           "t", "ts", "payload"))


def event_from_line(run_id: str, row: dict) -> Statement:
    """An events.jsonl line -> an event insert (kind/event/type, message/msg, time/t/ts)."""
    payload = row.get("payload") if isinstance(row.get("payload"), dict) else {}
    extra = {k: v for k, v in row.items() if k not in _EVENT_FIELDS}
    if extra:
        payload = {**payload, **extra}
    kind = row.get("kind") or row.get("event") or row.get("type") or ""
    message = row.get("message", row.get("msg", ""))
    when = row.get("time", row.get("t", row.get("ts")))
    return event_insert(run_id, row.get("step"), row.get("level") or "info", kind, message,
                        payload or None, to_iso(when))


def sync_offset(run_id: str, file: str, offset: int, fingerprint: str) -> Statement:
    return (
        "INSERT INTO sync_state (run_id, file, offset, fingerprint) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (run_id, file) DO UPDATE SET offset = excluded.offset,"
        " fingerprint = excluded.fingerprint",
        (run_id, file, int(offset), fingerprint),
    )
