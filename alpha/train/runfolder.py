"""The run folder: everything a training run leaves on disk, and the only source of truth about it.

    outputs/<run_id>/
      config.json         the resolved RunConfig, its hash, the tokenizer name, the run id
      tokenizer.json      the tokenizer artifact
      metrics.jsonl       one JSON object per optimizer step (val_loss on eval steps)
      events.jsonl        one JSON object per event (start, eval, checkpoint, bad step, stop...)
      samples.jsonl       one JSON object per generated sample
      layer_stats.jsonl   per-layer gradient and parameter norms (alpha.train.layer_stats)
      train.log           the human-readable log (the progress lines and events)
      checkpoints/        step-<N>.ckpt (see alpha.train.checkpoint)
      .lock               holds the pid of the process writing here (see `lock`)

One writer per folder: the trainer takes an exclusive OS lock (flock) on `.lock` for its whole life;
the OS drops it when the process ends however it ends, so a crashed run never leaves the folder
locked. A second writer gets RunFolderError naming the holder's pid.

Whole files (config.json, tokenizer.json) are written atomically: a temporary file in the same
folder, fsync, rename. The .jsonl logs are appended one line per write and flushed, so a crash
loses at most the line being written; `repair` (under the lock, at the next start) cuts such a torn
last line off, so the next line is never glued to it, and removes temporary files of a write
that was cut short. `rewind` cuts the logs back to a step when a run resumes.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import secrets
import time

from alpha.core.atomic import TMP_PREFIX, atomic_write, remove_temp_files, write_error
from alpha.core.errors import RunFolderError
from alpha.train import checkpoint as ckpt_format

DEFAULT_ROOT = "outputs"


def new_run_id(domain: str = "text", now: float | None = None) -> str:
    """`20261127-144501-text-3fa9`: sortable by start time, unique enough to never collide."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now if now is not None else time.time()))
    return f"{stamp}-{domain}-{secrets.token_hex(2)}"


