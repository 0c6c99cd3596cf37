"""The KV cache: every layer's keys and values for S sequences ("slots") of up to max_len positions,
and the scratch memory of the GPT's cached (inference) forward.

    cache = KVCache(model, slots=32)           # (S, max_len, 2C) per layer: rows [k | v]
    logits = model.forward(ids, cache=cache, slots=[3, 7], last_only=True)   # (2, V)

`lengths[s]` is how many positions slot s holds; a forward with cache appends its T new positions
to each row's slot, so sequences of different lengths share one batched forward. `reset(s)` frees
a slot for a new sequence (its rows are simply overwritten later).

`kv_dtype="f16"` stores K and V as IEEE half floats (llama.cpp's default `--cache-type-k f16`):
half the bytes that a decode step's attention reads, on a backend that lists "f16" in its
`kv_dtypes` (the CPU). The layers are then u16 tensors of half bits that only the backend's
decode_step / prefill_step / block_decode read and write (rounded to nearest even going in,
widened exactly coming out, the arithmetic f32; the CPU lays each slot out its own way, head by
head: csrc/decode.c), so the model's forward takes the whole-step path and refuses the op-by-op
one (`GPT._forward_cached`). f32 (KVCache's default) keeps serving bit-equal to training; `serve`
takes f16 where it can (`serving_kv_dtype`).

`head_t` is the LM head transposed, (C, V) (rows padded on CPU), copied when the cache is made: the cached forward's
logits are x @ head_t, whose rows are contiguous along V, the fast form of `matmul_rows` (~2x the
(V, C) dot-product form at batch 32). So a cache belongs to the weights it was made with: make a
new one after the parameters change (the engines make theirs when they are made).

`InferenceTape` is the tape of the cached forward: it never records, and its buffers are views of
one flat buffer per request index, grown to the largest size seen, so a server whose batch size
changes every step holds one set of scratch buffers, not one per shape.
"""

from __future__ import annotations

import math

from alpha.autograd.tape import Tape
from alpha.core.errors import ConfigError

KV_DTYPES = ("f32", "f16")  # `serve --kv-dtype` (and "auto": `serving_kv_dtype`)


def serving_kv_dtype(model) -> str:
    """`serve`'s default KV cache type for a model: f16 where its backend has it and the
    backend's whole-step ops (`step_options`) take every option the model needs (the only ones
    that read a 16-bit cache: the CPU's decline rmsnorm and qk_norm), else f32. llama.cpp's
    default is f16 too; on config B (bench/serve_load.py) it serves 32 streams ~10% faster."""
    be = model.backend
    needs = set(model._step_options())
    if "f16" in be.kv_dtypes and needs <= getattr(be, "step_options", frozenset()):
        return "f16"
    return "f32"


class KVCache:
    def __init__(self, model, slots: int = 1, max_len: int | None = None,
                 kv_dtype: str = "f32"):
        cfg = model.cfg
        self.cfg = cfg
        self.backend = model.backend
        if kv_dtype not in KV_DTYPES:
            raise ConfigError(f"KV cache dtype {kv_dtype!r} is not one of {', '.join(KV_DTYPES)}")
        if kv_dtype not in model.backend.kv_dtypes:
            raise ConfigError(f"the {model.backend.name} backend has no {kv_dtype} KV cache "
                              f"(it has {', '.join(model.backend.kv_dtypes)})")
        self.kv_dtype = kv_dtype
        self.slots = slots
        self.max_len = min(max_len or cfg.block_size, cfg.block_size)
        C = cfg.n_embd
        # (S, Tmax, 2C) per layer: a position's k row, then its v row (u16 half bits with f16)
        storage = "u16" if kv_dtype == "f16" else model.dtype
        self.layers = [model.backend.zeros((slots, self.max_len, 2 * C), storage)
                       for _ in range(cfg.n_layer)]
        self.k = [c.narrow(2, 0, C) for c in self.layers]  # (S, Tmax, C) strided views
        self.v = [c.narrow(2, C, C) for c in self.layers]
        self.lengths = [0] * slots
        head = model.vars["wte" if cfg.tie_embeddings else "lm_head.weight"].data  # (V, C)
        V = cfg.vocab_size
        # on CPU the rows are padded by 16 floats: with V a multiple of 1024 a row is a multiple
        # of 4 KB, so a panel's rows all fall in the same few cache sets and the product reads
        # it from L3 again and again (the padded head runs ~1.4x faster at batch 32)
        pad = 16 if model.backend.name == "cpu" else 0
        self.head_t = model.backend.empty((C, V + pad), model.dtype).narrow(1, 0, V)
        model.backend.copy(self.head_t, head.transpose(0, 1))

    def reset(self, slot: int | None = None) -> None:
        """Forget one slot (or all): its next forward starts at position 0."""
        if slot is None:
            self.lengths = [0] * self.slots
        else:
            self.lengths[slot] = 0

    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.layers) + self.head_t.nbytes


class InferenceTape(Tape):
    """A tape that never records; buffer k of a forward is a view of flat buffer k (see above)."""

    def __init__(self, backend):
        super().__init__(backend)
        self.recording = False
        self._flat: dict[tuple[int, str], object] = {}  # (k, dtype) -> flat buffer
        self._views: dict[tuple, object] = {}  # (k, shape, dtype) -> view of the flat buffer
        self._k = 0

    def reset(self) -> None:
        self._k = 0

    def buffer(self, shape: tuple, dtype: str = "f32"):
        k = self._k
        self._k = k + 1
        key = (k, shape, dtype)
        view = self._views.get(key)
        if view is not None:
            return view
        n = math.prod(shape)
        flat = self._flat.get((k, dtype))
        if flat is None or flat.numel < n:
            flat = self._flat[(k, dtype)] = self.backend.empty((max(n, 1),), dtype)
            self._views = {kk: v for kk, v in self._views.items() if kk[0] != k or kk[2] != dtype}
        view = flat.narrow(0, 0, n).view(shape)
        if len(self._views) > 4096:
            self._views.clear()
        self._views[key] = view
        return view

    def pooled_bytes(self) -> int:
        return sum(t.nbytes for t in self._flat.values())
