"""Import run folders into the database: `sync_from_disk(store, "outputs")`.

The run folder is the source of truth; this makes the database agree with it, whatever the
recorder managed to write live. Properties:

- Idempotent: every write is an upsert, so a second sync changes nothing.
- Resumable: how far each .jsonl file has been read (byte offset + a fingerprint of the 256 bytes
  before it) is saved in `sync_state` in the SAME transaction as the rows it covers. A sync killed
  half-way resumes where its last transaction ended, with no duplicates and nothing missing. A file
  that shrank or whose fingerprint changed (a resumed run rewinds metrics.jsonl) is read again
  from the start.
- Tolerant: a line that is not JSON, or a metric without a step, is reported in
  `SyncReport.problems` and skipped; a torn last line (being written) is left for the next sync.

Run status rule (`decide_status`), applied to every run on every sync:
  1. The last lifecycle event in events.jsonl decides when it is terminal: `completed` ->
     completed; `interrupted` (Ctrl-C/SIGTERM) -> stopped; `diverged`, `failed`, `error`,
     `crashed` -> failed.
  2. Else a terminal status already in the database (set by the recorder's `finish`) is kept,
     unless a `start`/`resume` event on disk is newer than it (the run was resumed).
  3. Else the run is `active` while its process is alive and `stale` once it is gone. Alive means:
     the pid recorded in config.json's info (or by the recorder) exists on this host; when the run
     was on another host (or no pid is known), the newest file in the run folder was modified
     less than STALE_AFTER_S ago. So a run whose process died is never active for ever.
  4. An active run in the database with no folder here (deleted, or recorded from another
     machine into a shared database) becomes stale when its pid is gone (same host) or nothing
     was recorded for it for STALE_AFTER_S (the recorder refreshes updated_at with every write,
     and a stale run that records again becomes active).
"""

from __future__ import annotations

import calendar
import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass, field

from alpha.db import rows as R
from alpha.db.store import Store

STALE_AFTER_S = 15 * 60  # a run on another host with no file touched for this long is stale
TXN_ROWS = 5000  # metric rows per transaction (10 INSERTs of 500); one HTTP request remotely
FINGERPRINT_BYTES = 256
CHECKPOINT_MAGIC = b"ALPHACKP"  # alpha.train.checkpoint: the file ends with its sha256

TERMINAL_EVENTS = {"completed": "completed", "interrupted": "stopped", "diverged": "failed",
                   "failed": "failed", "error": "failed", "crashed": "failed"}
START_EVENTS = ("start", "resume")


@dataclass
class SyncReport:
    """What a sync read: runs seen, new .jsonl lines read (each upserted; a line already in the
    database, e.g. written live by the recorder, changes nothing), checkpoints (re)indexed."""

    runs: int = 0
    metrics: int = 0
    events: int = 0
    samples: int = 0
    checkpoints: int = 0
    problems: list[str] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"{self.runs} runs: {self.metrics} new metric lines, {self.events} event "
                f"lines, {self.samples} sample lines, {self.checkpoints} checkpoints"
                + (f"; {len(self.problems)} problems" if self.problems else ""))


def run_folders(outputs_dir: str) -> list[str]:
    """Folders under outputs_dir that look like runs (config.json or metrics.jsonl), by name."""
    if not os.path.isdir(outputs_dir):
        return []
    out = []
    for name in sorted(os.listdir(outputs_dir)):
        path = os.path.join(outputs_dir, name)
        if os.path.isdir(path) and (os.path.isfile(os.path.join(path, "config.json")) or
                                    os.path.isfile(os.path.join(path, "metrics.jsonl"))):
            out.append(path)
    return out


def sync_from_disk(store: Store, outputs_dir: str = "outputs", *, run_ids=None,
                   progress=None, now: float | None = None) -> SyncReport:
    """Import every run folder under `outputs_dir` (or only `run_ids`). `progress(run_id, what,
    n)` is called after each committed transaction."""
    store.require_schema()
    report = SyncReport()
    for path in run_folders(outputs_dir):
        if run_ids and os.path.basename(path) not in run_ids:
            continue
        sync_run(store, path, report, progress=progress, now=now)
    if not run_ids:
        mark_stale_elsewhere(store, set(report.statuses), now=now)
    return report


