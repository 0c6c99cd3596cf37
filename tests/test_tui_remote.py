"""`--remote`: the dashboard following a server's live stream over real HTTP on 127.0.0.1
(tests/live_server.py speaks the `/api/training/live` contract): the snapshot, then metrics,
events and completion; a dropped connection is resumed by itself with `Last-Event-ID` and no
event is lost; in tmux the step on screen advances across a reconnect and `q` exits 0."""

from __future__ import annotations

import os
import sys
import threading
import time

from alpha.tui.model import Runs
from alpha.tui.remote import RemoteSource
from tests.conftest import require_peer
from tests.live_server import LiveServer
from tests.tmux_driver import TMUX, Tmux

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_ID = "20261202-000000-text-remote"
CONFIG = {"domain": "text", "tokenizer": "char", "train": {"iters": 100000},
          "model": {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32, "vocab_size": 40}}


def _row(step: int) -> dict:
    return {"step": step, "loss": 3.0 / (1 + step / 100), "lr": 1e-3, "grad_norm": 0.4,
            "tokens_per_sec": 5000.0, "elapsed_s": step * 0.01}


def _run_object(step: int) -> dict:
    return {"run_id": RUN_ID, "id": 1, "status": "active", "domain": "text", "config": CONFIG,
            "latest_step": step, "last_loss": 1.0, "best_val_loss": None, "checkpoint_count": 0,
            "latest_checkpoint_step": None, "metric_count": step, "iters": 100000}


def _until(predicate, timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_remote_source_resumes_after_a_drop_without_losing_events():
    with LiveServer([_run_object(10)]) as server:
        source = RemoteSource(server.url)
        runs = Runs()
        source.start()
        try:
            _until(lambda: source.poll(runs) or runs.get(RUN_ID) is not None, what="snapshot")
            run = runs.get(RUN_ID)
            assert run.status == "running" and run.step == 10 and run.iters == 100000
            for step in range(11, 21):
                server.publish("metrics", {"run_id": RUN_ID, "rows": [_row(step)]})
            _until(lambda: source.poll(runs) is not None and run.step == 20, what="step 20")
            last = source.last_event_id
            server.drop()  # the connection ends; the client must come back by itself
            for step in range(21, 31):  # published while nobody listens
                server.publish("metrics", {"run_id": RUN_ID, "rows": [_row(step)]})
            server.publish("events", {"run_id": RUN_ID, "rows": [
                {"step": 30, "kind": "checkpoint", "level": "info", "message": "saved",
                 "payload": {"path": "/nowhere/step-30.ckpt", "size": 1}}]})
            server.publish("run_complete", {"run_id": RUN_ID, "status": "completed"})
            _until(lambda: source.poll(runs) is not None and run.status == "completed",
                   what="run_complete after the reconnect")
            assert server.last_event_ids == [None, last]  # resumed after the last id seen
            assert list(run.loss.steps) == list(range(11, 31))  # nothing lost, nothing twice
            assert 30 in run.checkpoints and source.describe().endswith("live")
        finally:
            source.close()


def test_remote_source_says_when_the_server_is_down():
    with LiveServer([]) as server:
        url = server.url
    source = RemoteSource(url)  # nothing listens there any more
    source.start()
    try:
        _until(lambda: source.state == "reconnecting", what="reconnecting")
        assert "reconnecting" in source.describe()
    finally:
        source.close()


def test_dashboard_follows_the_live_stream_in_tmux():
    require_peer(TMUX is not None, "tmux is not installed (tools/install-test-deps.sh installs it)")
    with LiveServer([_run_object(0)]) as server:
        stop = threading.Event()

        def publish():
            step = 0
            while not stop.is_set():
                step += 1
                server.publish("metrics", {"run_id": RUN_ID, "rows": [_row(step)]})
                time.sleep(0.05)

        feeder = threading.Thread(target=publish, daemon=True)
        feeder.start()
        command = f"{sys.executable} -m alpha tui --remote {server.url}; echo EXIT=$?; sleep 600"
        try:
            with Tmux.start(command, 100, 30, {"PYTHONPATH": ROOT, "LANG": "C.UTF-8",
                                               "TERM": "xterm-256color"}, ROOT) as t:
                t.wait_for(r"127\.0\.0\.1:\d+ live")
                first = int(t.wait_for(r"(\d+)/100000").group(1))
                _until(lambda: int(t.wait_for(r"(\d+)/100000").group(1)) > first,
                       what="the step to advance")
                server.drop()
                _until(lambda: len(server.last_event_ids) >= 2, what="a reconnect")
                after = int(t.wait_for(r"(\d+)/100000").group(1))
                _until(lambda: int(t.wait_for(r"(\d+)/100000").group(1)) > after,
                       what="the step to advance after the reconnect")
                t.keys("2")
                t.wait_for(r"loss and val loss")
                t.keys("3")
                t.wait_for(r"not in the live stream")
                t.keys("q")
                t.wait_for(r"EXIT=0")
        finally:
            stop.set()
            feeder.join()
