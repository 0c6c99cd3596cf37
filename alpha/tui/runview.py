"""Tab 2, one run: its progress line, the loss and val-loss chart, the learning-rate and
grad-norm charts side by side, and a scrollable panel with the latest samples, the checkpoints
and the config. Pure: returns Lines (alpha.tui.text) for alpha.tui.views to frame."""

from __future__ import annotations

import json

from alpha.train.progress import format_duration, format_rate
from alpha.tui import charts
from alpha.tui.model import Run
from alpha.tui.text import Line, wrap


def run_tab(run: Run | None, width: int, height: int, offset: int, unicode: bool) -> list[Line]:
    if run is None:
        return [Line("no run selected: pick one in 1 Runs", "dim")]
    out = [_title(run, width, unicode)]
    room = height - 1
    loss_h = max(8, room * 2 // 5)
    small_h = max(6, room // 4)
    panel_h = room - loss_h - small_h
    px = width * 2  # two points a braille column
    loss = run.loss.buckets(px)
    val = run.val_loss.buckets(width // 6)  # markers a few cells apart
    steps = run.loss.steps
    x_range = (steps[0], steps[-1]) if steps else None
    legend = "loss ⠒ val ●" if unicode else "loss * val o"
    out += [Line(r) for r in charts.line_chart(
        f"loss and val loss   {legend}   last {charts.fmt_num(run.last_loss)}   best val "
        f"{charts.fmt_num(run.best_val_loss)}", [loss], width, loss_h, unicode, marks=val,
        x_range=x_range)]
    half = width // 2
    lr = charts.line_chart(f"learning rate   {charts.fmt_num(run.lr.last())}",
                           [run.lr.buckets(half * 2)], half - 1, small_h, unicode,
                           x_range=x_range)
    gn = charts.line_chart(f"grad norm   {charts.fmt_num(run.grad_norm.last())}",
                           [run.grad_norm.buckets(half * 2)], width - half, small_h, unicode,
                           x_range=x_range)
    out += [Line(a + " " + b) for a, b in zip(lr, gn)]
    panel = _panel(run, width)
    offset = min(offset, max(0, len(panel) - panel_h))
    out += panel[offset:offset + panel_h]
    return out


def _title(run: Run, width: int, unicode: bool) -> Line:
    iters = run.iters
    tok = run.tokens_per_sec
    eta = run.eta_seconds()
    line = Line(run.run_id, "bold").add(f"  {run.status}  ")
    line.add(f"step {run.step}" + (f"/{iters}" if iters else "") + " ")
    line.add(charts.progress_bar(run.progress(), 16, unicode), "accent")
    line.add(f" {run.progress() * 100:.0f}%")
    if tok is not None:
        line.add(f"  {format_rate(tok)} tok/s")
    if eta is not None:
        line.add(f"  ETA {format_duration(eta)}")
    return line


def _panel(run: Run, width: int) -> list[Line]:
    """Samples, checkpoints and config as one list of rows (PgUp/PgDn scroll it)."""
    rows = [Line(f"latest samples ({len(run.samples)})", "bold")]
    for sample in list(run.samples)[-3:][::-1]:
        rows.append(Line(f"step {sample.get('step', '?')}: ", "dim")
                    .add(" ".join(wrap(str(sample.get("text", "")), 10 ** 6))))
    if not run.samples:
        rows.append(Line("  none yet", "dim"))
    rows.append(Line(f"checkpoints ({len(run.checkpoints)})", "bold"))
    for step in sorted(run.checkpoints, reverse=True):
        info = run.checkpoints[step]
        size = info.get("size")
        rows.append(Line(f"  step {step:<8}", "").add(str(info.get("path", "")), "dim")
                    .add(f"  {size / 1e6:.1f} MB" if isinstance(size, (int, float)) else ""))
    if not run.checkpoints:
        rows.append(Line("  none yet", "dim"))
    rows.append(Line("config", "bold"))
    for section in ("model", "train", "sample"):
        body = run.config.get(section)
        if not isinstance(body, dict):
            continue
        text = ", ".join(f"{k}={json.dumps(v)}" for k, v in body.items())
        for piece in wrap(f"{section}: {text}", width - 2):
            rows.append(Line("  " + piece))
    return rows
