"""Alpha's HTTP server: the stdlib `ThreadingHTTPServer` (HTTP/1.1 keep-alive, one daemon thread
per connection), a Router, CORS, the access log, and a graceful drain on SIGTERM / Ctrl-C.

How a feature plugs in
----------------------
Write a module `alpha/server/<name>.py` with

    def register(router, ctx):
        router.add("GET", "/api/runs/{id}", handler)          # {id}: one path segment
        router.add("GET", "/static/{path:path}", handler)      # {path:path}: the rest
        router.add("POST", "/api/upload", handler, max_body=64 << 20)   # default limit 1 MiB

and add its name to MODULES below (a module that does not exist yet is skipped). Routes match in
MODULES order, so catch-all pages go last.

A handler gets a `Request` (alpha/server/http.py): `method`, `path`, `params` (from the pattern),
`query` / `query_all`, `headers`, `body` (bytes, limited to the route's max_body: past it the
client gets 413), `json()` (or a 400 naming the problem), `bearer()`, `client_gone()`, and `ctx`.
It returns a `Response` (`json_response`, `text_response`, `error_response`), or raises
`HTTPError(status, message, param=..., code=...)`, which becomes OpenAI's error JSON
`{"error": {"message", "type", "param", "code"}}`. Any other exception is logged here with its
traceback and the client gets a plain 500 JSON (never the traceback).

To stream (SSE), call `s = req.sse()` and then `s.event(data, event="metric", id=17)` and
`s.comment("ping")` as often as needed; each write is flushed at once (chunked encoding, so the
connection stays alive afterwards). A write to a client that has left raises `ClientGone`: stop
and free what you hold. Return None when done. Long streams should end when `ctx.draining` is set
(SIGTERM), or at least check it between events.

Set `req.tokens` to show a token count in the access log line
(`method path status tokens ms`; never the query string, headers or bodies, so no secret).

The context (`ServerContext`) that every module gets:
  ctx.outputs      the outputs folder (run folders, alpha.db)
  ctx.store()      the run database (alpha.db.open_store), opened on first use, shared
  ctx.engines      the model registry of /v1 (alpha/server/models.py), or None before it exists
  ctx.metrics      the Prometheus registry (alpha/server/metrics.py): counter/gauge/histogram
  ctx.secret(name) a secret from the environment (ALPHA_API_KEY, UPLOAD_SECRET, ...); "" if unset
  ctx.check_bearer(req, secret)  401 unless the request carries that bearer token (constant time)
  ctx.draining     a threading.Event, set when the server is shutting down
  ctx.options      the parsed `serve` flags (backend, max_batch, ...), as a dict
  ctx.log(line)    one line on the server's log (stderr)
"""

from __future__ import annotations

import hmac
import importlib
import os
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from alpha.server.http import (ClientGone, HTTPError, Request, Response, Router, error_response,
                               json_response)
from alpha.server.metrics import Registry

# Feature modules, in route-matching order. Missing ones (not built yet) are skipped.
MODULES = ["alpha.server.metrics", "alpha.server.openai", "alpha.server.api",
           "alpha.server.ingest", "alpha.server.upload", "alpha.server.live",
           "alpha.server.pages"]

CORS_HEADERS = "Authorization, Content-Type, Accept, Last-Event-ID, OpenAI-Organization, " \
               "OpenAI-Project, X-Stainless-Lang, X-Stainless-Package-Version, X-Stainless-OS, " \
               "X-Stainless-Arch, X-Stainless-Runtime, X-Stainless-Runtime-Version, " \
               "X-Stainless-Retry-Count, X-Stainless-Timeout, X-Stainless-Helper-Method"
IDLE_TIMEOUT = 60.0  # seconds a connection may sit between (or inside) requests
DRAIN_LIMIT = 16 << 20  # bytes of an over-limit body read and dropped before answering 413


