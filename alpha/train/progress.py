"""A one-line progress display for long loops (training, evaluation, benchmarks), stdlib only.

On a terminal the line redraws itself in place (`\\r`); elsewhere (a log file, CI) it prints a
plain line every `every` updates, so logs stay readable. `format_duration` and `format_rate` are
shared by anything that prints times and throughputs.

    bar = Progress(total=2000, stream=sys.stderr)
    bar.update(step, loss=2.31, tok_s=15300)
    bar.close()
"""

from __future__ import annotations

import sys
import time


def format_duration(seconds: float) -> str:
    """`75` -> `1m15s`; `4000` -> `1h06m`; under a minute: `42s` / `3.5s`."""
    if seconds != seconds or seconds < 0:  # NaN or negative: unknown
        return "?"
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_rate(per_second: float) -> str:
    """`15300` -> `15.3k`; `2.1e6` -> `2.10M`."""
    if per_second >= 1e6:
        return f"{per_second / 1e6:.2f}M"
    if per_second >= 1e4:
        return f"{per_second / 1e3:.1f}k"
    if per_second >= 1e3:
        return f"{per_second / 1e3:.2f}k"
    return f"{per_second:.0f}"


class Progress:
    """Shows `step N/total | <fields> | ETA`. The ETA comes from the mean time per step since the
    first update (the first step, often slow because of kernel builds, is excluded)."""

    def __init__(self, total: int, *, stream=None, every: int = 1, label: str = "step",
                 start: int = 0):
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.every = max(1, every)
        self.label = label
        self.start_step = start
        self._interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self._t_first = None  # time of the first update
        self._step_first = start
        self._width = 0
        self._last_line = ""

    def eta(self, step: int) -> float:
        if self._t_first is None or step <= self._step_first:
            return float("nan")
        per_step = (time.perf_counter() - self._t_first) / (step - self._step_first)
        return per_step * (self.total - step)

    def line(self, step: int, **fields) -> str:
        parts = [f"{self.label} {step}/{self.total}"]
        for key, value in fields.items():
            if value is None:
                continue
            parts.append(_field(key, value))
        parts.append(f"ETA {format_duration(self.eta(step))}")
        return " | ".join(parts)

    def update(self, step: int, keep: bool = False, **fields) -> str:
        """Record that `step` is done; redraw (terminal) or print (log) when due. `keep` leaves
        the line on screen (a milestone, like an evaluation) and prints it in logs whatever
        `every` says. Returns the line."""
        if self._t_first is None:
            self._t_first = time.perf_counter()
            self._step_first = step
        text = self.line(step, **fields)
        self._last_line = text
        due = keep or step % self.every == 0 or step == self.total
        if self._interactive:
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad + ("\n" if keep else ""))
            self._width = 0 if keep else len(text)
            self.stream.flush()
        elif due:
            self.stream.write(text + "\n")
            self.stream.flush()
        return text

    def message(self, text: str) -> None:
        """Print a line of its own without breaking the progress line."""
        if self._interactive and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._interactive and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0


def _field(key: str, value) -> str:
    if key == "tok_s":
        return f"{format_rate(value)} tok/s"
    if key == "ms":
        return f"{value:.0f} ms/it"
    if isinstance(value, float):
        return f"{key} {value:.4f}"
    return f"{key} {value}"
