"""Which optimizer steps are applied: the NaN/Inf skip and the gradient-spike skip, counted.

A step is skipped (its data still consumed, the step still counted, no update) when
  - its loss or a gradient is NaN/Inf ("nan"), or
  - `spike_threshold` > 0 and its gradient norm — the global L2 norm of the averaged gradient
    before clipping, the `grad_norm` of the metrics line — exceeds it ("spike").
Both kinds add to `bad_in_a_row`; `max_bad_steps` skips in a row stop the run (a threshold set
below the run's ordinary norms would otherwise skip every step silently). `nan_skips` and
`spike_skips` count every skip since the run began (they are saved in checkpoints, so a resumed
run continues the count) and appear in every metrics line.
"""

from __future__ import annotations

import math


class StepGuard:
    def __init__(self, spike_threshold: float = 0.0):
        self.spike_threshold = spike_threshold  # 0: spikes are never skipped
        self.nan_skips = 0
        self.spike_skips = 0
        self.bad_in_a_row = 0
        self._spikes_in_a_row = 0

    def verdict(self, loss: float, grads_finite: bool, norm: float | None) -> str | None:
        """None: apply the step; "nan" or "spike": skip it (and count it)."""
        if not (math.isfinite(loss) and grads_finite and norm is not None
                and math.isfinite(norm)):
            return self.count("nan")
        if self.spike_threshold > 0 and norm > self.spike_threshold:
            return self.count("spike")
        return self.count(None)

    def count(self, verdict: str | None) -> str | None:
        """Count a verdict reached elsewhere (a helios step decides on the GPU, by the same
        rules: alpha/helios/train_step.py) and return it."""
        if verdict is None:
            self.bad_in_a_row = self._spikes_in_a_row = 0
            return None
        self.bad_in_a_row += 1
        if verdict == "nan":
            self.nan_skips += 1
        else:
            self.spike_skips += 1
            self._spikes_in_a_row += 1
        return verdict

    def why_stopped(self) -> tuple[str, str]:
        """(what the skipped steps in a row had, what to do): for the `diverged` messages."""
        if not self._spikes_in_a_row:
            return "had NaN/Inf loss or gradients", "lower --lr or set --grad-clip"
        return (f"were skipped (NaN/Inf, or a gradient norm above --spike-threshold "
                f"{self.spike_threshold:g})", "raise --spike-threshold (0 = off) or lower --lr")

    def counts(self) -> dict:
        """The cumulative counters, for metrics lines and checkpoint headers."""
        return {"nan_skips": self.nan_skips, "spike_skips": self.spike_skips}

    def restore(self, counts: dict | None) -> None:
        """Continue a checkpoint's counts (a checkpoint from before the counters: zeros)."""
        counts = counts or {}
        self.nan_skips = int(counts.get("nan_skips", 0))
        self.spike_skips = int(counts.get("spike_skips", 0))
        self.bad_in_a_row = int(counts.get("bad_in_a_row", 0))
