"""Prometheus metrics: counters, gauges and histograms, rendered in the text exposition format
(version 0.0.4) at `GET /metrics`.

Any module may add its own through the context: `ctx.metrics.counter("alpha_x_total", "help",
("label",))`. Everything is thread-safe; a gauge may be a function read at scrape time.
"""

from __future__ import annotations

import math
import threading

from alpha.server.http import text_response

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Latency buckets in seconds: from 1 ms (a decode step of a tiny model) to a minute.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0)


def _fmt(v: float) -> str:
    if v == math.inf:
        return "+Inf"
    if float(v).is_integer():
        return str(int(v))
    return repr(float(v))


def _labels(names, values, extra: str = "") -> str:
    parts = [f'{n}="{_escape(str(v))}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str, labels: tuple[str, ...] = ()):
        self.name, self.help, self.label_names = name, help, tuple(labels)
        self._lock = threading.Lock()

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def _render_values(self) -> list[str]:
        """Counters and gauges: one line per label set in `self._values` (an unlabelled metric
        shows 0 before its first update, so a scrape always finds it)."""
        with self._lock:
            items = sorted(self._values.items())
        if not items and not self.label_names:
            items = [((), 0.0)]
        return self.header() + [f"{self.name}{_labels(self.label_names, k)} {_fmt(v)}"
                                for k, v in items]


class Counter(_Metric):
    kind = "counter"

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self._values: dict[tuple, float] = {}

    def inc(self, amount: float = 1.0, *labels) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels) -> float:
        return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        return self._render_values()


class Gauge(_Metric):
    kind = "gauge"

    def __init__(self, name, help, labels=(), fn=None):
        super().__init__(name, help, labels)
        self._values: dict[tuple, float] = {}
        self._fn = fn  # read at scrape time when given (no labels)

    def set(self, value: float, *labels) -> None:
        with self._lock:
            self._values[labels] = float(value)

    def render(self) -> list[str]:
        if self._fn is not None:
            return self.header() + [f"{self.name} {_fmt(float(self._fn()))}"]
        return self._render_values()


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name, help, labels=(), buckets=LATENCY_BUCKETS):
        super().__init__(name, help, labels)
        self.buckets = tuple(sorted(buckets)) + (math.inf,)
        self._series: dict[tuple, list] = {}  # labels -> [counts per bucket..., sum, count]

    def observe(self, value: float, *labels) -> None:
        with self._lock:
            s = self._series.setdefault(labels, [0] * len(self.buckets) + [0.0, 0])
            for i, b in enumerate(self.buckets):
                if value <= b:
                    s[i] += 1
                    break
            s[-2] += value
            s[-1] += 1

    def count(self, *labels) -> int:
        s = self._series.get(labels)
        return s[-1] if s else 0

    def render(self) -> list[str]:
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
        if not items and not self.label_names:
            items = [((), [0] * len(self.buckets) + [0.0, 0])]
        out = self.header()
        for labels, s in items:
            running = 0
            for i, b in enumerate(self.buckets):
                running += s[i]
                le = _labels(self.label_names, labels, f'le="{_fmt(b)}"')
                out.append(f"{self.name}_bucket{le} {running}")
            lab = _labels(self.label_names, labels)
            out.append(f"{self.name}_sum{lab} {_fmt(s[-2])}")
            out.append(f"{self.name}_count{lab} {s[-1]}")
        return out


class Registry:
    """The server's metrics, in registration order. Asking twice for a name returns the same one."""

    def __init__(self):
        self._metrics: dict[str, _Metric] = {}
        self._lock = threading.Lock()

    def _get(self, cls, name, *args, **kwargs):
        with self._lock:
            m = self._metrics.get(name)
            if m is None:
                m = self._metrics[name] = cls(name, *args, **kwargs)
            return m

    def counter(self, name, help, labels=()) -> Counter:
        return self._get(Counter, name, help, labels)

    def gauge(self, name, help, labels=(), fn=None) -> Gauge:
        return self._get(Gauge, name, help, labels, fn)

    def histogram(self, name, help, labels=(), buckets=LATENCY_BUCKETS) -> Histogram:
        return self._get(Histogram, name, help, labels, buckets)

    def render(self) -> str:
        with self._lock:
            metrics = list(self._metrics.values())
        lines = []
        for m in metrics:
            lines.extend(m.render())
        return "\n".join(lines) + "\n"


def register(router, ctx) -> None:
    router.add("GET", "/metrics", lambda req: text_response(ctx.metrics.render(),
                                                            content_type=CONTENT_TYPE))
