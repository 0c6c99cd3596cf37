"""The read API over the run database (JSON):

    GET /api/runs                      ?status=&domain=&limit=&offset=     newest first
    GET /api/runs/{id}
    GET /api/runs/{id}/metrics         ?last=N | ?from_step=S, limit, offset  (step order)
    GET /api/runs/{id}/checkpoints           each with `path` for /download/ and `exists` (false
                                             once retention deleted the file)
    GET /api/runs/{id}/samples         ?step=
    GET /api/runs/{id}/events          ?level=&kind=&from_id=&limit=&offset=
    GET /api/domains
    GET /api/overview                  the home page: counts, recent runs + sparklines, best runs
    GET /api/version

A list returns everything up to 10,000 rows; `limit`/`offset` page beyond that. Shapes are
those of alpha.db.queries. A database that cannot answer gives 503 with the reason.
"""

from __future__ import annotations

import functools
import os
import platform

from alpha.core.errors import StoreError
from alpha.db import queries
from alpha.server.http import HTTPError, json_response
from alpha.server.watch import get_watch

API_VERSION = 1


def _int(req, name: str, default=None, minimum: int | None = 0):
    raw = req.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPError(400, f"{name}={raw[:40]!r} is not an integer", param=name) from None
    if minimum is not None and value < minimum:
        raise HTTPError(400, f"{name} must be at least {minimum}", param=name)
    return value


def _db(fn):
    """Store errors become 503 with the reason (never a traceback)."""
    @functools.wraps(fn)
    def wrapper(req):
        try:
            return fn(req)
        except StoreError as e:
            raise HTTPError(503, f"the run database failed: {e}") from None
    return wrapper


def register(router, ctx):
    watch = get_watch(ctx)

    def known_run(req) -> str:
        run_id = req.params["id"]
        if not queries.run(watch.store(), run_id):
            raise HTTPError(404, f"no run {run_id[:120]!r}", code="run_not_found")
        return run_id

    @_db
    def list_runs(req):
        return json_response({"runs": queries.runs(
            watch.store(), status=req.query.get("status") or None,
            domain=req.query.get("domain") or None, limit=_int(req, "limit"),
            offset=_int(req, "offset", 0))})

    @_db
    def one_run(req):
        run = queries.run(watch.store(), req.params["id"])
        if run is None:
            raise HTTPError(404, f"no run {req.params['id'][:120]!r}", code="run_not_found")
        return json_response(run)

    @_db
    def metrics(req):
        run_id = known_run(req)
        return json_response({"run_id": run_id, "metrics": queries.metrics(
            watch.store(), run_id, last=_int(req, "last"), from_step=_int(req, "from_step"),
            limit=_int(req, "limit"), offset=_int(req, "offset", 0))})

    @_db
    def checkpoints(req):
        run_id = known_run(req)
        rows = queries.checkpoints(watch.store(), run_id, limit=_int(req, "limit"),
                                   offset=_int(req, "offset", 0))
        folder = os.path.join(req.ctx.outputs, run_id, "checkpoints")
        for r in rows:  # `path` is what /download/ takes; retention may have deleted the file
            r["path"] = f"checkpoints/{r['file']}"
            r["exists"] = bool(r["file"]) and os.path.isfile(os.path.join(folder, r["file"]))
        return json_response({"run_id": run_id, "checkpoints": rows})

    @_db
    def samples(req):
        run_id = known_run(req)
        return json_response({"run_id": run_id, "samples": queries.samples(
            watch.store(), run_id, step=_int(req, "step"), limit=_int(req, "limit"),
            offset=_int(req, "offset", 0))})

    @_db
    def events(req):
        run_id = known_run(req)
        return json_response({"run_id": run_id, "events": queries.events(
            watch.store(), run_id, level=req.query.get("level") or None,
            kind=req.query.get("kind") or None, from_id=_int(req, "from_id"),
            limit=_int(req, "limit"), offset=_int(req, "offset", 0))})

    @_db
    def domains(req):
        return json_response({"domains": queries.domains(watch.store())})

    @_db
    def overview(req):
        return json_response(queries.overview(watch.store()))

    def version(req):
        import alpha

        body = {"name": "alpha", "version": getattr(alpha, "__version__", "0"),
                "api": API_VERSION, "python": platform.python_version(),
                "uploads": bool(ctx.secret("UPLOAD_SECRET")),
                "database": watch.store_error or watch.store().describe()}
        return json_response(body)

    router.add("GET", "/api/runs", list_runs)
    router.add("GET", "/api/runs/{id}", one_run)
    router.add("GET", "/api/runs/{id}/metrics", metrics)
    router.add("GET", "/api/runs/{id}/checkpoints", checkpoints)
    router.add("GET", "/api/runs/{id}/samples", samples)
    router.add("GET", "/api/runs/{id}/events", events)
    router.add("GET", "/api/domains", domains)
    router.add("GET", "/api/overview", overview)
    router.add("GET", "/api/version", version)
