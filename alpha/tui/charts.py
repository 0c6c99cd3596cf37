"""Charts drawn as text: sparklines, progress bars and line charts with axes.

Everything returns plain strings, so it is tested without a terminal. With `unicode=True` line
charts use braille cells (2x4 dots a character, the resolution `btop` and `nvtop` get) and
sparklines the eighth blocks; with `unicode=False` (a terminal whose locale is not UTF-8) the same
shapes come out in ASCII. Colour is not used: on a monochrome terminal a chart reads the same.
"""

from __future__ import annotations

import math

SPARK = "▁▂▃▄▅▆▇█"
SPARK_ASCII = "_.-:=+*#"
BRAILLE_BASE = 0x2800
# dot bit of sub-pixel (x, y) in a braille cell, x in 0..1, y in 0..3 (top to bottom)
_DOT = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
MARK = "●"
MARK_ASCII = "o"


def _finite(values) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def sparkline(values, width: int, unicode: bool = True) -> str:
    """The last `width` values as one row of block heights (left-padded with spaces)."""
    chars = SPARK if unicode else SPARK_ASCII
    vals = _finite(values)[-width:] if width > 0 else []
    if not vals:
        return " " * max(0, width)
    lo, hi = min(vals), max(vals)
    span = hi - lo
    top = len(chars) - 1
    out = "".join(chars[int(round((v - lo) / span * top)) if span > 0 else top // 2]
                  for v in vals)
    return out.rjust(width)


def progress_bar(fraction: float, width: int, unicode: bool = True) -> str:
    """`███████░░░░` (or `#######....`) filled to `fraction`, in eighths with unicode."""
    if width <= 0:
        return ""
    fraction = min(1.0, max(0.0, fraction if math.isfinite(fraction) else 0.0))
    if not unicode:
        full = int(round(fraction * width))
        return "#" * full + "." * (width - full)
    eighths = int(round(fraction * width * 8))
    full, part = divmod(eighths, 8)
    bar = "█" * full
    if full < width:
        bar += (" ▏▎▍▌▋▊▉"[part] if part else "")
    return (bar + "░" * width)[:width]


def fmt_num(value: float | None, width: int = 0) -> str:
    """Short, fixed-ish width numbers for axes and tables: 3.142, 0.0012, 1.2e-05, 12.3k."""
    if value is None or not math.isfinite(value):
        text = "-"
    elif value == 0:
        text = "0"
    else:
        a = abs(value)
        if a >= 1e5:
            text = f"{value / 1e3:.0f}k" if a < 1e7 else f"{value:.1e}"
        elif a >= 100:
            text = f"{value:.0f}"
        elif a >= 10:
            text = f"{value:.1f}"
        elif a >= 0.01:
            text = f"{value:.3f}"
        else:
            text = f"{value:.1e}"
    return text.rjust(width) if width else text


class Canvas:
    """A grid of cells; `dot(x, y)` sets a sub-pixel (2x4 per cell with braille, 1x1 in ASCII)."""

    def __init__(self, width: int, height: int, unicode: bool = True):
        self.width, self.height, self.unicode = width, height, unicode
        self.sx, self.sy = (2, 4) if unicode else (1, 1)
        self.bits = [[0] * width for _ in range(height)]
        self.marks: dict[tuple[int, int], str] = {}

    @property
    def px_width(self) -> int:
        return self.width * self.sx

    @property
    def px_height(self) -> int:
        return self.height * self.sy

    def dot(self, x: int, y: int) -> None:
        if 0 <= x < self.px_width and 0 <= y < self.px_height:
            cx, cy = divmod(x, self.sx), divmod(y, self.sy)
            self.bits[cy[0]][cx[0]] |= _DOT[cx[1]][cy[1]] if self.unicode else 1

    def mark(self, x: int, y: int) -> None:
        """A whole-cell marker at sub-pixel (x, y) (drawn over the dots)."""
        cx, cy = x // self.sx, y // self.sy
        if 0 <= cx < self.width and 0 <= cy < self.height:
            self.marks[(cy, cx)] = MARK if self.unicode else MARK_ASCII

    def vline(self, x: int, y0: int, y1: int) -> None:
        for y in range(min(y0, y1), max(y0, y1) + 1):
            self.dot(x, y)

    def rows(self) -> list[str]:
        out = []
        for cy, row in enumerate(self.bits):
            chars = []
            for cx, bits in enumerate(row):
                m = self.marks.get((cy, cx))
                if m:
                    chars.append(m)
                elif self.unicode:
                    chars.append(chr(BRAILLE_BASE + bits) if bits else " ")
                else:
                    chars.append("*" if bits else " ")
            out.append("".join(chars))
        return out


def line_chart(title: str, lines: list, width: int, height: int, unicode: bool = True,
               marks: tuple | None = None, x_range: tuple | None = None) -> list[str]:
    """A chart `width` x `height` characters (all rows exactly `width` wide): title row, plot rows
    with y labels at the top, middle and bottom, an x axis with the first and last step.

    `lines` is a list of (xs, ys) drawn as connected dots; `marks` an optional (xs, ys) drawn as
    markers (the val loss over the loss); `x_range` fixes the x axis (the first and last step,
    when the points are bucket means)."""
    label_w = 8
    plot_w = max(1, width - label_w - 1)
    plot_h = max(1, height - 3)  # the title, the x axis and its labels take three rows
    series = [(xs, ys) for xs, ys in lines if xs]
    if marks and marks[0]:
        series.append(marks)
    pts = [(x, y) for xs, ys in series for x, y in zip(xs, ys)
           if y is not None and math.isfinite(y)]
    out = [title[:width].ljust(width)]
    if not pts:
        empty = ["".ljust(label_w) + "│" + " " * plot_w] * plot_h
        out += [r[:width].ljust(width) for r in empty]
        out.append(" " * label_w + ("└" + "─" * plot_w if unicode else "+" + "-" * plot_w))
        out.append("")
        msg = "(no data yet)"
        row = out[1 + plot_h // 2]
        at = label_w + 1 + max(0, (plot_w - len(msg)) // 2)
        out[1 + plot_h // 2] = row[:at] + msg + row[at + len(msg):]
        return [r[:width].ljust(width) for r in out[:height]]
    x_lo, x_hi = x_range if x_range else (min(p[0] for p in pts), max(p[0] for p in pts))
    y_lo = min(p[1] for p in pts)
    y_hi = max(p[1] for p in pts)
    if y_hi - y_lo < 1e-12:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    canvas = Canvas(plot_w, plot_h, unicode)
    pw, ph = canvas.px_width, canvas.px_height

    def to_px(x, y):
        px = 0 if x_hi == x_lo else int(round((x - x_lo) / (x_hi - x_lo) * (pw - 1)))
        py = int(round((y_hi - y) / (y_hi - y_lo) * (ph - 1)))
        return px, py

    for xs, ys in series[:len(series) - (1 if marks and marks[0] else 0)]:
        prev = None
        for x, y in zip(xs, ys):
            if y is None or not math.isfinite(y):
                prev = None
                continue
            px, py = to_px(x, y)
            if prev is not None and px - prev[0] <= 1:
                canvas.vline(px, prev[1], py)  # steep: fill the gap so the line stays connected
            elif prev is not None:
                for ix in range(prev[0] + 1, px + 1):  # interpolate across empty columns
                    t = (ix - prev[0]) / (px - prev[0])
                    canvas.dot(ix, int(round(prev[1] + (py - prev[1]) * t)))
            canvas.dot(px, py)
            prev = (px, py)
    if marks and marks[0]:
        for x, y in zip(*marks):
            if y is not None and math.isfinite(y):
                canvas.mark(*to_px(x, y))
    rows = canvas.rows()
    labels = {0: y_hi, plot_h - 1: y_lo}
    if plot_h >= 5:
        labels[(plot_h - 1) // 2] = (y_hi + y_lo) / 2
    axis = "┤" if unicode else "|"
    bar = "│" if unicode else "|"
    for i, row in enumerate(rows):
        if i in labels:
            out.append(fmt_num(labels[i], label_w - 1) + " " + axis + row)
        else:
            out.append(" " * label_w + bar + row)
    corner, dash = ("└", "─") if unicode else ("+", "-")
    out.append(" " * label_w + corner + dash * plot_w)
    left, right = f"{x_lo:.0f}", f"{x_hi:.0f}"
    xlab = " " * (label_w + 1) + left
    xlab += right.rjust(width - len(xlab))
    out.append(xlab)
    return [r[:width].ljust(width) for r in out[:height]]