def mark_stale_elsewhere(store: Store, seen: set[str], now: float | None = None) -> list[str]:
    """Active runs that have no folder here (deleted, or recorded from another machine into a
    shared database) become stale when their process is known to be dead (same host, pid gone)
    or nothing was recorded for them for STALE_AFTER_S. Returns the run ids marked."""
    now = time.time() if now is None else now
    marked = []
    for run_id, pid, host, updated_at in store.query(
            "SELECT run_id, pid, host, updated_at FROM runs WHERE status = 'active'"):
        if run_id in seen:
            continue
        alive = process_alive(pid, host)
        if alive is None:
            updated = parse_time(updated_at)
            alive = updated is not None and now - updated < STALE_AFTER_S
        if not alive:
            store.transaction([R.run_status(run_id, "stale")])
            marked.append(run_id)
    return marked


def copy_of(store: Store, run_id: str, run_dir: str) -> str | None:
    """The folder `run_id` is recorded from, when that is another folder that still holds the
    run (so `run_dir` is a copy: merging the two would mix their metrics); else None (a new run,
    the same folder, or a folder that moved)."""
    rows = store.query("SELECT run_dir FROM runs WHERE run_id = ?", (run_id,))
    recorded = rows[0][0] if rows and rows[0][0] else None
    if not recorded or not isinstance(recorded, str):
        return None
    here = os.path.realpath(run_dir)
    if os.path.realpath(recorded) == here:
        return None
    if not os.path.isfile(os.path.join(recorded, "config.json")):
        return None  # moved: the record follows it
    return recorded


def sync_run(store: Store, run_dir: str, report: SyncReport | None = None, *, progress=None,
             now: float | None = None) -> SyncReport:
    report = report or SyncReport()
    config = _read_config(run_dir, report)
    run_id = str(config.get("run_id") or os.path.basename(os.path.normpath(run_dir)))
    info = config.get("info") if isinstance(config.get("info"), dict) else {}
    original = copy_of(store, run_id, run_dir)
    if original is not None:
        report.problems.append(
            f"{run_dir} is a copy of run {run_id} (recorded from {original}); not merged into "
            "it — to import the copy as a run of its own, give it another run_id in its "
            "config.json")
        report.statuses[f"{run_id} (copy at {run_dir})"] = "not merged"
        return report
    stored = store.query("SELECT status, config_json, pid, host, updated_at FROM runs"
                         " WHERE run_id = ?", (run_id,))
    stored = stored[0] if stored else None
    config_json = R.dumps(R.clean_json(config)) if config else None
    if stored is None or (config_json and stored[1] != config_json):
        store.transaction([R.run_upsert(run_id, config, info, run_dir=os.path.abspath(run_dir))])
    report.runs += 1

    changed = 0
    changed += _sync_jsonl(store, run_id, run_dir, "metrics.jsonl", report, progress)
    changed += _sync_jsonl(store, run_id, run_dir, "events.jsonl", report, progress)
    changed += _sync_jsonl(store, run_id, run_dir, "samples.jsonl", report, progress)
    changed += _sync_checkpoints(store, run_id, run_dir, report)
    if changed:
        store.transaction([R.run_progress(run_id)])

    pid = info.get("pid") if info.get("pid") is not None else (stored[2] if stored else None)
    host = info.get("host") or (stored[3] if stored else None)
    status = decide_status(run_dir, stored[0] if stored else None,
                           stored[4] if stored else None, pid, host, now=now)
    current = store.query("SELECT status FROM runs WHERE run_id = ?", (run_id,))
    if current and current[0][0] != status:
        store.transaction([R.run_status(run_id, status)])
    report.statuses[run_id] = status
    return report


# --------------------------------------------------------------------------------------------
# .jsonl files


def _read_config(run_dir: str, report: SyncReport) -> dict:
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        report.problems.append(f"{path}: unreadable ({e}); run imported without its config")
        return {}
    if not isinstance(data, dict):
        report.problems.append(f"{path}: not a JSON object; run imported without its config")
        return {}
    return data


