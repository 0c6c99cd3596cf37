"""Following a growing file by byte offset: what `tail -F` does, for the run folder's logs.

`FileTail.read()` returns the complete lines written since the last call. A half-written last line
(no newline yet) is left unread until its newline arrives. The file is read again from the start
when it was replaced (another inode: a resumed run rewrites metrics.jsonl atomically), truncated
(smaller than what we read), or rewritten in place (the bytes just before our offset changed).
A missing file is not an error: it may not exist yet, or the run folder was deleted.

Reading is bounded per call (`MAX_READ` bytes), so a huge file loads over several calls and never
stalls the screen; `behind` says more is waiting.
"""

from __future__ import annotations

import json
import os

MAX_READ = 4 << 20  # bytes per read() call
_FINGERPRINT = 64  # bytes before the offset that must not change between reads


class FileTail:
    def __init__(self, path: str, max_read: int = MAX_READ):
        self.path = path
        self.max_read = max_read
        self.offset = 0  # bytes consumed: always just after a newline
        self.inode = None  # (st_dev, st_ino) of the file we are reading
        self.fingerprint = b""  # the last bytes consumed
        self.size = -1  # size at the last look (nothing new when it is unchanged)
        self.mtime = 0
        self.behind = False  # True when the last read stopped at MAX_READ

    def _reset(self) -> None:
        self.offset, self.fingerprint, self.size, self.mtime = 0, b"", -1, 0

    def read(self) -> tuple[list[str], bool]:
        """(new complete lines, reset): `reset` is True when the file was replaced, truncated,
        rewritten or removed, so whatever was built from its earlier lines must be dropped."""
        try:
            st = os.stat(self.path)
        except OSError:
            if self.inode is None:
                return [], False
            self.inode = None
            self._reset()
            return [], True
        reset = False
        inode = (st.st_dev, st.st_ino)
        if self.inode is not None and (inode != self.inode or st.st_size < self.offset):
            self._reset()
            reset = True
        self.inode = inode
        if st.st_size == self.size and st.st_mtime_ns == self.mtime and not self.behind:
            return [], reset
        try:
            with open(self.path, "rb") as f:
                start = max(0, self.offset - len(self.fingerprint))
                f.seek(start)
                data = f.read(self.offset - start + self.max_read)
        except OSError:
            return [], reset
        if self.fingerprint and not data.startswith(self.fingerprint):
            # rewritten in place: start again (the next call reads it from the start)
            self._reset()
            return [], True
        data = data[self.offset - start:]
        self.size, self.mtime = st.st_size, st.st_mtime_ns
        self.behind = len(data) >= self.max_read
        end = data.rfind(b"\n")
        if end < 0:
            return [], reset
        chunk = data[:end + 1]
        self.offset += end + 1
        self.fingerprint = (self.fingerprint + chunk)[-_FINGERPRINT:]
        text = chunk.decode("utf-8", errors="replace")
        return text.splitlines(), reset


class JsonlTail:
    """A FileTail of a .jsonl file: new JSON objects; a line that is not a JSON object is counted
    in `bad` and skipped (a corrupt line never stops the screen)."""

    def __init__(self, path: str, max_read: int = MAX_READ):
        self.tail = FileTail(path, max_read)
        self.bad = 0

    @property
    def behind(self) -> bool:
        return self.tail.behind

    def read(self) -> tuple[list[dict], bool]:
        lines, reset = self.tail.read()
        if reset:
            self.bad = 0
        rows = []
        for line in lines:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                self.bad += 1
                continue
            if isinstance(row, dict):
                rows.append(row)
            else:
                self.bad += 1
        return rows, reset
