"""The dashboard in a real terminal (tmux), following a run that a real `python -m alpha train`
process is writing at that moment: the step on screen advances, every tab draws, the Models tab
streams a sample from the run's checkpoint, a resize (and a terminal below 80x24) keeps it alive,
and `q` exits 0 with the terminal restored. A second start checks the monochrome, ASCII form, a
corrupt line, a run folder deleted while it is on screen, and SIGTERM restoring the terminal."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import require_peer
from tests.tui_helpers import ITERS, ROOT, RUN_ID, TMUX, Tmux, training


@pytest.fixture(scope="module")
def live_run(tmp_path_factory):
    with training(tmp_path_factory.mktemp("tui")) as run:
        yield run


def _tui(outputs, env: dict) -> Tmux:
    command = (f"stty -g > stty.before; {sys.executable} -m alpha tui --outputs {outputs}; "
               f"echo EXIT=$?; stty -g > stty.after; sleep 600")
    return Tmux.start(command, 100, 30, {"PYTHONPATH": ROOT, **env}, str(outputs.parent))


def _step(t: Tmux) -> int:
    return int(t.wait_for(rf"(\d+)/{ITERS}").group(1))


def _wait_step_above(t: Tmux, step: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        now = _step(t)
        if now > step:
            return now
        assert time.monotonic() < deadline, f"the step stayed at {now}:\n{t.screen()}"
        time.sleep(0.1)


def _timed_key(t: Tmux, key: str, pattern: str) -> float:
    """Seconds from sending `key` until `pattern` is on screen (tmux's own latency included)."""
    t0 = time.monotonic()
    t.keys(key)
    t.wait_for(pattern, 10)
    return time.monotonic() - t0


def test_dashboard_follows_a_live_training_run(live_run):
    require_peer(TMUX is not None, "tmux is not installed (tools/install-test-deps.sh installs it)")
    outputs, proc = live_run
    with _tui(outputs, {"LANG": "C.UTF-8", "TERM": "xterm-256color"}) as t:
        t.wait_for(r"1 Runs.*4 Models")
        t.wait_for(RUN_ID[-12:])
        first = _step(t)
        _wait_step_above(t, first)  # the screen follows the file as it grows

        latencies = [_timed_key(t, "2", r"loss and val loss"),
                     _timed_key(t, "3", r"train\.log .*following the tail"),
                     _timed_key(t, "4", r"ARCHITECTURE"),
                     _timed_key(t, "1", r"RUN +STATUS")]
        t.keys("2")
        screen = t.wait_for(r"learning rate").string
        assert "grad norm" in screen and "┤" in screen and "checkpoints (" in screen
        assert re.search(r"[\u2801-\u28ff]", screen), screen  # braille dots: the curves
        t.keys("3")
        t.wait_for(r"\[info\] (eval|checkpoint)")
        t.wait_for(r"train\.log .* (\d{3,}) lines")  # more than the pane shows
        t.keys("PgUp")
        t.wait_for(r"lines above the tail")
        t.keys("End")

        t.keys("4")
        t.wait_for(r"L1 H2 D32 T32 gelu")
        t.keys("Enter")
        t.wait_for(r"prompt>")
        t.keys("the q", literal=True)
        t.keys("Enter")
        t.wait_for(r"\d+ tokens at [\d,]+ tok/s", 60)  # streamed from the checkpoint
        assert "the q" in t.screen()
        t.keys("Escape")
        t.wait_for(r"Enter: sample from this checkpoint")

        t.keys("1")
        t.resize(80, 24)
        t.wait_for(r"1 Runs.*4 Models")
        lines = t.screen().splitlines()
        assert max(len(line) for line in lines) <= 80
        t.resize(70, 20)
        t.wait_for(r"enlarge the terminal")
        t.resize(100, 30)
        t.wait_for(r"RUN +STATUS")
        _wait_step_above(t, _step(t))  # still following after the resizes

        t.keys("?")
        t.wait_for(r"Any key closes this help")
        t.keys("x")
        t.keys("/")
        t.keys("nomatch", literal=True)
        t.keys("Enter")
        t.wait_for(r"no runs match the filter")
        t.keys("Escape")
        t.wait_for(RUN_ID[-12:])
        t.keys("r")
        t.wait_for(rf"\d+/{ITERS}")

        t.keys("q")
        t.wait_for(r"EXIT=0")
        assert t.display("#{alternate_on}") == "0"  # left the alternate screen
        time.sleep(0.3)
        before = (outputs.parent / "stty.before").read_text()
        assert (outputs.parent / "stty.after").read_text() == before  # modes restored
    assert proc.poll() is None, "the run was still training while the dashboard watched"
    # keys were answered (tmux round trips included; the machine may be loaded)
    assert max(latencies) < 2.0, latencies
    print(f"key to screen (via tmux): {[f'{x * 1000:.0f} ms' for x in latencies]}")


def test_monochrome_ascii_a_corrupt_line_and_a_folder_deleted_while_shown(live_run):
    require_peer(TMUX is not None, "tmux is not installed (tools/install-test-deps.sh installs it)")
    outputs, _ = live_run
    gone = outputs / "20261202-999999-text-gone"  # the newest: on top, selected
    (gone / "checkpoints").mkdir(parents=True)
    live = outputs / RUN_ID
    shutil.copy(live / "config.json", gone / "config.json")
    shutil.copy(live / "events.jsonl", gone / "events.jsonl")
    lines = (live / "metrics.jsonl").read_text().splitlines(keepends=True)[:100]
    (gone / "metrics.jsonl").write_text("".join(lines[:50]) + "{not json\n" + "".join(lines[50:]))
    with _tui(outputs, {"LANG": "C", "LC_ALL": "C", "NO_COLOR": "1", "TERM": "vt100"}) as t:
        t.wait_for(r"RUN +STATUS")
        t.wait_for(r"1 unreadable lines skipped")
        t.keys("2")
        screen = t.wait_for(r"text-gone .*step 100/").string
        screen = t.wait_for(r"learning rate").string
        assert "+-----" in screen and "*" in screen, screen
        body = screen.splitlines()[1:-1]
        assert all(line.isascii() for line in body if "step " not in line), screen
        shutil.rmtree(gone)  # deleted while it is on screen
        t.wait_for(r"text-gone +deleted")
        t.keys("1")
        t.wait_for(r"text-gone +deleted")
        t.keys("r")  # a refresh lets it go
        deadline = time.monotonic() + 10
        while "text-gone" in t.screen():
            assert time.monotonic() < deadline, t.screen()
            time.sleep(0.05)
        t.wait_for(rf"{RUN_ID[-12:]}")
        # SIGTERM (a kill, a closing pane) restores the terminal too
        shell = t.display("#{pane_pid}")
        children = subprocess.run(["ps", "-o", "pid=", "--ppid", shell], capture_output=True,
                                  text=True).stdout.split()
        assert len(children) == 1, children
        os.kill(int(children[0]), signal.SIGTERM)
        t.wait_for(r"EXIT=143")
        time.sleep(0.3)
        assert t.display("#{alternate_on}") == "0"
        before = (outputs.parent / "stty.before").read_text()
        assert (outputs.parent / "stty.after").read_text() == before