def _fingerprint(f, offset: int) -> str:
    start = max(0, offset - FINGERPRINT_BYTES)
    f.seek(start)
    return hashlib.sha256(f.read(offset - start)).hexdigest()[:16]


def _sync_jsonl(store: Store, run_id: str, run_dir: str, name: str, report: SyncReport,
                progress) -> int:
    path = os.path.join(run_dir, name)
    if not os.path.isfile(path):
        return 0
    state = store.query("SELECT offset, fingerprint FROM sync_state WHERE run_id = ? AND file = ?",
                        (run_id, name))
    offset, fp = (int(state[0][0]), state[0][1]) if state else (0, "")
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if offset > size or (offset and _fingerprint(f, offset) != fp):
            offset = 0  # the file was rewritten (a resumed run rewinds it): read it again
        if offset == size:
            return 0
        if name == "samples.jsonl":
            offset = 0  # small file; re-read whole so per-step sample indexes stay right
        f.seek(offset)
        data = f.read()
        end = data.rfind(b"\n")
        if end < 0:
            return 0  # only a torn line so far
        data = data[:end + 1]
        lines = data.split(b"\n")[:-1]
        # byte offset after each line
        positions = []
        pos = offset
        for line in lines:
            pos += len(line) + 1
            positions.append(pos)
        new_end = offset + len(data)
        new_fp = _fingerprint(f, new_end)
    line0 = _line_number(path, offset) if offset else 0
    kind = name.split(".")[0]
    per_txn = TXN_ROWS if kind == "metrics" else 1000
    done = 0
    sample_counts: dict[int, int] = {}
    for start in range(0, len(lines), per_txn):
        group = lines[start:start + per_txn]
        last = start + per_txn >= len(lines)
        if last:
            end, fp = new_end, new_fp
        else:
            end = positions[start + len(group) - 1]
            with open(path, "rb") as f:
                fp = _fingerprint(f, end)
        stmts, n = _statements(run_id, kind, path, group, line0 + start, report, sample_counts)
        stmts.append(R.sync_offset(run_id, name, end, fp))
        store.transaction(stmts)
        done += n
        setattr(report, kind, getattr(report, kind) + n)
        if progress is not None:
            progress(run_id, kind, done)
    return done


def _line_number(path: str, offset: int) -> int:
    with open(path, "rb") as f:
        return f.read(offset).count(b"\n")


def _parse(lines: list[bytes], path: str, line0: int, report: SyncReport) -> list[dict]:
    """Parse JSON lines; a bad one is reported (path:line) and skipped. Fast path: the whole
    group as one JSON array, which is right whenever it yields one object per line."""
    kept = [(i, raw) for i, raw in enumerate(lines) if raw.strip()]
    try:
        rows = json.loads(b"[" + b",".join(raw for _, raw in kept) + b"]")
        if len(rows) == len(kept) and all(type(r) is dict for r in rows):
            return rows
    except ValueError:
        pass
    rows = []
    for i, raw in kept:
        try:
            row = json.loads(raw)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            report.problems.append(f"{path}:{line0 + i + 1}: not valid JSON ({e}); skipped")
            continue
        rows.append(row)
    return rows


def _statements(run_id: str, kind: str, path: str, lines: list[bytes], line0: int,
                report: SyncReport, sample_counts: dict) -> tuple[list, int]:
    rows = _parse(lines, path, line0, report)
    if kind == "metrics":
        values = []
        for row in rows:
            v = R.metric_values(row)
            if v is None:
                report.problems.append(f"{path}: a metric without an integer 'step' "
                                       f"({json.dumps(row)[:80]}); skipped")
                continue
            values.append(v)
        return R.metrics_upserts(run_id, values), len(values)
    if kind == "events":
        return [R.event_from_line(run_id, row) for row in rows], len(rows)
    stmts = []
    for row in rows:
        step = R.as_step(row.get("step"))
        if step is None or "text" not in row:
            report.problems.append(f"{path}: a sample without step/text; skipped")
            continue
        idx = R.as_step(row.get("idx", row.get("index")))
        if idx is None:
            idx = sample_counts.get(step, 0)
        sample_counts[step] = max(sample_counts.get(step, 0), idx + 1)
        payload = row.get("payload") if isinstance(row.get("payload"), dict) else {}
        extra = {k: v for k, v in row.items()
                 if k not in ("step", "idx", "index", "text", "payload", "time")}
        stmts.append(R.sample_upsert(run_id, step, idx, row["text"], {**payload, **extra},
                                     now=R.to_iso(row.get("time"))))
    return stmts, len(stmts)


