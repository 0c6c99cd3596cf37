"""Ctrl-C (SIGINT) and SIGTERM (what schedulers send before they kill) both ask the training loop
to stop after the current step, with a checkpoint; a second signal stops at once.

The handler only sets the trainer's `_stop_requested` and `_stop_signal`: the loop checks the flag
between steps, so a signal never lands in the middle of an optimizer update.
"""

from __future__ import annotations

import signal
import threading


def install(trainer) -> dict:
    """Route SIGINT and SIGTERM to `trainer`; returns the previous handlers for `restore`.
    Python lets only the main thread set handlers: elsewhere nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum, frame):
        if trainer._stop_requested:  # the second signal: stop now
            raise KeyboardInterrupt
        trainer._stop_requested = True
        trainer._stop_signal = signal.Signals(signum).name
        again = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        trainer.say(f"{trainer._stop_signal}: stopping after this step with a checkpoint "
                    f"({again} again to stop at once)...")

    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old[sig] = signal.signal(sig, handler)
        except ValueError:
            pass
    return old


def restore(old: dict) -> None:
    for sig, previous in old.items():
        signal.signal(sig, previous)
