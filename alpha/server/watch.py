"""What the run routes share (api, ingest, upload, live, pages): the Store, migrated once; a lock
that serialises this server's writes; the live hub; and the write routes' auth.

    watch = get_watch(ctx)        # one per ServerContext, made on first use
    watch.store()                 # the Store, or HTTPError 503 naming why it is unavailable
    watch.require_writer(req)     # 503 when UPLOAD_SECRET is unset, 401 on a wrong token
"""

from __future__ import annotations

import re
import threading

from alpha.server.http import HTTPError

SECRET_ENV = "UPLOAD_SECRET"
# run ids and file names that may become paths: no separators, no leading dot, no ".."
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

_lock = threading.Lock()


def valid_name(name: str) -> bool:
    return bool(NAME_RE.match(name or "")) and ".." not in name


def check_name(name: str, what: str) -> str:
    if not valid_name(name):
        raise HTTPError(400, f"{what} {name[:80]!r} is not allowed: use letters, digits, '.', '_' "
                             "and '-' (no '..', no leading '.', at most 128 characters)",
                        param=what)
    return name


class Watch:
    def __init__(self, ctx):
        from alpha.server.live import LiveHub

        self.ctx = ctx
        self.hub = LiveHub()
        self.write_lock = threading.Lock()
        self.watcher = None
        self.store_error: str | None = None
        self._store = None
        try:
            store = ctx.store()
            store.migrate()
            self._store = store
        except Exception as e:  # noqa: BLE001 - the server still serves /v1 and the pages
            self.store_error = f"the run database is unavailable: {e}"
            ctx.log(f"warning: {self.store_error}")

    def store(self):
        if self._store is None:
            raise HTTPError(503, self.store_error or "the run database is unavailable")
        return self._store

    def require_writer(self, req) -> None:
        secret = self.ctx.secret(SECRET_ENV)
        if not secret:
            raise HTTPError(503, f"uploads are off on this server: set {SECRET_ENV} in its "
                                 "environment (or .env.local) to accept them",
                            code="uploads_disabled")
        self.ctx.check_bearer(req, secret)

    def run_object(self, run_id: str) -> dict | None:
        from alpha.db import queries

        return queries.run(self.store(), run_id)

    def snapshot_runs(self, limit: int) -> list[dict]:
        from alpha.db import queries

        try:
            return queries.runs(self.store(), limit=limit)
        except HTTPError:
            return []


def get_watch(ctx) -> Watch:
    with _lock:
        watch = getattr(ctx, "_alpha_watch", None)
        if watch is None:
            watch = Watch(ctx)
            ctx._alpha_watch = watch
        return watch
