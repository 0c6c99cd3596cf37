"""The SQLite backend: a local file through the stdlib `sqlite3` module.

The connection runs in autocommit mode and transactions are explicit (BEGIN IMMEDIATE … COMMIT),
so a multi-statement write takes the write lock up front instead of failing half-way. WAL lets the
dashboard read while a trainer or a sync writes; foreign keys are on; a busy database is waited
for (busy_timeout) rather than failing at once. One connection per Store, shared by threads under
a lock.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import urllib.parse

from alpha.core.errors import StoreError
from alpha.db.rows import Statement
from alpha.db.store import Store

BUSY_TIMEOUT_MS = 10_000


def _short(sql: str) -> str:
    short = " ".join(sql.split())
    return short if len(short) <= 160 else short[:157] + "..."


class SqliteStore(Store):
    kind = "sqlite"

    def __init__(self, path: str, readonly: bool = False):
        """`readonly`: open an existing file only, never create or change one (`db status`)."""
        self.path = path
        folder = os.path.dirname(os.path.abspath(path))
        if readonly and not os.path.isfile(path):
            what = "is not a file" if os.path.exists(path) else "does not exist yet"
            raise StoreError(f"the SQLite database {path} {what} (a `train` or "
                             "`python -m alpha db migrate` creates it)")
        try:
            if readonly:
                uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
                self._conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                                             isolation_level=None, check_same_thread=False)
            else:
                os.makedirs(folder, exist_ok=True)
                self._conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000,
                                             isolation_level=None, check_same_thread=False)
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if readonly:
                self._conn.execute("SELECT count(*) FROM sqlite_master")  # is it a database?
            else:
                self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open the SQLite database {path}: {e}") from None
        self._lock = threading.RLock()

    def describe(self) -> str:
        return f"sqlite file {self.path}"

    def fetch(self, sql: str, args=()) -> tuple[list[str], list[tuple]]:
        with self._lock:
            try:
                cur = self._conn.execute(sql, tuple(args))
                rows = cur.fetchall()
            except (sqlite3.Error, OverflowError, UnicodeEncodeError) as e:  # values it refuses
                raise StoreError(f"{type(e).__name__}: {e} (in: {_short(sql)})") from None
            columns = [d[0] for d in cur.description] if cur.description else []
            return columns, rows

    def execute(self, sql: str, args=()) -> int:
        with self._lock:
            try:
                cur = self._conn.execute(sql, tuple(args))
            except (sqlite3.Error, OverflowError, UnicodeEncodeError) as e:  # values it refuses
                raise StoreError(f"{type(e).__name__}: {e} (in: {_short(sql)})") from None
            return max(cur.rowcount, 0)

    def transaction(self, statements: list[Statement]) -> None:
        if not statements:
            return
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except (sqlite3.Error, OverflowError, UnicodeEncodeError) as e:  # values it refuses
                raise StoreError(f"cannot begin a transaction on {self.path}: {e}") from None
            sql = ""
            try:
                for sql, args in statements:
                    conn.execute(sql, args)
                sql = "COMMIT"
                conn.execute("COMMIT")
            except (sqlite3.Error, OverflowError, UnicodeEncodeError) as e:  # values it refuses
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise StoreError(f"{type(e).__name__}: {e} (in: {_short(sql)})") from None
            except BaseException:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                raise

    def close(self) -> None:
        with self._lock:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
