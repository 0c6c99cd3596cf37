"""The dashboard's screen state and what each key does to it, without a terminal.

The curses layer turns key codes into names (`"up"`, `"pgdn"`, `"enter"`, `"esc"`, `"tab"`,
`"btab"`, `"backspace"`, `"home"`, `"end"`, or the character typed) and calls `handle_key`; it
changes `UiState` and returns an action for the layer to carry out (`"quit"`, `"refresh"`,
`"open_prompt"`, `"sample"`, `"cancel_sample"`) or None.

Modes take keys first: the help overlay (any key closes it), the sampling prompt (typing, Enter
starts, Esc stops or closes), the run filter after `/` (typing, Enter keeps it, Esc clears it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

TABS = ("Runs", "Run", "Logs", "Models")

HELP = [
    ("1 2 3 4, Tab", "switch tab: Runs, Run, Logs, Models"),
    ("j k, ↓ ↑", "move the selection (Runs, Run, Models); scroll (Logs)"),
    ("PgUp PgDn", "a page up or down (Logs: older, newer; Run: samples and config)"),
    ("Home End", "first / last; End in Logs follows the tail again"),
    ("Enter", "Runs: open the run; Models: sample from the checkpoint"),
    ("Esc", "back to Runs; clear the filter; close the prompt"),
    ("/", "filter runs by id, domain or status"),
    ("r", "refresh: read every file again"),
    ("?", "this help"),
    ("q", "quit"),
]


@dataclass
class Prompt:
    """The sampling prompt of the Models tab."""
    checkpoint: str
    label: str  # run id and step, for the title
    run_id: str = ""
    text: str = ""  # what the user typed
    output: str = ""  # the streamed continuation
    running: bool = False
    status: str = ""  # "loading", speeds when done, or an error


@dataclass
class UiState:
    tab: int = 0
    cursor: int = 0  # selected row of the Runs list (also the run of the Run and Logs tabs)
    model_cursor: int = 0  # selected row of the Models list
    log_offset: int = 0  # lines above the tail; 0 follows the tail
    panel_offset: int = 0  # scroll of the Run tab's lower panel
    filter: str = ""
    editing_filter: bool = False
    help: bool = False
    prompt: Prompt | None = None
    page: int = 10  # rows a PgUp/PgDn moves (the layer sets it from the screen's height)
    counts: dict = field(default_factory=lambda: {"runs": 0, "models": 0})


def _clamp(value: int, count: int) -> int:
    return max(0, min(value, count - 1)) if count > 0 else 0


def handle_key(s: UiState, key: str) -> str | None:
    if key == "resize":
        return None
    if s.help:
        s.help = False
        return "quit" if key == "q" else None
    if s.prompt is not None:
        return _prompt_key(s, key)
    if s.editing_filter:
        return _filter_key(s, key)
    if key == "q":
        return "quit"
    if key in ("1", "2", "3", "4"):
        s.tab = int(key) - 1
    elif key == "tab":
        s.tab = (s.tab + 1) % len(TABS)
    elif key == "btab":
        s.tab = (s.tab - 1) % len(TABS)
    elif key == "?":
        s.help = True
    elif key == "r":
        return "refresh"
    elif key == "/":
        s.editing_filter, s.tab = True, 0
    elif key == "esc":
        if s.tab == 0:
            s.filter = ""
        s.tab = 0
    elif key == "enter":
        if s.tab == 0 and s.counts["runs"]:
            s.tab, s.panel_offset, s.log_offset = 1, 0, 0
        elif s.tab == 3 and s.counts["models"]:
            return "open_prompt"
    else:
        _move(s, key)
    return None


def _move(s: UiState, key: str) -> None:
    step = {"j": 1, "down": 1, "k": -1, "up": -1, "pgdn": s.page, "pgup": -s.page}.get(key)
    if s.tab == 2:  # Logs: up is older
        if step is not None:
            s.log_offset = max(0, s.log_offset - step)
        elif key == "end":
            s.log_offset = 0
        elif key == "home":
            s.log_offset = 1 << 30  # the layer clamps it to the oldest line
        return
    if s.tab == 1 and key in ("pgup", "pgdn"):
        s.panel_offset = max(0, s.panel_offset + step)
        return
    if s.tab == 3:
        n, cur = s.counts["models"], s.model_cursor
    else:
        n, cur = s.counts["runs"], s.cursor
    if step is not None:
        cur = _clamp(cur + step, n)
    elif key == "home":
        cur = 0
    elif key == "end":
        cur = _clamp(n - 1, n)
    else:
        return
    if s.tab == 3:
        s.model_cursor = cur
    else:
        if cur != s.cursor:
            s.panel_offset, s.log_offset = 0, 0
        s.cursor = cur


def _filter_key(s: UiState, key: str) -> str | None:
    if key == "enter":
        s.editing_filter = False
    elif key == "esc":
        s.editing_filter, s.filter = False, ""
    elif key == "backspace":
        s.filter = s.filter[:-1]
    elif len(key) == 1 and key.isprintable():
        s.filter += key
    s.cursor = 0
    return None


def _prompt_key(s: UiState, key: str) -> str | None:
    p = s.prompt
    if key == "esc":
        if p.running:
            return "cancel_sample"
        s.prompt = None
        return None
    if p.running:
        return None  # typing waits for the stream to end (Esc stops it)
    if key == "enter":
        p.output, p.status = "", "loading"
        return "sample"
    if key == "backspace":
        p.text = p.text[:-1]
    elif len(key) == 1 and key.isprintable():
        p.text += key
    return None
