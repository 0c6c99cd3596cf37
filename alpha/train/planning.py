"""Planning guardrails: settings that are legal but probably not what was meant, found before
a new run trains. The trainer prints each as a warning (and an event); with `strict_planning`
they are errors instead (PlanningError: the CLI's exit 2, one line each).

What is checked (a new run's plan; a resume is not re-judged):
  - tokens per parameter: iters * batch_size * block_size * accum_steps over the parameter
    count below MIN_TOKENS_PER_PARAM (the model sees fewer tokens than it has weights: far from
    trained; Chinchilla's compute-optimal ratio is about 20);
  - passes over the training data above MAX_PASSES (memorising the corpus: val loss will rise);
  - warmup_iters >= iters (the learning rate never reaches its peak);
  - an eval, sample or checkpoint interval larger than iters (only the last step gets one);
  - eval_iters batches covering the validation tokens more than MAX_EVAL_PASSES times (each eval
    re-reads the same text: slower, no better estimate).
"""

from __future__ import annotations

from alpha.core.errors import ConfigError

MIN_TOKENS_PER_PARAM = 1.0
MAX_PASSES = 100.0
MAX_EVAL_PASSES = 10.0


class PlanningError(ConfigError):
    """One or more planning warnings under --strict-planning; str() has one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        # the CLI prints "error: <message>": every further line gets the same prefix
        super().__init__("\nerror: ".join(f"planning: {p}" for p in problems))


def check(tc, n_params: int, block_size: int, train_tokens: int, val_tokens: int) -> list[str]:
    """The planning warnings of a run (TrainConfig `tc`), one sentence each; [] when none."""
    out = []
    tokens = tc.iters * tc.batch_size * block_size * tc.accum_steps
    per_param = tokens / max(1, n_params)
    if per_param < MIN_TOKENS_PER_PARAM:
        out.append(f"{tokens:,} training tokens for {n_params:,} parameters is "
                   f"{per_param:.2g} tokens per parameter (below {MIN_TOKENS_PER_PARAM:g}: "
                   "the model will be far from trained; raise --iters or --batch)")
    passes = tokens / max(1, train_tokens)
    if passes > MAX_PASSES:
        out.append(f"{tc.iters} steps read {tokens:,} tokens, {passes:.0f} passes over the "
                   f"{train_tokens:,} training tokens (above {MAX_PASSES:g}: it will memorise "
                   "them; lower --iters or give more --data)")
    if tc.warmup_iters >= tc.iters:
        out.append(f"warmup_iters={tc.warmup_iters} >= iters={tc.iters}: the learning rate never "
                   "reaches its peak (lower --warmup)")
    for name, flag in (("eval_interval", "--eval-interval"),
                       ("sample_interval", "--sample-interval"),
                       ("checkpoint_interval", "--checkpoint-interval")):
        value = getattr(tc, name)
        if value > tc.iters:
            out.append(f"{name}={value} > iters={tc.iters}: only the last step gets one "
                       f"(lower {flag}, or 0 for none)")
    if tc.eval_interval:
        eval_tokens = tc.eval_iters * tc.batch_size * block_size
        eval_passes = eval_tokens / max(1, val_tokens)
        if eval_passes > MAX_EVAL_PASSES:
            out.append(f"eval_iters={tc.eval_iters} reads {eval_tokens:,} tokens per eval, "
                       f"{eval_passes:.0f} times the {val_tokens:,} validation tokens (lower "
                       "--eval-iters)")
    return out
