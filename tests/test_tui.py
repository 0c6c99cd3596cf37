"""The dashboard's pure parts, without a terminal: run folders followed on disk, the run model,
charts, text widths, keys, the screens rendered as text, the server-sent-events parser, and the
command's user mistakes (one line, exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from alpha.tui import charts, text
from alpha.tui.local import LocalSource
from alpha.tui.model import Run, Runs, Series
from alpha.tui.remote import SseParser, apply_event, live_url
from alpha.tui.state import Prompt, UiState, handle_key
from alpha.tui.views import View, model_rows, render

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---- following run folders (alpha.core.jsonl_tail underneath) ---------------------------------


def _append(path, data: bytes):
    with open(path, "ab") as f:
        f.write(data)


def _folder(root, name="20261202-000000-text-aaaa", iters=50):
    folder = root / name
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"domain": "text", "train": {"iters": iters}}))
    (folder / "events.jsonl").write_text('{"step": 0, "kind": "start"}\n')
    return folder


def _line(step, loss=1.0):
    return (json.dumps(_metric(step, loss)) + "\n").encode()


def test_a_half_written_line_waits_and_a_rewritten_file_is_read_again(tmp_path):
    folder = _folder(tmp_path)
    runs, source = Runs(), LocalSource(str(tmp_path))
    _append(folder / "metrics.jsonl", _line(1) + _line(2)[:20])  # step 2 is half written
    source.poll(runs, now=0.0)
    run = runs.get(folder.name)
    assert run.step == 1
    _append(folder / "metrics.jsonl", _line(2)[20:] + _line(3))
    source.poll(runs, now=1.0)
    assert list(run.loss.steps) == [1, 2, 3]
    # a resume from step 1 rewrites the file atomically (another inode, fewer lines)
    (folder / "new").write_bytes(_line(1) + _line(2, loss=5.0))
    os.replace(folder / "new", folder / "metrics.jsonl")
    source.poll(runs, now=2.0)
    assert list(run.loss.steps) == [1, 2] and run.loss.last() == 5.0
    _append(folder / "train.log", b"12:00:00 [info] start: started\n12:00:01 half")
    source.poll(runs, now=3.0)
    assert list(run.log) == ["12:00:00 [info] start: started"]


def test_a_big_run_is_read_in_pieces(tmp_path):
    folder = _folder(tmp_path, iters=20000)
    (folder / "metrics.jsonl").write_bytes(b"".join(_line(s) for s in range(1, 20001)))
    runs, source = Runs(), LocalSource(str(tmp_path))
    source.poll(runs, now=0.0)
    run = runs.get(folder.name)
    assert source.behind and 0 < run.step < 20000  # the screen is drawn between pieces
    for i in range(100):
        if not source.behind:
            break
        source.poll(runs, now=1.0 + i)
    assert run.step == 20000 and len(run.loss) == 20000


# ---- the run model --------------------------------------------------------------------------


def _metric(step, loss, **extra):
    return {"step": step, "loss": loss, "lr": 1e-3, "grad_norm": 0.5, "tokens_per_sec": 1000.0,
            "elapsed_s": step * 0.1, **extra}


def test_run_tracks_progress_eta_best_val_and_a_rewind():
    run = Run("r")
    run.set_config({"domain": "text", "train": {"iters": 100}, "model": {"n_layer": 2}})
    run.add_event({"step": 0, "kind": "start"})
    for step in range(1, 21):
        run.add_metric(_metric(step, 3.0 - step * 0.1,
                               **({"val_loss": 4.0 - step * 0.1} if step % 10 == 0 else {})))
    assert run.status == "running" and run.step == 20 and run.progress() == 0.2
    assert abs(run.eta_seconds() - 80 * 0.1) < 1e-9
    assert abs(run.best_val_loss - 2.0) < 1e-9 and run.tokens_per_sec == 1000.0
    run.add_metric(_metric(5, 9.0))  # resumed from step 4: the curves cut back
    assert list(run.loss.steps) == [1, 2, 3, 4, 5] and run.loss.last() == 9.0
    assert len(run.val_loss) == 0 and run.best_val_loss is None
    run.add_metric({"step": "x"})  # a corrupt row: counted, never raised
    run.add_metric({"step": 6, "loss": None})
    assert run.bad_lines == 1 and run.step == 5
    run.add_event({"step": 6, "kind": "checkpoint", "payload": {"path": "c/6", "size": 10}})
    run.add_event({"step": 6, "kind": "completed"})
    assert run.checkpoints == {6: {"path": "c/6", "size": 10}} and run.status == "completed"
    assert run.eta_seconds() is None


def test_history_goes_in_front_of_the_live_rows():
    run = Run("r")
    for step in (10, 11, 12):
        run.add_metric(_metric(step, 1.0))
    run.add_history([_metric(s, 2.0, **({"val_loss": 0.5} if s == 5 else {}))
                     for s in range(1, 12)] + ["junk", {"step": None}])
    assert list(run.loss.steps) == list(range(1, 13)) and run.loss.last() == 1.0
    assert run.best_val_loss == 0.5 and run.seconds_per_step() is not None


def test_series_buckets_shrink_to_the_width():
    s = Series()
    for i in range(1000):
        s.add(i, float(i))
    xs, ys = s.buckets(10)
    assert len(xs) == 10 and xs[0] == 49.5 and ys[-1] == 949.5


# ---- charts and text --------------------------------------------------------------------------


def test_charts_have_exact_sizes_axes_and_an_ascii_form():
    xs = list(range(1, 301))
    ys = [3.0 / (1 + x / 30) for x in xs]
    rows = charts.line_chart("loss", [(xs, ys)], 60, 12, marks=([100, 200], [1.0, 0.5]))
    assert len(rows) == 12 and all(text.width(r) == 60 for r in rows)
    assert rows[1].lstrip().startswith("2.9") and "┤" in rows[1]
    assert any(0x2800 < ord(c) <= 0x28FF for c in "".join(rows)) and "●" in "".join(rows)
    assert rows[-1].split() == ["1", "300"]
    ascii_rows = charts.line_chart("loss", [(xs, ys)], 60, 12, unicode=False)
    assert all(r.isascii() for r in ascii_rows) and "*" in "".join(ascii_rows)
    empty = charts.line_chart("lr", [], 40, 6)
    assert len(empty) == 6 and "no data yet" in "".join(empty)
    assert charts.sparkline([1, 2, 3, None, float("nan")], 5) == "  ▁▅█"
    assert charts.sparkline([1, 2, 3], 3, unicode=False) == "_=#"
    assert charts.progress_bar(0.5, 10) == "█████░░░░░"
    assert charts.progress_bar(2.0, 4, unicode=False) == "####"


def test_text_counts_wide_characters_and_hides_control_characters():
    assert text.width("日本") == 4 and text.clip("日本語", 5) == "日本"
    assert text.fit("ab", 4) == "ab  " and text.left_cut("20261202-text-3fa9", 10) == "…text-3fa9"
    assert text.clean("a\nb\x1b[2J") == "a·b·[2J"
    assert text.wrap("abcdef\ngh", 4) == ["abcd", "ef", "gh"]


# ---- keys ----------------------------------------------------------------------------------


def test_keys_switch_tabs_move_filter_help_and_quit():
    s = UiState(counts={"runs": 3, "models": 2})
    for key, tab in (("2", 1), ("tab", 2), ("tab", 3), ("tab", 0), ("btab", 3), ("1", 0)):
        handle_key(s, key)
        assert s.tab == tab
    handle_key(s, "j"), handle_key(s, "down"), handle_key(s, "j")
    assert s.cursor == 2  # clamped to the last run
    handle_key(s, "k")
    assert s.cursor == 1
    handle_key(s, "enter")
    assert s.tab == 1
    handle_key(s, "3"), handle_key(s, "pgup")
    assert s.log_offset == s.page
    handle_key(s, "end")
    assert s.log_offset == 0
    handle_key(s, "esc")
    assert s.tab == 0
    handle_key(s, "/")
    for key in "tex":
        handle_key(s, key)
    handle_key(s, "q")  # typed into the filter, does not quit
    handle_key(s, "backspace")
    handle_key(s, "enter")
    assert s.filter == "tex" and not s.editing_filter
    handle_key(s, "esc")
    assert s.filter == ""
    handle_key(s, "?")
    assert s.help and handle_key(s, "j") is None and not s.help
    assert handle_key(s, "r") == "refresh" and handle_key(s, "q") == "quit"


def test_the_sampling_prompt_takes_typing_and_esc_stops_then_closes():
    s = UiState(tab=3, counts={"runs": 1, "models": 1})
    assert handle_key(s, "enter") == "open_prompt"
    s.prompt = Prompt(checkpoint="x.ckpt", label="r step 1")
    for key in "hi q":
        assert handle_key(s, key) is None
    assert s.prompt.text == "hi q"
    assert handle_key(s, "enter") == "sample"
    s.prompt.running = True
    assert handle_key(s, "esc") == "cancel_sample" and s.prompt is not None
    s.prompt.running = False
    handle_key(s, "esc")
    assert s.prompt is None


# ---- screens ----------------------------------------------------------------------------------


def _runs():
    runs = Runs()
    for i, status in enumerate(("running", "completed", "failed")):
        run = runs.add(Run(f"20261202-02330{i}-text-3fa{i}", f"/tmp/run{i}"))
        run.set_config({"domain": "text", "tokenizer": "char", "train": {"iters": 1000},
                        "model": {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 64,
                                  "vocab_size": 65, "activation": "gelu"},
                        "sample": {"temperature": 0.8}, "info": {"param_count": 12345}})
        for step in range(1, 301):
            run.add_metric(_metric(step, 4 / (1 + step / 50),
                                   **({"val_loss": 3.0} if step % 100 == 0 else {})))
        run.add_event({"step": 0, "kind": "start", "level": "info", "message": "started"})
        run.add_event({"step": 200, "kind": "checkpoint", "level": "info", "message": "saved",
                       "payload": {"path": "/tmp/x/step-200.ckpt", "size": 1_000_000}})
        run.add_sample({"step": 300, "text": "hello\nworld 日本"})
        run.add_log([f"12:00:0{j} step {j}" for j in range(10)] + ["12:00:10 [error] boom"])
        run.set_status(status)
    return runs


def test_every_tab_fills_the_screen_exactly_at_80x24_and_larger():
    runs = _runs()
    for w, h in ((80, 24), (132, 43)):
        for unicode in (True, False):
            for tab in range(4):
                state = UiState(tab=tab)
                ordered = runs.ordered()
                for mode in ("", "help", "prompt"):
                    state.help = mode == "help"
                    state.prompt = Prompt("c", "r step 1", text="hi", output="there") \
                        if mode == "prompt" else None
                    v = View(w, h, state, ordered, "outputs", unicode, model_rows(ordered))
                    lines = render(v)
                    assert len(lines) == h
                    assert all(text.width(line.text) == w for line in lines), (w, h, tab, mode)
                    if not unicode:
                        drawn = [line.text for line in lines if "日本" not in line.text]
                        assert all(t.isascii() for t in drawn) or mode
    screen = "\n".join(line.text for line in render(
        View(80, 24, UiState(), runs.ordered(), "outputs", True, model_rows(runs.ordered()))))
    assert "300/1000" in screen and "failed" in screen and "text-3fa2" in screen


def test_a_small_terminal_asks_to_be_enlarged_and_never_raises():
    for w, h in ((79, 24), (80, 23), (20, 5), (1, 1)):
        lines = render(View(w, h, UiState(), _runs().ordered()))
        assert len(lines) == h
        if w >= 40:
            assert "enlarge the terminal" in "".join(line.text for line in lines)


# ---- the live stream --------------------------------------------------------------------------


def test_sse_parser_follows_the_event_stream_rules():
    p = SseParser()
    lines = [": ping", "id: 7", "event: metrics", 'data: {"a":', "data: 1}", "",
             "data: plain", "", "", "id: 8", "event: heartbeat", "data:{}", ""]
    got = [e for e in (p.feed_line(line) for line in lines) if e]
    assert got == [("7", "metrics", '{"a":\n1}'), ("7", "message", "plain"),
                   ("8", "heartbeat", "{}")]
    assert p.last_id == "8"


def test_live_events_build_runs_and_bad_urls_are_refused():
    runs = Runs()
    apply_event(runs, "snapshot", {"runs": [
        {"run_id": "a", "status": "active", "domain": "text", "latest_step": 5,
         "config": json.dumps({"train": {"iters": 10}})}, "junk"]})
    a = runs.get("a")
    assert a.status == "running" and a.step == 5 and a.iters == 10
    apply_event(runs, "metrics", {"run_id": "a", "rows": [_metric(6, 1.0), 3]})
    apply_event(runs, "run_start", {"run_id": "b", "run": {"config": {"domain": "code"}}})
    apply_event(runs, "events", {"run_id": "b", "rows": [{"step": 1, "kind": "eval"}]})
    apply_event(runs, "run_complete", {"run_id": "a", "status": "stopped"})
    apply_event(runs, "metrics", {"rows": []})  # no run id: ignored
    assert a.step == 6 and a.status == "stopped" and runs.get("b").domain == "code"
    assert live_url("http://h:8000") == "http://h:8000/api/training/live"
    assert live_url("https://h/x/api/training/live/") == "https://h/x/api/training/live"
    for bad in ("h:8000", "ftp://h", "http://", "http://h:99999"):
        try:
            live_url(bad)
        except ValueError as e:
            assert "--remote" in str(e)
        else:
            raise AssertionError(bad)


# ---- run folders on disk --------------------------------------------------------------------


def test_local_source_follows_folders_and_survives_deletion_and_corrupt_lines(tmp_path):
    folder = _folder(tmp_path)
    (folder / "metrics.jsonl").write_text(json.dumps(_metric(1, 2.0)) + "\nbroken\n")
    runs = Runs()
    source = LocalSource(str(tmp_path))
    assert source.poll(runs, now=0.0)
    run = runs.get(folder.name)
    assert run.step == 1 and run.bad_lines == 1 and run.status in ("running", "stale")
    _append(folder / "metrics.jsonl", (json.dumps(_metric(2, 1.5)) + "\n").encode())
    (folder / "checkpoints" / "step-2.ckpt").write_bytes(b"x" * 10)
    assert source.poll(runs, now=1.0)
    assert run.step == 2 and 2 in run.checkpoints
    for name in os.listdir(folder / "checkpoints"):
        os.remove(folder / "checkpoints" / name)
    os.rmdir(folder / "checkpoints")
    for name in os.listdir(folder):
        os.remove(folder / name)
    os.rmdir(folder)
    source.poll(runs, now=10.0)
    assert run.status == "deleted" and run.step == 2  # still shown, with what it had
    source.refresh(runs)
    source.poll(runs, now=20.0)
    assert runs.get(folder.name) is None


# ---- the command's user mistakes ------------------------------------------------------------


def _tui(*args, **kw):
    return subprocess.run([sys.executable, "-m", "alpha", "tui", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          **kw)


def test_user_mistakes_are_one_line_and_exit_2(tmp_path):
    for args, words in ((["--outputs", str(tmp_path / "nope")], "does not exist"),
                        (["--remote", "localhost:8000"], "--remote needs"),
                        (["--outputs", str(tmp_path)], "needs a terminal")):
        r = _tui(*args)
        assert r.returncode == 2, r
        assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
