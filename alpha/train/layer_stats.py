"""Per-layer gradient norms, every `layer_stats_interval` steps, into the run's layer_stats.jsonl.

One row per due step, written before the optimizer update (the gradients it saw):

    {"step": 100, "grad_norm": {"embed": 0.41, "h.0": 0.22, ..., "head": 0.05},
     "param_norm": {"embed": 21.3, "h.0": 9.8, ..., "head": 1.2}, "ms": 3.1}

Groups: "embed" (wte, wpe: the tables, including the tied head's share of wte's gradient),
"h.<i>" (every parameter of block i), "head" (ln_f and an untied lm_head). Each value is the L2
norm over the group, of the averaged gradient (the same scale as the metrics line's `grad_norm`,
whose square is the sum of the groups' squares) and of the parameters. A non-finite norm is null.
`ms` is what the row cost (one sum-of-squares per parameter: on helios, one read-back each), which
is why it is every N steps and not every step. The rows live in their own file so readers of
metrics.jsonl (database sync, the live page, the TUI) see no new kind of row.
"""

from __future__ import annotations

import math
import time


def group_of(name: str) -> str:
    """The layer a parameter belongs to: "h.<i>", "embed" or "head"."""
    if name.startswith("h."):
        return "h." + name.split(".", 2)[1]
    if name in ("wte", "wpe"):
        return "embed"
    return "head"


def layer_norms(model, divide: float = 1.0) -> dict:
    """{"grad_norm": {group: norm}, "param_norm": {group: norm}, "ms": cost}; gradients divided
    by `divide` (the micro-batches times ranks summed into the buffer)."""
    t0 = time.perf_counter()
    be = model.backend
    grads: dict[str, float] = {}
    params: dict[str, float] = {}
    for name, _shape in model.table:
        group = group_of(name)
        var = model.vars[name]
        grads[group] = grads.get(group, 0.0) + be.sum_squares(var.grad)
        params[group] = params.get(group, 0.0) + be.sum_squares(var.data)
    order = sorted(grads, key=_layer_order)  # embed, h.0, h.1, ..., head
    return {
        "grad_norm": {g: _norm(grads[g], divide) for g in order},
        "param_norm": {g: _norm(params[g], 1.0) for g in order},
        "ms": (time.perf_counter() - t0) * 1000.0,
    }


def _layer_order(group: str) -> tuple[int, int]:
    if group == "embed":
        return (0, 0)
    if group.startswith("h."):
        return (1, int(group[2:]))
    return (2, 0)


def _norm(sum_sq: float, divide: float) -> float | None:
    return math.sqrt(sum_sq) / divide if math.isfinite(sum_sq) else None
