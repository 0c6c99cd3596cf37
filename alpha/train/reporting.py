"""What the trainer reports beside its run folder: the run database (alpha.db.recorder) and the
remote server (alpha.train.remote). Both run off the training step's path, and every call is
guarded here, so neither a database nor a network can stop or slow training; their trouble becomes
a warning event in the run folder (record=False: never sent back to the thing that failed).
"""

from __future__ import annotations

import os

from alpha.db import recorder as db_recorder


def start_remote(trainer):
    """The remote reporter (alpha.train.remote) when ALPHA_REMOTE_URL or ALPHA_WEBHOOK_URL is
    set, else None. It follows the run folder from a background thread; it cannot stop training."""
    if not trainer.dist.is_main:
        return None  # rank 0 reports the run
    try:
        from alpha.train.remote import RemoteReporter

        reporter, warning = RemoteReporter.from_env(trainer.folder.path,
                                                    upload_checkpoints=trainer.upload_checkpoints)
        if warning:
            trainer.event("remote", warning, level="warning", record=False)
            trainer.warn(f"warning: {warning}")  # also with --quiet (qa)
        if reporter is not None:
            reporter.start()
        return reporter
    except Exception as e:  # noqa: BLE001
        trainer.event("remote_error", f"remote reporting: {type(e).__name__}: {e}",
                      level="warning", record=False)
        return None


def close_remote(trainer) -> None:
    """Let the reporter send what is left (bounded wait); say what still waits in the outbox."""
    reporter = getattr(trainer, "remote", None)
    if reporter is None:
        return
    try:
        from alpha.train.remote import OUTBOX_FILE, outbox_pending

        reporter.close()
        if reporter.url:
            left = outbox_pending(trainer.folder.path)
            if left["bytes"] or left["uploads"]:
                # remote-outbox.json exists only once the server acknowledged something (qa)
                where = " (remote-outbox.json)" if os.path.isfile(
                    os.path.join(trainer.folder.path, OUTBOX_FILE)) else ""
                trainer.warn(f"remote: the server did not take everything "  # --quiet too (qa)
                            f"({reporter.last_error}); the rest waits in "
                            f"{trainer.folder.path}{where}: resume the run, or send "
                            f"it with `python -m alpha report {trainer.folder.path}`")
    except Exception:  # noqa: BLE001
        pass


class Recorder:
    """The database recorder, when alpha.db.recorder exists. Every call is guarded: an exception is
    logged once per method as an event (in the run folder only) and never reaches training."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.rec = None
        self._failed: set[str] = set()
        if not trainer.dist.is_main:
            return  # rank 0 records the run
        try:
            self.rec = db_recorder.RunRecorder()
        except Exception as e:  # noqa: BLE001 - the DB must never stop training
            self._note("init", e)

    def call(self, method: str, *args):
        if self.rec is None:
            return None
        try:
            return getattr(self.rec, method)(*args)
        except Exception as e:  # noqa: BLE001
            self._note(method, e)
            return None

    def close(self, timeout: float | None = None, on_wait=None) -> None:
        self.call("close", timeout, on_wait)

    def _note(self, method: str, e: Exception) -> None:
        if method in self._failed:
            return
        self._failed.add(method)
        try:
            self.trainer.event("recorder_error", f"run database {method}: {type(e).__name__}: {e}",
                               level="warning", record=False)
        except Exception:  # noqa: BLE001
            pass
