"""`RunRecorder`: the trainer's live copy of a run into the database, off the step's critical path.

    rec = RunRecorder()                       # cheap; never raises; rec.warning says if disabled
    rec.start(run_dir, run_config, info)      # -> the warning (once) or None
    rec.metrics([{"step": 1, "loss": 2.3, ...}, ...])
    rec.checkpoint(step, path, size, checksum)
    rec.sample(step, idx, text)
    rec.event(step, level, kind, message, payload)
    rec.finish("completed" | "failed" | "stopped")
    rec.close()                               # waits at most `close_timeout` seconds
    rec.status()                              # {"enabled", "database", "written", "dropped", ...}
    rec.wait_ready(2.0)                       # None, or why the database is not taking rows
    rec.problem()                             # at the end: None, or what was not recorded

Every method only puts an item on a bounded queue and returns; one background thread opens the
store (the same choice as `open_store`: $TURSO_DATABASE_URL, else <outputs>/alpha.db next to the
run folder), migrates it, and writes. Drop-to-disk semantics: the run folder is the source of
truth, so when the queue is full or a write fails, the item is dropped and counted, and the
database is left alone for BACKOFF_S before the next try. At `close`, if anything was dropped,
the thread imports the run folder (`sync_run`) to fill the gaps; whatever is still missing is
written by the next `python -m alpha db sync`. Training is never slowed or stopped by the database.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time

from alpha.db import rows as R
from alpha.db.schema import RUN_STATUSES

QUEUE_ITEMS = 10_000
BACKOFF_S = 10.0
_STOP = object()


def _config_problem(url: str) -> str | None:
    """A cheap check of $TURSO_DATABASE_URL's shape (no network, no file access)."""
    from alpha.core.errors import StoreError
    from alpha.db.store import parse_database_url

    try:
        parse_database_url(url)
    except StoreError as e:
        return f"{e} (the run folder still has everything)"
    return None


