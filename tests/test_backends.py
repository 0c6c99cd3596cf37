"""Every backend against the float64 reference, one pytest test per check of
`tests/backend_suite.py`. A backend that cannot run here (not written yet, no C compiler, no
Vulkan device) skips with the reason. The reference is run too: it validates the suite itself
(its bad-input checks) and is fast (< 1 s).

Run one backend: `pytest tests/test_backends.py -k cpu`, or `python tests/backend_suite.py cpu`.
"""

from __future__ import annotations

import pytest

import backend_suite as suite
from conftest import require_peer

BACKENDS = ["reference", "cpu", "helios"]


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    be, reason = suite.load_backend(request.param)
    if be is None:
        assert request.param == "helios", reason  # cpu and reference must always load
        require_peer(False, f"{reason} (lavapipe: apt-get install mesa-vulkan-drivers)")
    return be


@pytest.mark.parametrize("check", suite.CHECK_NAMES)
def test_backend(backend, check):
    failures = suite.run_check(backend, check, reraise=True)
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures)


def test_error_messages_are_one_wording_for_every_backend():
    """The checks live in one front (alpha.core.backend.Backend): every bad-input case of the
    suite raises the same type with the same message on every backend."""
    got = {}
    for name in BACKENDS:
        be, reason = suite.load_backend(name)
        if be is None:
            require_peer(False, f"{reason} (lavapipe: apt-get install mesa-vulkan-drivers)")
        got[name] = suite.error_messages(be)
    want = got["reference"]
    assert len(want) > 50
    for name, messages in got.items():
        assert messages.keys() == want.keys(), name
        diff = [f"{k}: {messages[k]!r} vs reference {want[k]!r}" for k in want
                if messages[k] != want[k]]
        assert not diff, f"{name}:\n" + "\n".join(diff)
