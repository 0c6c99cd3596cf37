"""A Hrana-over-HTTP client (the protocol Turso and `sqld` serve), stdlib only.

What it is: `HranaClient` sends pipelines to `POST <base>/v2/pipeline` on one keep-alive
connection, with `Authorization: Bearer <token>` when a token is given. Every pipeline is one-shot
(no baton is kept) and ends with a `close` request, so the server never holds a stream for us.

What it is not: an interactive-transaction client. A transaction is one `batch` whose steps are
`BEGIN IMMEDIATE`, the statements (each conditioned on the previous step being ok), `COMMIT`, and a
`ROLLBACK` conditioned on COMMIT not being ok — the shape the official @libsql/client uses. Either
every statement is applied or none is.

Values (see /work/shared/notes/hrana-and-sqld.md):
    None   -> {"type": "null"}
    int    -> {"type": "integer", "value": "123"}      (a string: a JSON number is rejected)
    bool   -> integer 1 / 0
    float  -> {"type": "float", "value": 1.5}; NaN and ±Inf cannot travel in JSON and become null
              (local SQLite stores NaN as NULL too); a float coming back with value null is a
              stored ±Inf whose sign the server dropped: it decodes to +inf
    str    -> {"type": "text", "value": "..."}
    bytes  -> {"type": "blob", "base64": "..."}        (decoded with or without padding)

Errors: HTTP 401/403 and SQL errors raise `StoreError` at once (401/403 name the token variable,
never its value; SQL errors name the statement). Connection errors, timeouts and HTTP 5xx are
retried with exponential backoff, then raise; a 4xx is never retried. Retrying a write is safe for
Alpha because every write it makes is idempotent (INSERT OR IGNORE / ON CONFLICT DO UPDATE).
"""

from __future__ import annotations

import base64
import http.client
import json
import math
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

from alpha.core.errors import StoreError

PIPELINE_PATH = "/v2/pipeline"


# --------------------------------------------------------------------------------------------
# values


def encode_value(v) -> dict:
    if v is None:
        return {"type": "null"}
    if isinstance(v, bool):
        return {"type": "integer", "value": "1" if v else "0"}
    if isinstance(v, int):
        if not -(2 ** 63) <= v < 2 ** 63:
            raise StoreError(f"integer {v} does not fit in 64 bits")
        return {"type": "integer", "value": str(v)}
    if isinstance(v, float):
        if not math.isfinite(v):
            return {"type": "null"}
        return {"type": "float", "value": v}
    if isinstance(v, str):
        return {"type": "text", "value": v}
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {"type": "blob", "base64": base64.b64encode(bytes(v)).decode("ascii")}
    raise StoreError(f"cannot store a value of type {type(v).__name__}")


def decode_value(v: dict):
    kind = v.get("type")
    if kind == "null":
        return None
    if kind == "integer":
        return int(v["value"])
    if kind == "float":
        value = v.get("value")
        return math.inf if value is None else float(value)
    if kind == "text":
        return v["value"]
    if kind == "blob":
        text = v.get("base64") or ""
        return base64.b64decode(text + "=" * (-len(text) % 4))
    raise StoreError(f"unknown value type {kind!r} in a server response")


_NULL = '{"type":"null"}'


def encode_args_json(args) -> str:
    """The JSON text of `[encode_value(a) for a in args]`, built directly: the bulk metric
    inserts send ~15 values per row, and json.dumps over a dict per value is 10x slower."""
    out = []
    append = out.append
    for v in args:
        t = type(v)
        if t is float:
            append(f'{{"type":"float","value":{v!r}}}' if v - v == 0 else _NULL)
        elif t is int:
            if not -(2 ** 63) <= v < 2 ** 63:
                raise StoreError(f"integer {v} does not fit in 64 bits")
            append(f'{{"type":"integer","value":"{v}"}}')
        elif v is None:
            append(_NULL)
        elif t is str:
            append('{"type":"text","value":' + json.dumps(v) + "}")
        else:
            append(json.dumps(encode_value(v), separators=(",", ":")))
    return "[" + ",".join(out) + "]"


class _RawJson(str):
    """Already-encoded JSON, spliced into a request body by `_dump`."""


