"""The attention ops of the Backend protocol (`alpha.core.backend`), with their checking front:
fused causal self-attention for training, attention over a KV cache, rotary position embedding,
and the inference ops (the batch-invariant `matmul_rows`, the optional fused `block_decode`,
whole-step `decode_step` and `prefill_step`, greedy `argmax_rows`).
Each public method checks its arguments and calls the `_<op>` hook, like every other op.
"""

from __future__ import annotations

from typing import Sequence

from alpha.core import checks as ck

# What the annotations below call Tensor: alpha.tensor.Tensor, not imported (core sits under it).
Tensor = "alpha.tensor.Tensor"


class AttentionOps:
    """Mixed into `Backend`; `self.floats` is the backend's float dtypes, `self._find_outside`
    its range check of i32 tensors."""

    # ---- fused causal self-attention ----------------------------------------------------------
    def attention_forward(self, out: "Tensor", lse: "Tensor", qkv: "Tensor", n_head: int,
                          softcap: float = 0.0) -> None:
        """qkv (B, T, 3C) packed as [q | k | v], head h at columns h*hs:(h+1)*hs of each part;
        out (B, T, C); lse (B, n_head, T) f32: the log-sum-exp of each query's scaled scores,
        saved for the backward. Causal, scale 1/sqrt(hs). With softcap c > 0 every scaled score
        s becomes c * tanh(s / c) before the softmax (Gemma 2's attention logit cap)."""
        op = "attention_forward"
        ck.need_float(op, self.floats, ("out", out), ("lse", lse), ("qkv", qkv))
        B, T, C, hs = ck.need_qkv(op, qkv, n_head)
        ck.need_shape(op, "out", out, (B, T, C), ("qkv", qkv))
        ck.need_shape(op, "lse", lse, (B, n_head, T), f"qkv {qkv.shape} and n_head={n_head}")
        ck.need_softcap(op, softcap)
        if softcap:
            self._attention_forward(out, lse, qkv, n_head, softcap)
        else:  # the hooks' GPT-2 signature: a backend without softcap never sees the argument
            self._attention_forward(out, lse, qkv, n_head)

    def attention_backward(self, dqkv: "Tensor", dout: "Tensor", qkv: "Tensor", out: "Tensor",
                           lse: "Tensor", n_head: int, softcap: float = 0.0) -> None:
        """Adds into dqkv (B, T, 3C); `softcap` as given to the forward."""
        op = "attention_backward"
        ck.need_float(op, self.floats, ("dqkv", dqkv), ("dout", dout), ("qkv", qkv),
                      ("out", out), ("lse", lse))
        B, T, C, hs = ck.need_qkv(op, qkv, n_head)
        ck.need_shape(op, "dqkv", dqkv, qkv.shape, ("qkv", qkv))
        ck.need_shape(op, "dout", dout, (B, T, C), ("qkv", qkv))
        ck.need_shape(op, "out", out, (B, T, C), ("qkv", qkv))
        ck.need_shape(op, "lse", lse, (B, n_head, T), f"qkv {qkv.shape} and n_head={n_head}")
        ck.need_softcap(op, softcap)
        if softcap:
            self._attention_backward(dqkv, dout, qkv, out, lse, n_head, softcap)
        else:
            self._attention_backward(dqkv, dout, qkv, out, lse, n_head)

    def kv_attention(self, out: "Tensor", q: "Tensor", k: "Tensor", v: "Tensor", n_head: int,
                     start: int, softcap: float = 0.0) -> None:
        """Inference attention with a KV cache. q (B, Tq, C) holds positions start..start+Tq-1;
        k, v (B, Tmax, C) hold positions 0..start+Tq-1 (the rest is ignored); out (B, Tq, C).
        Causal: query at position p sees keys 0..p. q, k, v may be strided views. `softcap` as
        in `attention_forward`."""
        op = "kv_attention"
        ck.need_float(op, self.floats, ("out", out), ("q", q), ("k", k), ("v", v))
        ck.kv_shapes(op, out, q, k, v, n_head, start)
        ck.need_softcap(op, softcap)
        if softcap:
            self._kv_attention(out, q, k, v, n_head, start, softcap)
        else:
            self._kv_attention(out, q, k, v, n_head, start)

    # ---- rotary position embedding (rope) ------------------------------------------------------
    def rope_forward(self, out: "Tensor", qkv: "Tensor", positions: "Tensor", cos: "Tensor",
                     sin: "Tensor", n_head: int) -> None:
        """out (B, T, 3C) = qkv with q and k of every head rotated by its position; v copied.
        positions i32 (B, T), or (T,) shared by every row, each in [0, L); cos, sin (L, hs/2)
        the tables of cos(p * f_i), sin(p * f_i) (`alpha.model.rope.tables`). The pairs are
        GPT-NeoX's / LLaMA's half-split ones: (x_i, x_{i+hs/2}) for i < hs/2 turns by
        p * f_i: y_i = x_i cos - x_{i+hs/2} sin, y_{i+hs/2} = x_{i+hs/2} cos + x_i sin."""
        op = "rope_forward"
        ck.need_float(op, self.floats, ("out", out), ("qkv", qkv), ("cos", cos), ("sin", sin))
        self._rope_checks(op, qkv, positions, cos, sin, n_head)
        ck.need_shape(op, "out", out, qkv.shape, ("qkv", qkv))
        self._rope_forward(out, qkv, positions, cos, sin, n_head)

    def rope_backward(self, dqkv: "Tensor", dout: "Tensor", positions: "Tensor", cos: "Tensor",
                      sin: "Tensor", n_head: int) -> None:
        """dqkv += the transposed rotation of dout (q and k parts; v's gradient passes)."""
        op = "rope_backward"
        ck.need_float(op, self.floats, ("dqkv", dqkv), ("dout", dout), ("cos", cos),
                      ("sin", sin))
        self._rope_checks(op, dout, positions, cos, sin, n_head)
        ck.need_shape(op, "dqkv", dqkv, dout.shape, ("dout", dout))
        self._rope_backward(dqkv, dout, positions, cos, sin, n_head)

    def _rope_checks(self, op, qkv, positions, cos, sin, n_head) -> None:
        B, T, C, hs = ck.need_qkv(op, qkv, n_head)
        if hs % 2:
            raise ValueError(f"{op}: head size {hs} must be even")
        ck.need_dtype(op, "positions", positions, ("i32",))
        if positions.shape not in ((B, T), (T,)):
            raise ValueError(f"{op}: positions {positions.shape} must be ({B}, {T}) or ({T},)")
        if cos.ndim != 2 or cos.shape[1] != hs // 2:
            raise ValueError(f"{op}: cos {cos.shape} must be (L, {hs // 2})")
        ck.need_shape(op, "sin", sin, cos.shape, ("cos", cos))
        bad = self._find_outside(positions, cos.shape[0], False)
        if bad is not None:
            raise ValueError(f"{op}: position {bad[1]} (index {bad[0]}) is outside the "
                             f"tables' [0, {cos.shape[0]})")

    # ---- inference: batch invariance and the fused decode block -----------------------------
    def matmul_rows(self, out: "Tensor", a: "Tensor", b: "Tensor", *,
                    trans_b: bool = False) -> None:
        """out (M, N) = a (M, K) @ op(b), with every row computed exactly as it would be alone
        (M = 1): the same bits whatever M. Batched decode uses it, so a sequence's tokens never
        depend on what else is in the batch. A backend whose matmul already has that property
        may answer with its matmul."""
        op = "matmul_rows"
        ck.need_float(op, self.floats, ("out", out), ("a", a), ("b", b))
        if a.ndim != 2 or b.ndim != 2 or out.ndim != 2:
            raise ValueError(f"{op}: out {out.shape}, a {a.shape}, b {b.shape} must be 2-D")
        M, K = a.shape
        N, Kb = b.shape if trans_b else b.shape[::-1]
        if Kb != K or out.shape != (M, N):
            raise ValueError(f"{op}: shapes do not match: out {out.shape}, a {a.shape}, "
                             f"b {b.shape}{' (trans_b)' if trans_b else ''}")
        self._matmul_rows(out, a, b, trans_b)

    def block_decode(self, x: "Tensor", cache: "Tensor", slots: Sequence[int],
                     positions: Sequence[int], params: tuple, n_head: int, activation: str,
                     eps: float, **options) -> None:
        """Optional (raise NotImplementedError("need block_decode") to decline): one GPT block for
        one new token of each of M sequences, fused, with the exact bits of the model's op-by-op
        cached forward (alpha/model/gpt.py). x (M, C) the residual stream, updated in place;
        cache (S, Tmax, 2C) rows [k | v] of this layer: row positions[i] of slot slots[i] is
        written, rows 0..positions[i] attended; params: the block's 12 tensors ln_1.{w,b},
        attn.c_attn.{w,b}, attn.c_proj.{w,b}, ln_2.{w,b}, mlp.c_fc.{w,b}, mlp.c_proj.{w,b}
        (biases None when the model has none). Rows must not depend on each other. (The hook
        checks `params`: it can remember a tuple it has seen.) `options` are the model's
        non-GPT-2 settings, given only when set: `rope=(cos, sin)` (tables as `rope_forward`'s,
        q and k rotated before k is cached), `softcap=c`, `norm="rmsnorm"` (ln_1 and ln_2 as
        RMSNorm, their biases None), `qk_norm=True` (q and k heads RMS-normalised before rope;
        the weights are not passed); a hook that lacks one declines."""
        op = "block_decode"
        if x.ndim != 2 or cache.ndim != 3 or cache.shape[2] != 2 * x.shape[1]:
            raise ValueError(f"{op}: x {x.shape} must be (M, C) and cache {cache.shape} "
                             "(S, T, 2C)")
        M = x.shape[0]
        self._kv_cache_dtype(op, [cache])
        if x.dtype not in self.floats or not (x.is_contiguous and cache.is_contiguous):
            raise ValueError(f"{op}: x and cache must be contiguous, x f32")
        S, T = cache.shape[0], cache.shape[1]
        if len(slots) != M or len(positions) != M:
            raise ValueError(f"{op}: {len(slots)} slots and {len(positions)} positions for "
                             f"{M} rows")
        for s, p in zip(slots, positions):
            if not (0 <= s < S and 0 <= p < T):
                raise ValueError(f"{op}: slot {s} position {p} does not fit cache {cache.shape}")
        self._block_decode(x, cache, slots, positions, params, n_head, activation, eps,
                           **options)

    def _kv_cache_dtype(self, op: str, caches) -> None:
        """The caches of block_decode / decode_step / prefill_step: all f32, or all u16 holding
        IEEE half bits (the 16-bit KV cache) where the backend lists "f16" in `kv_dtypes`; a
        backend without it declines (NotImplementedError), as for an option it lacks."""
        dtype = caches[0].dtype
        if any(c.dtype != dtype for c in caches):
            raise ValueError(f"{op}: the caches must share one dtype")
        if dtype == "u16":
            if "f16" not in self.kv_dtypes:
                raise NotImplementedError(f"need {op} with an f16 cache ({self.name} backend)")
        elif dtype not in self.floats:
            raise ValueError(f"{op}: cache dtype {dtype} must be f32 or u16 (f16 bits)")

    def argmax_rows(self, x: "Tensor") -> list[int]:
        """x (M, N) float -> each row's index of its largest value (the lowest among equal
        ones), on the host: greedy decoding. A backend may compute it where x lives (helios: on
        the GPU, or already in the decode step that wrote x); one that lacks `_argmax_rows`
        gets this default, which reads x back."""
        op = "argmax_rows"
        ck.need_float(op, self.floats, ("x", x))
        if x.ndim != 2 or x.shape[1] == 0:
            raise ValueError(f"{op}: x {x.shape} must be (M, N) with N > 0")
        try:
            return self._argmax_rows(x)
        except NotImplementedError:
            pass
        vals, N = self.to_array(x), x.shape[1]
        rows = (vals[i * N:(i + 1) * N] for i in range(x.shape[0]))
        return [row.index(max(row)) for row in rows]

    def decode_step(self, ids: "Tensor", caches: Sequence["Tensor"], slots: Sequence[int],
                    positions: Sequence[int], params: tuple, n_head: int, activation: str,
                    eps: float, **options) -> "Tensor":
        """Optional (raise NotImplementedError("need decode_step") to decline, before doing
        anything): the GPT's whole cached forward for one new token of each of M sequences,
        returning the last position's logits (M, V) f32 in a tensor the backend owns (read it
        before the next decode_step, which overwrites it). ids (M, 1) or (M,) i32 in [0, V);
        caches: per layer the (S, Tmax, 2C) [k | v] rows (written and attended as in
        `block_decode`); slots, positions as `block_decode`'s; params = (wte (V, C), wpe
        (L, C) or None with rope, blocks: per layer `block_decode`'s 12 tensors, ln_f weight,
        ln_f bias or None, head_t (C, V)). `options` as `block_decode`'s, plus
        `logit_softcap=c`. Rows must not depend on each other. helios replays one recorded
        command buffer (alpha/helios/replay.py), the CPU makes one C call (csrc/decode.c); a
        backend that declines gets the model's per-block path. The caches are f32, or u16 tensors
        of IEEE half bits (an "f16" KV cache, where `kv_dtypes` lists it): written rounded to
        nearest even, read widened, the arithmetic f32."""
        op = "decode_step"
        M = len(slots)
        if ids.dtype != "i32" or ids.numel != M or ids.shape not in ((M, 1), (M,)):
            raise ValueError(f"{op}: ids {ids.dtype} {ids.shape} must be i32 ({M}, 1)")
        self._check_step(op, ids, 1, caches, slots, positions, params)
        return self._decode_step(ids, caches, slots, positions, params, n_head, activation,
                                 eps, **options)

    def prefill_step(self, ids: "Tensor", caches: Sequence["Tensor"], slots: Sequence[int],
                     starts: Sequence[int], params: tuple, n_head: int, activation: str,
                     eps: float, **options) -> "Tensor":
        """Optional (raise NotImplementedError("need prefill_step") to decline, before doing
        anything): the GPT's whole cached forward for T new positions of each of B sequences
        (prompt prefill), returning the last position's logits (B, V) f32 in a tensor the backend
        owns, with the bits of the model's op-by-op path. ids (B, T) i32 in [0, V); sequence b
        continues cache slot slots[b] at position starts[b]; caches, params and `options` as
        `decode_step`'s."""
        op = "prefill_step"
        B = len(slots)
        if ids.dtype != "i32" or ids.ndim != 2 or ids.shape[0] != B:
            raise ValueError(f"{op}: ids {ids.dtype} {ids.shape} must be i32 ({B}, T)")
        T = ids.shape[1]
        self._check_step(op, ids, T, caches, slots, starts, params)
        return self._prefill_step(ids, caches, slots, starts, params, n_head, activation, eps,
                                  **options)

    def _check_step(self, op: str, ids, T: int, caches, slots, starts, params) -> None:
        """decode_step's and prefill_step's common checks: T new positions of each row, row b
        continuing cache slot slots[b] at position starts[b]."""
        if len(params) != 6 or len(params[2]) != len(caches) or not caches:
            raise ValueError(f"{op}: params must be (wte, wpe, blocks, ln_f weight, ln_f bias, "
                             f"head_t) with one block per cache ({len(caches)})")
        V = params[0].shape[0]
        bad = self._find_outside(ids, V, False)
        if bad is not None:
            raise ValueError(f"{op}: token id {bad[1]} (index {bad[0]}) is outside [0, {V})")
        cache = caches[0]
        if cache.ndim != 3 or any(c.shape != cache.shape for c in caches):
            raise ValueError(f"{op}: every cache must be (S, T, 2C) of one shape")
        self._kv_cache_dtype(op, caches)
        S, Tmax, M = cache.shape[0], cache.shape[1], len(slots)
        if len(starts) != M or len(set(slots)) != M:
            raise ValueError(f"{op}: {M} distinct slots and {len(starts)} positions")
        for s, p in zip(slots, starts):
            if not (0 <= s < S and 0 <= p and p + T <= Tmax):
                raise ValueError(f"{op}: slot {s} positions {p}..{p + T - 1} do not fit cache "
                                 f"{cache.shape}")
        wpe = params[1]
        if wpe is not None and max(starts, default=0) + T > wpe.shape[0]:
            raise ValueError(f"{op}: position {max(starts) + T - 1} is outside wpe {wpe.shape}")
