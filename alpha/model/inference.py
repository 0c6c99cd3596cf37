"""Batch-1 generation for `alpha sample` and the trainer's samples: the GPT's forward with a KV
cache (`GPT.forward(..., cache=...)`, the one model definition), and token sampling.

`prefill` runs the prompt through the model and fills the cache; `decode` runs one new token
against it. Tokens are drawn by the C sampler the server uses (`alpha.model.sampling`, where
`sample_token` defines what sampling does), so `alpha sample` and a served request with the same
seed and settings pick the same tokens.

`generate` yields token ids as they are sampled; its return value (the StopIteration value) says
why it stopped: "stop" (a stop token, not yielded) or "length".

Context: the cache holds `max_len` (<= block_size) positions. When generation fills it, the engine
keeps the last half of the tokens and prefills them again (an amortised sliding window; nanoGPT
instead re-runs the last block_size tokens for every new token).

Not here: serving many requests at once (alpha/model/engine.py batches them), beam search.
"""

from __future__ import annotations

from typing import Iterator, Sequence

from alpha.core.rng import Rng
from alpha.model.kvcache import KVCache
from alpha.model.sampling import BatchSampler, RowSpec


class InferenceEngine:
    def __init__(self, model, batch_size: int = 1, max_len: int | None = None):
        self.model, self.cfg, self.backend = model, model.cfg, model.backend
        self.B = batch_size
        self.cache = KVCache(model, batch_size, max_len)
        self.max_len = self.cache.max_len
        self.dtype = model.dtype
        self.sampler = BatchSampler(self.cfg.vocab_size)

    @property
    def pos(self) -> int:
        """Positions already in the cache."""
        return self.cache.lengths[0]

    @property
    def fused(self) -> bool:
        """Whether decode runs fused: the whole step as the backend's `decode_step`, or each
        block as its `block_decode` (False: op by op)."""
        return self.model.step_decode or self.model.fused_decode

    @fused.setter
    def fused(self, value: bool) -> None:
        self.model.fused_decode = self.model.step_decode = self.model.step_prefill = value

    def reset(self) -> None:
        """Forget the cache (a new sequence starts at position 0)."""
        self.cache.reset()

    def forward(self, ids, all_logits: bool = False):
        """Run tokens at positions pos..pos+Tq-1 through the model, extending the cache.

        ids: an i32 Tensor (B, Tq), a list of B lists of Tq ids, or one int (B must be 1).
        Returns logits of the last position (B, V), or of every position (B, Tq, V) with
        all_logits. The tensor is reused by the next call."""
        be, V = self.backend, self.cfg.vocab_size
        if isinstance(ids, int):
            if self.B != 1:
                raise ValueError(f"one token id given but the engine's batch is {self.B}")
            if not 0 <= ids < V:
                raise ValueError(f"token id {ids} is outside the vocabulary [0, {V})")
            ids = [[ids]]
        if isinstance(ids, (list, tuple)):
            Tq = len(ids[0]) if ids else 0
            if len(ids) != self.B or any(len(r) != Tq for r in ids):
                raise ValueError(f"ids must be {self.B} rows of equal length")
            if Tq < 1:
                raise ValueError("forward needs at least one token")
            ids = be.from_array([i for r in ids for i in r], (self.B, Tq), "i32")
        if self.pos + ids.shape[1] > self.max_len:
            raise ValueError(f"positions {self.pos}..{self.pos + ids.shape[1] - 1} exceed the "
                             f"cache length {self.max_len}")
        return self.model.forward(ids, cache=self.cache, last_only=not all_logits)

    def prefill(self, ids, all_logits: bool = False):
        """Start a new sequence with `ids` (see `forward`)."""
        self.reset()
        return self.forward(ids, all_logits)

    def decode(self, token: int):
        """One more token (batch 1): logits (1, V) of the next position."""
        return self.forward(token)

    # ---- generation ----------------------------------------------------------------------------
    def generate(self, prompt: Sequence[int], *, max_tokens: int = 200, temperature: float = 0.8,
                 top_k: int = 0, top_p: float = 1.0, stop_tokens: Sequence[int] = (),
                 seed: int | None = None, stream=None) -> Iterator[int]:
        """Yield up to max_tokens sampled ids continuing `prompt` (batch 1).

        Randomness: `stream` (e.g. a run's `rng.stream("sampling")`, advanced one word per token)
        or else a fresh `Rng(seed).stream("sampling")` (seed 0 when None). temperature 0 is greedy.
        Returns (as StopIteration.value) "stop" or "length"."""
        if self.B != 1:
            raise ValueError(f"generate runs batch 1; this engine has batch {self.B}")
        if not prompt:
            raise ValueError("generate needs a prompt of at least one token")
        if temperature < 0 or not 0 < top_p <= 1 or top_k < 0:
            raise ValueError(
                f"bad sampling settings: temperature={temperature}, top_k={top_k}, top_p={top_p}"
            )
        if stream is None:
            stream = Rng(0 if seed is None else seed).stream("sampling")
        stops = set(stop_tokens)
        ctx = list(prompt[-self.max_len:])
        logits = self.prefill([ctx])
        be = self.backend
        spec = [RowSpec(temperature, top_k, top_p, stream=stream)]
        for n in range(max_tokens):
            tok = self.sampler.sample(be.to_array(logits), spec)[0].id
            if tok in stops:
                return "stop"
            yield tok
            if n + 1 == max_tokens:
                break
            ctx.append(tok)
            if self.pos >= self.max_len:  # the cache is full: slide the window
                ctx = ctx[-max(1, self.max_len // 2):]
                logits = self.prefill([ctx])
            else:
                logits = self.decode(tok)
        return "length"

