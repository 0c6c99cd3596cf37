"""Token sampling: what it computes (plain Python, float64) and the batched C sampler that serving
and `alpha sample` run (`csrc/sample.c`, bit-identical to these definitions).

    sampler = BatchSampler(vocab_size)
    picks = sampler.sample(host_logits, [RowSpec(temperature=0.8, stream=s), ...])
    picks[i].id, picks[i].logprob, picks[i].top

One row, in order (`sample_row` is the definition):
  1. penalties: logit[t] -= presence + frequency * count[t] for every token t generated so far;
  2. the token (`sample_token`): greedy at temperature 0, else softmax(logits / T) over the top_k
     most likely (0 = all) then over the smallest most-likely prefix reaching top_p, picked by a
     uniform u from the row's own stream (one word, drawn only when temperature > 0);
  3. logprobs when asked (`token_logprobs`): log softmax of the penalised logits (temperature 1),
     the token's and the k most likely.

Why C: a decode step samples every running sequence; in Python each row costs a pass over the
vocabulary (~0.2 ms for 4096 ids), which at 32 sequences is as long as the model's forward. The
C twin runs all rows at once, in parallel, with the GIL released.

Not here: beam search, min-p, logit bias, grammars.
"""

from __future__ import annotations

import bisect
import ctypes
import heapq
import itertools
import math
from array import array
from dataclasses import dataclass
from typing import Sequence

from alpha.core.rng import to_uniform, words


# ---- the definitions --------------------------------------------------------------------------
_EXP_TAYLOR = [1.0 / math.factorial(k) for k in range(13, -1, -1)]  # 1/13!, ..., 1/1!, 1/0!


def sample_exp(y: float) -> float:
    """exp(y) for y <= 0 (0 below -708), within 2 ulp of math.exp, in plain float64 operations
    that the C sampler repeats exactly and vectorises: y = n ln2 + r (Cody-Waite, fdlibm's split
    of ln2, n rounded by adding 1.5 * 2**52), exp(r) by Taylor to r**13, times 2**n."""
    if y < -708.0:
        return 0.0
    n = (y * 1.4426950408889634 + 6755399441055744.0) - 6755399441055744.0
    r = (y - n * 0.6931471803691238) - n * 1.9082149292705877e-10
    p = 0.0
    for c in _EXP_TAYLOR:
        p = p * r + c
    return math.ldexp(p, int(n))


def sample_token(logits: Sequence[float], temperature: float, top_k: int = 0, top_p: float = 1.0,
                 u: float = 0.0) -> int:
    """One token from a row of logits, given a uniform u in [0, 1).

    temperature 0: the argmax (the lowest id among ties). Otherwise softmax(logits / temperature)
    restricted to the top_k most likely (0 = all), then to the smallest most-likely prefix whose
    mass reaches top_p (1.0 = all), renormalised; u picks the first candidate whose cumulative
    mass exceeds u * total (float64 math, `sample_exp`; candidates in id order, or by
    probability when top_k or top_p filter them)."""
    if temperature == 0:
        return logits.index(max(logits))
    V = len(logits)
    if 0 < top_k < V:
        cand = heapq.nlargest(top_k, range(V), key=logits.__getitem__)  # sorted, stable
    elif top_p < 1.0:
        cand = sorted(range(V), key=logits.__getitem__, reverse=True)  # stable: ties by id
    else:
        cand = None  # every id, in id order
    vals = logits if cand is None else [logits[i] for i in cand]
    m = max(vals)
    inv_t = 1.0 / temperature
    cum = list(itertools.accumulate([sample_exp((x - m) * inv_t) for x in vals]))  # unnorm.
    if top_p < 1.0:  # cand is sorted by probability here
        cum = cum[:bisect.bisect_left(cum, top_p * cum[-1]) + 1]
    j = min(bisect.bisect_right(cum, u * cum[-1]), len(cum) - 1)
    return j if cand is None else cand[j]


def sample_from_probs(probs: Sequence[float], u: float) -> int:
    """The first id whose cumulative probability exceeds u * total (what `sample_token` does with
    no top-k/top-p, given probabilities already computed)."""
    cum = list(itertools.accumulate(probs))
    return min(bisect.bisect_right(cum, u * cum[-1]), len(cum) - 1)


def penalised(logits: Sequence[float], counts: dict, presence: float,
              frequency: float) -> list[float]:
    """The logits (as floats) minus presence + frequency * count for every generated token."""
    row = list(logits)
    if presence or frequency:
        for t, c in counts.items():
            row[t] -= presence + frequency * c
    return row


