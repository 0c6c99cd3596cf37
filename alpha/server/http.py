"""The server's small HTTP vocabulary: Request, Response, HTTPError, the Router and EventStream (SSE).

Nothing here knows about models or runs; `alpha/server/app.py` wires these to the stdlib
`ThreadingHTTPServer`, and each feature module registers its routes on a Router.

    def register(router, ctx):
        router.add("GET", "/api/runs/{id}", lambda req: json_response(find(req.params["id"])))

A handler takes a Request and returns a Response, or streams itself (`req.stream(...)`) and
returns None. Raising `HTTPError` sends OpenAI's error shape
`{"error": {"message", "type", "param", "code"}}` with that status.
"""

from __future__ import annotations

import json
import re
import select
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs

MAX_BODY = 1 << 20  # 1 MiB: the default request-body limit (a route may raise it)

# OpenAI's error types by status (its SDKs pick the exception class from the status alone)
ERROR_TYPES = {401: "invalid_request_error", 403: "permission_error", 429: "rate_limit_error"}
REASONS = {
    200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 409: "Conflict", 411: "Length Required", 413: "Payload Too Large",
    429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable",
}


def _error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


class HTTPError(Exception):
    """Raised by a handler to answer with OpenAI's error JSON and this status.

    `param` names the offending request field (OpenAI clients show it); `code` is a machine-readable
    reason such as "context_length_exceeded" or "model_not_found"."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, type: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or _error_type(status)
        self.headers = headers or {}

    def response(self) -> "Response":
        return error_response(self.status, self.message, param=self.param, code=self.code,
                              type=self.type, headers=self.headers)


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(obj, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(status, body, "application/json", dict(headers or {}))


def text_response(text: str, status: int = 200, content_type: str = "text/plain; charset=utf-8",
                  headers: dict[str, str] | None = None) -> Response:
    return Response(status, text.encode("utf-8"), content_type, dict(headers or {}))


def error_body(message: str, *, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(status: int, message: str, *, type: str | None = None,
                   param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    type = type or _error_type(status)
    return json_response(error_body(message, type=type, param=param, code=code), status, headers)


class Request:
    """One HTTP request as a handler sees it.

    method, path (no query string), params (from the route pattern), query (name -> first value;
    `query_all` keeps every value), headers (case-insensitive), body (bytes, read on first use,
    at most the route's limit), json() (the body parsed, or a 400). `ctx` is the server context.
    A handler may set `tokens` (shown in the access log) and may stream with `stream()`/`sse()`."""

    def __init__(self, handler, method: str, target: str, ctx):
        self._handler = handler
        self.ctx = ctx
        self.method = method
        path, _, qs = target.partition("?")
        self.path = path or "/"
        self.query_all = parse_qs(qs, keep_blank_values=True)
        self.query = {k: v[0] for k, v in self.query_all.items()}
        self.headers = handler.headers
        self.params: dict[str, str] = {}
        self.max_body = MAX_BODY
        self.tokens: int | None = None  # the access log's "tokens" column, when a handler sets it
        self.started = time.monotonic()
        self._body: bytes | None = None
        self._stream: Stream | None = None

    @property
    def client(self) -> str:
        return self._handler.client_address[0]

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)

    def bearer(self) -> str | None:
        """The token of an `Authorization: Bearer <token>` header, or None."""
        value = self.headers.get("Authorization", "")
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    @property
    def body(self) -> bytes:
        if self._body is None:
            self._body = self._handler.read_body(self.max_body)
        return self._body

    def json(self):
        """The body as JSON, or HTTPError 400 that says why."""
        raw = self.body
        if not raw:
            raise HTTPError(400, "the request body is empty: send a JSON object")
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise HTTPError(400, f"the request body is not valid JSON ({e})") from None

    def client_gone(self) -> bool:
        """True once the client has closed its side of the connection (checked without blocking)."""
        sock = self._handler.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            return sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def stream(self, status: int = 200, content_type: str = "text/event-stream",
               headers: dict[str, str] | None = None) -> "Stream":
        """Send the status line and headers now, then the body piece by piece (chunked encoding,
        so the connection can be kept alive). The handler returns None when done."""
        if self._stream is None:
            self._stream = Stream(self._handler, self, status, content_type, headers or {})
        return self._stream

    def sse(self, headers: dict[str, str] | None = None) -> "Stream":
        """A Server-Sent Events stream (text/event-stream, no caching, no proxy buffering)."""
        extra = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})}
        return self.stream(200, "text/event-stream; charset=utf-8", extra)


def event_text(data, *, event: str | None = None, id: str | int | None = None) -> str:
    """One SSE event: optional `id:` and `event:` lines, then `data:` (a dict/list is sent as
    compact JSON; a string as is, one `data:` line per line), then the blank line."""
    if not isinstance(data, str):
        data = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    lines = []
    if id is not None:
        lines.append(f"id: {id}")
    if event is not None:
        lines.append(f"event: {event}")
    lines.extend(f"data: {line}" for line in data.split("\n"))
    return "\n".join(lines) + "\n\n"


class ClientGone(Exception):
    """The client closed the connection while we were streaming to it."""


class Stream:
    """A response body sent as it is produced. Every write is flushed at once; a write to a client
    that has gone raises ClientGone (the handler should stop and free what it holds)."""

    def __init__(self, handler, request: Request, status: int, content_type: str,
                 headers: dict[str, str]):
        self._handler = handler
        self.status = status
        self.closed = False
        handler.start_stream(request, status, content_type, headers)

    def write(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not data:
            return
        if self.closed:
            raise ClientGone("the stream is closed")
        try:
            self._handler.write_chunk(data)
        except (OSError, ValueError) as e:  # BrokenPipe, ConnectionReset, timeout, closed file
            self.closed = True
            raise ClientGone(str(e)) from None

    def event(self, data, *, event: str | None = None, id: str | int | None = None) -> None:
        """One SSE event (see `event_text`), written at once."""
        self.write(event_text(data, event=event, id=id))

    def comment(self, text: str = "ping") -> None:
        """An SSE comment line (`: ping`), which keeps idle connections and proxies alive."""
        self.write(f": {text}\n\n")


_PARAM = re.compile(r"\{(\w+)(:path)?\}")


class Router:
    """Method + path pattern -> handler. `{name}` matches one path segment, `{name:path}` the rest
    of the path (slashes included). First match wins, in the order routes were added."""

    def __init__(self):
        self._routes: list[tuple[str, re.Pattern, object, int]] = []

    def add(self, method: str, pattern: str, handler, *, max_body: int = MAX_BODY) -> None:
        regex = "^"
        pos = 0
        for m in _PARAM.finditer(pattern):
            regex += re.escape(pattern[pos:m.start()])
            regex += f"(?P<{m.group(1)}>.+)" if m.group(2) else f"(?P<{m.group(1)}>[^/]+)"
            pos = m.end()
        regex += re.escape(pattern[pos:]) + "$"
        self._routes.append((method.upper(), re.compile(regex), handler, max_body))

    def match(self, method: str, path: str):
        """(handler, params, max_body), or HTTPError 404 / 405 (with the allowed methods)."""
        allowed = []
        for m, regex, handler, max_body in self._routes:
            found = regex.match(path)
            if not found:
                continue
            if m == method or (method == "HEAD" and m == "GET"):
                from urllib.parse import unquote

                return handler, {k: unquote(v) for k, v in found.groupdict().items()}, max_body
            allowed.append(m)
        if allowed:
            allow = ", ".join(sorted(set(allowed) | {"OPTIONS"}))
            raise HTTPError(405, f"{method} is not allowed on {path} (allowed: {allow})",
                            headers={"Allow": allow})
        raise HTTPError(404, f"no route {path}", code="not_found")
