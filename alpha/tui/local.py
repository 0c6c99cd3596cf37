"""Runs from an outputs folder on this machine, followed as their files grow.

Every run folder (a folder with config.json) gets one tail per log file: alpha.core.jsonl_tail,
the same byte-offset follower the server's live watcher uses (a half-written last line waits for
its newline; a file replaced or cut back, as a resume rewinds metrics.jsonl, is read again from
the start). train.log is followed the same way, taking its raw lines. `poll()`
is called a few times a second; it costs a `stat` per file of a running run, so twenty live runs
cost well under a percent of a core when nothing is written. Finished runs are looked at less
often (a resume may wake them up), and the folder list is scanned every SCAN_EVERY_S.

A run's status comes from its lifecycle events (start, completed, interrupted, diverged, failed);
a run that started and never finished is `stale` once its process is gone (its pid in config.json
is checked on this host) — the same rule as `alpha db sync`. A deleted folder becomes `deleted`
and stays on screen until `r`.
"""

from __future__ import annotations

import json
import os
import socket
import time

from alpha.core.jsonl_tail import MAX_CHUNK_BYTES, JsonlTail
from alpha.train.checkpoint import step_of
from alpha.tui.model import Run, Runs

SCAN_EVERY_S = 2.0  # new and deleted run folders
IDLE_EVERY_S = 5.0  # files of runs that are not running
PID_EVERY_S = 2.0  # is a running run's process still alive
STALE_AFTER_S = 15 * 60  # no pid known: no file touched this long means stale


def _read(tail: JsonlTail, run: Run, raw: bool = False):
    """(rows or raw lines, restarted, behind) since the last read; lines that are not JSON are
    counted in the run's `bad_lines`. Never raises."""
    chunk = tail.poll(keep_raw=raw)
    if chunk is None:
        return [], False, False
    tail.advance(chunk)
    if not raw and chunk.bad:
        run.bad_lines += chunk.bad
        run.version += 1
    behind = chunk.end - chunk.start >= MAX_CHUNK_BYTES // 2 and tail.pending_bytes() > 0
    return (chunk.raw if raw else chunk.rows), chunk.restarted, behind


def _pid_alive(pid, host) -> bool | None:
    """True/False for a pid on this host; None when it cannot be told."""
    if not isinstance(pid, int) or pid <= 0 or host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


class _Followed:
    """One run folder and the tails of its files."""

    def __init__(self, path: str, run: Run):
        self.path = path
        self.run = run
        self.metrics = JsonlTail(os.path.join(path, "metrics.jsonl"))
        self.events = JsonlTail(os.path.join(path, "events.jsonl"))
        self.samples = JsonlTail(os.path.join(path, "samples.jsonl"))
        self.log = JsonlTail(os.path.join(path, "train.log"))  # raw lines: it is text
        self.config_mtime = None
        self.ckpt_mtime = None
        self.next_look = 0.0
        self.next_pid = 0.0
        self.behind = False  # a file has more than one read's worth waiting
        self.lifecycle = "unknown"  # what the events say, before the pid check

    def poll(self, now: float) -> None:
        run = self.run
        if not os.path.isdir(self.path):
            run.set_status("deleted")  # keep what it showed; the next scan lets it go
            self.next_look = now + IDLE_EVERY_S
            return
        self._config()
        rows, restarted, behind_m = _read(self.metrics, run)
        if restarted:
            run.clear_metrics()
        for row in rows:
            run.add_metric(row)
        rows, restarted, behind_e = _read(self.events, run)
        if restarted:
            run.clear_events()
        for row in rows:
            run.add_event(row)
        if rows or restarted:
            self.lifecycle = run.status
        rows, restarted, _ = _read(self.samples, run)
        if restarted:
            run.clear_samples()
        for row in rows:
            run.add_sample(row)
        lines, restarted, _ = _read(self.log, run, raw=True)
        if restarted:
            run.clear_log()
        if lines:
            run.add_log([line.decode("utf-8", errors="replace").rstrip("\r") for line in lines])
        self._checkpoints()
        self._liveness(now)
        self.behind = behind_m or behind_e
        busy = self.behind or run.status == "running"
        self.next_look = now if busy else now + IDLE_EVERY_S

    def _config(self) -> None:
        path = os.path.join(self.path, "config.json")
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            return
        if mtime == self.config_mtime:
            return
        try:
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
        except (OSError, ValueError):
            return  # being rewritten, or corrupt: keep what we had
        self.config_mtime = mtime
        self.run.set_config(config)

    def _checkpoints(self) -> None:
        folder = os.path.join(self.path, "checkpoints")
        try:
            mtime = os.stat(folder).st_mtime_ns
        except OSError:
            self.run.set_checkpoints({})
            return
        if mtime == self.ckpt_mtime:
            return
        found = {}
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    step = step_of(entry.name)
                    if step is None:
                        continue
                    try:
                        found[step] = {"path": entry.path, "size": entry.stat().st_size}
                    except OSError:
                        continue
        except OSError:
            return
        self.ckpt_mtime = mtime
        self.run.set_checkpoints(found)

    def _liveness(self, now: float) -> None:
        """running -> stale when the training process is gone (and back when it writes again)."""
        run = self.run
        if self.lifecycle != "running":
            if self.lifecycle == "unknown" and run.loss:
                self.lifecycle = "running"  # metrics but no start event (an older writer)
            else:
                return
        if now < self.next_pid:
            return
        self.next_pid = now + PID_EVERY_S
        info = run.config.get("info") if isinstance(run.config.get("info"), dict) else {}
        alive = _pid_alive(info.get("pid"), info.get("host"))
        if alive is None:
            alive = time.time() - run.updated < STALE_AFTER_S if run.updated else False
        run.set_status("running" if alive else "stale")


class LocalSource:
    def __init__(self, root: str):
        self.root = root
        self.followed: dict[str, _Followed] = {}
        self.next_scan = 0.0
        self.error = ""
        self.behind = False  # True while a big file is still being read in (poll again soon)

    def describe(self) -> str:
        return self.root + (f" ({self.error})" if self.error else "")

    def _scan(self, runs: Runs) -> None:
        try:
            names = sorted(os.listdir(self.root))
            self.error = ""
        except OSError as e:
            self.error = e.strerror or str(e)
            names = []
        present = set()
        for name in names:
            path = os.path.join(self.root, name)
            if not os.path.isfile(os.path.join(path, "config.json")):
                continue
            present.add(name)
            if name not in self.followed:
                run = runs.get(name) or runs.add(Run(name, path))
                self.followed[name] = _Followed(path, run)
        for name in list(self.followed):
            if name not in present and not os.path.isdir(self.followed[name].path):
                self.followed.pop(name).run.set_status("deleted")

    def poll(self, runs: Runs, now: float | None = None) -> bool:
        """Read what the files gained; True when anything changed."""
        now = time.monotonic() if now is None else now
        before = runs.version
        if now >= self.next_scan:
            self._scan(runs)
            self.next_scan = now + SCAN_EVERY_S
        self.behind = False
        for followed in list(self.followed.values()):
            if now >= followed.next_look:
                followed.poll(now)
            self.behind = self.behind or followed.behind
        return runs.version != before

    def refresh(self, runs: Runs) -> None:
        """`r`: forget deleted runs and read every file again from the start."""
        for run in list(runs.by_id.values()):
            if run.status == "deleted":
                runs.remove(run.run_id)
        for name, followed in list(self.followed.items()):
            run = followed.run
            run.clear_metrics(), run.clear_events(), run.clear_samples(), run.clear_log()
            self.followed[name] = _Followed(followed.path, run)
        self.next_scan = 0.0
