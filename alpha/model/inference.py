"""The inference engine: the GPT's eval forward with a KV cache, no tape, and token sampling.

It computes the same function as `GPT.forward` in eval mode (tests compare the logits for every
activation, bias and head variant), but position by position: `prefill` runs the prompt through
every layer and stores each layer's q | k | v rows (the c_attn output is written straight into the
cache); `decode` runs one new token against the cache (`backend.kv_attention`). All buffers are
allocated once, at the longest length, and viewed at the length of each call, so decoding a token
allocates nothing on the device and costs ~13 backend calls per layer — or one, on a backend with
the fused `block_decode` (the CPU's: the same kernels in the same order, called from C, so the
same bits; at batch 1 the Python between ops cost as much as the block's arithmetic).

Plain temperature sampling takes the softmax on the backend; top-k / top-p run on the host
(`sample_token`, the definition of what sampling does).

`generate` yields token ids as they are sampled (servers stream them); its return value (the
StopIteration value) says why it stopped: "stop" (a stop token, not yielded) or "length".

Context: the cache holds `max_len` (<= block_size) positions. When generation fills it, the engine
keeps the last half of the tokens and prefills them again (an amortised sliding window; nanoGPT
instead re-runs the last block_size tokens for every new token).

Not here: batched generation of different prompts (forward/prefill take a batch; generate takes
one prompt), beam search, repetition penalties.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from typing import Iterator, Sequence

from alpha.core.rng import Rng


# a block's parameters in the order `block_decode` takes them (a CPU backend extra)
_BLOCK_PARAMS = ("ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
                 "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
                 "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias")


class InferenceEngine:
    def __init__(self, model, batch_size: int = 1, max_len: int | None = None):
        cfg = model.cfg
        be = model.backend
        self.model, self.cfg, self.backend = model, cfg, be
        self.B = batch_size
        self.max_len = min(max_len or cfg.block_size, cfg.block_size)
        C, dt = cfg.n_embd, model.dtype
        self.dtype = dt
        w = model.parameters()  # name -> Tensor view (shared with the model: no copy)
        self.w = w
        self.head = w["wte"] if cfg.tie_embeddings else w["lm_head.weight"]  # (V, C)
        self.act = getattr(be, cfg.activation + "_forward")
        # per layer: its weights, looked up once, and its cache
        self.layers = []
        for i in range(cfg.n_layer):
            p = f"h.{i}."
            cache = be.zeros((batch_size, self.max_len, 3 * C), dt)  # (B, Tmax, 3C): [q | k | v]
            self.layers.append({
                "ln_1": (w[p + "ln_1.weight"], w.get(p + "ln_1.bias")),
                "c_attn": (w[p + "attn.c_attn.weight"], w.get(p + "attn.c_attn.bias")),
                "attn_proj": (w[p + "attn.c_proj.weight"], w.get(p + "attn.c_proj.bias")),
                "ln_2": (w[p + "ln_2.weight"], w.get(p + "ln_2.bias")),
                "c_fc": (w[p + "mlp.c_fc.weight"], w.get(p + "mlp.c_fc.bias")),
                "mlp_proj": (w[p + "mlp.c_proj.weight"], w.get(p + "mlp.c_proj.bias")),
                "cache": cache,
                "k": cache.narrow(2, C, C),  # (B, Tmax, C) strided
                "v": cache.narrow(2, 2 * C, C),  # (B, Tmax, C) strided
                "rows": {},  # start -> (cache rows, q) views for one-token decode
                "cache2": cache.view(batch_size * self.max_len, 3 * C),  # (B*Tmax, 3C)
                "params": tuple(w.get(p + n) for n in _BLOCK_PARAMS),  # for block_decode
            })
        self.ln_f = (w["ln_f.weight"], w.get("ln_f.bias"))
        self.pos = 0  # positions already in the cache
        # one-token decode (batch 1) runs each block as one backend call when the backend has
        # the fused op (bit-identical to the op-by-op path below; tests compare the two)
        self.fused = batch_size == 1 and dt == "f32" and hasattr(be, "block_decode")
        # flat scratch at the longest length; `_views(Tq)` shapes them for one call
        H = cfg.hidden_dim
        fc_out = 2 * H if cfg.activation == "swiglu" else H
        n = batch_size * self.max_len
        self._widths = {"x": C, "h": C, "qkv": 3 * C, "att": C, "y": C, "f": fc_out, "g": H}
        self._flat = {name: be.empty((n * wd,), dt) for name, wd in self._widths.items()}
        self._flat["mean"] = be.empty((n,), dt)
        self._flat["rstd"] = be.empty((n,), dt)
        self._last = (be.empty((batch_size, 1, C), dt), be.empty((batch_size, 1), dt),
                      be.empty((batch_size, 1), dt))  # ln_f of the last position, mean, rstd
        self._last2 = self._last[0].view(batch_size, C)
        self._logits = be.empty((batch_size, cfg.vocab_size), dt)  # (B, V)
        self._logits_all = None  # (B, Tmax, V), made when asked for
        self._probs = None  # (scaled, softmax) (B, V) for plain temperature sampling, when needed
        self._views_cache: dict[int, dict] = {}

    # ---- buffers -----------------------------------------------------------------------------
    def _views(self, Tq: int) -> dict:
        """Scratch shaped for Tq positions: name -> (B, Tq, width), name + "2" -> (B*Tq, width)."""
        v = self._views_cache.get(Tq)
        if v is not None:
            return v
        B = self.B
        n = B * Tq
        v = {}
        for name, width in self._widths.items():
            v[name] = self._flat[name].narrow(0, 0, n * width).view(B, Tq, width)
            v[name + "2"] = v[name].view(n, width)
        v["mean"] = self._flat["mean"].narrow(0, 0, n).view(B, Tq)
        v["rstd"] = self._flat["rstd"].narrow(0, 0, n).view(B, Tq)
        v["wpe"] = {}  # start -> wpe rows start..start+Tq-1
        v["x_last"] = v["x"].narrow(1, Tq - 1, 1)  # (B, 1, C)
        if len(self._views_cache) > 256:
            self._views_cache.clear()
        self._views_cache[Tq] = v
        return v

    def _cache_rows(self, layer: dict, start: int, Tq: int):
        """(rows, q): the cache's positions start..start+Tq-1 (B, Tq, 3C) and their queries."""
        if Tq == 1:
            hit = layer["rows"].get(start)
            if hit is not None:
                return hit
        rows = layer["cache"].narrow(1, start, Tq)
        hit = (rows, rows.narrow(2, 0, self.cfg.n_embd))
        if Tq == 1:
            layer["rows"][start] = hit
        return hit

    def _linear(self, out2, x2, wb) -> None:
        """out2 (N, n_out) = x2 (N, n_in) @ w (n_in, n_out) + b."""
        be = self.backend
        w, b = wb
        be.matmul(out2, x2, w)
        if b is not None:
            be.binary(out2, "add", out2, b)

    # ---- the forward ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the cache (a new sequence starts at position 0)."""
        self.pos = 0

    def forward(self, ids, all_logits: bool = False):
        """Run tokens at positions pos..pos+Tq-1 through the model, extending the cache.

        ids: an i32 Tensor (B, Tq), a list of B lists of Tq ids, or one int (B must be 1).
        Returns logits of the last position (B, V), or of every position (B, Tq, V) with
        all_logits. The tensor is reused by the next call."""
        cfg, be, w = self.cfg, self.backend, self.w
        C, eps, B = cfg.n_embd, cfg.layernorm_eps, self.B
        start = self.pos
        if isinstance(ids, int):
            Tq = 1
        elif isinstance(ids, (list, tuple)):
            Tq = len(ids[0])
        else:
            Tq = ids.shape[1]
        if Tq < 1:
            raise ValueError("forward needs at least one token")
        if start + Tq > self.max_len:
            raise ValueError(
                f"positions {start}..{start + Tq - 1} exceed the cache length {self.max_len}"
            )
        v = self._views(Tq)
        x, x2, h, h2, mean, rstd = v["x"], v["x2"], v["h"], v["h2"], v["mean"], v["rstd"]
        wpe = v["wpe"].get(start)
        if wpe is None:
            wpe = v["wpe"][start] = w["wpe"].narrow(0, start, Tq)  # (Tq, C)
        # x = wte[ids] + wpe[start:start+Tq]  (B, Tq, C)
        if isinstance(ids, int):
            if B != 1:
                raise ValueError(f"one token id given but the engine's batch is {B}")
            if not 0 <= ids < cfg.vocab_size:
                raise ValueError(f"token id {ids} is outside the vocabulary [0, {cfg.vocab_size})")
            be.binary(x2, "add", w["wte"].narrow(0, ids, 1), wpe)
        else:
            if isinstance(ids, (list, tuple)):
                if len(ids) != B or any(len(r) != Tq for r in ids):
                    raise ValueError(f"ids must be {B} rows of equal length")
                ids = be.from_array([i for r in ids for i in r], (B, Tq), "i32")
            be.embedding_forward(x, ids, w["wte"])
            be.binary(x, "add", x, wpe)

        fused = self.fused and Tq == 1
        for L in self.layers:
            if fused:  # the whole block in one call
                be.block_decode(x2, L["cache2"], start, L["params"], cfg.n_head, cfg.activation,
                                eps)
                continue
            # attention: the new positions' q, k, v go straight into the cache
            be.layernorm_forward(h, mean, rstd, x, L["ln_1"][0], L["ln_1"][1], eps)
            rows, q = self._cache_rows(L, start, Tq)  # (B, Tq, 3C), (B, Tq, C)
            if rows.is_contiguous:  # batch 1 (or a full cache): write in place
                self._linear(rows.view(B * Tq, 3 * C), h2, L["c_attn"])
            else:
                self._linear(v["qkv2"], h2, L["c_attn"])
                be.copy(rows, v["qkv"])
            be.kv_attention(v["att"], q, L["k"], L["v"], cfg.n_head, start)  # (B, Tq, C)
            self._linear(v["y2"], v["att2"], L["attn_proj"])
            be.binary(x, "add", x, v["y"])
            # MLP
            be.layernorm_forward(h, mean, rstd, x, L["ln_2"][0], L["ln_2"][1], eps)
            self._linear(v["f2"], h2, L["c_fc"])  # (B*Tq, H or 2H)
            self.act(v["g"], v["f"])  # (B, Tq, H)
            self._linear(v["y2"], v["g2"], L["mlp_proj"])
            be.binary(x, "add", x, v["y"])
        self.pos = start + Tq

        if all_logits:
            be.layernorm_forward(h, mean, rstd, x, self.ln_f[0], self.ln_f[1], eps)
            if self._logits_all is None:
                self._logits_all = be.empty((B * self.max_len * cfg.vocab_size,), self.dtype)
            logits = self._logits_all.narrow(0, 0, B * Tq * cfg.vocab_size)
            be.matmul(logits.view(B * Tq, cfg.vocab_size), h2, self.head, trans_b=True)
            return logits.view(B, Tq, cfg.vocab_size)
        last, mean1, rstd1 = self._last
        be.layernorm_forward(last, mean1, rstd1, v["x_last"], self.ln_f[0], self.ln_f[1], eps)
        be.matmul(self._logits, self._last2, self.head, trans_b=True)  # (B, V)
        return self._logits

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
        plain = temperature > 0 and top_k == 0 and top_p >= 1.0  # softmax on the device
        if plain and self._probs is None:
            self._probs = (be.empty(self._logits.shape, self.dtype),
                           be.empty(self._logits.shape, self.dtype))  # (1, V) scaled, softmax
        for n in range(max_tokens):
            if plain:
                scaled, probs = self._probs
                be.binary_scalar(scaled, "mul", logits, 1.0 / temperature)
                be.softmax_forward(probs, scaled)
                tok = sample_from_probs(be.to_array(probs), stream.random())
            else:
                u = stream.random() if temperature > 0 else 0.0
                tok = sample_token(be.to_array(logits), temperature, top_k, top_p, u)
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


