"""`--remote`: the dashboard following the server's real live stream (`python -m alpha serve`'s
app, `GET /api/training/live`, on 127.0.0.1) while a real `train` process writes the run the
server watches. Between them, a TCP proxy the test can cut: the client comes back by itself with
`Last-Event-ID`, and no metrics row is lost or seen twice (with the steps from before the client
joined fetched from the read API, the curve is whole from step 1)."""

from __future__ import annotations

import socket
import sys
import time

import pytest

from alpha.tui.model import Runs
from alpha.tui.remote import RemoteSource
from tests.conftest import require_peer
from tests.tui_helpers import ITERS, ROOT, RUN_ID, TMUX, CutProxy, Tmux, training
from tests.watch_helpers import LocalServer


def _until(predicate, timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _live_requests(proxy) -> list[bytes]:
    return [head for head in proxy.heads if head.startswith(b"GET /api/training/live")]


@pytest.fixture(scope="module")
def served_run(tmp_path_factory):
    """A live training run, the real server watching its outputs folder, and a cuttable proxy."""
    with training(tmp_path_factory.mktemp("tui-remote")) as (outputs, proc):
        with LocalServer(str(outputs)) as server:
            proxy = CutProxy(("127.0.0.1", server.port))
            try:
                yield proxy, proc
            finally:
                proxy.close()


def test_remote_source_resumes_after_a_drop_without_losing_rows(served_run):
    proxy, _ = served_run
    source, runs = RemoteSource(proxy.url), Runs()
    source.start()
    try:
        _until(lambda: source.poll(runs) is not None and runs.get(RUN_ID) is not None
               and source.last_event_id is not None, what="the run's live metrics")
        run = runs.get(RUN_ID)
        assert run.status == "running" and run.iters == ITERS
        streams = len(_live_requests(proxy))
        step_at_cut = run.step
        proxy.cut()  # the network drops
        _until(lambda: len(_live_requests(proxy)) > streams, what="a reconnect")
        _until(lambda: source.poll(runs) is not None and run.step > step_at_cut + 50,
               what="metrics after the reconnect")
        assert b"Last-Event-ID: " in _live_requests(proxy)[-1]
        # the steps before the stream joined came from the read API: one curve from step 1
        steps = list(run.loss.steps)
        assert steps == list(range(1, len(steps) + 1)), "a gap or a repeat"
        assert source.describe().endswith("live")
    finally:
        source.close()


def test_remote_source_says_when_the_server_is_down():
    with socket.socket() as s:  # a port nothing listens on once this closes
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    source = RemoteSource(f"http://127.0.0.1:{port}")
    source.start()
    try:
        _until(lambda: source.state == "reconnecting" and source.attempts >= 2,
               what="reconnecting")
        assert "reconnecting" in source.describe() and "refused" in source.describe()
    finally:
        source.close()


def test_dashboard_follows_the_live_stream_in_tmux(served_run):
    require_peer(TMUX is not None, "tmux is not installed (tools/install-test-deps.sh installs it)")
    proxy, _ = served_run
    command = f"{sys.executable} -m alpha tui --remote {proxy.url}; echo EXIT=$?; sleep 600"
    env = {"PYTHONPATH": ROOT, "LANG": "C.UTF-8", "TERM": "xterm-256color"}
    with Tmux.start(command, 100, 30, env, ROOT) as t:

        def step() -> int:
            return int(t.wait_for(rf"(\d+)/{ITERS}").group(1))

        t.wait_for(r"127\.0\.0\.1:\d+ live")
        first = step()
        _until(lambda: step() > first, what="the step to advance")
        streams = len(_live_requests(proxy))
        proxy.cut()
        _until(lambda: len(_live_requests(proxy)) > streams, what="a reconnect")
        after = step()
        _until(lambda: step() > after, what="the step to advance after the reconnect")
        t.keys("2")
        t.wait_for(r"loss and val loss")
        t.keys("3")
        t.wait_for(r"not in the live stream")
        t.keys("q")
        t.wait_for(r"EXIT=0")
