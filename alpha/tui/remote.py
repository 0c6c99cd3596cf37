"""`--remote URL`: runs from a server's live stream (`GET /api/training/live`, server-sent events).

The stream (produced by alpha/server's live module) is: first `event: snapshot` with
`{"runs": [run objects]}`, then one event per change, each with an increasing `id:` and one-line
JSON data naming its `run_id`: `run_start`, `metrics`, `samples`, `events`, `run_complete`,
`heartbeat`; and a `: ping` comment every 15 s.

A background thread holds the connection and queues parsed events; the screen's loop applies them
(`RemoteSource.poll`), so the network never blocks a keypress. The stream carries only what
happens from now on, so a second thread fetches each run's earlier metrics once (the read API's
`GET /api/runs/{id}/metrics?last=N`; a server without it just leaves the charts shorter). When the connection drops (or
stays silent past READ_TIMEOUT_S: the pings stopped), the thread reconnects by itself with
`Last-Event-ID`, backing off from 0.5 s to 5 s, and the header says so.
"""

from __future__ import annotations

import http.client
import json
import queue
import threading
import time
import urllib.parse
import urllib.request

from alpha.core.errors import ConfigError
from alpha.tui.model import Run, Runs

LIVE_PATH = "/api/training/live"
READ_TIMEOUT_S = 45.0  # three missed pings
CONNECT_TIMEOUT_S = 5.0
HISTORY_ROWS = 20000  # earlier metrics fetched per run when it first appears


