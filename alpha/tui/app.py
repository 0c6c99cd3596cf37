"""The curses layer: reads keys, polls the source, paints the Lines that alpha.tui.views renders.

The loop wakes on a key or every TICK_S. Sources are polled every POLL_S; the screen is painted
only when something changed (a key, new rows, a resize, a new second on the clock), at most
MAX_FPS times a second, and a key is painted at once. Painting writes the whole virtual screen and
lets curses send only the cells that differ (`noutrefresh` + `doupdate`), so nothing flickers.

Colour is used when the terminal has it and NO_COLOR is not set; every style also has a
monochrome form (bold, dim, reverse), so nothing depends on colour. `curses.wrapper` restores the
terminal on every exit, a crash included.
"""

from __future__ import annotations

import curses
import locale
import os
import signal
import sys
import time

from alpha.tui import views
from alpha.tui.model import Runs
from alpha.tui.state import Prompt, UiState, handle_key
from alpha.tui.text import width as text_width

TICK_S = 0.25  # longest sleep waiting for a key
POLL_S = 0.5  # how often run files (or the stream's queue) are read
MAX_FPS = 4  # repaints a second when data changes
SAMPLING_TICK_S = 0.05  # while tokens stream in

_KEYS = {
    curses.KEY_UP: "up", curses.KEY_DOWN: "down", curses.KEY_PPAGE: "pgup",
    curses.KEY_NPAGE: "pgdn", curses.KEY_HOME: "home", curses.KEY_END: "end",
    curses.KEY_ENTER: "enter", curses.KEY_BACKSPACE: "backspace", curses.KEY_RESIZE: "resize",
    curses.KEY_BTAB: "btab", curses.KEY_LEFT: "btab", curses.KEY_RIGHT: "tab",
}
_CHARS = {"\n": "enter", "\r": "enter", "\t": "tab", "\x1b": "esc", "\x7f": "backspace",
          "\x08": "backspace"}


def key_name(key) -> str | None:
    """A get_wch() result as the name alpha.tui.state knows."""
    if isinstance(key, int):
        return _KEYS.get(key)
    return _CHARS.get(key, key)


def _styles(use_color: bool) -> dict[str, int]:
    mono = {
        "": curses.A_NORMAL, "title": curses.A_BOLD | curses.A_REVERSE,
        "tab": curses.A_NORMAL, "tab_on": curses.A_REVERSE | curses.A_BOLD,
        "bold": curses.A_BOLD, "dim": curses.A_DIM, "sel": curses.A_REVERSE,
        "good": curses.A_BOLD, "bad": curses.A_BOLD | curses.A_UNDERLINE, "warn": curses.A_BOLD,
        "accent": curses.A_NORMAL,
    }
    if not use_color:
        return mono
    colors = {"good": curses.COLOR_GREEN, "bad": curses.COLOR_RED, "warn": curses.COLOR_YELLOW,
              "accent": curses.COLOR_CYAN, "title": curses.COLOR_BLUE}
    styles = dict(mono)
    for i, (name, color) in enumerate(colors.items(), start=1):
        if name == "title":
            curses.init_pair(i, curses.COLOR_WHITE, color)
            styles[name] = curses.color_pair(i) | curses.A_BOLD
        else:
            curses.init_pair(i, color, -1)
            styles[name] = curses.color_pair(i) | (curses.A_BOLD if name == "bad" else 0)
    return styles