class ServerContext:
    """What every route module shares (see the module docstring)."""

    def __init__(self, outputs: str = "outputs", options: dict | None = None, log=None):
        self.outputs = outputs
        self.options = dict(options or {})
        self.metrics = Registry()
        self.draining = threading.Event()
        self.engines = None
        self._log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self._store = None
        self._store_lock = threading.Lock()
        self.cors_origin = self.options.get("cors_origin", "*")
        self.requests = self.metrics.counter(
            "alpha_http_requests_total", "HTTP requests answered, by method and status",
            ("method", "status"))
        self.request_seconds = self.metrics.histogram(
            "alpha_http_request_duration_seconds", "time to answer an HTTP request (whole body)")

    def log(self, line: str) -> None:
        self._log(line)

    def secret(self, name: str) -> str:
        return os.environ.get(name, "")

    def check_bearer(self, req: Request, secret: str) -> None:
        """Raise 401 unless `secret` is empty or the request carries it as a bearer token.
        The comparison takes the same time wherever the tokens differ."""
        if not secret:
            return
        token = req.bearer()
        if token is None:
            raise HTTPError(401, "missing API key: send 'Authorization: Bearer <key>'",
                            code="invalid_api_key")
        if not hmac.compare_digest(token.encode("utf-8"), secret.encode("utf-8")):
            raise HTTPError(401, "incorrect API key provided", code="invalid_api_key")

    def store(self):
        with self._store_lock:
            if self._store is None:
                from alpha.db import open_store

                self._store = open_store(outputs_dir=self.outputs)
            return self._store

    def close(self) -> None:
        if self.engines is not None and hasattr(self.engines, "close"):
            self.engines.close()
        if self._store is not None and hasattr(self._store, "close"):
            self._store.close()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "alpha"
    sys_version = ""
    timeout = IDLE_TIMEOUT  # a socket timeout: a client that stalls is dropped, nobody else waits

    # The stdlib logs every request line (query strings included) to stderr: we log our own line.
    def log_message(self, format, *args):
        pass

    def version_string(self):
        return self.server_version

    def do_GET(self):
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    # -- request ---------------------------------------------------------------------------
    def read_body(self, limit: int) -> bytes:
        self._body_read = True
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked(limit)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise HTTPError(400, "bad Content-Length header") from None
        if n > limit:
            # Read (and drop) a moderately large body so that the client, still sending, sees the
            # 413 instead of a broken pipe; past 16 MiB just hang up.
            self.close_connection = True
            left = n if n <= DRAIN_LIMIT else 0
            while left > 0:
                got = self.rfile.read(min(left, 1 << 16))
                if not got:
                    break
                left -= len(got)
            raise HTTPError(413, f"the request body is {n} bytes; the limit is {limit} bytes",
                            code="request_too_large")
        return self.rfile.read(n)

    def _read_chunked(self, limit: int) -> bytes:
        parts, total = [], 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise HTTPError(400, "bad chunked request body") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            total += size
            if total > limit:
                self.close_connection = True
                raise HTTPError(413, f"the request body is over the limit of {limit} bytes",
                                code="request_too_large")
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)

    # -- response --------------------------------------------------------------------------
    def _cors(self) -> None:
        origin = self.server.ctx.cors_origin
        if origin:
            self.send_header("Access-Control-Allow-Origin", origin)
            if origin != "*":
                self.send_header("Vary", "Origin")
            self.send_header("Access-Control-Expose-Headers", "Retry-After, Content-Type")

    def _send(self, req: Request | None, resp: Response) -> None:
        self.send_response(resp.status)
        if resp.status != 204:
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Content-Length", str(len(resp.body)))
        self._cors()
        for k, v in resp.headers.items():
            self.send_header(k, v)
        if self.close_connection or self.server.ctx.draining.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)
        self.wfile.flush()
        self._status = resp.status

    def start_stream(self, req: Request, status: int, content_type: str, headers: dict) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self._cors()
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.flush()
        self._status = status
        self._streaming = True

    def write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_stream(self) -> None:
        try:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    # -- dispatch --------------------------------------------------------------------------
    def _dispatch(self) -> None:
        ctx = self.server.ctx
        self._status = 0
        self._streaming = False
        self._body_read = False
        req = Request(self, self.command, self.path, ctx)
        self.server.track(+1)
        try:
            resp = self._handle(req, ctx)
            if self._streaming:
                self._end_stream()
            elif resp is not None:
                if (not self._body_read and not self.close_connection
                        and self.command not in ("GET", "HEAD", "OPTIONS")):
                    try:
                        _ = req.body  # the unread body must leave the socket before the next request
                    except HTTPError:
                        pass
                self._send(req, resp)
        except (ClientGone, ConnectionError, TimeoutError):
            self.close_connection = True
            self._status = self._status or 499  # nginx's "client closed request"
        finally:
            self.server.track(-1)
            ms = (time.monotonic() - req.started) * 1000.0
            ctx.requests.inc(1, req.method, str(self._status))
            ctx.request_seconds.observe(ms / 1000.0)
            tokens = "-" if req.tokens is None else str(req.tokens)
            ctx.log(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {req.client} {req.method} "
                    f"{req.path} {self._status} {tokens} {ms:.0f}ms")

    def _handle(self, req: Request, ctx) -> Response | None:
        if req.method == "OPTIONS":
            return self._preflight(req)
        try:
            handler, params, max_body = self.server.router.match(req.method, req.path)
            req.params, req.max_body = params, max_body
            return handler(req)
        except HTTPError as e:
            if self._streaming:  # headers are gone: the handler should have sent its own event
                return None
            return e.response()
        except (ClientGone, ConnectionError, TimeoutError):
            raise
        except Exception:  # a bug: log it here, never show it to the client
            ctx.log(f"error while answering {req.method} {req.path}:\n{traceback.format_exc()}")
            if self._streaming:
                self.close_connection = True
                return None
            return error_response(500, "internal server error (see the server log)")

    def _preflight(self, req: Request) -> Response:
        asked = req.header("Access-Control-Request-Headers")
        return Response(204, b"", "text/plain", {
            "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
            "Access-Control-Allow-Headers": asked or CORS_HEADERS,
            "Access-Control-Max-Age": "86400",
        })