def stmt(sql: str, args=(), want_rows: bool = True) -> dict:
    return {"sql": sql, "args": _RawJson(encode_args_json(args)), "want_rows": want_rows}


def _dump(obj) -> str:
    """json.dumps that splices `_RawJson` strings in verbatim."""
    if isinstance(obj, _RawJson):
        return str(obj)
    if isinstance(obj, dict):
        return "{" + ",".join(json.dumps(k) + ":" + _dump(v) for k, v in obj.items()) + "}"
    if isinstance(obj, list):
        return "[" + ",".join(_dump(v) for v in obj) + "]"
    return json.dumps(obj, allow_nan=False)


# --------------------------------------------------------------------------------------------
# results


@dataclass
class Result:
    columns: list[str] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)
    affected: int = 0
    last_insert_rowid: int | None = None


def _result(raw: dict) -> Result:
    rowid = raw.get("last_insert_rowid")
    return Result(
        columns=[c.get("name") for c in raw.get("cols", [])],
        rows=[tuple(decode_value(v) for v in row) for row in raw.get("rows", [])],
        affected=int(raw.get("affected_row_count") or 0),
        last_insert_rowid=int(rowid) if rowid is not None else None,
    )


def _sql_error(err: dict, sql: str) -> StoreError:
    short = " ".join(sql.split())
    if len(short) > 160:
        short = short[:157] + "..."
    code = err.get("code") or "SQL_ERROR"
    return StoreError(f"{code}: {err.get('message', 'unknown error')} (in: {short})")


# --------------------------------------------------------------------------------------------
# the client


class HttpStatusError(Exception):
    def __init__(self, status: int, body: str):
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body


def parse_url(url: str) -> tuple[str, str, int, str]:
    """`libsql://h`, `https://h[:p][/base]`, `http://h:p` -> (scheme, host, port, base path)."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "libsql":
        scheme = "https"
    if scheme not in ("http", "https") or not parts.hostname:
        raise StoreError(
            f"database URL {redact_url(url)!r} is not libsql://, https:// or http://HOST"
        )
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, parts.hostname, port, parts.path.rstrip("/")


def redact_url(url: str) -> str:
    """The URL without credentials or query string (a token may hide in either)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


