"""What the dashboard knows about runs, whatever they came from (a run folder or the live stream).

`Run` is fed rows exactly as the run folder holds them (metrics.jsonl, events.jsonl, samples.jsonl
lines, train.log lines) and answers what the screens ask: progress, ETA, tokens/s, best val loss,
the curves, the checkpoints. `Runs` is the ordered set of runs with a version counter: every change
bumps it, so the screen redraws only when something changed.

Curves keep every step in `array('d')` (16 bytes a step) and are shrunk to the chart's width when
drawn (`Series.buckets`), so a long run costs memory linear in its steps but drawing costs only
the chart's width.
"""

from __future__ import annotations

import bisect
import collections
import math
import time
from array import array

MAX_EVENTS = 2000  # the newest events and samples kept per run
MAX_SAMPLES = 200
MAX_LOG_LINES = 5000

# event kind -> the run status it leaves (the trainer's lifecycle events; anything else: no change)
LIFECYCLE = {
    "start": "running", "resume": "running", "completed": "completed",
    "interrupted": "stopped", "stopped": "stopped", "diverged": "failed", "failed": "failed",
    "error": "failed", "crashed": "failed",
}
# the database's and the live stream's words for the same states
STATUS_WORDS = {"active": "running", "running": "running", "completed": "completed",
                "failed": "failed", "stopped": "stopped", "stale": "stale",
                "interrupted": "stopped"}


def _num(value) -> float | None:
    """A finite float, or None (metrics hold null for NaN/Inf, and a corrupt row holds anything).
    Called six times a metrics row: type checks, not isinstance (bool is an int)."""
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is int:
        return float(value)
    return None


class Series:
    """(step, value) points in step order. A point at a step we already passed (a resumed run
    that rewound) cuts the series back to that step first."""

    def __init__(self):
        self.steps = array("d")
        self.values = array("d")

    def __len__(self) -> int:
        return len(self.steps)

    def add(self, step: float, value: float) -> None:
        if self.steps and step <= self.steps[-1]:
            self.cut(step)
        self.steps.append(step)
        self.values.append(value)

    def cut(self, step: float) -> None:
        """Drop the points at `step` and after."""
        if self.steps and step <= self.steps[-1]:
            keep = bisect.bisect_left(self.steps, step)
            del self.steps[keep:]
            del self.values[keep:]

    def last(self) -> float | None:
        return self.values[-1] if self.values else None

    def clear(self) -> None:
        self.steps = array("d")
        self.values = array("d")

    def buckets(self, n: int) -> tuple[list[float], list[float]]:
        """At most `n` points: the mean step and mean value of equal runs of points."""
        count = len(self.steps)
        if count <= n or n <= 0:
            return list(self.steps), list(self.values)
        xs, ys = [], []
        for i in range(n):
            a, b = count * i // n, count * (i + 1) // n
            if b > a:
                xs.append(sum(self.steps[a:b]) / (b - a))
                ys.append(sum(self.values[a:b]) / (b - a))
        return xs, ys

    def tail_values(self, n: int) -> list[float]:
        return list(self.values[-n:]) if n > 0 else []


