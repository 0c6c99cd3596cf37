"""Follow an append-only JSON-lines file by byte offset: the new complete lines since last time.

    tail = JsonlTail("outputs/run/metrics.jsonl")          # from the start (offset=0)
    chunk = tail.poll()                                    # None when nothing new
    if chunk: use(chunk.rows); tail.advance(chunk)         # or advance only once acknowledged

Used by the server's live watcher (every line a local run appends, within a poll interval) and by
the remote reporter (whose cursor, saved on disk, is `tail.state()`).

A half-written last line is left for the next poll (its newline has not arrived). A file that was
replaced or cut back (a resumed run rewinds metrics.jsonl atomically) is noticed by comparing a
fingerprint of the bytes before the offset: when they differ, the tail starts again from 0 and the
chunk says `restarted`; the consumers' writes are idempotent, so reading rows twice is harmless.
A line that is not a JSON object is skipped and counted in `chunk.bad`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

FINGERPRINT_BYTES = 256
MAX_CHUNK_BYTES = 1 << 20


@dataclass
class Chunk:
    rows: list[dict]
    start: int  # byte offset the rows were read from
    end: int  # byte offset after the last complete line read
    fingerprint: str  # of the bytes before `end`
    restarted: bool = False  # the file was rewritten: these rows start again from offset 0
    bad: int = 0  # lines that were not JSON objects (skipped)
    raw: list[bytes] = field(default_factory=list, repr=False)


def fingerprint(f, offset: int) -> str:
    start = max(0, offset - FINGERPRINT_BYTES)
    f.seek(start)
    return hashlib.sha256(f.read(offset - start)).hexdigest()[:16]


def parse_lines(lines: list[bytes]) -> tuple[list[dict], int]:
    """JSON objects of `lines` (blank ones ignored) and how many were not JSON objects."""
    kept = [raw for raw in lines if raw.strip()]
    try:  # fast path: the whole group as one array
        rows = json.loads(b"[" + b",".join(kept) + b"]")
        if len(rows) == len(kept) and all(type(r) is dict for r in rows):
            return rows, 0
    except ValueError:
        pass
    rows, bad = [], 0
    for raw in kept:
        try:
            row = json.loads(raw)
        except ValueError:
            bad += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad += 1
    return rows, bad


class JsonlTail:
    def __init__(self, path: str, offset: int = 0, fingerprint: str = ""):
        self.path = path
        self.offset = int(offset)
        self.fingerprint = fingerprint
        self._seen: tuple[int, int] | None = None  # (inode, size) at the last empty poll

    def state(self) -> dict:
        return {"offset": self.offset, "fingerprint": self.fingerprint}

    def pending_bytes(self) -> int:
        """Bytes past the offset (0 when the file is missing)."""
        try:
            return max(0, os.path.getsize(self.path) - self.offset)
        except OSError:
            return 0

    def poll(self, max_bytes: int = MAX_CHUNK_BYTES, keep_raw: bool = False) -> Chunk | None:
        """The complete lines after the offset (at most about `max_bytes`), or None. Does not
        move the offset: call `advance(chunk)` once the rows are used."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        if self._seen == (st.st_ino, st.st_size):
            return None  # unchanged since the last poll found nothing
        try:
            with open(self.path, "rb") as f:
                start, restarted = self.offset, False
                if start > st.st_size or (start and fingerprint(f, start) != self.fingerprint):
                    start, restarted = 0, True
                f.seek(start)
                data = f.read(max_bytes)
                end = data.rfind(b"\n")
                if end < 0 and len(data) >= max_bytes:  # one line longer than max_bytes
                    data += f.readline()
                    end = data.rfind(b"\n")
                if end < 0:
                    self._seen = (st.st_ino, st.st_size)
                    if restarted:
                        self.offset, self.fingerprint = 0, ""
                    return None
                data = data[:end + 1]
                new_end = start + len(data)
                fp = fingerprint(f, new_end)
        except OSError:
            return None
        self._seen = None
        lines = data.split(b"\n")[:-1]
        rows, bad = parse_lines(lines)
        return Chunk(rows, start, new_end, fp, restarted, bad, lines if keep_raw else [])

    def advance(self, chunk: Chunk) -> None:
        self.offset, self.fingerprint = chunk.end, chunk.fingerprint

    def skip_to_end(self) -> None:
        """Start following from the current end (only what is appended from now on)."""
        try:
            with open(self.path, "rb") as f:
                data_end = os.fstat(f.fileno()).st_size
                f.seek(0)
                # never stop inside a torn line: back up to the last newline
                f.seek(max(0, data_end - MAX_CHUNK_BYTES))
                tail = f.read()
                cut = tail.rfind(b"\n")
                end = data_end - len(tail) + cut + 1 if cut >= 0 else max(0, data_end - len(tail))
                self.offset, self.fingerprint = end, fingerprint(f, end)
        except OSError:
            self.offset, self.fingerprint = 0, ""