class RunRecorder:
    def __init__(self, url: str | None = None, *, outputs_dir: str | None = None,
                 queue_items: int = QUEUE_ITEMS, close_timeout: float = 10.0,
                 timeout: float = 5.0, retries: int = 1, backoff_s: float = BACKOFF_S):
        self.warning: str | None = None
        self._warned = False
        self.enabled = False
        self.database = "none"
        self.written = 0  # rows written (metrics rows, events, samples, checkpoints, runs)
        self.dropped = 0  # queue items dropped (queue full, database down)
        self.last_error: str | None = None
        self.close_timeout = close_timeout
        self._url = url
        self._outputs_dir = outputs_dir
        self._timeout, self._retries, self._backoff_s = timeout, retries, backoff_s
        self._run_id: str | None = None
        self._run_dir: str | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._ready = threading.Event()  # set after the first attempt to open the store
        self._open_error: str | None = None
        self._copy_of: str | None = None  # the folder this run is recorded from, if not ours
        self._start_args: tuple | None = None  # re-sent with every batch until it is written
        try:
            self._queue: queue.Queue = queue.Queue(maxsize=queue_items)
            raw = os.environ.get("TURSO_DATABASE_URL", "") if url is None else url
            problem = _config_problem(raw)
            if problem:
                self.warning = f"run database disabled: {problem}"
                return
            self._url = raw
            self.enabled = True
        except Exception as e:  # noqa: BLE001 - constructing must never raise
            self.warning = f"run database disabled: {type(e).__name__}: {e}"
            self.enabled = False

    # ---- the trainer's side: each call is O(1) and never raises -------------------------
    def _put(self, item) -> None:
        if not self.enabled or self._closed:
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
        except Exception:  # noqa: BLE001
            self.dropped += 1

    def start(self, run_dir: str, run_config: dict, info: dict) -> str | None:
        """Begin recording the run in `run_dir`. Returns a warning the first time the database
        is off (so the caller can say it once), else None."""
        try:
            self._run_dir = str(run_dir)
            self._run_id = os.path.basename(os.path.normpath(self._run_dir))
            if self.enabled and self._thread is None:
                self._thread = threading.Thread(target=self._work, name="alpha-db-recorder",
                                                daemon=True)
                self._thread.start()
            if hasattr(run_config, "to_dict"):  # a RunConfig rather than its dict
                run_config = run_config.to_dict()
            config = dict(run_config) if isinstance(run_config, dict) else {}
            self._put(("start", (self._run_dir, config, dict(info or {}))))
        except Exception as e:  # noqa: BLE001
            self.enabled = False
            self.warning = self.warning or f"run database disabled: {type(e).__name__}: {e}"
        if self.warning and not self._warned:
            self._warned = True
            return self.warning
        return None

    def metrics(self, rows: list[dict]) -> None:
        self._put(("metrics", list(rows)))

    def checkpoint(self, step: int, path: str, size: int, checksum: str) -> None:
        self._put(("checkpoint", (step, path, size, checksum)))

    def sample(self, step: int, idx: int, text: str) -> None:
        self._put(("sample", (step, idx, text)))

    def event(self, step, level: str, kind: str, message: str, payload=None) -> None:
        self._put(("event", (step, level, kind, message, payload, R.now_iso())))

    def finish(self, status: str) -> None:
        self._put(("finish", status))

    def close(self, timeout: float | None = None, on_wait=None) -> bool:
        """Let the thread write what is queued (and fill gaps from the run folder), waiting at
        most `timeout` seconds (default close_timeout); the thread is a daemon either way.
        `on_wait(seconds)` is called once when the wait lasts more than half a second, so the
        caller can say what it is waiting for. Returns False when the wait timed out."""
        if self._closed:
            return True
        self._closed = True
        thread = self._thread
        if thread is None:
            return True
        limit = self.close_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        try:
            self._queue.put(_STOP, timeout=max(0.0, deadline - time.monotonic()))
        except queue.Full:
            pass
        thread.join(min(0.5, max(0.0, deadline - time.monotonic())))
        if thread.is_alive() and on_wait is not None:
            on_wait(max(0.0, deadline - time.monotonic()))
        thread.join(max(0.0, deadline - time.monotonic()))
        self._timed_out = thread.is_alive()
        return not self._timed_out

    def wait_ready(self, timeout: float) -> str | None:
        """Wait up to `timeout` seconds for the first connection: None when the database took
        the run, else why not (it failed, or it has not answered yet)."""
        if not self.enabled:
            return self.warning
        if self._thread is None:
            return None
        if not self._ready.wait(timeout):
            return f"{self.database_name()} has not answered in {timeout:.0f}s"
        if self._copy_of:
            return self._copy_message()
        return f"{self.database_name()}: {self._open_error}" if self._open_error else None

    def problem(self) -> str | None:
        """After `close`: None when every row reached the database, else what was not and why."""
        if not self.enabled or self._thread is None:
            return None
        if self._copy_of:
            return self._copy_message()
        if getattr(self, "_timed_out", False):
            why = self.last_error or "it did not answer in time"
            return f"{self.database_name()}: {why}"
        if self.dropped or self.last_error:
            why = self.last_error or f"{self.dropped} writes failed"
            return f"{self.database_name()}: {why}"
        return None

    def database_name(self) -> str:
        if self.database != "none":
            return self.database
        from alpha.db.store import describe_url

        return describe_url(self._url or "", self._outputs_dir or os.path.dirname(
            os.path.abspath(self._run_dir or ".")))

    def _copy_message(self) -> str:
        return (f"this run folder is a copy of run {self._run_id}, which "
                f"{self.database_name()} records from {self._copy_of}; not merged into it")

    def status(self) -> dict:
        return {"enabled": self.enabled, "database": self.database, "run_id": self._run_id,
                "queued": self._queue.qsize() if hasattr(self, "_queue") else 0,
                "written": self.written, "dropped": self.dropped, "last_error": self.last_error,
                "warning": self.warning}

    # ---- the background thread -----------------------------------------------------------
    def _open(self):
        from alpha.db.store import open_store

        outputs = self._outputs_dir or os.path.dirname(os.path.abspath(self._run_dir or "."))
        store = open_store(self._url, outputs, timeout=self._timeout, retries=self._retries)
        try:
            self.database = store.describe()
            store.migrate()
        except Exception:
            store.close()
            raise
        return store

    def _work(self) -> None:
        store = None
        retry_at = 0.0
        needs_backfill = False
        stopping = False
        while not stopping:
            try:
                item = self._queue.get(timeout=0.5)
            except queue.Empty:
                if self._closed and self._queue.empty():
                    break
                continue
            if item is _STOP:
                break
            batch = [item]
            # coalesce what is already queued (metrics from many calls -> one transaction)
            while len(batch) < 200:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                batch.append(nxt)
            if time.monotonic() < retry_at:
                self.dropped += sum(1 for kind, _ in batch if kind != "start")
                self._keep_start(batch)
                needs_backfill = True
                continue
            if self._copy_of:
                continue  # a copied run folder: recording it would mix two runs' rows
            try:
                if store is None:
                    try:
                        store = self._open()
                        self._check_copy(store)
                    except Exception as e:  # noqa: BLE001
                        self._open_error = _why(e)
                        raise
                    finally:
                        self._ready.set()
                    if self._copy_of:
                        continue
                n = self._write(store, batch)
                self.written += n
            except Exception as e:  # noqa: BLE001 - the database never reaches training
                self.dropped += sum(1 for kind, _ in batch if kind != "start")
                self._keep_start(batch)
                self.last_error = f"{type(e).__name__}: {e}"
                needs_backfill = True
                retry_at = time.monotonic() + self._backoff_s
                if store is not None and not isinstance(e, _WriteError):
                    try:
                        store.close()
                    except Exception:  # noqa: BLE001
                        pass
                    store = None
        self._ready.set()
        # leftovers (close timed out on put) and gaps: the run folder has them
        if self._copy_of:
            needs_backfill = False
        if needs_backfill or not self._queue.empty():
            self._backfill(store)
        if store is not None:
            try:
                store.close()
            except Exception:  # noqa: BLE001
                pass

    def _check_copy(self, store) -> None:
        from alpha.db.sync import copy_of

        if self._run_id and self._run_dir:
            try:
                self._copy_of = copy_of(store, self._run_id, self._run_dir)
            except Exception:  # noqa: BLE001 - a table not there yet: nothing recorded
                self._copy_of = None

    def _keep_start(self, batch: list) -> None:
        """A start that could not be written is sent again with the next batch (the run row
        must exist before its metrics can)."""
        for kind, arg in batch:
            if kind == "start":
                self._start_args = arg

    def _backfill(self, store) -> None:
        if not self._run_dir or not os.path.isdir(self._run_dir):
            return
        opened = None
        try:
            from alpha.db.sync import sync_run

            if store is None:
                store = opened = self._open()
            sync_run(store, self._run_dir)
            self.last_error = None
        except Exception as e:  # noqa: BLE001
            self.last_error = _why(e)
        finally:
            if opened is not None:
                try:
                    opened.close()
                except Exception:  # noqa: BLE001
                    pass

    def _write(self, store, batch: list) -> int:
        """One transaction for a batch of queue items: the run row first, then metrics (500
        rows per INSERT), then the rest, then progress and the final status."""
        run_id = self._run_id
        starts, metric_rows, others = [], [], []
        if self._start_args is not None and not any(kind == "start" for kind, _ in batch):
            starts.append(self._start_stmt(*self._start_args))
        finish = None
        for kind, arg in batch:
            if kind == "start":
                starts.append(self._start_stmt(*arg))
            elif kind == "metrics":
                for row in arg:
                    values = R.metric_values(row) if isinstance(row, dict) else None
                    if values is not None:
                        metric_rows.append(values)
            elif kind == "checkpoint":
                step, path, size, checksum = arg
                others.append(R.checkpoint_upsert(run_id, step, path, size, checksum))
            elif kind == "sample":
                step, idx, text = arg
                others.append(R.sample_upsert(run_id, step, idx, text))
            elif kind == "event":
                step, level, kind_, message, payload, when = arg
                others.append(R.event_insert(run_id, step, level, kind_, message,
                                             payload or None, when))
            elif kind == "finish":
                finish = arg if arg in RUN_STATUSES else "failed"
        stmts = starts + R.metrics_upserts(run_id, metric_rows) + others
        if metric_rows or finish:
            stmts.append(R.run_progress(run_id))
        if metric_rows and not finish and not starts:  # marked stale meanwhile, yet alive
            stmts.append(("UPDATE runs SET status = 'active' WHERE run_id = ?"
                          " AND status = 'stale'", (run_id,)))
        if finish:
            stmts.append(R.run_status(run_id, finish))
        try:
            store.transaction(stmts)
        except Exception as e:
            raise _WriteError(f"{type(e).__name__}: {e}") from None
        self._start_args = None
        return len(starts) + len(metric_rows) + len(others)

    def _start_stmt(self, run_dir: str, run_config: dict, info: dict):
        config = dict(run_config)
        path = os.path.join(run_dir, "config.json")
        try:  # the trainer writes config.json before start(): use it so sync agrees with us
            with open(path, encoding="utf-8") as f:
                on_disk = json.load(f)
            if isinstance(on_disk, dict):
                config = on_disk
        except (OSError, ValueError):
            try:
                from alpha.core.config import config_hash

                config.setdefault("config_hash", config_hash(run_config))
            except Exception:  # noqa: BLE001
                pass
        disk_info = config.get("info") if isinstance(config.get("info"), dict) else {}
        info = {**disk_info, **info}
        info.setdefault("pid", os.getpid())
        try:
            import socket

            info.setdefault("host", socket.gethostname())
        except OSError:
            pass
        return R.run_upsert(self._run_id, config, info, status="active",
                            run_dir=os.path.abspath(run_dir))


def _why(e: Exception) -> str:
    from alpha.core.errors import AlphaError

    return str(e) if isinstance(e, AlphaError) else f"{type(e).__name__}: {e}"


class _WriteError(Exception):
    """A write the database refused (the connection itself may be fine)."""
