"""The HTTP skeleton over real sockets on 127.0.0.1: routing, errors, body limit, CORS, SSE framing,
keep-alive, a byte-by-byte client that holds up nobody, and an access log without secrets."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pytest

from alpha.server.app import ServerContext, make_server
from alpha.server.http import HTTPError, json_response


def _routes(router, ctx):
    router.add("GET", "/api/runs/{id}", lambda req: json_response(
        {"id": req.params["id"], "q": req.query.get("q")}))
    router.add("GET", "/files/{rest:path}", lambda req: json_response({"rest": req.params["rest"]}))
    router.add("POST", "/echo", lambda req: json_response(req.json()))

    def boom(req):
        raise RuntimeError("secret internals")

    def teapot(req):
        raise HTTPError(400, "field 'x' is bad", param="x", code="bad_x")

    def events(req):
        s = req.sse()
        for i in range(3):
            s.event({"i": i}, event="tick", id=i)
        s.comment("ping")
        s.event("line1\nline2")

    def secret(req):
        ctx.check_bearer(req, "s3cret")
        return json_response({"ok": True})

    router.add("GET", "/boom", boom)
    router.add("GET", "/teapot", teapot)
    router.add("GET", "/events", events)
    router.add("GET", "/secret", secret)


@pytest.fixture(scope="module")
def server():
    import types
    import sys

    lines: list[str] = []
    mod = types.ModuleType("tests_server_routes")
    mod.register = _routes
    sys.modules["tests_server_routes"] = mod
    ctx = ServerContext(outputs="/nonexistent", log=lines.append)
    srv = make_server("127.0.0.1", 0, ctx, modules=["alpha.server.metrics", "tests_server_routes"])
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield srv, lines
    srv.shutdown()
    srv.server_close()


def _conn(srv):
    return http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=10)


def _get(conn, method, path, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    return r.status, dict(r.getheaders()), r.read()


def test_routes_errors_and_keepalive(server):
    srv, lines = server
    c = _conn(srv)
    st, h, b = _get(c, "GET", "/api/runs/run%201?q=x&token=hunter2")
    assert st == 200 and json.loads(b) == {"id": "run 1", "q": "x"}
    assert h["Access-Control-Allow-Origin"] == "*"
    st, h, b = _get(c, "GET", "/files/a/b/c.js")
    assert json.loads(b) == {"rest": "a/b/c.js"}
    st, h, b = _get(c, "POST", "/echo", b'{"a": [1, 2]}', {"Content-Type": "application/json"})
    assert st == 200 and json.loads(b) == {"a": [1, 2]}
    st, h, b = _get(c, "POST", "/echo", b'{"a": ', {"Content-Type": "application/json"})
    err = json.loads(b)["error"]
    assert st == 400 and set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error" and "JSON" in err["message"]
    st, h, b = _get(c, "GET", "/nope")
    assert st == 404 and json.loads(b)["error"]["type"] == "invalid_request_error"
    st, h, b = _get(c, "DELETE", "/echo")
    assert st == 405 and "POST" in h["Allow"]
    st, h, b = _get(c, "GET", "/teapot")
    assert st == 400 and json.loads(b) == {"error": {
        "message": "field 'x' is bad", "type": "invalid_request_error", "param": "x",
        "code": "bad_x"}}
    st, h, b = _get(c, "GET", "/boom")
    assert st == 500 and b"secret internals" not in b and b"Traceback" not in b
    st, h, b = _get(c, "GET", "/secret")
    assert st == 401
    st, h, b = _get(c, "GET", "/secret", headers={"Authorization": "Bearer wrong"})
    assert st == 401 and json.loads(b)["error"]["code"] == "invalid_api_key"
    st, h, b = _get(c, "GET", "/secret", headers={"Authorization": "Bearer s3cret"})
    assert st == 200
    st, h, b = _get(c, "GET", "/health")  # still the same keep-alive connection
    assert st == 200 and json.loads(b)["status"] == "ok"
    c.close()
    log = "\n".join(lines)
    assert "GET /api/runs/run%201 200" in log or "GET /api/runs/run 1 200" in log
    assert "hunter2" not in log and "s3cret" not in log and "wrong" not in log
    assert "secret internals" in log  # the traceback is in the server log, not the response


def test_body_limit_and_preflight(server):
    srv, _ = server
    c = _conn(srv)
    st, h, b = _get(c, "POST", "/echo", b"x" * ((1 << 20) + 1))
    assert st == 413 and json.loads(b)["error"]["type"] == "invalid_request_error"
    c.close()
    c = _conn(srv)
    st, h, b = _get(c, "OPTIONS", "/echo", headers={
        "Origin": "http://example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert st == 204 and "POST" in h["Access-Control-Allow-Methods"]
    assert h["Access-Control-Allow-Headers"] == "authorization, content-type"
    assert h["Access-Control-Allow-Origin"] == "*"
    c.close()


def test_sse_framing_and_metrics(server):
    srv, _ = server
    c = _conn(srv)
    c.request("GET", "/events")
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Content-Type").startswith("text/event-stream")
    assert r.getheader("Transfer-Encoding") == "chunked"
    body = r.read().decode()
    assert body == ('id: 0\nevent: tick\ndata: {"i":0}\n\n'
                    'id: 1\nevent: tick\ndata: {"i":1}\n\n'
                    'id: 2\nevent: tick\ndata: {"i":2}\n\n'
                    ': ping\n\n'
                    'data: line1\ndata: line2\n\n')
    st, h, b = _get(c, "GET", "/metrics")  # the connection survives a stream
    assert st == 200 and h["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'alpha_http_requests_total{method="GET",status="200"}' in b.decode()
    c.close()


def test_byte_by_byte_client_holds_up_nobody(server):
    srv, _ = server
    slow = socket.create_connection(("127.0.0.1", srv.server_address[1]))
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    slow.sendall(request[:5])
    t0 = time.monotonic()
    c = _conn(srv)
    st, _, _ = _get(c, "GET", "/health")
    assert st == 200 and time.monotonic() - t0 < 5
    c.close()
    for byte in request[5:]:
        slow.sendall(bytes([byte]))
    slow.settimeout(10)
    assert slow.recv(4096).startswith(b"HTTP/1.1 200")
    slow.close()
