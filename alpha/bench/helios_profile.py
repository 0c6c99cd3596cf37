"""Where helios spends GPU time: `python -m alpha bench profile <alpha command and args>` runs a
CLI command (e.g. `train --backend helios ...`) with ALPHA_HELIOS_PROFILE=1 (a timestamp after
every command) and then prints this report: GPU milliseconds per kernel, dispatch and pipeline
counts."""

from __future__ import annotations


def report(rc: int, seconds: float) -> str:
    """The profile of the helios backend this process used, after a command that exited rc."""
    from alpha.tensor import get_backend

    be = get_backend("helios")
    return (f"exit {rc}; wall {seconds:.1f} s; dispatches {be.dev.dispatches}; "
            f"pipelines created {be.pipes.created}\n{be.dev.profile_table()}")