def token_logprobs(row: Sequence[float], token: int, k: int) -> tuple[float, list]:
    """(logprob of `token`, [(id, logprob)] of the k most likely, ties by id) under
    log softmax(row); the sum of exponentials runs in id order."""
    m = max(row)
    total = 0.0
    for x in row:  # a plain running sum (sum() compensates from Python 3.12 on)
        total += sample_exp(x - m)
    lse = m + math.log(total)
    best = heapq.nlargest(k, range(len(row)), key=row.__getitem__) if k > 0 else []
    return row[token] - lse, [(t, row[t] - lse) for t in best]


@dataclass
class RowSpec:
    """One row's settings: the sequence's sampling parameters, its stream and its counts."""
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: int | None = None  # None: none; k >= 0: the token's and the top k
    stream: object = None  # alpha.core.rng.Stream; advanced one word when temperature > 0
    counts: dict | None = None  # token id -> times generated (for the penalties)


@dataclass
class Pick:
    id: int
    logprob: float | None = None
    top: list[tuple[int, float]] | None = None  # [(id, logprob)] most likely first


def sample_row(logits: Sequence[float], spec: RowSpec) -> Pick:
    """The definition of one row's sample (advances spec.stream like the C sampler)."""
    row = penalised(logits, spec.counts or {}, spec.presence_penalty, spec.frequency_penalty)
    u = 0.0
    if spec.temperature > 0:
        u = to_uniform(words(spec.stream.key, spec.stream.take(1), 1)[0])
    pick = Pick(sample_token(row, spec.temperature, spec.top_k, spec.top_p, u))
    if spec.logprobs is not None:
        pick.logprob, pick.top = token_logprobs(row, pick.id, spec.logprobs)
    return pick


# ---- the C sampler ----------------------------------------------------------------------------
_P = ctypes.c_void_p
_I64 = ctypes.c_int64
_fn = None


def _kernel():
    global _fn
    if _fn is None:
        from alpha.tensor.build import lib

        fn = lib().sample_rows
        fn.restype = ctypes.c_int
        fn.argtypes = ([_P] * 5 + [ctypes.c_int, _I64, _I64] + [_P] * 9 + [_I64])
        _fn = fn
    return _fn


def _addr(a: array) -> int:
    return a.buffer_info()[0]


class BatchSampler:
    """Samples rows of host logits (M, V) with `csrc/sample.c`."""

    def __init__(self, vocab_size: int):
        self.V = vocab_size

    def sample(self, logits, specs: Sequence[RowSpec]) -> list[Pick]:
        """logits: an array of len(specs) * V floats, typecode "f" or "d" (what a backend's
        `to_array` gives for f32 and f64). One Pick per spec, in order."""
        M, V = len(specs), self.V
        if M == 0:
            return []
        if not isinstance(logits, array) or logits.typecode not in "fd":
            logits = array("f", logits)
        if len(logits) < M * V:
            raise ValueError(f"sample: {len(logits)} logits for {M} rows of {V}")
        temperature = array("d", (s.temperature for s in specs))
        top_k = array("q", (s.top_k for s in specs))
        top_p = array("d", (s.top_p for s in specs))
        n_top = array("q", (-1 if s.logprobs is None else s.logprobs for s in specs))
        max_top = max(max(n_top), 1)
        keys, positions = array("I"), array("Q")
        pen_start, pen_ids, pen_val = array("q", [0]), array("i"), array("d")
        for s in specs:
            if s.temperature > 0:
                keys.extend(s.stream.key)
                positions.append(s.stream.take(1))
            else:
                keys.extend((0, 0))
                positions.append(0)
            if s.counts and (s.presence_penalty or s.frequency_penalty):
                for t, c in s.counts.items():
                    pen_ids.append(t)
                    pen_val.append(s.presence_penalty + s.frequency_penalty * c)
            pen_start.append(len(pen_ids))
        pen_ids.append(0)  # never empty: every address is valid
        pen_val.append(0.0)
        ids = array("i", bytes(4 * M))
        logprob = array("d", bytes(8 * M))
        top_ids = array("i", bytes(4 * M * max_top))
        top_lp = array("d", bytes(8 * M * max_top))
        if _kernel()(_addr(ids), _addr(logprob), _addr(top_ids), _addr(top_lp), _addr(logits),
                     logits.typecode == "d", M, V, _addr(temperature), _addr(top_k),
                     _addr(top_p), _addr(keys), _addr(positions), _addr(pen_start),
                     _addr(pen_ids), _addr(pen_val), _addr(n_top), max_top):
            raise MemoryError("sample: out of memory for the sampler's work buffers")
        picks = []
        for i, s in enumerate(specs):
            pick = Pick(ids[i])
            k = n_top[i]
            if k >= 0:
                pick.logprob = logprob[i]
                k = min(k, V)
                pick.top = [(top_ids[i * max_top + j], top_lp[i * max_top + j]) for j in range(k)]
            picks.append(pick)
        return picks
