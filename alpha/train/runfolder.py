"""The run folder: everything a training run leaves on disk, and the only source of truth about it.

    outputs/<run_id>/
      config.json         the resolved RunConfig, its hash, the tokenizer name, the run id
      tokenizer.json      the tokenizer artifact
      metrics.jsonl       one JSON object per optimizer step (val_loss on eval steps)
      events.jsonl        one JSON object per event (start, eval, checkpoint, bad step, stop...)
      samples.jsonl       one JSON object per generated sample
      train.log           the human-readable log (the progress lines and events)
      checkpoints/        step-<N>.ckpt (see alpha.train.checkpoint)

Whole files (config.json, tokenizer.json) are written atomically: a temporary file in the same
folder, fsync, rename. The .jsonl logs are appended one line per write and flushed, so a crash
loses at most the line being written; `rewind` cuts them back to a step when a run resumes.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import time

from alpha.core.atomic import atomic_write

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
    """All complete JSON lines of a file (a torn last line is skipped)."""
    rows = []
    if not os.path.isfile(path):
        return rows
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
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
        self.log_path = os.path.join(path, "train.log")
        self._files: dict[str, object] = {}

    @classmethod
    def create(cls, path: str = "", domain: str = "text", root: str = DEFAULT_ROOT) -> "RunFolder":
        """A folder for a new run: `path` if given (it may exist), else root/<new run id>."""
        if not path:
            path = os.path.join(root, new_run_id(domain))
            while os.path.exists(path):
                path = os.path.join(root, new_run_id(domain))
        os.makedirs(os.path.join(path, "checkpoints"), exist_ok=True)
        return cls(path)

    def holds_a_run(self) -> bool:
        """True when metrics or checkpoints are already here (a new run must not mix in)."""
        if os.path.isfile(self.metrics_path) and os.path.getsize(self.metrics_path) > 0:
            return True
        return os.path.isdir(self.checkpoints) and any(
            n.endswith(".ckpt") for n in os.listdir(self.checkpoints))

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
        if f is None:
            f = open(path, "a", encoding="utf-8")
            self._files[path] = f
        f.write(text)
        f.flush()

    def metric(self, row: dict) -> None:
        self._append(self.metrics_path, json.dumps(json_safe(row)) + "\n")

    def event(self, row: dict) -> None:
        self._append(self.events_path, json.dumps(json_safe(row)) + "\n")

    def sample(self, row: dict) -> None:
        self._append(self.samples_path, json.dumps(json_safe(row)) + "\n")

    def log(self, line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self._append(self.log_path, f"{stamp} {line}\n")

    def rewind(self, step: int) -> None:
        """Drop metric and sample lines past `step` (a resumed run rewrites them)."""
        for path in (self.metrics_path, self.samples_path):
            if not os.path.isfile(path):
                continue
            rows = read_jsonl(path)
            keep = [r for r in rows if int(r.get("step", 0)) <= step]
            if len(keep) != len(rows):
                self._close(path)
                atomic_write(path, "".join(json.dumps(r) + "\n" for r in keep))

    def checkpoint_path(self, step: int) -> str:
        return os.path.join(self.checkpoints, f"step-{step}.ckpt")

    def _close(self, path: str) -> None:
        f = self._files.pop(path, None)
        if f is not None:
            f.close()

    def close(self) -> None:
        for path in list(self._files):
            self._close(path)


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