def json_safe(value):
    """NaN/Inf become null so every line stays valid JSON for other readers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def read_jsonl(path: str) -> list[dict]:
    """All complete JSON object lines of a file (a torn or foreign line is skipped)."""
    rows = []
    if not os.path.isfile(path):
        return rows
    with open(path, "rb") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


class RunFolder:
    """Paths and writers of one run folder. Create with `RunFolder.create` or `RunFolder.open`."""

    def __init__(self, path: str):
        self.path = path
        self.run_id = os.path.basename(os.path.normpath(path))
        self.checkpoints = os.path.join(path, "checkpoints")
        self.config_path = os.path.join(path, "config.json")
        self.tokenizer_path = os.path.join(path, "tokenizer.json")
        self.metrics_path = os.path.join(path, "metrics.jsonl")
        self.events_path = os.path.join(path, "events.jsonl")
        self.samples_path = os.path.join(path, "samples.jsonl")
        self.layer_stats_path = os.path.join(path, "layer_stats.jsonl")  # --layer-stats-interval
        self.log_path = os.path.join(path, "train.log")
        self.lock_path = os.path.join(path, LOCK_NAME)
        self._files: dict[str, object] = {}
        self._lock_fd: int | None = None

    @classmethod
    def create(cls, path: str = "", domain: str = "text", root: str = DEFAULT_ROOT) -> "RunFolder":
        """A folder for a new run: `path` if given (it may exist), else root/<new run id>.
        RunFolderError when it cannot be made (read-only, a file in the way)."""
        if not path:
            path = os.path.join(root, new_run_id(domain))
            while os.path.exists(path):
                path = os.path.join(root, new_run_id(domain))
        try:
            os.makedirs(os.path.join(path, "checkpoints"), exist_ok=True)
        except OSError as e:
            raise RunFolderError(f"cannot create the run folder {path}: {_why(path, e)}") from None
        return cls(path)

    # ---- one writer ------------------------------------------------------------------------
    def lock(self) -> None:
        """Take the folder's exclusive lock for the life of this process (or until `close`).
        RunFolderError naming the holder's pid when another process has it."""
        if self._lock_fd is not None:
            return
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise RunFolderError(f"cannot lock the run folder {self.path}: "
                                 f"{_why(self.lock_path, e)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_holder(fd)
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunFolderError(f"cannot lock the run folder {self.path}: "
                                     f"{e.strerror or e}") from None
            raise RunFolderError(
                f"run folder {self.path} is in use by another Alpha process ({holder}); wait "
                "for it to end, or pick another --run-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {_host()}\n".encode(), 0)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            try:
                os.ftruncate(self._lock_fd, 0)  # still ours: nobody is writing here now
            except OSError:
                pass
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    def repair(self) -> list[str]:
        """Undo what a writer killed mid-write left behind (call it holding the lock): cut a torn
        last line off each log, remove temporary files. Returns one note per repair."""
        notes = []
        for path in (self.metrics_path, self.events_path, self.samples_path, self.layer_stats_path,
                     self.log_path):
            cut = cut_torn_tail(path)
            if cut:
                notes.append(f"dropped a torn last line of {os.path.basename(path)} "
                             f"({cut} bytes written when the last run was cut short)")
        for folder, prefix in ((self.path, TMP_PREFIX), (self.checkpoints, TMP_PREFIX)):
            for name in remove_temp_files(folder, prefix):
                notes.append(f"removed {name}, left by a write that was cut short")
        return notes

    def holds_a_run(self) -> bool:
        """True when metrics or checkpoints are already here (a new run must not mix in)."""
        if os.path.isfile(self.metrics_path) and os.path.getsize(self.metrics_path) > 0:
            return True
        return bool(ckpt_format.list_steps(self.checkpoints))

    # ---- whole files ---------------------------------------------------------------------
    def write_config(self, run_config_dict: dict, *, config_hash: str, tokenizer: str,
                     extra: dict | None = None) -> None:
        body = {
            "run_id": self.run_id,
            "config_hash": config_hash,
            "tokenizer": tokenizer,
            **run_config_dict,
            **(extra or {}),
        }
        atomic_write(self.config_path, json.dumps(json_safe(body), indent=2) + "\n")

    def read_config(self) -> dict:
        with open(self.config_path, encoding="utf-8") as f:
            return json.load(f)

    def write_tokenizer(self, tokenizer_json: str) -> None:
        atomic_write(self.tokenizer_path, tokenizer_json)

    # ---- append-only logs ---------------------------------------------------------------
    def _append(self, path: str, text: str) -> None:
        f = self._files.get(path)
        try:
            if f is None:
                f = open(path, "a", encoding="utf-8")
                self._files[path] = f
            f.write(text)
            f.flush()
        except OSError as e:
            # a line cut short by a full disk stays torn; the next start cuts it off
            self._files.pop(path, None)
            try:
                f.close()
            except (OSError, AttributeError):
                pass
            raise write_error(path, e, len(text.encode("utf-8"))) from None

    def metric(self, row: dict) -> None:
        self._append(self.metrics_path, json.dumps(json_safe(row)) + "\n")

    def event(self, row: dict) -> None:
        self._append(self.events_path, json.dumps(json_safe(row)) + "\n")

    def sample(self, row: dict) -> None:
        self._append(self.samples_path, json.dumps(json_safe(row)) + "\n")

    def layer_stats(self, row: dict) -> None:
        self._append(self.layer_stats_path, json.dumps(json_safe(row)) + "\n")

    def log(self, line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self._append(self.log_path, f"{stamp} {line}\n")

    def rewind(self, step: int) -> None:
        """Drop metric, sample and layer-stats lines past `step` (a resumed run rewrites them)."""
        for path in (self.metrics_path, self.samples_path, self.layer_stats_path):
            if not os.path.isfile(path):
                continue
            rows = read_jsonl(path)
            keep = [r for r in rows if _step_of(r) <= step]
            if len(keep) != len(rows):
                self._close(path)
                atomic_write(path, "".join(json.dumps(r) + "\n" for r in keep))

    def checkpoint_path(self, step: int) -> str:
        return os.path.join(self.checkpoints, ckpt_format.file_name(step))

    def _close(self, path: str) -> None:
        f = self._files.pop(path, None)
        if f is not None:
            f.close()

    def close(self) -> None:
        for path in list(self._files):
            try:
                self._close(path)
            except OSError:
                pass
        self.unlock()


def cut_torn_tail(path: str) -> int:
    """Truncate a line log after its last newline (a writer killed mid-line leaves a partial
    line, which the next appended line would otherwise be glued to). Returns the bytes cut."""
    try:
        with open(path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return 0
            pos = size
            while pos > 0:
                step = min(65536, pos)
                f.seek(pos - step)
                block = f.read(step)
                i = block.rfind(b"\n")
                if i >= 0:
                    keep = pos - step + i + 1
                    break
                pos -= step
            else:
                keep = 0
            if keep < size:
                f.truncate(keep)
            return size - keep
    except OSError:
        return 0


LOCK_NAME = ".lock"


def _step_of(row: dict) -> int:
    step = row.get("step", 0)
    return step if isinstance(step, int) else 0


def _read_holder(fd: int) -> str:
    """`pid N on HOST` from a lock file (the holder writes it just after locking: wait a moment
    for it)."""
    deadline = time.monotonic() + 1.0
    while True:
        try:
            text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
        except OSError:
            text = ""
        if text or time.monotonic() > deadline:
            return text or "pid unknown"
        time.sleep(0.02)


def _host() -> str:
    import socket

    return socket.gethostname()


def _why(path: str, e: OSError) -> str:
    """What is in the way, in words."""
    if e.errno in (errno.EEXIST, errno.ENOTDIR):
        parent = path
        while parent and not os.path.isdir(parent):
            if os.path.exists(parent):
                return f"{parent} is a file, not a folder"
            parent = os.path.dirname(parent)
    if e.errno == errno.EROFS:
        return "the filesystem is read-only"
    return e.strerror or str(e)


def list_runs(root: str = DEFAULT_ROOT) -> list[str]:
    """Run folders under `root` (those with a config.json), oldest first."""
    if not os.path.isdir(root):
        return []
    out = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if os.path.isfile(os.path.join(path, "config.json")):
            out.append(path)
    return out