# --------------------------------------------------------------------------------------------
# checkpoints


def checkpoint_checksum(path: str) -> str:
    """An Alpha checkpoint ends with the sha256 of everything before it: read those 32 bytes.
    Any other file is hashed whole."""
    with open(path, "rb") as f:
        if f.read(len(CHECKPOINT_MAGIC)) == CHECKPOINT_MAGIC:
            f.seek(-32, os.SEEK_END)
            return f.read(32).hex()
        f.seek(0)
        digest = hashlib.sha256()
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
        return digest.hexdigest()


def _sync_checkpoints(store: Store, run_id: str, run_dir: str, report: SyncReport) -> int:
    folder = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(folder):
        return 0
    known = {int(s): (size, path) for s, size, path in store.query(
        "SELECT step, size, path FROM checkpoints WHERE run_id = ?", (run_id,))}
    stmts = []
    from alpha.train.checkpoint import list_steps

    for step, path in sorted(list_steps(folder).items()):
        if R.as_step(step) is None:
            continue
        try:
            size = os.path.getsize(path)
            if known.get(step, (None,))[0] == size:
                continue
            checksum = checkpoint_checksum(path)
            mtime = os.path.getmtime(path)
        except OSError as e:
            report.problems.append(f"{path}: unreadable ({e}); skipped")
            continue
        stmts.append(R.checkpoint_upsert(run_id, step, path, size, checksum,
                                         now=R.now_iso(mtime)))
    if stmts:
        store.transaction(stmts)
        report.checkpoints += len(stmts)
    return len(stmts)


# --------------------------------------------------------------------------------------------
# status


def parse_time(text) -> float | None:
    """ISO-8601 UTC (`2026-11-27T14:45:01Z`, optional .fff) -> epoch seconds."""
    if not isinstance(text, str) or len(text) < 19:
        return None
    try:
        base = calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None
    frac = text[19:].rstrip("Z")
    if frac.startswith("."):
        try:
            return base + float("0" + frac)
        except ValueError:
            return base
    return base


def _lifecycle(run_dir: str) -> tuple[str | None, float | None]:
    """(terminal status or None, time of the last start/resume event) from events.jsonl."""
    path = os.path.join(run_dir, "events.jsonl")
    terminal, last_start = None, None
    if not os.path.isfile(path):
        return None, None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if not isinstance(row, dict):
                continue
            kind = row.get("kind") or row.get("event") or row.get("type")
            if not isinstance(kind, str):
                continue
            if kind in START_EVENTS:
                terminal = None
                last_start = parse_time(row.get("time")) or last_start
            elif kind in TERMINAL_EVENTS:
                terminal = TERMINAL_EVENTS[kind]
    return terminal, last_start


def process_alive(pid, host) -> bool | None:
    """True/False for a pid on this host; None when it cannot be told (another host, no pid)."""
    if pid is None or not host or host != socket.gethostname():
        return None
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return None
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return None
    return True


def newest_mtime(run_dir: str) -> float:
    newest = 0.0
    for base in (run_dir, os.path.join(run_dir, "checkpoints")):
        try:
            with os.scandir(base) as it:
                for entry in it:
                    try:
                        newest = max(newest, entry.stat().st_mtime)
                    except OSError:
                        continue
        except OSError:
            continue
    return newest


def decide_status(run_dir: str, db_status: str | None, db_updated_at: str | None, pid, host,
                  now: float | None = None) -> str:
    """The rule in this module's docstring."""
    now = time.time() if now is None else now
    terminal, last_start = _lifecycle(run_dir)
    if terminal:
        return terminal
    if db_status in ("completed", "failed", "stopped"):
        updated = parse_time(db_updated_at)
        if last_start is None or updated is None or last_start <= updated:
            return db_status
    alive = process_alive(pid, host)
    if alive is None:
        alive = now - newest_mtime(run_dir) < STALE_AFTER_S
    return "active" if alive else "stale"
