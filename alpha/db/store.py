"""The Store interface: one API over the two databases Alpha can keep its runs in.

    open_store()                       TURSO_DATABASE_URL unset       -> SQLite, outputs/alpha.db
                                       file:PATH                      -> SQLite at PATH
                                       libsql:// https:// http://     -> Turso / sqld over HTTP
                                                                         (token: TURSO_AUTH_TOKEN)

A backend implements four primitives — `fetch`, `execute`, `transaction` (a list of statements
applied all-or-nothing) and `close` — and everything else (migrations, dashboard queries, counts)
is written once here on top of them, so both backends run the same SQL.
"""

from __future__ import annotations

import os

from alpha.core.errors import StoreError
from alpha.db import schema
from alpha.db.rows import Statement, now_iso

URL_ENV = "TURSO_DATABASE_URL"
TOKEN_ENV = "TURSO_AUTH_TOKEN"
DEFAULT_FILE = "alpha.db"  # inside the outputs folder


class Store:
    """Base class. Subclasses set `kind` and implement the four primitives."""

    kind = "base"

    # ---- primitives ---------------------------------------------------------------------
    def fetch(self, sql: str, args=()) -> tuple[list[str], list[tuple]]:
        """Run one statement; return (column names, rows)."""
        raise NotImplementedError("need fetch")

    def query(self, sql: str, args=()) -> list[tuple]:
        return self.fetch(sql, args)[1]

    def execute(self, sql: str, args=()) -> int:
        """Run one statement; return the number of rows it changed."""
        raise NotImplementedError("need execute")

    def transaction(self, statements: list[Statement]) -> None:
        """Apply every statement or none. A failing one raises StoreError naming it."""
        raise NotImplementedError("need transaction")

    def close(self) -> None:
        pass

    def describe(self) -> str:
        """Where the data lives, for humans; never includes a secret."""
        return self.kind

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- schema ---------------------------------------------------------------------------
    def schema_version(self) -> int:
        """The highest applied migration, 0 for an empty database. Read-only."""
        exists = self.query("SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                            " AND name = 'schema_version'")
        if not exists or not exists[0][0]:
            return 0
        rows = self.query("SELECT max(version) FROM schema_version")
        return int(rows[0][0] or 0) if rows else 0

    def migrate(self) -> list[int]:
        """Apply the migrations not applied yet, each in its own transaction, and bring the
        domains table up to date with the registry. Returns the versions applied by this call.
        An up-to-date database is only read (so a read-only token can run it)."""
        applied = []
        current = self.schema_version()
        if current < schema.LATEST_VERSION:
            self.execute(schema.SCHEMA_VERSION_TABLE)
        for version, name, statements in schema.MIGRATIONS:
            if version <= current:
                continue
            batch = [("INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                      (version, name, now_iso()))]
            batch += [(sql, ()) for sql in statements]
            try:
                self.transaction(batch)
            except StoreError:
                if self.schema_version() >= version:  # another process applied it meanwhile
                    continue
                raise
            applied.append(version)
        have = set(self.query("SELECT name, description, tokenizer, special_tokens, defaults"
                              " FROM domains"))
        self.transaction([st for st in schema.domain_statements() if tuple(st[1]) not in have])
        return applied

    def require_schema(self) -> None:
        version = self.schema_version()
        if version < schema.LATEST_VERSION:
            raise StoreError(
                f"the database {self.describe()} has schema version {version}, need "
                f"{schema.LATEST_VERSION}: run `python -m alpha db migrate`")

    # ---- reads (dashboards, CLI) ----------------------------------------------------------
    def _dicts(self, sql: str, args=()) -> list[dict]:
        columns, rows = self.fetch(sql, args)
        return [dict(zip(columns, r)) for r in rows]

    def counts(self) -> dict[str, int]:
        out = {}
        for table in schema.TABLES:
            try:
                out[table] = int(self.query(f"SELECT count(*) FROM {table}")[0][0])
            except StoreError:
                out[table] = -1  # missing table: schema not migrated
        return out

    def runs(self, limit: int = 20, status: str | None = None) -> list[dict]:
        """The most recently updated runs, with their summary counts."""
        where, args = ("WHERE status = ?", (status,)) if status else ("", ())
        return self._dicts(
            f"SELECT * FROM run_summary {where} ORDER BY updated_at DESC LIMIT ?",
            (*args, int(limit)))

    def run(self, run_id: str) -> dict | None:
        rows = self._dicts("SELECT * FROM run_summary WHERE run_id = ?", (run_id,))
        return rows[0] if rows else None

    def metrics(self, run_id: str, last: int | None = None) -> list[dict]:
        """A run's metrics in step order; `last` = only the last N steps."""
        if last is None:
            return self._dicts("SELECT * FROM metrics WHERE run_id = ? ORDER BY step", (run_id,))
        rows = self._dicts("SELECT * FROM metrics WHERE run_id = ? ORDER BY step DESC LIMIT ?",
                           (run_id, int(last)))
        return rows[::-1]

    def checkpoints(self, run_id: str) -> list[dict]:
        return self._dicts("SELECT * FROM checkpoints WHERE run_id = ? ORDER BY step", (run_id,))

    def samples(self, run_id: str) -> list[dict]:
        return self._dicts("SELECT * FROM samples WHERE run_id = ? ORDER BY step, idx", (run_id,))

    def events(self, run_id: str) -> list[dict]:
        return self._dicts("SELECT * FROM events WHERE run_id = ? ORDER BY id", (run_id,))


def database_url() -> str:
    return os.environ.get(URL_ENV, "").strip()


def parse_database_url(url: str, outputs_dir: str = "outputs") -> tuple[str, str]:
    """The one reading of a database URL: ("sqlite", file path) or ("turso", URL). An empty
    URL means <outputs_dir>/alpha.db. StoreError for anything else (no network, no files)."""
    url = url.strip()
    lower = url.lower()
    if not url:
        return "sqlite", os.path.join(outputs_dir, DEFAULT_FILE)
    if lower.startswith("file:"):
        path = url[5:]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise StoreError(f"{URL_ENV}=file: needs a path, e.g. file:outputs/alpha.db")
        return "sqlite", path
    if lower.startswith(("libsql://", "https://", "http://")):
        from alpha.db.hrana import parse_url

        parse_url(url)  # a host is there
        return "turso", url
    from alpha.db.hrana import redact_url

    raise StoreError(
        f"{URL_ENV}={redact_url(url)!r} is not understood: use file:PATH, libsql://HOST, "
        "https://HOST or http://HOST:PORT (or unset it for outputs/alpha.db)")


def describe_url(url: str, outputs_dir: str = "outputs") -> str:
    """Where a URL points, for humans (never a secret): what `Store.describe` says once open."""
    try:
        kind, target = parse_database_url(url, outputs_dir)
    except StoreError:
        return "the run database (misconfigured)"
    if kind == "sqlite":
        return f"sqlite file {target}"
    from alpha.db.hrana import redact_url

    return f"turso {redact_url(target)}"


def open_store(url: str | None = None, outputs_dir: str = "outputs", *,
               timeout: float = 15.0, retries: int = 4, readonly: bool = False) -> Store:
    """The store named by `url` (default: $TURSO_DATABASE_URL), else SQLite in `outputs_dir`.
    The remote token comes only from $TURSO_AUTH_TOKEN. `readonly`: never create or change
    anything (a SQLite file that does not exist raises StoreError saying so)."""
    kind, target = parse_database_url(database_url() if url is None else url, outputs_dir)
    if kind == "sqlite":
        from alpha.db.sqlite_store import SqliteStore

        return SqliteStore(target, readonly=readonly)
    from alpha.db.turso_store import TursoStore

    return TursoStore(target, os.environ.get(TOKEN_ENV) or None, timeout=timeout,
                      retries=retries)
