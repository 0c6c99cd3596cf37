"""The screens as text: `render(view)` returns exactly `view.height` Lines of `view.width` columns.

Pure functions of the run model (alpha.tui.model) and the screen state (alpha.tui.state), so every
screen is tested without a terminal; the curses layer only paints the Lines. This file holds the
frame (header, footer, help, the sampling prompt) and the Runs, Logs and Models tabs; the Run tab
is alpha.tui.runview.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from alpha.train.progress import format_duration, format_rate
from alpha.tui import charts, runview
from alpha.tui.model import Run
from alpha.tui.state import HELP, TABS, UiState
from alpha.tui.text import Line, fit, left_cut, middle, wrap

MIN_W, MIN_H = 80, 24

STATUS_STYLE = {"running": "good", "completed": "accent", "failed": "bad", "stopped": "warn",
                "stale": "warn", "deleted": "dim", "unknown": "dim"}


@dataclass
class View:
    width: int
    height: int
    state: UiState
    runs: list  # the runs on the list (filtered, newest first)
    source: str = ""  # where runs come from, for the header
    unicode: bool = True
    models: list = field(default_factory=list)  # model_rows(runs)
    now: float = 0.0

    @property
    def run(self) -> Run | None:
        if not self.runs:
            return None
        return self.runs[min(self.state.cursor, len(self.runs) - 1)]


def model_rows(runs: list) -> list[tuple[Run, int, dict]]:
    """(run, step, {"path", "size"}) of every checkpoint, newest run first, latest step first."""
    rows = []
    for run in runs:
        for step in sorted(run.checkpoints, reverse=True):
            rows.append((run, step, run.checkpoints[step]))
    return rows


def _dots(v: View) -> str:
    return "…" if v.unicode else "~"


def fmt_eta(seconds) -> str:
    return "-" if seconds is None else format_duration(seconds)


def render(v: View) -> list[Line]:
    if v.width < MIN_W or v.height < MIN_H:
        return _too_small(v)
    body_h = v.height - 2
    if v.state.tab == 0:
        body = runs_tab(v, body_h)
    elif v.state.tab == 1:
        body = runview.run_tab(v.run, v.width, body_h, v.state.panel_offset, v.unicode)
    elif v.state.tab == 2:
        body = logs_tab(v, body_h)
    else:
        body = models_tab(v, body_h)
    body = (body + [Line()] * body_h)[:body_h]
    if v.state.help:
        body = _overlay(body, help_box(v), v.width)
    elif v.state.prompt is not None and v.state.tab == 3:
        body = _overlay(body, prompt_box(v, body_h), v.width)
    lines = [header(v)] + body + [footer(v)]
    return [line.fitted(v.width) for line in lines]


def _too_small(v: View) -> list[Line]:
    msg = [f"enlarge the terminal: {MIN_W}x{MIN_H} needed, this one is {v.width}x{v.height}",
           "(q quits)"]
    lines = [Line() for _ in range(max(1, v.height))]
    for i, text in enumerate(msg):
        row = min(v.height - 1, max(0, v.height // 2 - 1) + i)
        lines[row] = Line(text[:max(0, v.width - 1)], "bold")
    return [line.fitted(max(0, v.width - 1)) for line in lines]


# ---- frame ---------------------------------------------------------------------------------


def header(v: View) -> Line:
    line = Line(" Alpha ", "title")
    for i, name in enumerate(TABS):
        line.add(" ")
        line.add(f"{i + 1} {name}", "tab_on" if i == v.state.tab else "tab")
    right = f"{v.source}  {time.strftime('%H:%M:%S', time.localtime(v.now or time.time()))} "
    used = len(line.text)
    line.add(" " * max(1, v.width - used - len(right)))
    line.add(middle(right, max(0, v.width - used - 1), _dots(v)), "dim")
    return line


def footer(v: View) -> Line:
    s = v.state
    if s.editing_filter:
        return Line("filter: ", "bold").add(s.filter + "▏").add(
            "   Enter keeps it, Esc clears it", "dim")
    keys = {0: "j/k select  Enter open  / filter", 1: "j/k run  PgUp/PgDn panel  Esc back",
            2: "j/k PgUp/PgDn scroll  End follow  Esc back",
            3: "j/k select  Enter sample  Esc back"}[s.tab]
    line = Line(" " + keys + "  r refresh  ? help  q quit", "dim")
    if s.filter:
        line.add(f"   filter: {s.filter}", "warn")
    return line


def _overlay(body: list[Line], box: list[Line], width: int) -> list[Line]:
    """`box` drawn over the middle of `body` (whole rows: the box is as wide as the screen)."""
    top = max(0, (len(body) - len(box)) // 2)
    out = list(body)
    for i, line in enumerate(box[:len(body)]):
        out[top + i] = line
    return out


def _boxed(title: str, rows: list[Line], width: int, unicode: bool) -> list[Line]:
    h, vbar, tl, tr, bl, br = ("─", "│", "┌", "┐", "└", "┘") if unicode else \
        ("-", "|", "+", "+", "+", "+")
    inner = width - 4
    out = [Line(tl + h + " " + title + " " + h * max(0, inner - len(title) - 1) + tr, "bold")]
    for row in rows:
        line = Line(vbar + " ", "bold")
        line.segments += row.fitted(inner).segments
        line.add(" " + vbar, "bold")
        out.append(line)
    out.append(Line(bl + h * (width - 2) + br, "bold"))
    return out


def help_box(v: View) -> list[Line]:
    rows = [Line(f"{keys:<14}", "bold").add(what) for keys, what in HELP]
    rows.append(Line())
    rows.append(Line("Any key closes this help.", "dim"))
    return _boxed("keys", rows, v.width, v.unicode)


def prompt_box(v: View, body_h: int) -> list[Line]:
    p = v.state.prompt
    inner = v.width - 4
    rows = [Line("prompt> ", "bold").add(p.text).add("" if p.running else "▏")]
    out_rows = wrap(p.text + p.output, inner) if p.output else []
    room = max(3, body_h - 6)
    out_rows = out_rows[-room:]
    rows += [Line(r) for r in out_rows]
    rows += [Line()] * (room - len(out_rows))
    if p.running:
        status = (p.status or "generating") + " … Esc stops"
    else:
        status = (p.status + " · " if p.status else "") + "Enter samples, Esc closes"
    rows.append(Line(status, "bad" if p.status.startswith("error") else "dim"))
    return _boxed(f"sample {p.label}", rows, v.width, v.unicode)


# ---- 1 Runs ----------------------------------------------------------------------------------


SHORT_STATUS = {"running": "run", "completed": "done", "failed": "failed", "stopped": "stop",
                "stale": "stale", "deleted": "gone", "unknown": "?"}


def runs_tab(v: View, height: int) -> list[Line]:
    w = v.width
    steps = [f"{r.step}/{r.iters}" if r.iters else str(r.step) for r in v.runs]
    step_w = max([4] + [len(t) for t in steps])
    narrow = w < 100  # short status words; the id, bar and curve share what is left
    status_w = 7 if narrow else 10
    fixed = 2 + status_w + step_w + 1 + 8 + 7 + 7 + 9  # + loss, tok/s, ETA, best val
    spare = w - fixed - 2
    longest = max([8] + [len(r.run_id) + 1 for r in v.runs])
    id_w = max(10, min(longest, spare - 14, 28))
    bar_w = max(5, (spare - id_w) * 2 // 5)
    spark_w = max(4, spare - id_w - bar_w)
    head = (f"  {'RUN':<{id_w}}{'STATUS':<{status_w}}{'STEP':>{step_w}} "
            f"{'PROGRESS' if bar_w >= 8 else 'PROG':<{bar_w}} {'LOSS':>7} {'CURVE':<{spark_w}}"
            f"{'TOK/S':>7}{'ETA':>7}{'BEST VAL':>9}")
    out = [Line(head, "bold")]
    if not v.runs:
        note = "no runs match the filter" if v.state.filter else \
            f"no runs in {v.source} yet: start one with `python -m alpha train`"
        return out + [Line(), Line("  " + note, "dim")]
    detail_h = 4
    rows_h = max(1, height - 1 - detail_h - 1)
    first = max(0, v.state.cursor - rows_h + 1)
    for i, run in enumerate(v.runs[first:first + rows_h], start=first):
        selected = i == v.state.cursor
        bar = charts.progress_bar(run.progress(), bar_w, v.unicode)
        spark = charts.sparkline(run.loss.buckets(spark_w * 4)[1], spark_w, v.unicode)
        tok = run.tokens_per_sec
        status = SHORT_STATUS.get(run.status, run.status) if narrow else run.status
        line = Line("▶ " if selected and v.unicode else ("> " if selected else "  "),
                    "sel" if selected else "")
        line.add(fit(left_cut(run.run_id, id_w - 1, _dots(v)), id_w), "sel" if selected else "bold")
        line.add(fit(status, status_w), STATUS_STYLE.get(run.status, ""))
        line.add(fit(steps[i], step_w, right=True) + " ")
        line.add(bar + " ", "accent")
        line.add(charts.fmt_num(run.last_loss, 7) + " ")
        line.add(fit(spark, spark_w), "accent")
        line.add(fit(format_rate(tok) if tok is not None else "-", 7, right=True))
        line.add(fit(fmt_eta(run.eta_seconds()), 7, right=True))
        line.add(charts.fmt_num(run.best_val_loss, 9))
        out.append(line)
    out += [Line()] * (1 + rows_h - len(out))
    out.append(Line())
    out += _run_detail(v.run, v.width)
    return out


def _run_detail(run: Run | None, width: int) -> list[Line]:
    if run is None:
        return []
    m = run.model_section()
    params = run.param_count
    arch = (f"{m.get('n_layer', '?')} layers, {m.get('n_head', '?')} heads, "
            f"dim {m.get('n_embd', '?')}, block {m.get('block_size', '?')}") if m else "?"
    last = run.events[-1] if run.events else None
    rows = [
        Line(run.run_id, "bold").add(f"  {run.status}", STATUS_STYLE.get(run.status, ""))
        .add(f"  {run.domain or '?'}  " + (f"{params:,} parameters  " if params else "") + arch),
        Line(f"path: {run.path or run.summary.get('run_dir') or '(remote)'}", "dim"),
    ]
    if last is not None:
        rows.append(Line(f"last event: step {last.get('step', '?')} {last.get('kind', '')}: "
                         f"{last.get('message', '')}", "dim"))
    if run.bad_lines:
        rows.append(Line(f"{run.bad_lines} unreadable lines skipped", "warn"))
    return rows


# ---- 3 Logs ---------------------------------------------------------------------------------


def logs_tab(v: View, height: int) -> list[Line]:
    run = v.run
    if run is None:
        return [Line("no run selected", "dim")]
    events_h = max(4, height // 3)
    log_h = height - events_h - 2
    log = list(run.log)
    if not log and run.path is None:
        log = ["(train.log is not in the live stream: the events are below)"]
    offset = min(v.state.log_offset, max(0, len(log) - log_h))
    v.state.log_offset = offset
    end = len(log) - offset
    shown = log[max(0, end - log_h):end]
    where = "following the tail" if offset == 0 else f"{offset} lines above the tail"
    out = [Line(f"train.log  {run.run_id}", "bold").add(f"  {len(log)} lines, {where}", "dim")]
    for text in shown:
        style = "bad" if "[error]" in text else "warn" if "[warning]" in text else ""
        out.append(Line(text, style))
    out += [Line()] * (1 + log_h - len(out))
    out.append(Line(f"events  {len(run.events)}", "bold"))
    for row in list(run.events)[-events_h:]:
        level = str(row.get("level", "info"))
        t = str(row.get("time", ""))[11:19]
        out.append(Line(f"{t} step {row.get('step', '?')} ", "dim")
                   .add(f"[{level}] {row.get('kind', '')}: ",
                        {"error": "bad", "warning": "warn"}.get(level, "accent"))
                   .add(str(row.get("message", ""))))
    return out


# ---- 4 Models -------------------------------------------------------------------------------


def _arch(m: dict) -> str:
    if not m:
        return "?"
    return (f"L{m.get('n_layer', '?')} H{m.get('n_head', '?')} D{m.get('n_embd', '?')} "
            f"T{m.get('block_size', '?')} {m.get('activation', '')}")


def _val_at(run: Run, step: int) -> float | None:
    """The val loss measured at `step` (checkpoints are saved right after an eval)."""
    s = run.val_loss
    for i in range(len(s) - 1, -1, -1):
        if s.steps[i] <= step:
            return s.values[i] if s.steps[i] == step else None
    return None


def models_tab(v: View, height: int) -> list[Line]:
    rows = v.models
    id_w = max(10, min(28, v.width - 68))
    head = (f"  {'RUN':<{id_w}}{'STEP':>8} {'PARAMS':>10}  {'ARCHITECTURE':<21}"
            f"{'TOKENIZER':<10}{'VAL':>7}{'BEST':>7}")
    out = [Line(head, "bold")]
    if not rows:
        return out + [Line(), Line("  no checkpoints yet", "dim")]
    list_h = max(1, height - 8)
    cur = min(v.state.model_cursor, len(rows) - 1)
    first = max(0, cur - list_h + 1)
    for i, (run, step, info) in enumerate(rows[first:first + list_h], start=first):
        sel = i == cur
        m = run.model_section()
        params = run.param_count
        tok = f"{run.config.get('tokenizer') or '?'} {m.get('vocab_size', '')}"
        line = Line(("▶ " if v.unicode else "> ") if sel else "  ", "sel" if sel else "")
        line.add(fit(left_cut(run.run_id, id_w - 1, _dots(v)), id_w), "sel" if sel else "bold")
        line.add(fit(str(step), 8, right=True) + " ")
        line.add(fit(f"{params:,}" if params else "?", 10, right=True) + "  ")
        line.add(fit(_arch(m), 21))
        line.add(fit(tok, 10))
        line.add(charts.fmt_num(_val_at(run, step), 7))
        line.add(charts.fmt_num(run.best_val_loss, 7))
        out.append(line)
    out += [Line()] * (1 + list_h - len(out))
    run, step, info = rows[cur]
    m, sc = run.model_section(), run.sample_section()
    size = info.get("size")
    out.append(Line())
    out.append(Line(f"{info.get('path', '')}", "bold")
               .add(f"  {size / 1e6:.1f} MB" if isinstance(size, (int, float)) else ""))
    out.append(Line("model: " + ", ".join(f"{k}={m[k]}" for k in m) if m else "model: ?"))
    out.append(Line("sampling: " + ", ".join(f"{k}={sc[k]}" for k in
                                             ("temperature", "top_k", "top_p", "seed")
                                             if k in sc), "dim"))
    local = run.path is not None or bool(run.summary.get("run_dir"))
    out.append(Line("Enter: sample from this checkpoint" if local else
                    "sampling needs the checkpoint on this machine", "accent"))
    return out
