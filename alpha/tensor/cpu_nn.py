"""The CPU backend's neural-network ops: softmax, layernorm, activations, dropout, embeddings,
fused cross-entropy, fused attention and AdamW — each a shape/dtype check and one C call.

A mixin of `alpha.tensor.cpu.CPUBackend` (which provides `k`, the kernels, and the contiguity
helpers `_contig`, `_wbuf`, `_wback`); split out so each file holds one concern.
"""

from __future__ import annotations

from array import array

from alpha.tensor import checks as ck
from alpha.tensor.cpu_kernels import oom, ptr
from alpha.tensor.tensor import Tensor


class CPUNNOps:
    # ---- softmax ------------------------------------------------------------------------------
    def _rowwise_fwd(self, opname, fn, out, x) -> None:
        ck.need_f32(opname, ("out", out), ("x", x))
        ck.need_shape(opname, "out", out, x.shape, ("x", x))
        C = ck.need_last_dim(opname, x)
        if x.numel == 0:
            return
        xc = self._contig(x)
        buf = self._wbuf(out, False)
        fn(ptr(buf), ptr(xc), x.numel // C, C)
        self._wback(out, buf)

    def _rowwise_bwd(self, opname, fn, dx, dout, out) -> None:
        ck.need_f32(opname, ("dx", dx), ("dout", dout), ("out", out))
        ck.need_shape(opname, "dout", dout, out.shape, ("out", out))
        ck.need_shape(opname, "dx", dx, out.shape, ("out", out))
        C = ck.need_last_dim(opname, out)
        if out.numel == 0:
            return
        buf = self._wbuf(dx, True)
        dout, out = self._contig(dout), self._contig(out)
        fn(ptr(buf), ptr(dout), ptr(out), out.numel // C, C)
        self._wback(dx, buf)

    def softmax_forward(self, out, x) -> None:
        self._rowwise_fwd("softmax_forward", self.k.softmax_forward, out, x)

    def softmax_backward(self, dx, dout, out) -> None:
        self._rowwise_bwd("softmax_backward", self.k.softmax_backward, dx, dout, out)

    def log_softmax_forward(self, out, x) -> None:
        self._rowwise_fwd("log_softmax_forward", self.k.log_softmax_forward, out, x)

    def log_softmax_backward(self, dx, dout, out) -> None:
        self._rowwise_bwd("log_softmax_backward", self.k.log_softmax_backward, dx, dout, out)

    # ---- layernorm ----------------------------------------------------------------------------
    def layernorm_forward(self, out, mean, rstd, x, weight, bias, eps=1e-5) -> None:
        op = "layernorm_forward"
        ck.need_f32(op, ("out", out), ("mean", mean), ("rstd", rstd), ("x", x),
                    ("weight", weight), ("bias", bias))
        C = ck.need_last_dim(op, x)
        ck.need_shape(op, "out", out, x.shape, ("x", x))
        ck.need_shape(op, "weight", weight, (C,), ("x", x))
        if bias is not None:
            ck.need_shape(op, "bias", bias, (C,), ("x", x))
        ck.need_shape(op, "mean", mean, x.shape[:-1], ("x", x))
        ck.need_shape(op, "rstd", rstd, x.shape[:-1], ("x", x))
        N = x.numel // C
        if N == 0:
            return
        xc, w = self._contig(x), self._contig(weight)
        b = self._contig(bias) if bias is not None else None
        ob, mb, rb = self._wbuf(out, False), self._wbuf(mean, False), self._wbuf(rstd, False)
        self.k.layernorm_forward(ptr(ob), ptr(mb), ptr(rb), ptr(xc), ptr(w),
                                 ptr(b) if b is not None else None, N, C, eps)
        self._wback(out, ob)
        self._wback(mean, mb)
        self._wback(rstd, rb)

    def layernorm_backward(self, dx, dweight, dbias, dout, x, weight, mean, rstd) -> None:
        op = "layernorm_backward"
        ck.need_f32(op, ("dx", dx), ("dweight", dweight), ("dbias", dbias), ("dout", dout),
                    ("x", x), ("weight", weight), ("mean", mean), ("rstd", rstd))
        C = ck.need_last_dim(op, x)
        ck.need_shape(op, "dx", dx, x.shape, ("x", x))
        ck.need_shape(op, "dout", dout, x.shape, ("x", x))
        for name, t in (("dweight", dweight), ("dbias", dbias), ("weight", weight)):
            if t is not None:
                ck.need_shape(op, name, t, (C,), ("x", x))
        ck.need_shape(op, "mean", mean, x.shape[:-1], ("x", x))
        ck.need_shape(op, "rstd", rstd, x.shape[:-1], ("x", x))
        N = x.numel // C
        if N == 0:
            return
        dxb, dwb = self._wbuf(dx, True), self._wbuf(dweight, True)
        dbb = self._wbuf(dbias, True) if dbias is not None else None
        dout, x, weight = self._contig(dout), self._contig(x), self._contig(weight)
        mean, rstd = self._contig(mean), self._contig(rstd)
        rc = self.k.layernorm_backward(
            ptr(dxb), ptr(dwb), ptr(dbb) if dbb is not None else None,
            ptr(dout), ptr(x), ptr(weight), ptr(mean), ptr(rstd), N, C)
        if rc:
            raise oom(op)
        self._wback(dx, dxb)
        self._wback(dweight, dwb)
        if dbias is not None:
            self._wback(dbias, dbb)

    # ---- activations --------------------------------------------------------------------------
    def _pointwise(self, opname, fn, out, x) -> None:
        if out.dtype != "f32" or x.dtype != "f32":
            ck.need_f32(opname, ("out", out), ("x", x))
        if out.shape != x.shape:
            ck.need_shape(opname, "out", out, x.shape, ("x", x))
        if x.numel == 0:
            return
        xc = self._contig(x)
        buf = self._wbuf(out, False)
        fn(ptr(buf), ptr(xc), x.numel)
        self._wback(out, buf)

    def _pointwise_bwd(self, opname, fn, dx, dout, x) -> None:
        if dx.dtype != "f32" or dout.dtype != "f32" or x.dtype != "f32":
            ck.need_f32(opname, ("dx", dx), ("dout", dout), ("x", x))
        if dout.shape != x.shape or dx.shape != x.shape:
            ck.need_shape(opname, "dout", dout, x.shape, ("x", x))
            ck.need_shape(opname, "dx", dx, x.shape, ("x", x))
        if x.numel == 0:
            return
        buf = self._wbuf(dx, True)
        dout, x = self._contig(dout), self._contig(x)
        fn(ptr(buf), ptr(dout), ptr(x), x.numel)
        self._wback(dx, buf)

    def gelu_forward(self, out, x) -> None:
        self._pointwise("gelu_forward", self.k.gelu_forward, out, x)

    def gelu_backward(self, dx, dout, x) -> None:
        self._pointwise_bwd("gelu_backward", self.k.gelu_backward, dx, dout, x)

    def relu_forward(self, out, x) -> None:
        self._pointwise("relu_forward", self.k.relu_forward, out, x)

    def relu_backward(self, dx, dout, x) -> None:
        self._pointwise_bwd("relu_backward", self.k.relu_backward, dx, dout, x)

    def silu_forward(self, out, x) -> None:
        self._pointwise("silu_forward", self.k.silu_forward, out, x)

    def silu_backward(self, dx, dout, x) -> None:
        self._pointwise_bwd("silu_backward", self.k.silu_backward, dx, dout, x)

    def _swiglu_h(self, op, x, other, other_name) -> int:
        if x.ndim < 1 or x.shape[-1] % 2:
            raise ValueError(f"{op}: x {x.shape} needs an even last dim")
        H = x.shape[-1] // 2
        ck.need_shape(op, other_name, other, x.shape[:-1] + (H,), ("x", x))
        return H

    def swiglu_forward(self, out, x) -> None:
        ck.need_f32("swiglu_forward", ("out", out), ("x", x))
        H = self._swiglu_h("swiglu_forward", x, out, "out")
        if out.numel == 0:
            return
        buf = self._wbuf(out, False)
        x = self._contig(x)
        self.k.swiglu_forward(ptr(buf), ptr(x), out.numel // H, H)
        self._wback(out, buf)

    def swiglu_backward(self, dx, dout, x) -> None:
        ck.need_f32("swiglu_backward", ("dx", dx), ("dout", dout), ("x", x))
        H = self._swiglu_h("swiglu_backward", x, dout, "dout")
        ck.need_shape("swiglu_backward", "dx", dx, x.shape, ("x", x))
        if dout.numel == 0:
            return
        buf = self._wbuf(dx, True)
        dout, x = self._contig(dout), self._contig(x)
        self.k.swiglu_backward(ptr(buf), ptr(dout), ptr(x),
                               dout.numel // H, H)
        self._wback(dx, buf)

    def dropout_forward(self, out, x, u, p) -> None:
        op = "dropout_forward"
        ck.need_f32(op, ("out", out), ("x", x), ("u", u))
        ck.need_shape(op, "out", out, x.shape, ("x", x))
        ck.need_shape(op, "u", u, x.shape, ("x", x))
        if not 0 <= p < 1:
            raise ValueError(f"{op}: p={p} must be in [0, 1)")
        if x.numel == 0:
            return
        buf = self._wbuf(out, False)
        x, u = self._contig(x), self._contig(u)
        self.k.dropout_forward(ptr(buf), ptr(x), ptr(u), p,
                               x.numel)
        self._wback(out, buf)

    def dropout_backward(self, dx, dout, u, p) -> None:
        op = "dropout_backward"
        ck.need_f32(op, ("dx", dx), ("dout", dout), ("u", u))
        ck.need_shape(op, "dout", dout, u.shape, ("u", u))
        ck.need_shape(op, "dx", dx, u.shape, ("u", u))
        if not 0 <= p < 1:
            raise ValueError(f"{op}: p={p} must be in [0, 1)")
        if u.numel == 0:
            return
        buf = self._wbuf(dx, True)
        dout, u = self._contig(dout), self._contig(u)
        self.k.dropout_backward(ptr(buf), ptr(dout), ptr(u), p,
                                u.numel)
        self._wback(dx, buf)

    # ---- embeddings ------------------------------------------------------------------------
    def _checked_ids(self, op, ids, V) -> Tensor:
        ck.need_dtype(op, "ids", ids, ("i32",))
        ids = self._contig(ids)
        bad = self.k.embedding_check(ptr(ids), ids.numel, V)
        if bad >= 0:
            value = ids.storage.view("i32", ids.offset + bad, 1)[0]
            raise ValueError(f"{op}: id {value} (at flat index {bad}) is outside the table's "
                             f"[0, {V})")
        return ids

    def embedding_forward(self, out, ids, table) -> None:
        op = "embedding_forward"
        ck.need_f32(op, ("out", out), ("table", table))
        ck.need_dtype(op, "ids", ids, ("i32",))
        if table.ndim != 2:
            raise ValueError(f"{op}: table {table.shape} must be (V, C)")
        V, C = table.shape
        ck.need_shape(op, "out", out, ids.shape + (C,), f"ids {ids.shape} and table {table.shape}")
        ids = self._checked_ids(op, ids, V)
        if out.numel == 0:
            return
        buf = self._wbuf(out, False)
        table = self._contig(table)
        self.k.embedding_forward(ptr(buf), ptr(ids), ptr(table), ids.numel, C)
        self._wback(out, buf)

    def embedding_backward(self, dtable, dout, ids) -> None:
        op = "embedding_backward"
        ck.need_f32(op, ("dtable", dtable), ("dout", dout))
        ck.need_dtype(op, "ids", ids, ("i32",))
        if dtable.ndim != 2:
            raise ValueError(f"{op}: dtable {dtable.shape} must be (V, C)")
        V, C = dtable.shape
        ck.need_shape(op, "dout", dout, ids.shape + (C,),
                      f"ids {ids.shape} and dtable {dtable.shape}")
        ids = self._checked_ids(op, ids, V)
        if dout.numel == 0:
            return
        buf = self._wbuf(dtable, True)
        dout = self._contig(dout)
        self.k.embedding_backward(ptr(buf), ptr(dout), ptr(ids), ids.numel, C)
        self._wback(dtable, buf)

    # ---- fused cross-entropy -----------------------------------------------------------------
    def _ce_checks(self, op, logits, targets, other, other_name) -> tuple[int, int, Tensor]:
        ck.need_dtype(op, "targets", targets, ("i32",))
        if logits.ndim != 2:
            raise ValueError(f"{op}: logits {logits.shape} must be (N, V)")
        N, V = logits.shape
        ck.need_data(op, "vocab dim of logits", V, logits)
        ck.need_shape(op, "targets", targets, (N,), ("logits", logits))
        ck.need_shape(op, other_name, other, (N,), ("logits", logits))
        targets = self._contig(targets)
        bad = self.k.crossentropy_check(ptr(targets), N, V)
        if bad >= 0:
            value = targets.storage.view("i32", targets.offset + bad, 1)[0]
            raise ValueError(f"{op}: target {value} (row {bad}) is outside [0, {V}) "
                             f"(and is not -1)")
        return N, V, targets

    def crossentropy_forward(self, losses, logits, targets) -> None:
        op = "crossentropy_forward"
        ck.need_f32(op, ("losses", losses), ("logits", logits))
        N, V, targets = self._ce_checks(op, logits, targets, losses, "losses")
        if N == 0:
            return
        buf = self._wbuf(losses, False)
        logits = self._contig(logits)
        self.k.crossentropy_forward(ptr(buf), ptr(logits), ptr(targets), N, V)
        self._wback(losses, buf)

    def crossentropy_backward(self, dlogits, dlosses, logits, targets) -> None:
        op = "crossentropy_backward"
        ck.need_f32(op, ("dlogits", dlogits), ("dlosses", dlosses), ("logits", logits))
        N, V, targets = self._ce_checks(op, logits, targets, dlosses, "dlosses")
        ck.need_shape(op, "dlogits", dlogits, logits.shape, ("logits", logits))
        if N == 0:
            return
        buf = self._wbuf(dlogits, True)
        dlosses, logits = self._contig(dlosses), self._contig(logits)
        self.k.crossentropy_backward(ptr(buf), ptr(dlosses),
                                     ptr(logits), ptr(targets), N, V)
        self._wback(dlogits, buf)

    # ---- fused causal self-attention ----------------------------------------------------------
    def attention_forward(self, out, lse, qkv, n_head) -> None:
        op = "attention_forward"
        ck.need_f32(op, ("out", out), ("lse", lse), ("qkv", qkv))
        B, T, C, hs = ck.need_qkv(op, qkv, n_head)
        ck.need_shape(op, "out", out, (B, T, C), ("qkv", qkv))
        ck.need_shape(op, "lse", lse, (B, n_head, T), f"qkv {qkv.shape} and n_head={n_head}")
        if B * T * C == 0:
            return
        ob, lb = self._wbuf(out, False), self._wbuf(lse, False)
        qkv = self._contig(qkv)
        if self.k.attention_forward(ptr(ob), ptr(lb), ptr(qkv), B, T, C,
                                    n_head):
            raise oom(op)
        self._wback(out, ob)
        self._wback(lse, lb)

    def attention_backward(self, dqkv, dout, qkv, out, lse, n_head) -> None:
        op = "attention_backward"
        ck.need_f32(op, ("dqkv", dqkv), ("dout", dout), ("qkv", qkv), ("out", out),
                    ("lse", lse))
        B, T, C, hs = ck.need_qkv(op, qkv, n_head)
        ck.need_shape(op, "dqkv", dqkv, qkv.shape, ("qkv", qkv))
        ck.need_shape(op, "dout", dout, (B, T, C), ("qkv", qkv))
        ck.need_shape(op, "out", out, (B, T, C), ("qkv", qkv))
        ck.need_shape(op, "lse", lse, (B, n_head, T), f"qkv {qkv.shape} and n_head={n_head}")
        if B * T * C == 0:
            return
        buf = self._wbuf(dqkv, True)
        dout, qkv = self._contig(dout), self._contig(qkv)
        out, lse = self._contig(out), self._contig(lse)
        if self.k.attention_backward(ptr(buf), ptr(dout),
                                     ptr(qkv), ptr(out),
                                     ptr(lse), B, T, C, n_head):
            raise oom(op)
        self._wback(dqkv, buf)

    def kv_attention(self, out, q, k, v, n_head, start) -> None:
        op = "kv_attention"
        ck.need_f32(op, ("out", out), ("q", q), ("k", k), ("v", v))
        if q.ndim != 3:
            raise ValueError(f"{op}: q {q.shape} must be (B, Tq, C)")
        B, Tq, C = q.shape
        if k.ndim != 3 or k.shape[0] != B or k.shape[2] != C:
            raise ValueError(f"{op}: k {k.shape} does not match q {q.shape}")
        ck.need_shape(op, "v", v, k.shape, ("k", k))
        ck.need_shape(op, "out", out, q.shape, ("q", q))
        if n_head < 1 or C % n_head:
            raise ValueError(f"{op}: C={C} of q {q.shape} is not divisible by n_head={n_head}")
        if start < 0 or start + Tq > k.shape[1]:
            raise ValueError(f"{op}: positions {start}..{start + Tq - 1} do not fit k {k.shape}")
        if B * Tq * C == 0:
            return
        q, k, v = (t if t.strides[2] == 1 else self._contig(t) for t in (q, k, v))
        buf = self._wbuf(out, False)
        if self.k.kv_attention(ptr(buf), ptr(q), q.strides[0], q.strides[1], ptr(k),
                               k.strides[0], k.strides[1], ptr(v), v.strides[0], v.strides[1],
                               B, Tq, C, n_head, start):
            raise oom(op)
        self._wback(out, buf)

    # ---- the batch-invariant product and the fused decode block (for inference) --------------
    def matmul_rows(self, out, a, b, *, trans_b=False) -> None:
        """out (M, N) = a (M, K) @ op(b), every row computed as if it were alone (M = 1): the
        same bits whatever M is (csrc/matmul_small.c `alpha_sgemm_rows`). Batched decode uses it
        so that a sequence's tokens never depend on the rest of the batch."""
        op = "matmul_rows"
        ck.need_f32(op, ("out", out), ("a", a), ("b", b))
        if a.ndim != 2 or b.ndim != 2 or out.ndim != 2:
            raise ValueError(f"{op}: out {out.shape}, a {a.shape}, b {b.shape} must be 2-D")
        M, K = a.shape
        N, Kb = (b.shape if trans_b else b.shape[::-1])
        if Kb != K or out.shape != (M, N):
            raise ValueError(f"{op}: shapes do not match: out {out.shape}, a {a.shape}, "
                             f"b {b.shape}{' (trans_b)' if trans_b else ''}")
        if M * N == 0:
            return
        b_rs, b_cs = (b.strides[1], b.strides[0]) if trans_b else b.strides
        if b_cs != 1 and b_rs != 1:
            b = self._contig(b)
            b_rs, b_cs = (b.strides[1], b.strides[0]) if trans_b else b.strides
        buf = self._wbuf(out, False)
        self.k.alpha_sgemm_rows(M, N, K, ptr(a), a.strides[0], a.strides[1], ptr(b), b_rs, b_cs,
                                ptr(buf), N, 1.0, 0)
        self._wback(out, buf)

    def block_decode(self, x, cache, slots, positions, params, n_head, activation, eps) -> None:
        """One transformer block for one new token of each of M sequences, in one C call
        (`csrc/decode.c`), bit-identical to the GPT's op-by-op cached forward and, row by row,
        to the same call with M = 1.

        x (M, C) the residual stream, updated in place; cache (S, Tmax, 2C) rows [k | v]: row
        positions[i] of slot slots[i] is written, rows 0..positions[i] are attended; params: a
        tuple of the block's 12 tensors in the order ln_1.{weight,bias}, attn.c_attn.{w,b},
        attn.c_proj.{w,b}, ln_2.{w,b}, mlp.c_fc.{w,b}, mlp.c_proj.{w,b} (biases None when the
        model has none), all contiguous f32. A tuple's checks are done once and remembered (the
        model passes the same tuple every token), so a call costs a few microseconds of Python."""
        op = "block_decode"
        if x.ndim != 2 or cache.ndim != 3 or cache.shape[2] != 2 * x.shape[1]:
            raise ValueError(f"{op}: x {x.shape} must be (M, C) and cache {cache.shape} "
                             "(S, T, 2C)")
        M, C = x.shape
        if x.dtype != "f32" or cache.dtype != "f32" or not (x.is_contiguous
                                                            and cache.is_contiguous):
            raise ValueError(f"{op}: x and cache must be contiguous f32")
        S, T = cache.shape[0], cache.shape[1]
        if len(slots) != M or len(positions) != M:
            raise ValueError(f"{op}: {len(slots)} slots and {len(positions)} positions for "
                             f"{M} rows")
        for s, p in zip(slots, positions):
            if not (0 <= s < S and 0 <= p < T):
                raise ValueError(f"{op}: slot {s} position {p} does not fit cache {cache.shape}")
        seen = self.__dict__.setdefault("_block_params", {})  # key -> (params, checked args)
        key = (id(params), C, n_head, activation)
        hit = seen.get(key)
        if hit is None or hit[0] is not params:
            hit = (params,) + self._block_decode_args(op, params, C, n_head, activation)
            if len(seen) > 256:
                seen.clear()
            seen[key] = hit  # holds `params`, so its id is not reused while remembered
        _, ptrs, H, act = hit
        idx = array("q", slots) + array("q", positions)
        base = idx.buffer_info()[0]
        if self.k.block_decode(ptr(x), M, ptr(cache), T * 2 * C, base, base + 8 * M, *ptrs, C, H,
                               n_head, act, eps):
            raise oom(op)

    _ACTS = {"gelu": 0, "relu": 1, "silu": 2, "swiglu": 3}  # decode.c's ACT_*

    def _block_decode_args(self, op, params, C, n_head, activation):
        """(pointers, H, activation code) for `block_decode`, after checking every param."""
        act = self._ACTS.get(activation)
        if act is None:
            raise ValueError(f"{op}: unknown activation {activation!r}")
        if n_head < 1 or C % n_head:
            raise ValueError(f"{op}: C={C} is not divisible by n_head={n_head}")
        if len(params) != 12 or params[8] is None:
            raise ValueError(f"{op}: expected the block's 12 params, got {len(params)}")
        F = params[8].shape[-1]
        H = F // 2 if act == 3 else F
        shapes = ((C,), (C,), (C, 3 * C), (3 * C,), (C, C), (C,), (C,), (C,), (C, F), (F,),
                  (H, C), (C,))
        ptrs = []
        for i, (t, want) in enumerate(zip(params, shapes)):
            if t is None and i % 2:  # a missing bias
                ptrs.append(None)
                continue
            if t is None or t.shape != want or t.dtype != "f32" or not t.is_contiguous:
                got = "None" if t is None else f"{t.shape} {t.dtype}"
                raise ValueError(f"{op}: param {i} is {got}; expected contiguous f32 {want}")
            ptrs.append(ptr(t))
        return tuple(ptrs), H, act

    # ---- optimizer ---------------------------------------------------------------------------
    def adamw_step(self, param, grad, m, v, *, lr, beta1, beta2, eps, weight_decay, step,
                   grad_scale=1.0) -> None:
        op = "adamw_step"
        ck.need_f32(op, ("param", param), ("grad", grad), ("m", m), ("v", v))
        for name, t in (("grad", grad), ("m", m), ("v", v)):
            ck.need_numel(op, name, t, "param", param)
        if step < 1:
            raise ValueError(f"{op}: step={step} must be >= 1")
        n = param.numel
        if n == 0:
            return
        pb, mb, vb = self._wbuf(param, True), self._wbuf(m, True), self._wbuf(v, True)
        grad = self._contig(grad)
        self.k.adamw_step(ptr(pb), ptr(grad), ptr(mb), ptr(vb), n, lr, beta1,
                          beta2, eps, weight_decay, step, grad_scale)
        self._wback(param, pb)
        self._wback(m, mb)
        self._wback(v, vb)
