"""The inference engine: the GPT's eval forward with a KV cache, no tape, and token sampling.

It computes the same function as `GPT.forward` in eval mode (tests compare the logits for every
activation, bias and head variant), but position by position: `prefill` runs the prompt through
every layer and stores each layer's keys and values; `decode` runs one new token against the cache
(`backend.kv_attention`). All buffers are allocated once, at the longest length, and viewed at the
length of each call, so decoding a token allocates nothing on the device.

`generate` yields token ids as they are sampled (servers stream them); its return value (the
StopIteration value) says why it stopped: "stop" (a stop token, not yielded) or "length".

Context: the cache holds `max_len` (<= block_size) positions. When generation fills it, the engine
keeps the last half of the tokens and prefills them again (an amortised sliding window; nanoGPT
instead re-runs the last block_size tokens for every new token).

Not here: batched generation of different prompts (forward/prefill take a batch; generate takes
one prompt), beam search, repetition penalties.
"""

from __future__ import annotations

import heapq
import math
from typing import Iterator, Sequence

from alpha.core.rng import Rng

class InferenceEngine:
    def __init__(self, model, batch_size: int = 1, max_len: int | None = None):
        cfg = model.cfg
        be = model.backend
        self.model, self.cfg, self.backend = model, cfg, be
        self.B = batch_size
        self.max_len = min(max_len or cfg.block_size, cfg.block_size)
        C, dt = cfg.n_embd, model.dtype
        self.dtype = dt
        self.w = model.parameters()  # name -> Tensor view (shared with the model: no copy)
        self.head = self.w["wte"] if cfg.tie_embeddings else self.w["lm_head.weight"]  # (V, C)
        self.act = getattr(be, cfg.activation + "_forward")
        self.k_cache = [be.zeros((batch_size, self.max_len, C), dt) for _ in range(cfg.n_layer)]
        self.v_cache = [be.zeros((batch_size, self.max_len, C), dt) for _ in range(cfg.n_layer)]
        self.pos = 0  # positions already in the cache
        # flat scratch at the longest length; `_views(Tq)` shapes them for one call
        H = cfg.hidden_dim
        fc_out = 2 * H if cfg.activation == "swiglu" else H
        n = batch_size * self.max_len
        self._flat = {
            "x": be.empty((n * C,), dt), "h": be.empty((n * C,), dt),
            "mean": be.empty((n,), dt), "rstd": be.empty((n,), dt),
            "qkv": be.empty((n * 3 * C,), dt), "att": be.empty((n * C,), dt),
            "y": be.empty((n * C,), dt), "f": be.empty((n * fc_out,), dt),
            "g": be.empty((n * H,), dt),
        }
        self._widths = {"x": C, "h": C, "qkv": 3 * C, "att": C, "y": C, "f": fc_out, "g": H}
        self._last = (be.empty((batch_size, 1, C), dt), be.empty((batch_size, 1), dt),
                      be.empty((batch_size, 1), dt))  # ln_f of the last position, mean, rstd
        self._logits = be.empty((batch_size, cfg.vocab_size), dt)  # (B, V)
        self._logits_all = None  # (B, Tmax, V), made when asked for
        self._views_cache: dict[int, dict] = {}

    # ---- buffers -----------------------------------------------------------------------------
    def _views(self, Tq: int) -> dict:
        v = self._views_cache.get(Tq)
        if v is not None:
            return v
        B, C = self.B, self.cfg.n_embd
        n = B * Tq
        v = {}
        for name, width in self._widths.items():
            v[name] = self._flat[name].narrow(0, 0, n * width).view(B, Tq, width)
        v["mean"] = self._flat["mean"].narrow(0, 0, n).view(B, Tq)
        v["rstd"] = self._flat["rstd"].narrow(0, 0, n).view(B, Tq)
        qkv = v["qkv"]
        v["q"], v["k"], v["v"] = (qkv.narrow(2, 0, C), qkv.narrow(2, C, C), qkv.narrow(2, 2 * C, C))
        if len(self._views_cache) > 256:
            self._views_cache.clear()
        self._views_cache[Tq] = v
        return v

    def _linear(self, out, x, name: str) -> None:
        """out (B, T, N) = x (B, T, K) @ w[name.weight] (K, N) + w[name.bias]."""
        be = self.backend
        w = self.w[name + ".weight"]
        out2 = out.view(-1, w.shape[1])
        be.matmul(out2, x.view(-1, w.shape[0]), w)
        b = self.w.get(name + ".bias")
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
        C, eps = cfg.n_embd, cfg.layernorm_eps
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
        x = v["x"]  # (B, Tq, C) residual stream
        wpe = w["wpe"].narrow(0, start, Tq)  # (Tq, C)
        if isinstance(ids, int):
            if self.B != 1:
                raise ValueError(f"one token id given but the engine's batch is {self.B}")
            if not 0 <= ids < cfg.vocab_size:
                raise ValueError(f"token id {ids} is outside the vocabulary [0, {cfg.vocab_size})")
            be.binary(x.view(1, C), "add", w["wte"].narrow(0, ids, 1), wpe)
        else:
            if isinstance(ids, (list, tuple)):
                if len(ids) != self.B or any(len(r) != Tq for r in ids):
                    raise ValueError(f"ids must be {self.B} rows of equal length")
                ids = be.from_array([i for r in ids for i in r], (self.B, Tq), "i32")
            be.embedding_forward(x, ids, w["wte"])
            be.binary(x, "add", x, wpe)

        h, y, att = v["h"], v["y"], v["att"]
        for i in range(cfg.n_layer):
            p = f"h.{i}."
            be.layernorm_forward(h, v["mean"], v["rstd"], x, w[p + "ln_1.weight"],
                                 w.get(p + "ln_1.bias"), eps)
            self._linear(v["qkv"], h, p + "attn.c_attn")
            kc, vc = self.k_cache[i], self.v_cache[i]
            be.copy(kc.narrow(1, start, Tq), v["k"])
            be.copy(vc.narrow(1, start, Tq), v["v"])
            be.kv_attention(att, v["q"], kc, vc, cfg.n_head, start)
            self._linear(y, att, p + "attn.c_proj")
            be.binary(x, "add", x, y)
            be.layernorm_forward(h, v["mean"], v["rstd"], x, w[p + "ln_2.weight"],
                                 w.get(p + "ln_2.bias"), eps)
            self._linear(v["f"], h, p + "mlp.c_fc")
            self.act(v["g"], v["f"])
            self._linear(y, v["g"], p + "mlp.c_proj")
            be.binary(x, "add", x, y)
        self.pos = start + Tq

        if all_logits:
            be.layernorm_forward(h, v["mean"], v["rstd"], x, w["ln_f.weight"], w.get("ln_f.bias"),
                                 eps)
            if self._logits_all is None:
                n = self.B * self.max_len * cfg.vocab_size
                self._logits_all = be.empty((n,), self.dtype)
            logits = self._logits_all.narrow(0, 0, self.B * Tq * cfg.vocab_size)
            be.matmul(logits.view(-1, cfg.vocab_size), h.view(-1, C), self.head, trans_b=True)
            return logits.view(self.B, Tq, cfg.vocab_size)
        last, mean, rstd = self._last
        be.layernorm_forward(last, mean, rstd, x.narrow(1, Tq - 1, 1), w["ln_f.weight"],
                             w.get("ln_f.bias"), eps)
        be.matmul(self._logits, last.view(self.B, C), self.head, trans_b=True)
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
        for n in range(max_tokens):
            row = self.backend.to_array(logits)  # (V,) on the host
            u = stream.random() if temperature > 0 else 0.0
            tok = sample_token(row, temperature, top_k, top_p, u)
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
    mass reaches top_p (1.0 = all), renormalised; u picks by cumulative mass (float64 math)."""
    if temperature == 0:
        return logits.index(max(logits))
    V = len(logits)
    if 0 < top_k < V:
        cand = heapq.nlargest(top_k, range(V), key=logits.__getitem__)  # sorted, stable
    elif top_p < 1.0:
        cand = sorted(range(V), key=logits.__getitem__, reverse=True)  # stable: ties by id
    else:
        cand = range(V)
    m = max(logits[i] for i in cand)
    inv_t = 1.0 / temperature
    probs = [math.exp((logits[i] - m) * inv_t) for i in cand]
    total = math.fsum(probs)
    if top_p < 1.0:  # cand is sorted by probability here
        keep, acc, limit = 0, 0.0, top_p * total
        while keep < len(probs):
            acc += probs[keep]
            keep += 1
            if acc >= limit:
                break
        cand, probs = cand[:keep], probs[:keep]
        total = math.fsum(probs)
    r = u * total
    acc = 0.0
    for i, pr in zip(cand, probs):
        acc += pr
        if r < acc:
            return i
    return cand[len(probs) - 1]
