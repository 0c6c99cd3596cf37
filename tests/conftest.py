"""Shared test fixtures.

`require_peer` is how a test says it needs a real peer (lavapipe, spirv-val, sqld, chromium, tmux):
without it the test skips with the reason — except under CI=true, where a missing peer is a failure.
"""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_peer(available: bool, reason: str) -> None:
    if available:
        return
    if IN_CI:
        pytest.fail(f"missing test peer under CI=true: {reason}")
    pytest.skip(reason)