class Server(ThreadingHTTPServer):
    daemon_threads = True  # an unfinished connection never keeps the process alive
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, router: Router, ctx: ServerContext):
        super().__init__(address, Handler)
        self.router = router
        self.ctx = ctx
        self._active = 0
        self._active_cv = threading.Condition()

    def track(self, delta: int) -> None:
        with self._active_cv:
            self._active += delta
            self._active_cv.notify_all()

    @property
    def active(self) -> int:
        return self._active

    def wait_idle(self, deadline: float) -> bool:
        """Wait until no request is in flight or the monotonic deadline passes."""
        with self._active_cv:
            while self._active > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._active_cv.wait(min(left, 0.25))
            return True


def build_router(ctx: ServerContext, modules: list[str] | None = None) -> Router:
    router = Router()
    router.add("GET", "/health", lambda req: _health(ctx))
    for name in MODULES if modules is None else modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue  # a feature not built yet
            raise
        module.register(router, ctx)
    return router


def _health(ctx: ServerContext) -> Response:
    if ctx.draining.is_set():
        return json_response({"status": "draining"}, 503)
    body = {"status": "ok"}
    if ctx.engines is not None and hasattr(ctx.engines, "health"):
        body.update(ctx.engines.health())
    return json_response(body)


def make_server(host: str, port: int, ctx: ServerContext,
                modules: list[str] | None = None) -> Server:
    return Server((host, port), build_router(ctx, modules), ctx)


def serve(server: Server, stop: threading.Event, drain_s: float = 30.0) -> int:
    """Serve until `stop` is set (the CLI sets it on SIGTERM / Ctrl-C), then drain: stop accepting,
    let running requests and streams finish for up to `drain_s` seconds, and return 0."""
    ctx = server.ctx
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="http-accept", daemon=True)
    thread.start()
    while not stop.wait(0.5):
        pass
    ctx.log(f"shutting down: no new connections; waiting up to {drain_s:g} s for "
            f"{server.active} running request(s)")
    ctx.draining.set()
    server.shutdown()
    server.server_close()
    finished = server.wait_idle(time.monotonic() + drain_s)
    if not finished:
        ctx.log(f"drain deadline reached with {server.active} request(s) still running")
    ctx.close()
    ctx.log("stopped")
    return 0