def sample_token(logits: Sequence[float], temperature: float, top_k: int = 0, top_p: float = 1.0,
                 u: float = 0.0) -> int:
    """One token from a row of logits, given a uniform u in [0, 1).

    temperature 0: the argmax (the lowest id among ties). Otherwise softmax(logits / temperature)
    restricted to the top_k most likely (0 = all), then to the smallest most-likely prefix whose
    mass reaches top_p (1.0 = all), renormalised; u picks the first candidate whose cumulative
    mass exceeds u * total (float64 math; candidates in id order, or by probability when top_k or
    top_p filter them)."""
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
    cum = list(itertools.accumulate([math.exp((x - m) * inv_t) for x in vals]))  # unnormalised
    if top_p < 1.0:  # cand is sorted by probability here
        cum = cum[:bisect.bisect_left(cum, top_p * cum[-1]) + 1]
    j = min(bisect.bisect_right(cum, u * cum[-1]), len(cum) - 1)
    return j if cand is None else cand[j]


def sample_from_probs(probs: Sequence[float], u: float) -> int:
    """The first id whose cumulative probability exceeds u * total (what `sample_token` does with
    no top-k/top-p, given probabilities already computed, e.g. by the backend's softmax)."""
    cum = list(itertools.accumulate(probs))
    return min(bisect.bisect_right(cum, u * cum[-1]), len(cum) - 1)