class Run:
    def __init__(self, run_id: str, path: str | None = None):
        self.run_id = run_id
        self.path = path  # the run folder, when it is on this machine
        self.config: dict = {}
        self.status = "unknown"
        self.summary: dict = {}  # the live stream's run object (remote mode)
        self.loss = Series()
        self.val_loss = Series()
        self.lr = Series()
        self.grad_norm = Series()
        self.last_row: dict = {}
        self.recent = collections.deque(maxlen=64)  # (step, elapsed_s) of the newest rows
        self.best_val: float | None = None
        self.events = collections.deque(maxlen=MAX_EVENTS)
        self.samples = collections.deque(maxlen=MAX_SAMPLES)
        self.log = collections.deque(maxlen=MAX_LOG_LINES)
        self.checkpoints: dict[int, dict] = {}  # step -> {"path", "size"}
        self.bad_lines = 0
        self.updated = 0.0  # wall time of the last row seen
        self.version = 0

    # ---- what the run folder's files say --------------------------------------------------
    def set_config(self, config: dict) -> None:
        if isinstance(config, dict):
            self.config = config
            self.version += 1

    def add_metric(self, row: dict) -> None:
        step = _num(row.get("step"))
        if step is None:
            self.bad_lines += 1
            return
        if self.loss and step <= self.loss.steps[-1]:
            # rewound (resumed from an earlier checkpoint): everything past `step` is gone
            for series in (self.loss, self.val_loss, self.lr, self.grad_norm):
                series.cut(step)
            self.recent.clear()
            self.best_val = min(self.val_loss.values) if self.val_loss else None
        for key, series in (("loss", self.loss), ("lr", self.lr), ("grad_norm", self.grad_norm)):
            value = _num(row.get(key))
            if value is not None:
                series.add(step, value)
        val = _num(row.get("val_loss"))
        if val is not None:
            self.val_loss.add(step, val)
            if self.best_val is None or val < self.best_val:
                self.best_val = val
        elapsed = _num(row.get("elapsed_s"))
        if elapsed is not None:
            self.recent.append((step, elapsed))
        self.last_row = row
        self.updated = time.time()
        self.version += 1

    def add_history(self, rows: list) -> None:
        """Metrics from before the live stream joined (the server's stored rows), put in front of
        what the stream brought; rows the stream already gave are skipped."""
        first = self.loss.steps[0] if self.loss else None
        older = [r for r in rows if isinstance(r, dict) and _num(r.get("step")) is not None
                 and (first is None or r["step"] < first)]
        if not older:
            return
        kept = [(s, s.steps, s.values) for s in (self.loss, self.val_loss, self.lr,
                                                  self.grad_norm)]
        recent, last_row, best = list(self.recent), self.last_row, self.best_val
        for s in (self.loss, self.val_loss, self.lr, self.grad_norm):
            s.clear()
        self.recent.clear()
        for row in sorted(older, key=lambda r: r["step"]):
            self.add_metric(row)
        for s, steps, values in kept:
            s.steps.extend(steps)
            s.values.extend(values)
        if last_row:
            self.recent.clear()
            self.recent.extend(recent)
            self.last_row = last_row
        if best is not None and (self.best_val is None or best < self.best_val):
            self.best_val = best
        self.version += 1

    def clear_metrics(self) -> None:
        for s in (self.loss, self.val_loss, self.lr, self.grad_norm):
            s.clear()
        self.recent.clear()
        self.last_row, self.best_val = {}, None
        self.version += 1

    def add_event(self, row: dict) -> None:
        self.events.append(row)
        kind = row.get("kind") or row.get("event") or row.get("type")
        if kind in LIFECYCLE:
            self.status = LIFECYCLE[kind]
        payload = row.get("payload") if isinstance(row.get("payload"), dict) else {}
        if kind == "checkpoint" and isinstance(payload.get("path"), str):
            step = _num(row.get("step"))
            if step is not None:
                self.checkpoints[int(step)] = {"path": payload["path"], "size": payload.get("size")}
            for gone in payload.get("removed") or []:
                for s, info in list(self.checkpoints.items()):
                    if info["path"] == gone:
                        del self.checkpoints[s]
        val = _num(payload.get("val_loss"))
        if val is not None and (self.best_val is None or val < self.best_val):
            self.best_val = val
        self.updated = time.time()
        self.version += 1

    def clear_events(self) -> None:
        self.events.clear()
        self.version += 1

    def add_sample(self, row: dict) -> None:
        self.samples.append(row)
        self.version += 1

    def clear_samples(self) -> None:
        self.samples.clear()
        self.version += 1

    def add_log(self, lines: list[str]) -> None:
        self.log.extend(lines)
        self.version += 1

    def clear_log(self) -> None:
        self.log.clear()
        self.version += 1

    def set_checkpoints(self, found: dict[int, dict]) -> None:
        if found != self.checkpoints:
            self.checkpoints = found
            self.version += 1

    def set_status(self, status: str) -> None:
        status = STATUS_WORDS.get(status, status)
        if status != self.status:
            self.status = status
            self.version += 1

    # ---- what the screens ask ---------------------------------------------------------------
    @property
    def domain(self) -> str:
        return str(self.config.get("domain") or self.summary.get("domain") or "")

    @property
    def iters(self) -> int | None:
        train = self.config.get("train") if isinstance(self.config.get("train"), dict) else {}
        value = _num(train.get("iters")) or _num(self.summary.get("iters"))
        return int(value) if value else None

    @property
    def step(self) -> int:
        if self.loss:
            return int(self.loss.steps[-1])
        return int(_num(self.summary.get("latest_step")) or 0)

    @property
    def last_loss(self) -> float | None:
        value = self.loss.last()
        return value if value is not None else _num(self.summary.get("last_loss"))

    @property
    def best_val_loss(self) -> float | None:
        return self.best_val if self.best_val is not None \
            else _num(self.summary.get("best_val_loss"))

    @property
    def tokens_per_sec(self) -> float | None:
        return _num(self.last_row.get("tokens_per_sec"))

    @property
    def param_count(self) -> int | None:
        info = self.config.get("info") if isinstance(self.config.get("info"), dict) else {}
        value = _num(info.get("param_count")) or _num(self.summary.get("param_count"))
        return int(value) if value else None

    def progress(self) -> float:
        iters = self.iters
        return min(1.0, self.step / iters) if iters else 0.0

    def seconds_per_step(self) -> float | None:
        """From the newest rows' elapsed_s (the trainer's own clock, so a slow reader does not
        make the run look slow)."""
        if len(self.recent) < 2:
            return None
        (s0, t0), (s1, t1) = self.recent[0], self.recent[-1]
        if s1 <= s0 or t1 < t0:
            return None
        return (t1 - t0) / (s1 - s0)

    def eta_seconds(self) -> float | None:
        iters, per_step = self.iters, self.seconds_per_step()
        if self.status != "running" or not iters or per_step is None:
            return None
        return max(0, iters - self.step) * per_step

    def model_section(self) -> dict:
        model = self.config.get("model")
        return model if isinstance(model, dict) else {}

    def sample_section(self) -> dict:
        sample = self.config.get("sample")
        return sample if isinstance(sample, dict) else {}


class Runs:
    """The runs on screen, newest first, and a version that changes whenever any of them does."""

    def __init__(self):
        self.by_id: dict[str, Run] = {}
        self._members = 0  # bumped when a run is added or removed

    def get(self, run_id: str) -> Run | None:
        return self.by_id.get(run_id)

    def add(self, run: Run) -> Run:
        self.by_id[run.run_id] = run
        self._members += 1
        return run

    def remove(self, run_id: str) -> None:
        if self.by_id.pop(run_id, None) is not None:
            self._members += 1

    def ordered(self, text: str = "") -> list[Run]:
        """Newest first (run ids start with their start time); `text` keeps the runs whose id,
        domain or status contains it."""
        runs = sorted(self.by_id.values(), key=lambda r: r.run_id, reverse=True)
        text = text.strip().lower()
        if text:
            runs = [r for r in runs if text in r.run_id.lower() or text in r.domain.lower()
                    or text in r.status.lower()]
        return runs

    @property
    def version(self) -> int:
        return self._members + sum(r.version for r in self.by_id.values())
