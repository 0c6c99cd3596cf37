"""Where the serving engine's time goes, wave by wave (ALPHA_ENGINE_PROFILE=1).

A wave runs from the step that finds work after an idle engine to the next idle; at its end one
line goes to stderr (or the `log` given):

    engine profile: wave 3.21 s, 118 steps, 3072 tokens (957 tok/s), mean batch 26.0 |
      between 4% prefill 21% forward 61% (products 40% attention 15% block other 2% head 4%)
      sample 6% emit 8%

The engine thread's wall time is cut into laps, each charged to the phase that just ended:
`between` (the loop's bookkeeping and lock waits between steps: admitting, dropping cancelled
sequences), `prefill` (prompt forwards), `forward` (the decode forward), `sample` (the C sampler)
and `emit` (token events to the handlers' queues). The forward is split further by the C counters
of the fused decode block (`csrc/decode.c` `decode_profile`: weight products, attention over the
KV cache, the block's other work); `head` is the rest of the forward (embedding, final norm, LM
head). On a backend without those counters the forward is one figure.

Off (the default), the engine does not make one: no cost.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time

PHASES = ("between", "prefill", "forward", "sample", "emit")
KERNEL_PARTS = ("products", "attention", "block other")


def from_env(backend, name: str = ""):
    """A Profile when ALPHA_ENGINE_PROFILE is set to anything but "" or "0", else None."""
    if os.environ.get("ALPHA_ENGINE_PROFILE", "") in ("", "0"):
        return None
    return Profile(backend, name)


class Profile:
    def __init__(self, backend, name: str = "", log=None):
        self.name = name
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        kernels = getattr(backend, "k", None)
        self._counters = getattr(kernels, "decode_profile", None)  # the CPU backend's C counters
        self._raw = (ctypes.c_int64 * len(KERNEL_PARTS))()
        self._reset()

    def _reset(self) -> None:
        self.sums = dict.fromkeys(PHASES, 0.0)
        self.steps = self.tokens = self.batch_sum = 0
        self.started = None
        self._t = time.perf_counter()
        if self._counters is not None:
            self._counters(1, None)  # on, from zero

    def lap(self, phase: str) -> None:
        """Charge the time since the previous lap to `phase`."""
        now = time.perf_counter()
        if self.started is None:  # the wave's first lap: the engine was idle until now
            self.started = self._t = now
        self.sums[phase] += now - self._t
        self._t = now

    def step(self, batch: int, tokens: int) -> None:
        self.steps += 1
        self.batch_sum += batch
        self.tokens += tokens

    def idle(self) -> None:
        """The engine found nothing to do: log the wave that ended, if any, and start anew."""
        if self.steps:
            self.log(self.line())
        self._reset()

    def line(self) -> str:
        wall = max(sum(self.sums.values()), 1e-9)
        pct = {k: 100 * v / wall for k, v in self.sums.items()}
        forward = f"forward {pct['forward']:.0f}%"
        if self._counters is not None:
            self._counters(1, self._raw)
            parts = [v * 1e-9 for v in self._raw]
            head = self.sums["forward"] - sum(parts)
            split = " ".join(f"{n} {100 * v / wall:.0f}%" for n, v in zip(KERNEL_PARTS, parts))
            forward += f" ({split} head {100 * head / wall:.0f}%)"
        mean = self.batch_sum / self.steps
        return (f"engine profile{' ' + self.name if self.name else ''}: wave {wall:.2f} s, "
                f"{self.steps} steps, {self.tokens} tokens ({self.tokens / wall:.0f} tok/s), "
                f"mean batch {mean:.1f} | between {pct['between']:.0f}% "
                f"prefill {pct['prefill']:.0f}% {forward} sample {pct['sample']:.0f}% "
                f"emit {pct['emit']:.0f}%")
