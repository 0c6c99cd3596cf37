"""The run folder as ranks other than 0 see it: its path, and nothing written.

Rank 0 alone writes a run (config, logs, metrics, samples, checkpoints) and holds its lock. The
other ranks run the same trainer code; this stand-in answers the questions the trainer asks of
a RunFolder (where the checkpoints are, what a checkpoint will be called) and drops every write.
"""

from __future__ import annotations

import os


class FollowerFolder:
    def __init__(self, path: str):
        self.path = path
        self.run_id = os.path.basename(os.path.normpath(path))
        self.checkpoints = os.path.join(path, "checkpoints")
        self.lock_path = os.path.join(path, ".lock")

    def checkpoint_path(self, step: int) -> str:
        from alpha.train import checkpoint as ckpt_format

        return os.path.join(self.checkpoints, ckpt_format.file_name(step))

    # reads that concern the writer only
    def repair(self) -> list[str]:
        return []

    def holds_a_run(self) -> bool:
        return False  # rank 0 has checked

    # writes: rank 0's
    def lock(self) -> None: ...
    def unlock(self) -> None: ...
    def write_config(self, *args, **kwargs) -> None: ...
    def write_tokenizer(self, *args, **kwargs) -> None: ...
    def metric(self, row: dict) -> None: ...
    def event(self, row: dict) -> None: ...
    def sample(self, row: dict) -> None: ...
    def log(self, line: str) -> None: ...
    def rewind(self, step: int) -> None: ...
    def close(self) -> None: ...
