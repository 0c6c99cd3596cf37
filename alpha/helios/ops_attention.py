"""Training attention for mixed precision: causal attention as batched 16-bit matmuls around a
materialised score matrix.

With `with_matmul_dtype("bf16")` the products of the forward and backward run through
`ops_matmul` (tensor cores where the device has them) instead of the fused SIMT kernels of
`ops_nn`, batched over every (sequence, head): S = scale * Q K^T (B*H, T, T), P = causal
softmax(S) (and the log-sum-exp), out = P V; the backward recomputes P, then dV = P^T dO,
dP = dO V^T, dS = P * (dP - rowsum(P * dP)), dQ = scale * dS K, dK = scale * dS^T Q, added into
dqkv. Scores, P and dS are fp32 (the softmax and its backward stay fp32); the matmul inputs are
rounded to bf16 like every matmul in this mode, once per operand (heads are first copied to a
head-major layout, then packed). Memory: up to three (B*H, T, T) fp32 matrices at a time
(GPT-2 small at batch 16: 805 MB each). fp32 training keeps the fused kernels (these products
would run on the SIMT path there). A softcap c caps S in place (c * tanh(S / c)) before the
softmax; the backward keeps the cap's derivative 1 - tanh^2 as one more (B*H, T, T) matrix and
multiplies dS by it.
"""

from __future__ import annotations

import math

from alpha.helios.kernels import attention as katt
from alpha.helios.kernels import rows as krows
from alpha.helios.runtime import MAX_GROUPS


class AttentionOps:
    def _attention_forward(self, out, lse, qkv, n_head, softcap=0.0) -> None:
        if self.matmul_dtype == "f32":
            return super()._attention_forward(out, lse, qkv, n_head, softcap)
        B, T, C = out.shape
        if B * T == 0:
            return
        H, hs = n_head, C // n_head
        dt, src = self.matmul_dtype, self._attention_src(B, H, T, C)
        q, k, v = self._heads(qkv, B, T, H, hs, 3, src)
        S = self.rt.new((B * H, T, T))
        lo = lse if lse.is_contiguous else self.rt.new(lse.shape)
        self._mm(S, q, k, False, True, False, 1.0 / math.sqrt(hs), dt, src)
        if softcap:
            self._softcap(S, None, softcap)
        self._causal_softmax(S, lo, B * H, T)
        o = self.rt.new((B * H, T, hs))
        self._mm(o, self._packed_as(S, src), v, False, False, False, 1.0, dt, src)
        dst = out if out.is_contiguous else self.rt.new(out.shape)
        self.rt.copy(dst.view(B, T, H, hs), o.view(B, H, T, hs).permute(0, 2, 1, 3))
        if dst is not out:
            self.rt.copy(out, dst)
        if lo is not lse:
            self.rt.copy(lse, lo)

    def _attention_backward(self, dqkv, dout, qkv, out, lse, n_head, softcap=0.0) -> None:
        if self.matmul_dtype == "f32":
            return super()._attention_backward(dqkv, dout, qkv, out, lse, n_head, softcap)
        B, T, C = out.shape
        if B * T == 0:
            return
        H, hs = n_head, C // n_head
        dt, src, scale = self.matmul_dtype, self._attention_src(B, H, T, C), 1.0 / math.sqrt(hs)
        q, k, v = self._heads(qkv, B, T, H, hs, 3, src)
        (do,) = self._heads(dout, B, T, H, hs, 1, src)
        P = self.rt.new((B * H, T, T))
        self._mm(P, q, k, False, True, False, scale, dt, src)
        cap_grad = self.rt.new(P.shape) if softcap else None
        if softcap:
            self._softcap(P, cap_grad, softcap)
        self._causal_softmax(P, self.rt.new((B * H, T)), B * H, T)
        grads = [self.rt.new((B * H, T, hs)) for _ in range(3)]  # dq, dk, dv
        P16 = self._packed_as(P, src)
        self._mm(grads[2], P16, do, True, False, False, 1.0, dt, src)
        del P16
        dP = self.rt.new((B * H, T, T))
        self._mm(dP, do, v, False, True, False, 1.0, dt, src)
        dS = self.rt.new((B * H, T, T))
        z = dS.storage.alloc
        self.dev.fill_zero(z.block.buffer, z.offset, z.size)
        R = B * H * T
        self.rt.launch(("softmax_bwd", False), lambda: krows.softmax_backward(False),
                       [self.rt.addr(dS), self.rt.addr(dP), self.rt.addr(P), R, T],
                       (min(R, MAX_GROUPS), 1, 1))
        del P, dP
        if cap_grad is not None:  # back through the cap: dS *= 1 - tanh(S / c)^2
            self.rt.map("softcap_grad", [(dS, "inout"), (cap_grad, "in")], dS.shape,
                        lambda k, ins, s: [ins[0] * ins[1]])
            del cap_grad
        dS16 = self._packed_as(dS, src)
        self._mm(grads[0], dS16, k, False, False, False, scale, dt, src)
        self._mm(grads[1], dS16, q, True, False, False, scale, dt, src)
        g = dqkv if dqkv.is_contiguous else self.rt.contig(dqkv)
        parts = g.view(B, T, 3, H, hs).permute(2, 0, 3, 1, 4)  # (3, B, H, T, hs)
        for p in range(3):
            self._axpy(parts[p], grads[p].view(B, H, T, hs), 1.0)
        if g is not dqkv:
            self.rt.copy(dqkv, g)

    def _softcap(self, S, grad, softcap: float) -> None:
        """S = c * tanh(S / c) in place; with `grad`, also grad = 1 - tanh(S / c)^2."""
        inv = 1.0 / softcap

        def body(k, ins, s):
            th = katt.tanh_clamped(k, ins[0] * s[0])
            return [th * s[1]] if grad is None else [th * s[1], 1.0 - th * th]
        operands = [(S, "inout")] + ([] if grad is None else [(grad, "out")])
        self.rt.map("softcap" if grad is None else "softcap_and_grad", operands, S.shape, body,
                    [inv, float(softcap)], ["f32", "f32"])

    def _attention_src(self, B, H, T, C) -> str:
        """The matmuls' input type: 16-bit bits packed once per operand where tensor cores
        take them (every packed tensor has an even element count), else fp32 (the SIMT kernel
        rounds as it loads)."""
        dt = self.matmul_dtype
        even = (B * H * T * T) % 2 == 0 and (B * T * C) % 2 == 0
        return dt if dt in self._coop_types() and even else "f32"

    def _packed_as(self, t, src):
        """Contiguous t as the matmuls' inputs: itself for fp32, else a packed u16 copy."""
        if src == "f32":
            return t
        u = self.rt.new(t.shape, "u16")
        self.pack16(u.view(t.numel), t.view(t.numel), src)
        return u

    def _heads(self, t, B, T, H, hs, parts, src):
        """The `parts` column blocks of t (B, T, parts * H * hs) as head-major (B*H, T, hs)
        matmul inputs."""
        v = self.rt.contig(t).view(B, T, parts, H, hs).permute(2, 0, 3, 1, 4)
        return [self._packed_as(self.rt.contig(v[p]).view(B * H, T, hs), src)
                for p in range(parts)]

    def _causal_softmax(self, S, lse, R, T) -> None:
        """S (R, T, T) in place: causal softmax of each row; lse (R * T values) its log-sum-exp."""
        rows = R * T
        self.rt.launch(("causal_softmax",), krows.causal_softmax,
                       [self.rt.addr(S), self.rt.addr(S), self.rt.addr(lse), rows, T],
                       (min(rows, MAX_GROUPS), 1, 1))