class App:
    def __init__(self, source, unicode: bool):
        self.source = source
        self.unicode = unicode
        self.runs = Runs()
        self.state = UiState()
        self.sampler = None
        self.selected_id: str | None = None  # the run under the cursor, kept across reorders
        self.selected_model: tuple | None = None  # (run id, step) under the Models cursor
        self.dirty = True
        self.last_paint = 0.0
        self.last_second = -1

    # ---- the loop ------------------------------------------------------------------------------
    def main(self, scr) -> int:
        curses.curs_set(0)
        use_color = curses.has_colors() and not os.environ.get("NO_COLOR")
        if use_color:
            try:
                curses.use_default_colors()
            except curses.error:
                pass
        self.styles = _styles(use_color)
        scr.keypad(True)
        self.source.poll(self.runs)
        next_poll = time.monotonic() + POLL_S
        while True:
            scr.timeout(int((SAMPLING_TICK_S if self.sampler else TICK_S) * 1000))
            try:
                key = scr.get_wch()
            except curses.error:
                key = None  # the timeout
            except KeyboardInterrupt:
                return 0
            now = time.monotonic()
            if key is not None:
                name = key_name(key)
                if name is not None:
                    if name == "resize":
                        self._fit_terminal()
                    if self._key(name) == "quit":
                        return 0
                    self.dirty = True
                    self.last_paint = 0.0  # a key is answered now, not at the next frame
            if now >= next_poll:
                if self.source.poll(self.runs):
                    self.dirty = True
                # a big file being read in: the next piece soon, keys still answered between
                next_poll = now + (0.02 if getattr(self.source, "behind", False) else POLL_S)
            if self.sampler is not None:
                self._drain_sampler()
            second = int(time.time())
            if second != self.last_second:
                self.last_second, self.dirty = second, True  # the clock in the header
            if self.dirty and now - self.last_paint >= 1.0 / MAX_FPS:
                self.paint(scr)
                self.last_paint, self.dirty = now, False

    def _key(self, name: str) -> str | None:
        self._sync()
        action = handle_key(self.state, name)
        if action == "refresh":
            self.source.refresh(self.runs)
            self.source.poll(self.runs)
        elif action == "open_prompt":
            self._open_prompt()
        elif action == "sample":
            self._start_sampler()
        elif action == "cancel_sample" and self.sampler is not None:
            self.sampler.cancel()
        self._sync(after_key=True)
        return action

    def _sync(self, after_key: bool = False) -> tuple[list, list]:
        """The run list and model rows as the state sees them; the cursor follows its run when
        runs are added above it (unless a key just moved it)."""
        s = self.state
        runs = self.runs.ordered(s.filter)
        if not after_key and self.selected_id is not None:
            for i, run in enumerate(runs):
                if run.run_id == self.selected_id:
                    s.cursor = i
                    break
        s.cursor = max(0, min(s.cursor, len(runs) - 1))
        self.selected_id = runs[s.cursor].run_id if runs else None
        models = views.model_rows(runs)
        if not after_key and self.selected_model is not None:
            for i, (run, step, _) in enumerate(models):
                if (run.run_id, step) == self.selected_model:
                    s.model_cursor = i
                    break
        s.model_cursor = max(0, min(s.model_cursor, len(models) - 1))
        if models:
            run, step, _ = models[s.model_cursor]
            self.selected_model = (run.run_id, step)
        s.counts = {"runs": len(runs), "models": len(models)}
        return runs, models

    # ---- sampling ------------------------------------------------------------------------------
    def _open_prompt(self) -> None:
        _, models = self._sync()
        if not models:
            return
        run, step, info = models[self.state.model_cursor]
        self.state.prompt = Prompt(checkpoint=str(info.get("path", "")),
                                   label=f"{run.run_id} step {step}", run_id=run.run_id)

    def _start_sampler(self) -> None:
        from alpha.tui.sampling import Sampler

        p = self.state.prompt
        if p is None:
            return
        if not os.path.isfile(p.checkpoint):
            # a running trainer keeps only its newest checkpoints: take the run's newest one
            run = self.runs.get(p.run_id)
            known = run.checkpoints.items() if run is not None else ()
            found = [(step, info["path"]) for step, info in known
                     if os.path.isfile(info["path"])]
            if not found:
                p.status = "error: the checkpoint is not on this machine (or was deleted)"
                return
            step, p.checkpoint = max(found)
            p.label = f"{p.run_id} step {step}"
        p.running, p.status = True, "loading the checkpoint"
        self.sampler = Sampler(p.checkpoint, p.text)

    def _drain_sampler(self) -> None:
        text, status = self.sampler.drain()
        p = self.state.prompt
        if p is not None and (text or status):
            p.output += text
            if text:
                p.status = "generating"
            if status is not None:
                p.running, p.status = False, status
            self.dirty = True
        if self.sampler.done:
            self.sampler = None
            if p is not None:
                p.running = False

    # ---- painting ------------------------------------------------------------------------------
    @staticmethod
    def _fit_terminal() -> None:
        """Make curses' size the terminal's. KEY_RESIZE alone is not enough: ncurses may have
        read the size before the terminal finished resizing, and then it never looks again."""
        try:
            size = os.get_terminal_size(sys.__stdout__.fileno())
        except (OSError, ValueError, AttributeError):
            return
        if (size.lines, size.columns) != (curses.LINES, curses.COLS) and size.lines > 0:
            try:
                curses.resizeterm(size.lines, size.columns)
            except curses.error:
                return
        curses.update_lines_cols()

    def paint(self, scr) -> None:
        self._fit_terminal()
        h, w = scr.getmaxyx()
        runs, models = self._sync()
        self.state.page = max(1, h - 8)
        view = views.View(width=w, height=h, state=self.state, runs=runs,
                          source=self.source.describe(), unicode=self.unicode, models=models,
                          now=time.time())
        lines = views.render(view)
        scr.erase()
        for y, line in enumerate(lines[:h]):
            x = 0
            for text, style in line.segments:
                if not self.unicode:
                    text = text.encode("ascii", "replace").decode()  # curses would drop it
                try:
                    # the last cell of the screen cannot be written without an error: ignore it
                    scr.addstr(y, x, text, self.styles.get(style, 0))
                except curses.error:
                    pass
                x += text_width(text)
        scr.noutrefresh()
        curses.doupdate()

    def close(self) -> None:
        if self.sampler is not None:
            self.sampler.cancel()
        close = getattr(self.source, "close", None)
        if close is not None:
            close()


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def run(source) -> int:
    """Run the dashboard until `q`; the terminal is restored whatever happens."""
    locale.setlocale(locale.LC_ALL, "")
    # what the C library (and so curses) will encode with: Python's own UTF-8 mode may say
    # UTF-8 under a C locale, where curses would then drop every braille and block character
    codeset = locale.nl_langinfo(locale.CODESET).lower().replace("-", "")
    unicode = codeset == "utf8"
    os.environ.setdefault("ESCDELAY", "25")  # Esc answers at once, not after a second
    curses.use_env(False)  # the size comes from the terminal, never from stale LINES/COLUMNS
    app = App(source, unicode)
    # SIGTERM (kill, a closing tmux pane) unwinds like `q`, so curses restores the terminal
    signal.signal(signal.SIGTERM, _terminate)
    start = getattr(source, "start", None)
    if start is not None:
        start()
    try:
        return curses.wrapper(app.main)
    finally:
        app.close()
