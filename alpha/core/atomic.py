"""Atomic file writes: a reader sees the old file or the new one, never a part.

Write to a temporary file in the same folder, fsync it, rename it over the target, fsync the
folder. Used for checkpoints, token caches, tokenizer artifacts and run-folder files.

A write that fails because of the machine (no space, read-only, permission) raises WriteError or
DiskFullError naming the file, the bytes it needed and the bytes free: the old file is untouched
and the temporary one removed. Temporary names start with TMP_PREFIX, so a start that finds some
(left by a process killed mid-write) can remove them (`remove_temp_files`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile

from alpha.core.errors import DiskFullError, WriteError

TMP_PREFIX = ".tmp-"
_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


@contextlib.contextmanager
def atomic_open(path: str, prefix: str = TMP_PREFIX, size_hint: int = 0):
    """Yield a binary file to write; on success it replaces `path`, on error it vanishes.
    `size_hint`: the bytes about to be written, when known: a disk without that much free space
    is refused before anything is written."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        if size_hint:
            free = free_bytes(folder)
            if free is not None and free < size_hint:
                raise disk_full(path, size_hint, free)
        fd, tmp = tempfile.mkstemp(prefix=prefix, dir=folder)
    except OSError as e:
        raise write_error(path, e, size_hint) from None
    written = 0
    try:
        with os.fdopen(fd, "w+b") as f:
            yield f
            written = f.tell()
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and not isinstance(e, DiskFullError):
            raise write_error(path, e, size_hint or written) from None
        raise
    fsync_dir(folder)


def atomic_write(path: str, data: bytes | str) -> None:
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_open(path, size_hint=len(data)) as f:
        f.write(data)


def free_bytes(path: str) -> int | None:
    """Bytes an unprivileged writer may still use on the filesystem of `path` (None: unknown)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def disk_full(path: str, needed: int, free: int | None = None) -> DiskFullError:
    free = free_bytes(os.path.dirname(os.path.abspath(path))) if free is None else free
    need = f"needs {_size(needed)}" if needed else "needs more space"
    have = f", {_size(free)} free" if free is not None else ""
    return DiskFullError(f"no space left to write {path}: it {need}{have}; free some space "
                         "(earlier files are intact)")


def write_error(path: str, e: OSError, needed: int = 0) -> WriteError:
    """The typed error for an OSError raised while writing `path`."""
    if e.errno in _FULL:
        return disk_full(path, needed)
    if e.errno in (errno.EEXIST, errno.ENOTDIR):  # makedirs met a file where a folder goes (qa)
        up = path
        while (parent := os.path.dirname(up)) and parent != up:
            up = parent
            if os.path.exists(up) and not os.path.isdir(up):
                return WriteError(f"cannot write {path}: {up} is a file, not a folder")
    return WriteError(f"cannot write {path}: {e.strerror or e}")


def _size(n: int) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):.2f} GiB"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.1f} KiB"
    return f"{n} bytes"


def remove_temp_files(folder: str, prefix: str = TMP_PREFIX) -> list[str]:
    """Delete the temporary files a killed writer left in `folder`; returns their names. Only
    call it while no other process can be writing there (alpha.train.runfolder holds a lock)."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if name.startswith(prefix):
            try:
                os.unlink(os.path.join(folder, name))
                removed.append(name)
            except OSError:
                pass
    return removed


def fsync_dir(folder: str) -> None:
    """Make a rename durable (best effort: some filesystems refuse to fsync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
