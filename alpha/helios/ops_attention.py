"""Training attention for mixed precision: causal attention as batched 16-bit matmuls around a
materialised score matrix.

With `with_matmul_dtype("bf16")` the products of the forward and backward run through
`ops_matmul` (tensor cores where the device has them) instead of the fused SIMT kernels of
`ops_nn`, batched over every (sequence, head): S = scale * Q K^T (B*H, T, T), P = causal
softmax(S) (and the log-sum-exp), out = P V; the backward recomputes S and P = exp(S - lse)
(the forward's log-sum-exp), then dV = P^T dO, dP = dO V^T, dS = P * (dP - rowsum(P * dP)),
dQ = scale * dS K, dK = scale * dS^T Q, added into dqkv. S and dP are fp32 and the softmax
arithmetic is fp32; the row kernels (`kernels/attn_probs.py`) write P and dS straight in the
matmuls' 16-bit input type (no packing pass, no fp32 copies), and q, k, v and dO go to a
head-major 16-bit layout in one pass. The tensor-core products skip what causality masks
(`coopmat.CAUSAL`: tiles above the diagonal, K ranges where P or dS are zero), about half the
work. Memory: two (B*H, T, T) fp32 matrices and one 16-bit one at a time (GPT-2 small at
batch 16: 805 MB each fp32). fp32 training keeps the fused SIMT kernels (`ops_nn`). A
softcap c caps S in place (c * tanh(S / c)) before the softmax; the backward keeps the cap's
derivative 1 - tanh^2 as one more (B*H, T, T) fp32 matrix, which the gradient kernel
multiplies into dS.
"""

from __future__ import annotations

import math

from alpha.helios.kernels import attention as katt
from alpha.helios.kernels import attn_probs as kap
from alpha.helios.kernels import flash as kfl
from alpha.helios.runtime import MAX_GROUPS, groups


