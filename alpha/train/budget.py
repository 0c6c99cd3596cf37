"""Will this model fit? An estimate of the memory a training run needs, made before anything is
allocated, so that a model too large for the machine is refused with the numbers (or warned
about when it will press on what is free) instead of swapping the machine to a halt or dying at
an allocation deep inside the first step.

The estimate, in float32 values:
    parameters, gradients, AdamW m and v     4 x P, and 3 x P host copies for checkpoints
    activations kept for backward            B*T*(n_layer*(10*C + 3*H) + 2*C) plus B*T*V*2 for
                                             the logits and their gradient; with activation
                                             checkpointing one block's (10*C + 3*H) plus each
                                             block's input and its gradient (2*C per block);
                                             rope adds its turned qkv (3*C) to a block's
and backward's temporaries are taken as large as the activations again (a bound, measured to
be within 2x of the peak RSS on the CPU backend). The host's free memory is MemAvailable from
/proc/meminfo.
"""

from __future__ import annotations

from dataclasses import dataclass

from alpha.core.errors import MemoryBudgetError

REFUSE_ABOVE = 1.0  # of the available memory: refuse
WARN_ABOVE = 0.6  # of the available memory: warn that it may swap or crowd the machine
GIB = 1 << 30


@dataclass
class Estimate:
    params: int  # parameter count
    weights_bytes: int  # parameters, gradients and both AdamW moments
    activation_bytes: int  # what the forward keeps for backward, and backward's temporaries

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.activation_bytes

    def describe(self, batch: int, block: int) -> str:
        return (f"about {_gib(self.total_bytes)}: {self.params:,} parameters with gradients "
                f"and AdamW state {_gib(self.weights_bytes)}, activations at batch {batch} x "
                f"block {block} {_gib(self.activation_bytes)}")


def estimate(cfg, batch_size: int, accum_steps: int = 1,
             checkpointing: bool = False) -> Estimate:
    """The memory a training step of `cfg` at `batch_size` needs (accumulation does not add:
    micro-batches run one after the other)."""
    from alpha.model.params import num_params

    P = num_params(cfg)
    B, T, C, V = batch_size, cfg.block_size, cfg.n_embd, cfg.vocab_size
    H = cfg.hidden_dim * (2 if cfg.activation == "swiglu" else 1)
    block = 10 * C + 3 * H + (3 * C if cfg.pos == "rope" else 0)  # rope: the turned qkv
    if checkpointing:  # alpha.autograd.checkpoint: one block's intermediates at a time
        kept = B * T * (cfg.n_layer * 2 * C + block + 2 * C) + 2 * B * T * V
    else:
        kept = B * T * (cfg.n_layer * block + 2 * C) + 2 * B * T * V
    # params, grads, m, v on the device, and the three host copies a checkpoint is written from
    return Estimate(params=P, weights_bytes=7 * 4 * P, activation_bytes=2 * 4 * kept)


def available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (None where there is no such file)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check(cfg, batch_size: int, accum_steps: int = 1, available: int | None = None,
          checkpointing: bool = False) -> str | None:
    """MemoryBudgetError when the run cannot fit in the memory available; a warning (str) when
    it takes more than WARN_ABOVE of it; None when it fits comfortably or nothing is known."""
    est = estimate(cfg, batch_size, accum_steps, checkpointing)
    free = available_bytes() if available is None else available
    if not free:
        return None
    what = est.describe(batch_size, cfg.block_size)
    if est.total_bytes > REFUSE_ABOVE * free:
        raise MemoryBudgetError(
            f"this model needs {what}, but {_gib(free)} of memory is available; make it smaller "
            "(--layers, --dim, --block) or lower --batch (with --accum to keep the batch size)")
    if est.total_bytes > WARN_ABOVE * free:
        return (f"this model needs {what}, {est.total_bytes / free:.0%} of the {_gib(free)} "
                "available: the machine may swap and slow to a crawl")
    return None


def _gib(n: int) -> str:
    return f"{n / GIB:.2f} GiB" if n >= GIB / 10 else f"{n / (1 << 20):.0f} MiB"
