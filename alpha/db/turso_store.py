"""The remote backend: Turso (or any `sqld`) over Hrana/HTTP, through `alpha.db.hrana`.

Same SQL as the SQLite backend. Differences kept here: no PRAGMAs are sent (the server owns its
journal mode; `PRAGMA journal_mode=WAL` must never go to a remote database), a transaction is one
conditioned batch (see hrana.py), and the token is held only inside the client.
"""

from __future__ import annotations

from alpha.db.hrana import HranaClient
from alpha.db.rows import Statement
from alpha.db.store import Store


class TursoStore(Store):
    kind = "turso"

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 15.0,
                 retries: int = 4, backoff: float = 0.25):
        self.client = HranaClient(url, token, timeout=timeout, retries=retries, backoff=backoff)

    def describe(self) -> str:
        auth = "token set" if self.client.has_token else "no token"
        return f"turso {self.client.url} ({auth})"

    def fetch(self, sql: str, args=()) -> tuple[list[str], list[tuple]]:
        res = self.client.execute(sql, args)
        return res.columns, res.rows

    def execute(self, sql: str, args=()) -> int:
        return self.client.execute(sql, args).affected

    def transaction(self, statements: list[Statement]) -> None:
        if statements:
            self.client.batch(statements, transaction=True)

    def close(self) -> None:
        self.client.close()
