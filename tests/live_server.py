"""A small real HTTP server that speaks the live-stream contract of `GET /api/training/live`, for
the dashboard's `--remote` tests (until the server's own endpoint is used instead).

The contract: `text/event-stream`; first `event: snapshot` with `{"runs": [run objects]}`; then
every change as `id: <increasing integer>`, `event: <type>`, `data: <one-line JSON with run_id>`;
a `: ping` comment every `ping_s`; `Last-Event-ID` on reconnect resumes after that id.

`LiveServer` keeps a log of every event it published; `publish(kind, body)` appends one and wakes
the streams. `drop()` closes every open stream (the client must reconnect by itself), and
`last_event_ids` records the header each connection came with.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LiveServer:
    def __init__(self, runs: list[dict], ping_s: float = 15.0):
        self.runs = runs  # run objects for the snapshot (updated by run_start/run_complete)
        self.log: list[tuple[int, str, dict]] = []
        self.cond = threading.Condition()
        self.ping_s = ping_s
        self.generation = 0  # bumped by drop(): streams of an older generation end
        self.last_event_ids: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path.split("?")[0] != "/api/training/live":
                    body = b'{"error": "not found"}'
                    self.send_response(404)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                server._stream(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.drop()
        self.httpd.shutdown()
        self.httpd.server_close()

    def publish(self, kind: str, body: dict) -> int:
        with self.cond:
            event_id = len(self.log) + 1
            self.log.append((event_id, kind, body))
            if kind == "run_start":
                self.runs.append({**body.get("run", {}), "run_id": body["run_id"]})
            self.cond.notify_all()
            return event_id

    def drop(self) -> None:
        with self.cond:
            self.generation += 1
            self.cond.notify_all()

    def _stream(self, handler) -> None:
        last = handler.headers.get("Last-Event-ID")
        with self.cond:
            self.last_event_ids.append(last)
            generation = self.generation
            snapshot = {"runs": list(self.runs)}
        try:
            after = int(last) if last is not None else 0
        except ValueError:
            after = 0
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Connection", "close")
        handler.end_headers()
        w = handler.wfile
        try:
            w.write(b"event: snapshot\ndata: " + json.dumps(snapshot).encode() + b"\n\n")
            w.flush()
            sent = after
            while True:
                with self.cond:
                    while (len(self.log) <= sent and self.generation == generation):
                        if not self.cond.wait(self.ping_s):
                            break
                    if self.generation != generation:
                        return
                    todo = self.log[sent:]
                if not todo:
                    w.write(b": ping\n\n")
                for event_id, kind, body in todo:
                    w.write(f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(body)}\n\n"
                            .encode())
                    sent = event_id
                w.flush()
        except (BrokenPipeError, ConnectionResetError):
            return
        finally:
            handler.close_connection = True
