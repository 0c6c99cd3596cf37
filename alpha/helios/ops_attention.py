"""Training attention for mixed precision: causal attention as batched 16-bit matmuls around a
materialised score matrix, one sequence of the batch at a time.

With `with_matmul_dtype("bf16")` the four products of the forward and backward run through
`ops_matmul` (tensor cores where the device has them) instead of the fused SIMT kernels of
`ops_nn`: per sequence S = scale * Q K^T (H, T, T), P = causal softmax(S) (and the log-sum-exp),
out = P V; the backward recomputes P, then dV += P^T dO, dP = dO V^T, dS = P * (dP - rowsum(P *
dP)), dQ += scale * dS K, dK += scale * dS^T Q. Scores, P and dS are fp32 (the softmax and its
backward stay fp32); the matmul inputs are rounded to bf16 like every matmul in this mode.
Memory: three (H, T, T) fp32 scratch matrices, reused for every sequence (GPT-2 small: 50 MB
each). fp32 training keeps the fused kernels (their products would run on the SIMT path here).
"""

from __future__ import annotations

import math

from alpha.helios.kernels import rows as krows
from alpha.helios.runtime import MAX_GROUPS


class AttentionOps:
    def _attention_forward(self, out, lse, qkv, n_head) -> None:
        if self.matmul_dtype == "f32":
            return super()._attention_forward(out, lse, qkv, n_head)
        B, T, C = out.shape
        if B * T == 0:
            return
        H, hs = n_head, C // n_head
        dt = self.matmul_dtype
        src = self._attention_src(H, T, C)
        q, k, v = self._heads(self._inputs16(qkv, src), B, T, H, hs, 3)
        o = out if out.is_contiguous else self.rt.new(out.shape)
        ov = self._heads(o, B, T, H, hs, 1)[0]
        lo = lse if lse.is_contiguous else self.rt.new(lse.shape)
        S = self.rt.new((H, T, T))
        for b in range(B):
            self._mm(S, q[b], k[b], False, True, False, 1.0 / math.sqrt(hs), dt, src)
            self._causal_softmax(S, S, lo[b], H, T)
            self._mm(ov[b], self._inputs16(S, src), v[b], False, False, False, 1.0, dt, src)
        if o is not out:
            self.rt.copy(out, o)
        if lo is not lse:
            self.rt.copy(lse, lo)

    def _attention_backward(self, dqkv, dout, qkv, out, lse, n_head) -> None:
        if self.matmul_dtype == "f32":
            return super()._attention_backward(dqkv, dout, qkv, out, lse, n_head)
        B, T, C = out.shape
        if B * T == 0:
            return
        H, hs = n_head, C // n_head
        dt, scale = self.matmul_dtype, 1.0 / math.sqrt(hs)
        src = self._attention_src(H, T, C)
        q, k, v = self._heads(self._inputs16(qkv, src), B, T, H, hs, 3)
        g = dqkv if dqkv.is_contiguous else self.rt.contig(dqkv)
        dq, dk, dv = self._heads(g, B, T, H, hs, 3)
        do = self._heads(self._inputs16(dout, src), B, T, H, hs, 1)[0]
        P, dP, dS = (self.rt.new((H, T, T)) for _ in range(3))
        lse_tmp = self.rt.new((H, T))
        zs = dS.storage.alloc
        for b in range(B):
            self._mm(P, q[b], k[b], False, True, False, scale, dt, src)
            self._causal_softmax(P, P, lse_tmp, H, T)
            self._mm(dv[b], self._inputs16(P, src), do[b], True, False, True, 1.0, dt, src)
            self._mm(dP, do[b], v[b], False, True, False, 1.0, dt, src)
            self.dev.fill_zero(zs.block.buffer, zs.offset, zs.size)
            self.rt.launch(("softmax_bwd", False), lambda: krows.softmax_backward(False),
                           [self.rt.addr(dS), self.rt.addr(dP), self.rt.addr(P), H * T, T],
                           (min(H * T, MAX_GROUPS), 1, 1))
            dS16 = self._inputs16(dS, src)
            self._mm(dq[b], dS16, k[b], False, False, True, scale, dt, src)
            self._mm(dk[b], dS16, q[b], True, False, True, scale, dt, src)
        if g is not dqkv:
            self.rt.copy(dqkv, g)

    def _attention_src(self, H, T, C) -> str:
        """The matmuls' input type: 16-bit bits packed once per operand where tensor cores
        take them (every packed tensor has an even element count), else fp32 (the SIMT kernel
        rounds as it loads)."""
        dt = self.matmul_dtype
        return dt if dt in self._coop_types() and (H * T * T) % 2 == 0 and C % 2 == 0 \
            else "f32"

    def _inputs16(self, t, src):
        """t (contiguous) as the matmuls' inputs: itself for fp32, else a packed u16 copy."""
        t = self.rt.contig(t)
        if src == "f32":
            return t
        u = self.rt.new(t.shape, "u16")
        self.pack16(u.view(t.numel), t.view(t.numel), src)
        return u

    @staticmethod
    def _heads(t, B, T, H, hs, parts):
        """Views (B, H, T, hs) of the `parts` column blocks of t (B, T, parts * H * hs)."""
        v = t.view(B, T, parts, H, hs).permute(2, 0, 3, 1, 4)  # (parts, B, H, T, hs)
        return [v[p] for p in range(parts)]

    def _causal_softmax(self, out, x, lse, H, T) -> None:
        R = H * T
        self.rt.launch(("causal_softmax",), krows.causal_softmax,
                       [self.rt.addr(out), self.rt.addr(x), self.rt.addr(lse), R, T],
                       (min(R, MAX_GROUPS), 1, 1))
