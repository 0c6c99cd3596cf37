"""The web pages: hand-written HTML/CSS/JS under alpha/server/static/, no build step, no CDN.

    /            overview: counts, recent runs with loss sparklines, best validation losses
    /training    every active run, live (SSE from /api/training/live)
    /runs        all runs;  /runs/{id}  one run: charts, config, checkpoints, samples, events
    /compare     two runs on one chart (?a=RUN&b=RUN)
    /chat        streaming chat against /v1/chat/completions
    /static/...  the pages' CSS and JS;  /favicon.ico

The pages fill themselves from the JSON API; every value from the database is inserted as text
(`textContent`, never `innerHTML`), so nothing stored can run as script in the browser.
"""

from __future__ import annotations

import os

from alpha.server.http import HTTPError, Response

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
PAGES = {"/": "index.html", "/training": "training.html", "/runs": "runs.html",
         "/compare": "compare.html", "/chat": "chat.html"}
TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml",
         ".png": "image/png", ".ico": "image/x-icon"}
SECURITY = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                       "style-src 'self'; script-src 'self'; "
                                       "connect-src 'self'; frame-ancestors 'none'"}


def _file(name: str) -> Response:
    path = os.path.realpath(os.path.join(STATIC, name))
    if not path.startswith(os.path.realpath(STATIC) + os.sep) or not os.path.isfile(path):
        raise HTTPError(404, f"no page {name[:80]!r}", code="not_found")
    with open(path, "rb") as f:
        body = f.read()
    ctype = TYPES.get(os.path.splitext(path)[1], "application/octet-stream")
    headers = dict(SECURITY)
    headers["Cache-Control"] = "no-cache"
    return Response(200, body, ctype, headers)


def register(router, ctx):
    for route, name in PAGES.items():
        router.add("GET", route, lambda req, name=name: _file(name))
    router.add("GET", "/runs/{id}", lambda req: _file("run.html"))
    router.add("GET", "/static/{path:path}", lambda req: _file(req.params["path"]))
    router.add("GET", "/favicon.ico", lambda req: _file("favicon.svg"))