class AttentionOps:
    # the fused flash kernels (kernels/flash.py) where they apply: bf16 on tensor cores, head
    # dim 64, no softcap. False: always the materialised path; "emulated": the flash kernels
    # with scalar products (lavapipe: the tests)
    flash = True
    flash_lazy = True  # forward: O rescaled only when a row's max moves a lot (benchmarks)

    def _attention_forward(self, out, lse, qkv, n_head, softcap=0.0) -> None:
        if self.matmul_dtype == "f32":
            return super()._attention_forward(out, lse, qkv, n_head, softcap)
        B, T, C = out.shape
        if B * T == 0:
            return
        H, hs = n_head, C // n_head
        mode = self._flash_mode(B * H, hs, softcap)
        if mode:
            return self._flash_forward(mode, out, lse, qkv, B, T, H)
        dt, src = self.matmul_dtype, self._attention_src(B, H, T, C)
        q, k, v = self._heads(qkv, B, T, H, hs, 3, src)
        S = self.rt.new((B * H, T, T))
        lo = lse if lse.is_contiguous else self.rt.new(lse.shape)
        self._mm(S, q, k, False, True, False, 1.0 / math.sqrt(hs), dt, src, "skip_upper")
        if softcap:
            self._softcap(S, None, softcap)
        P = self._probs_tensor(S, src)
        self._rows_kernel(kap.causal_softmax_probs, src, [P, S, lo], B * H * T, T)
        del S
        o = self.rt.new((B * H, T, hs))
        self._mm(o, P, v, False, False, False, 1.0, dt, src, "k_to_m")
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
        mode = self._flash_mode(B * H, hs, softcap)
        if mode:
            return self._flash_backward(mode, dqkv, dout, qkv, out, lse, B, T, H)
        dt, src, scale = self.matmul_dtype, self._attention_src(B, H, T, C), 1.0 / math.sqrt(hs)
        q, k, v = self._heads(qkv, B, T, H, hs, 3, src)
        (do,) = self._heads(dout, B, T, H, hs, 1, src)
        lo = self.rt.contig(lse)
        R = B * H * T
        S = self.rt.new((B * H, T, T))
        self._mm(S, q, k, False, True, False, scale, dt, src, "skip_upper")
        cap_grad = self.rt.new(S.shape) if softcap else None
        if softcap:
            self._softcap(S, cap_grad, softcap)
        grads = [self.rt.new((B * H, T, hs)) for _ in range(3)]  # dq, dk, dv
        P = self._probs_tensor(S, src)  # recomputed from S and the forward's log-sum-exp
        self._rows_kernel(kap.causal_probs, src, [P, S, lo], R, T)
        self._mm(grads[2], P, do, True, False, False, 1.0, dt, src, "k_from_m")
        del P
        dP = self.rt.new((B * H, T, T))
        self._mm(dP, do, v, False, True, False, 1.0, dt, src, "skip_upper")
        dS = self._probs_tensor(S, src)
        capped = cap_grad is not None  # back through the cap: dS *= 1 - tanh(S / c)^2
        self._rows_kernel(kap.causal_softmax_grad, src,
                          [dS, S, dP, lo] + ([cap_grad] if capped else []), R, T, capped)
        del S, dP, cap_grad
        self._mm(grads[0], dS, k, False, False, False, scale, dt, src, "k_to_m")
        self._mm(grads[1], dS, q, True, False, False, scale, dt, src, "k_from_m")
        g = dqkv if dqkv.is_contiguous else self.rt.contig(dqkv)
        parts = g.view(B, T, 3, H, hs).permute(2, 0, 3, 1, 4)  # (3, B, H, T, hs)
        for p in range(3):
            self._axpy(parts[p], grads[p].view(B, H, T, hs), 1.0)
        if g is not dqkv:
            self.rt.copy(dqkv, g)

    def _flash_mode(self, BH, hs, softcap) -> str | None:
        """"coopmat" or "emulated" where the fused kernels run this attention, else None."""
        if not self.flash or softcap or hs != kfl.HD or self.matmul_dtype != "bf16" \
                or BH > MAX_GROUPS:
            return None
        if self.flash == "emulated":
            return "emulated"
        return "coopmat" if "bf16" in self._coop_types() else None

    def _flash_forward(self, mode, out, lse, qkv, B, T, H) -> None:
        q, k, v = self._heads(qkv, B, T, H, kfl.HD, 3, "bf16")
        dst = out if out.is_contiguous else self.rt.new(out.shape)
        lo = lse if lse.is_contiguous else self.rt.new(lse.shape)
        a, lazy = self.rt.addr, self.flash_lazy
        self.rt.launch(("flash_fwd", mode, lazy), lambda: kfl.flash_forward(mode, lazy),
                       [a(dst), a(lo), a(q), a(k), a(v), T, H, 1.0 / math.sqrt(kfl.HD)],
                       (-(-T // kfl.block(mode)), B * H, 1), [dst, lo])
        if dst is not out:
            self.rt.copy(out, dst)
        if lo is not lse:
            self.rt.copy(lse, lo)

    def _flash_backward(self, mode, dqkv, dout, qkv, out, lse, B, T, H) -> None:
        """dq, dk, dv added into dqkv by two passes (keys' and queries' tiles) after D =
        rowsum(dO * O)."""
        q, k, v = self._heads(qkv, B, T, H, kfl.HD, 3, "bf16")
        (do,) = self._heads(dout, B, T, H, kfl.HD, 1, "bf16")
        a, n = self.rt.addr, B * H * T
        dd = self.rt.new((B * H, T))
        self.rt.launch(("flash_rowdot",), kfl.flash_rowdot,
                       [a(dd), a(self.rt.contig(dout)), a(self.rt.contig(out)), n, T, H],
                       (groups(n, kfl.ROWDOT_ROWS), 1, 1), [dd])
        g = dqkv if dqkv.is_contiguous else self.rt.contig(dqkv)
        values = [a(g), a(self.rt.contig(lse)), a(dd), a(q), a(k), a(v), a(do), T, H,
                  1.0 / math.sqrt(kfl.HD)]
        grid = (-(-T // kfl.block(mode)), B * H, 1)
        self.rt.launch(("flash_bwd_kv", mode), lambda: kfl.flash_backward_kv(mode),
                       values, grid, [g])
        self.rt.launch(("flash_bwd_q", mode), lambda: kfl.flash_backward_q(mode),
                       values, grid, [g])
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
        """The matmuls' input type: 16-bit bits where tensor cores take them (the row kernels
        write P and dS as pairs of 16-bit values: T even; every packed tensor has an even
        element count), else fp32 (the SIMT kernel rounds as it loads)."""
        dt = self.matmul_dtype
        even = T % 2 == 0 and (B * T * C) % 2 == 0
        return dt if dt in self._coop_types() and even else "f32"

    def _probs_tensor(self, S, src):
        """A new tensor of S's shape for P or dS in the matmuls' input type."""
        return self.rt.new(S.shape, "f32" if src == "f32" else "u16")

    def _rows_kernel(self, builder, src, tensors, R, T, *variant) -> None:
        """One of the `attn_probs` row kernels over R rows of T scores."""
        self.rt.launch((builder.__name__, src) + variant, lambda: builder(src, *variant),
                       [self.rt.addr(t) for t in tensors] + [R, T],
                       (min(R, MAX_GROUPS), 1, 1), tensors)

    def _packed_as(self, t, src):
        """Contiguous t as the matmuls' inputs: itself for fp32, else a packed u16 copy."""
        if src == "f32":
            return t
        u = self.rt.new(t.shape, "u16")
        self.pack16(u.view(t.numel), t.view(t.numel), src)
        return u

    def _heads(self, t, B, T, H, hs, parts, src):
        """The `parts` column blocks of t (B, T, parts * H * hs) as head-major (B*H, T, hs)
        matmul inputs: fp32 copies, or 16-bit ones packed in one pass (hs even). The packed
        ones are kept in the write record until t is written: the attention backward reuses
        the forward's q, k, v."""
        if src != "f32" and hs % 2 == 0:
            key = ("heads", t.offset, t.shape, t.strides, H, parts, src)
            outs = self.dev.derived.get(t.storage.alloc, key)
            if outs is not None:
                return outs
            c = self.rt.contig(t)
            n, W = B * H * T * hs // 2, parts * H * hs
            outs = [self.rt.new((B * H, T, hs), "u16") for _ in range(parts)]
            for p, u in enumerate(outs):
                self.rt.launch(("pack_heads", src), lambda: kap.pack_heads(src),
                               [self.rt.addr(u), self.rt.addr(c) + 4 * p * H * hs, n, T, H,
                                hs, W], (groups(n), 1, 1), [u])
            self.dev.derived.put(t.storage.alloc, key, outs)
            return outs
        t = self.rt.contig(t)
        v = t.view(B, T, parts, H, hs).permute(2, 0, 3, 1, 4)
        return [self._packed_as(self.rt.contig(v[p]).view(B * H, T, hs), src)
                for p in range(parts)]
