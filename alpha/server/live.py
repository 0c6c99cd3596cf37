"""Live updates: `GET /api/training/live` (Server-Sent Events), the hub that fans every change out
to the subscribers, and the watcher that turns a local run folder's appended lines into changes.

The stream (the contract the web pages and `alpha tui --remote` read):
    event: snapshot      data: {"runs": [<run objects as GET /api/runs returns them>]}  (first)
    id: <n>  event: run_start | metrics | samples | events | run_complete | heartbeat
             data: one JSON line, always with "run_id":
               run_start {"run_id", "run"}           metrics/samples/events {"run_id", "rows"}
               run_complete {"run_id", "status": "completed"|"failed"|"stopped", ...}
               heartbeat {"run_id", ...}
    ": ping" every PING_S seconds.
Ids increase across server restarts too (they start at the start time in microseconds). A client
reconnecting with `Last-Event-ID` gets every event after that id when the hub still holds it (the
last HISTORY events, HISTORY_ROWS rows at most); otherwise (too old, or from before a restart)
a fresh snapshot first.

The watcher (one thread) keeps the database in step with the outputs folder while serving: it
imports every run folder at start (`alpha.db.sync`), then polls the folders' .jsonl files every
POLL_S seconds by byte offset (alpha.core.jsonl_tail: a half-written line waits for its newline),
imports what changed (`sync_run`, idempotent), then publishes the new rows. Every FULL_SYNC_S it
runs a whole sync, which also marks runs whose process died as stale.
"""

from __future__ import annotations

import collections
import json
import os
import threading
import time

from alpha.core.jsonl_tail import JsonlTail
from alpha.db.rows import clean_json
from alpha.server.http import ClientGone, HTTPError

PING_S = 15.0
POLL_S = 0.25
LIST_S = 1.0  # how often the outputs folder is listed for new runs
FULL_SYNC_S = 30.0
HISTORY = 20_000  # events kept for Last-Event-ID resume...
HISTORY_ROWS = 500_000  # ...and rows in them (a bound on the memory they hold)
SNAPSHOT_RUNS = 1000
TERMINAL = {"completed": "completed", "interrupted": "stopped", "diverged": "failed",
            "failed": "failed", "error": "failed", "crashed": "failed"}
KINDS = {"metrics.jsonl": "metrics", "samples.jsonl": "samples", "events.jsonl": "events"}


class _Event:
    """One published change. Its SSE frame is made on first read and kept: with no subscriber a
    publish costs no JSON at all, with many it is encoded once."""

    __slots__ = ("id", "kind", "data", "weight", "_frame")

    def __init__(self, eid: int, kind: str, data: dict):
        self.id, self.kind, self.data, self._frame = eid, kind, data, None
        rows = data.get("rows")
        self.weight = 1 + (len(rows) if isinstance(rows, list) else 0)

    def frame(self) -> bytes:
        if self._frame is None:
            try:
                line = json.dumps(self.data, ensure_ascii=False, separators=(",", ":"),
                                  allow_nan=False, default=str)
            except ValueError:  # NaN/Inf (JSON has none): null, as the database keeps them
                line = json.dumps(clean_json(self.data), ensure_ascii=False,
                                  separators=(",", ":"), default=str)
            self._frame = f"id: {self.id}\nevent: {self.kind}\ndata: {line}\n\n".encode()
        return self._frame


class LiveHub:
    """Numbered events in a bounded history; subscribers wait on one condition."""

    def __init__(self, history: int = HISTORY, history_rows: int = HISTORY_ROWS):
        self._cond = threading.Condition()
        self._events: collections.deque = collections.deque()
        self._history = history
        self._history_rows = history_rows
        self._weight = 0
        self._next = int(time.time() * 1_000_000)
        self.subscribers = 0
        self.published = 0

    def publish(self, kind: str, data: dict) -> int:
        with self._cond:
            self._next += 1
            eid = self._next
            ev = _Event(eid, kind, data)
            self._events.append(ev)
            self._weight += ev.weight
            while len(self._events) > 1 and (len(self._events) > self._history
                                             or self._weight > self._history_rows):
                self._weight -= self._events.popleft().weight
            self.published += 1
            self._cond.notify_all()
        return eid

    def subscribed(self, delta: int) -> None:
        with self._cond:
            self.subscribers += delta

    @property
    def last_id(self) -> int:
        with self._cond:
            return self._events[-1].id if self._events else self._next

    def can_resume(self, last_id: int) -> bool:
        """True when every event after `last_id` is still held."""
        with self._cond:
            if not self._events:
                return last_id == self._next
            first, newest = self._events[0].id, self._events[-1].id
            return first - 1 <= last_id <= newest

    def wait_after(self, last_id: int, timeout: float) -> list[_Event]:
        """The events with id > last_id, waiting up to `timeout` seconds for one."""
        with self._cond:
            if not (self._events and self._events[-1].id > last_id):
                self._cond.wait(timeout)
            if not self._events or self._events[-1].id <= last_id:
                return []
            out = []
            for ev in reversed(self._events):
                if ev.id <= last_id:
                    break
                out.append(ev)
            return out[::-1]

    def wake_all(self) -> None:
        with self._cond:
            self._cond.notify_all()


# --------------------------------------------------------------------------------------------
# the watcher of local run folders


