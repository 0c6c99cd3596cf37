"""`POST /api/ingest` (Bearer UPLOAD_SECRET): runs reported from other machines, into the database
and out to the live stream.

The body is one message or a list of them (at most MAX_BODY bytes); each names its run:
    {"type": "run_start", "run_id", "config": {...config.json...}, "info": {...}}
    {"type": "metrics",   "run_id", "rows": [<metrics.jsonl rows>]}
    {"type": "samples",   "run_id", "rows": [{"step", "idx", "text", "payload"}]}
    {"type": "event",     "run_id", "event": {<events.jsonl row>}}   or "events" with "rows"
    {"type": "heartbeat", "run_id", ...}
    {"type": "complete",  "run_id", "status": "completed" | "failed" | "stopped"}
The whole body is applied in one transaction, then published live. Idempotent: a metric is keyed
by (run, step), a sample by (run, step, idx), an event by (run, its content) — a batch sent twice
changes nothing. A run unknown so far is created by its first message. An event whose kind ends a
run (completed, interrupted, diverged, failed, ...) sets the run's status, as `alpha db sync` does.
The answer: {"ok": true, "applied": {"metrics": n, ...}}.
"""

from __future__ import annotations

from alpha.core.errors import StoreError
from alpha.db import rows as R
from alpha.server.http import HTTPError, json_response
from alpha.server.watch import check_name, get_watch

MAX_BODY = 16 << 20
TYPES = ("run_start", "metrics", "samples", "event", "events", "heartbeat", "complete")
TERMINAL = {"completed": "completed", "interrupted": "stopped", "diverged": "failed",
            "failed": "failed", "error": "failed", "crashed": "failed"}
DB_STATUS = {"completed": "completed", "failed": "failed", "stopped": "stopped"}


def _rows(msg: dict, key: str = "rows") -> list[dict]:
    rows = msg.get(key)
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise HTTPError(400, f"a {msg.get('type')} message needs '{key}': a list of objects",
                        param=key)
    return rows


def plan(messages: list[dict]) -> tuple[list, list, dict]:
    """(statements, live events [(type, data)], counts) for validated messages."""
    stmts, live, counts = [], [], {t: 0 for t in ("runs", "metrics", "samples", "events")}
    runs_seen: set[str] = set()
    progress: set[str] = set()
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise HTTPError(400, f"message {i} is not a JSON object")
        kind = msg.get("type")
        if kind not in TYPES:
            raise HTTPError(400, f"message {i}: type {str(kind)[:40]!r} is not one of "
                                 f"{', '.join(TYPES)}", param="type")
        run_id = check_name(str(msg.get("run_id") or ""), "run_id")
        if kind == "run_start":
            config = msg.get("config") if isinstance(msg.get("config"), dict) else {}
            info = msg.get("info") if isinstance(msg.get("info"), dict) else {}
            stmts.append(R.run_upsert(run_id, config, info, status="active"))
            runs_seen.add(run_id)
            counts["runs"] += 1
            live.append(("run_start", {"run_id": run_id}))
            continue
        if run_id not in runs_seen:  # the run row must exist before its metrics can
            stmts.append(R.run_upsert(run_id, {}, {}))
            runs_seen.add(run_id)
        if kind == "metrics":
            rows = _rows(msg)
            values = [v for v in map(R.metric_values, rows) if v is not None]
            stmts.extend(R.metrics_upserts(run_id, values))
            progress.add(run_id)
            counts["metrics"] += len(values)
            live.append(("metrics", {"run_id": run_id, "rows": rows}))
        elif kind == "samples":
            rows = _rows(msg)
            per_step: dict[int, int] = {}
            for row in rows:
                step = R.as_step(row.get("step"))
                if step is None or "text" not in row:
                    raise HTTPError(400, "a sample needs an integer 'step' and a 'text'")
                idx = R.as_step(row.get("idx", row.get("index")))
                idx = per_step.get(step, 0) if idx is None else idx
                per_step[step] = max(per_step.get(step, 0), idx + 1)
                payload = row.get("payload") if isinstance(row.get("payload"), dict) else {}
                extra = {k: v for k, v in row.items()
                         if k not in ("step", "idx", "index", "text", "payload", "time")}
                stmts.append(R.sample_upsert(run_id, step, idx, row["text"],
                                             {**payload, **extra} or None,
                                             now=R.to_iso(row.get("time"))))
            counts["samples"] += len(rows)
            live.append(("samples", {"run_id": run_id, "rows": rows}))
        elif kind in ("event", "events"):
            rows = [msg["event"]] if kind == "event" and isinstance(msg.get("event"), dict) \
                else _rows(msg)
            completes = []
            for row in rows:
                stmts.append(R.event_from_line(run_id, row))
                what = row.get("kind") or row.get("event") or row.get("type")
                if what in TERMINAL:
                    stmts.append(R.run_progress(run_id))
                    stmts.append(R.run_status(run_id, DB_STATUS[TERMINAL[what]]))
                    completes.append(("run_complete", {"run_id": run_id, "status": TERMINAL[what],
                                                       "step": row.get("step")}))
                elif what in ("start", "resume"):
                    stmts.append(R.run_status(run_id, "active"))
            counts["events"] += len(rows)
            live.append(("events", {"run_id": run_id, "rows": rows}))
            live.extend(completes)
        elif kind == "heartbeat":
            stmts.append(("UPDATE runs SET updated_at = ?, status = CASE WHEN status = 'stale'"
                          " THEN 'active' ELSE status END WHERE run_id = ?",
                          (R.now_iso(), run_id)))
            live.append(("heartbeat", {**{k: v for k, v in msg.items() if k != "type"},
                                       "run_id": run_id}))
        elif kind == "complete":
            status = msg.get("status")
            if status not in DB_STATUS:
                raise HTTPError(400, "a complete message needs status completed, failed or "
                                     "stopped", param="status")
            stmts.append(R.run_progress(run_id))
            stmts.append(R.run_status(run_id, DB_STATUS[status]))
            extra = {k: v for k, v in msg.items() if k not in ("type", "run_id", "status")}
            live.append(("run_complete", {"run_id": run_id, "status": status, **extra}))
    for run_id in progress:
        stmts.append(R.run_progress(run_id))
    return stmts, live, counts


def register(router, ctx):
    watch = get_watch(ctx)

    def ingest(req):
        watch.require_writer(req)
        body = req.json()
        messages = body if isinstance(body, list) else [body]
        stmts, live, counts = plan(messages)
        try:
            with watch.write_lock:
                watch.store().transaction(stmts)
        except StoreError as e:
            raise HTTPError(503, f"the run database failed: {e}") from None
        for kind, data in live:
            if kind == "run_start":
                data = {**data, "run": watch.run_object(data["run_id"])}
            watch.hub.publish(kind, data)
        return json_response({"ok": True, "applied": counts})

    router.add("POST", "/api/ingest", ingest, max_body=MAX_BODY)