def live_url(url: str) -> str:
    """The live-stream URL from what the user typed: a server's base URL or the endpoint itself.
    Raises ConfigError for anything that is not an http(s) URL with a host."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--remote needs an http:// or https:// URL with a host, got {url!r}")
    try:
        parts.port
    except ValueError:
        raise ConfigError(f"--remote URL {url!r} has a bad port") from None
    path = parts.path.rstrip("/")
    if not path.endswith(LIVE_PATH):
        path += LIVE_PATH
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


class SseParser:
    """Server-sent events from lines (the WHATWG rules that matter here): `field: value` lines
    build an event, a blank line dispatches it, `:` lines are comments, a missing `event` is
    "message", and `id` persists as the last event id."""

    def __init__(self):
        self.last_id: str | None = None
        self._event, self._data, self._id = "", [], None

    def feed_line(self, line: str):
        """One line without its newline; returns (id, event, data) when it ends an event."""
        if line == "":
            if not self._data and not self._event:
                self._id = None
                return None
            if self._id is not None:
                self.last_id = self._id
            out = (self._id if self._id is not None else self.last_id,
                   self._event or "message", "\n".join(self._data))
            self._event, self._data, self._id = "", [], None
            return out
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
        elif field == "id" and "\0" not in value:
            self._id = value
        return None


class RemoteSource:
    def __init__(self, url: str):
        self.url = live_url(url)
        self.queue: queue.Queue = queue.Queue()
        self.state = "connecting"  # connecting | live | reconnecting
        self.error = ""
        self.attempts = 0
        self.events_seen = 0
        self.last_event_id: str | None = None
        self._stop = threading.Event()
        self._sock = None
        self._went_live = False
        self._thread = threading.Thread(target=self._loop, name="alpha-tui-remote", daemon=True)
        self._wanted: queue.Queue = queue.Queue()  # run ids whose history to fetch
        self._asked: set[str] = set()
        self._history = threading.Thread(target=self._history_loop, name="alpha-tui-history",
                                         daemon=True)

    def describe(self) -> str:
        host = urllib.parse.urlsplit(self.url).netloc
        if self.state == "live":
            return f"{host} live"
        if self.state == "reconnecting":
            return f"{host} reconnecting ({self.error})"
        return f"{host} connecting"

    # ---- the connection thread --------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        self._history.start()

    def close(self) -> None:
        self._stop.set()
        self._wanted.put(None)
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(2)  # wakes the thread blocked in a read
            except OSError:
                pass

    def _loop(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            self._went_live = False
            try:
                self._stream()
                self.error = "the server closed the stream"
            except Exception as e:  # noqa: BLE001 - the stream thread must outlive any failure
                self.error = str(e) or type(e).__name__
            if self._stop.is_set():
                break
            self.state = "reconnecting"
            self.attempts += 1
            self.queue.put(("status", None, None))
            delay = 0.5 if self._went_live else min(5.0, delay * 2)
            self._stop.wait(delay)

    def _stream(self) -> None:
        parts = urllib.parse.urlsplit(self.url)
        cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = cls(parts.hostname, parts.port, timeout=CONNECT_TIMEOUT_S)
        try:
            conn.connect()
            conn.sock.settimeout(READ_TIMEOUT_S)  # the pings keep a healthy stream talking
            self._sock = conn.sock
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            if self.last_event_id is not None:
                headers["Last-Event-ID"] = self.last_event_id
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            if resp.status != 200:
                raise ValueError(f"HTTP {resp.status} from {parts.path}")
            parser = SseParser()
            parser.last_id = self.last_event_id
            while not self._stop.is_set():
                raw = resp.readline()
                if not raw:
                    return
                event = parser.feed_line(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
                if event is None:
                    continue
                event_id, kind, data = event
                try:
                    body = json.loads(data) if data else {}
                except ValueError:
                    body = None
                if event_id is not None:
                    self.last_event_id = event_id
                if self.state != "live":
                    self.state, self.error = "live", ""
                self._went_live = True
                self.queue.put((kind, event_id, body))
        finally:
            self._sock = None
            conn.close()

    def _history_loop(self) -> None:
        base = self.url[: -len(LIVE_PATH)] if self.url.endswith(LIVE_PATH) else self.url
        while not self._stop.is_set():
            run_id = self._wanted.get()
            if run_id is None:
                return
            url = (f"{base}/api/runs/{urllib.parse.quote(run_id, safe='')}/metrics"
                   f"?last={HISTORY_ROWS}")
            try:
                with urllib.request.urlopen(url, timeout=30) as resp:
                    body = json.loads(resp.read())
            except Exception:  # noqa: BLE001 - no read API there: the live rows are enough
                continue
            rows = body.get("metrics") if isinstance(body, dict) else None
            if isinstance(rows, list):
                self.queue.put(("history", None, {"run_id": run_id, "rows": rows}))

    # ---- applying events (the screen's thread) ----------------------------------------------
    def poll(self, runs: Runs) -> bool:
        changed = False
        while True:
            try:
                kind, _, body = self.queue.get_nowait()
            except queue.Empty:
                break
            changed = True
            if kind == "status" or not isinstance(body, dict):
                continue
            self.events_seen += 1
            if kind == "history":
                run = runs.get(str(body.get("run_id")))
                if run is not None:
                    run.add_history(body.get("rows") or [])
                continue
            apply_event(runs, kind, body)
        if changed:
            for run_id in runs.by_id:
                if run_id not in self._asked:
                    self._asked.add(run_id)
                    self._wanted.put(run_id)
        return changed

    def refresh(self, runs: Runs) -> None:
        """`r`: nothing to re-read locally; the stream is the source (a snapshot follows every
        reconnect)."""


def _run_object(runs: Runs, obj: dict) -> Run | None:
    run_id = obj.get("run_id") or obj.get("id")
    if not isinstance(run_id, (str, int)):
        return None
    run_id = str(run_id)
    run = runs.get(run_id) or runs.add(Run(run_id))
    run.summary = obj
    config = obj.get("config")
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError:
            config = None
    if isinstance(config, dict):
        run.set_config(config)
    if isinstance(obj.get("status"), str):
        run.set_status(obj["status"])
    run.version += 1
    return run


def apply_event(runs: Runs, kind: str, body: dict) -> None:
    """One live-stream event into the runs (unknown kinds and malformed bodies are ignored)."""
    if kind == "snapshot":
        for obj in body.get("runs") or []:
            if isinstance(obj, dict):
                _run_object(runs, obj)
        return
    run_id = body.get("run_id")
    if not isinstance(run_id, (str, int)):
        return
    run_id = str(run_id)
    run = runs.get(run_id)
    if kind == "run_start":
        obj = body.get("run") if isinstance(body.get("run"), dict) else {}
        run = _run_object(runs, {**obj, "run_id": run_id})
        if run is not None:
            run.set_status("running")
        return
    if run is None:
        run = runs.add(Run(run_id))
        run.set_status("running")
    rows = [r for r in body.get("rows") or [] if isinstance(r, dict)]
    if kind == "metrics":
        for row in rows:
            run.add_metric(row)
    elif kind == "samples":
        for row in rows:
            run.add_sample(row)
    elif kind == "events":
        for row in rows:
            run.add_event(row)
    elif kind == "run_complete":
        run.set_status(str(body.get("status") or "completed"))
    elif kind == "heartbeat":
        run.updated = time.time()