class _Folder:
    def __init__(self, path: str):
        self.path = path
        self.run_id = os.path.basename(path)
        self.tails = {name: JsonlTail(os.path.join(path, name)) for name in KINDS}


class FolderWatcher:
    def __init__(self, watch, outputs: str):
        self.watch = watch
        self.outputs = outputs
        self.folders: dict[str, _Folder] = {}
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alpha-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run_folders(self) -> list[str]:
        from alpha.db.sync import run_folders

        return run_folders(self.outputs)

    def initial_sync(self) -> None:
        from alpha.db.sync import sync_from_disk

        for path in self._run_folders():  # follow from here on; the sync imports what is before
            folder = _Folder(path)
            for tail in folder.tails.values():
                tail.skip_to_end()
            self.folders[folder.run_id] = folder
        sync_from_disk(self.watch.store(), self.outputs)

    def _run(self) -> None:
        last_list = last_full = time.monotonic()
        while not self._stop.wait(POLL_S):
            if self.watch.ctx.draining.is_set():
                return
            now = time.monotonic()
            try:
                if now - last_list >= LIST_S:
                    last_list = now
                    self._new_folders()
                for folder in list(self.folders.values()):
                    self._poll(folder)
                if now - last_full >= FULL_SYNC_S:
                    last_full = now
                    self._full_sync()
                self.error = None
            except Exception as e:  # noqa: BLE001 - a bad folder or a busy DB: try again later
                self.error = f"{type(e).__name__}: {e}"

    def _new_folders(self) -> None:
        for path in self._run_folders():
            run_id = os.path.basename(path)
            if run_id not in self.folders:
                self.folders[run_id] = _Folder(path)  # tails from 0: the whole new run
                self._sync(path)
                run = self.watch.run_object(run_id)
                if run is not None:
                    self.watch.hub.publish("run_start", {"run_id": run_id, "run": run})

    def _poll(self, folder: _Folder) -> None:
        chunks = {}
        for name, tail in folder.tails.items():
            chunk = tail.poll()
            if chunk is not None:
                tail.advance(chunk)
                if chunk.rows:
                    chunks[name] = chunk
        if not chunks:
            return
        self._sync(folder.path)
        hub = self.watch.hub
        for name in ("metrics.jsonl", "samples.jsonl", "events.jsonl"):
            chunk = chunks.get(name)
            if chunk is None:
                continue
            hub.publish(KINDS[name], {"run_id": folder.run_id, "rows": chunk.rows})
            if name == "events.jsonl":
                self._lifecycle(folder.run_id, chunk.rows)

    def _lifecycle(self, run_id: str, rows: list[dict]) -> None:
        for row in rows:
            kind = row.get("kind") or row.get("event") or row.get("type")
            if kind in ("start", "resume"):
                run = self.watch.run_object(run_id)
                if run is not None:
                    self.watch.hub.publish("run_start", {"run_id": run_id, "run": run})
            elif kind in TERMINAL:
                self.watch.hub.publish("run_complete", {
                    "run_id": run_id, "status": TERMINAL[kind], "step": row.get("step"),
                    "message": row.get("message", "")})

    def _sync(self, path: str) -> None:
        from alpha.db.sync import sync_run

        with self.watch.write_lock:
            sync_run(self.watch.store(), path)

    def _full_sync(self) -> None:
        from alpha.db.sync import sync_from_disk

        with self.watch.write_lock:
            sync_from_disk(self.watch.store(), self.outputs)


# --------------------------------------------------------------------------------------------
# the route


def register(router, ctx):
    from alpha.server.watch import get_watch

    watch = get_watch(ctx)
    router.add("GET", "/api/training/live", lambda req: stream(req, watch))
    if watch.watcher is None and watch.store_error is None:
        watcher = FolderWatcher(watch, ctx.outputs)
        try:
            watcher.initial_sync()
        except Exception as e:  # noqa: BLE001
            ctx.log(f"warning: the outputs folder could not be imported: {e}")
        watch.watcher = watcher
        watcher.start()


def _parse_last_id(req) -> int | None:
    raw = req.header("Last-Event-ID") or req.query.get("last_event_id", "")
    raw = raw.strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise HTTPError(400, f"Last-Event-ID {raw[:40]!r} is not an event id") from None


def stream(req, watch):
    hub = watch.hub
    last = _parse_last_id(req)
    ctx = req.ctx
    if last is None or not hub.can_resume(last):
        last = hub.last_id  # taken before the snapshot: nothing published after it is missed
        runs = watch.snapshot_runs(SNAPSHOT_RUNS)
        first = json.dumps({"runs": runs}, ensure_ascii=False, separators=(",", ":"),
                           default=str)
        first_frame = f"event: snapshot\ndata: {first}\n\n".encode("utf-8")
    else:
        first_frame = None
    s = req.sse()
    hub.subscribed(+1)
    try:
        s.write(b"retry: 2000\n\n")
        if first_frame is not None:
            s.write(first_frame)
        next_ping = time.monotonic() + PING_S
        while not ctx.draining.is_set():
            events = hub.wait_after(last, min(1.0, max(0.0, next_ping - time.monotonic())))
            if events:
                last = events[-1].id
                s.write(b"".join(ev.frame() for ev in events))
            now = time.monotonic()
            if now >= next_ping:
                s.comment("ping")
                next_ping = now + PING_S
            elif not events and req.client_gone():
                break
    except ClientGone:
        pass
    finally:
        hub.subscribed(-1)
    return None