class HranaClient:
    """One keep-alive HTTP connection to a Hrana server; thread-safe (calls are serialised)."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 15.0,
                 retries: int = 4, backoff: float = 0.25):
        self.scheme, self.host, self.port, base = parse_url(url)
        self.url = redact_url(url)
        self._path = base + PIPELINE_PATH
        token = (token or "").strip()
        if token and not all(33 <= ord(c) < 127 for c in token):
            # http.client would reject it with an error that quotes the value: say it here
            raise StoreError("TURSO_AUTH_TOKEN contains characters that cannot go in an HTTP "
                             "header (spaces, quotes or non-ASCII): copy it again")
        self._token = token or None
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        self.requests_sent = 0

    def __repr__(self) -> str:
        return f"HranaClient({self.url!r}, token={'set' if self._token else 'none'})"

    @property
    def has_token(self) -> bool:
        return self._token is not None

    # ---- transport --------------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.scheme == "https":
                self._conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout,
                    context=ssl.create_default_context())
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._conn = None

    def _post_once(self, body: bytes) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._token:
            headers["Authorization"] = "Bearer " + self._token
        conn = self._connection()
        conn.request("POST", self._path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.will_close:
            self._drop_connection()
        if resp.status != 200:
            raise HttpStatusError(resp.status, data.decode("utf-8", "replace"))
        return json.loads(data)

    def _post(self, body: bytes) -> dict:
        attempt = 0
        free_retry = True  # a kept-alive connection the server closed while idle
        while True:
            reused = self._conn is not None
            try:
                self.requests_sent += 1
                return self._post_once(body)
            except HttpStatusError as e:
                self._drop_connection()  # any HTTP error kills the stream; start clean
                if e.status < 500 or attempt >= self.retries:
                    raise self._http_error(e) from None
            except json.JSONDecodeError:
                self._drop_connection()
                raise StoreError(f"the database at {self.url} sent a response that is not JSON")
            except (OSError, http.client.HTTPException) as e:
                self._drop_connection()
                stale = isinstance(e, (http.client.RemoteDisconnected, BrokenPipeError,
                                       ConnectionResetError))
                if reused and stale and free_retry:
                    free_retry = False
                    continue  # at once, and not counted as a retry
                if attempt >= self.retries:
                    raise StoreError(
                        f"cannot reach the database at {self.url} after {attempt + 1} tries: "
                        f"{type(e).__name__}: {e}") from None
            time.sleep(self.backoff * (2 ** attempt))
            attempt += 1

    def _http_error(self, e: HttpStatusError) -> StoreError:
        body = _error_text(e.body)
        if e.status == 401:
            return StoreError(
                f"the database at {self.url} refused the credentials (HTTP 401: {body}); "
                "check TURSO_AUTH_TOKEN")
        if e.status == 403:
            return StoreError(
                f"the database at {self.url} forbids this request (HTTP 403: {body}); "
                "a read-only TURSO_AUTH_TOKEN cannot write")
        return StoreError(f"the database at {self.url} answered HTTP {e.status}: {body}")

    def close(self) -> None:
        with self._lock:
            self._drop_connection()

    # ---- requests -----------------------------------------------------------------------
    def pipeline(self, requests: list[dict]) -> list[dict]:
        """Send the requests plus a final `close`; return the raw results (without close's)."""
        body = _dump({"baton": None, "requests": [*requests, {"type": "close"}]}).encode("utf-8")
        with self._lock:
            reply = self._post(body)
        results = reply.get("results")
        if not isinstance(results, list) or len(results) != len(requests) + 1:
            raise StoreError(f"the database at {self.url} sent a malformed pipeline response")
        return results[:-1]

    def execute(self, sql: str, args=()) -> Result:
        (res,) = self.pipeline([{"type": "execute", "stmt": stmt(sql, args)}])
        if res.get("type") != "ok":
            raise _sql_error(res.get("error") or {}, sql)
        return _result(res["response"]["result"])

    def batch(self, statements: list[tuple[str, tuple]], *, transaction: bool = True
              ) -> list[Result]:
        """Run statements in order in one request. With `transaction`, all or nothing: the first
        failing statement stops the rest and rolls back, and its error is raised. Without it,
        every statement runs, and the first error is raised after all have run."""
        steps: list[dict] = []
        if transaction:
            steps.append({"stmt": stmt("BEGIN IMMEDIATE", want_rows=False)})
        first = len(steps)
        for i, (sql, args) in enumerate(statements):
            step: dict = {"stmt": stmt(sql, args)}
            if transaction:  # each statement runs only if the one before it succeeded
                step["condition"] = {"type": "ok", "step": first + i - 1}
            steps.append(step)
        if transaction:
            last = len(steps) - 1
            steps.append({"stmt": stmt("COMMIT", want_rows=False),
                          "condition": {"type": "ok", "step": last}})
            commit = len(steps) - 1
            steps.append({"stmt": stmt("ROLLBACK", want_rows=False),
                          "condition": {"type": "not", "cond": {"type": "ok", "step": commit}}})
        (res,) = self.pipeline([{"type": "batch", "batch": {"steps": steps}}])
        if res.get("type") != "ok":
            raise _sql_error(res.get("error") or {}, statements[0][0] if statements else "")
        out = res["response"]["result"]
        errors = out.get("step_errors") or []
        results = out.get("step_results") or []
        sqls = (["BEGIN IMMEDIATE"] if transaction else []) + [s for s, _ in statements] + \
            (["COMMIT", "ROLLBACK"] if transaction else [])
        rollback = len(steps) - 1 if transaction else -1  # its own error is not the cause
        for i, err in enumerate(errors):
            if err is not None and i != rollback:
                raise _sql_error(err, sqls[i])
        body = results[first:first + len(statements)]
        if transaction and (len(results) <= first + len(statements) or
                            results[first + len(statements)] is None):
            raise StoreError("the transaction was not committed (a step was skipped)")
        return [_result(r) if r is not None else Result() for r in body]


def _error_text(body: str) -> str:
    body = body.strip()
    try:
        data = json.loads(body)
    except ValueError:
        return body[:300] or "no details"
    if isinstance(data, dict):
        msg = data.get("error") or data.get("message") or body
        code = data.get("code")
        return f"{code}: {msg}" if code else str(msg)[:300]
    return body[:300]
