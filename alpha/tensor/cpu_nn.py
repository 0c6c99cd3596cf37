"""The CPU backend's neural-network ops: softmax, layernorm, activations, dropout, embeddings,
fused cross-entropy and fused attention — each one C call on arguments the front
(`alpha.core.backend.Backend`) has checked.

A mixin of `alpha.tensor.cpu.CPUBackend` (which provides `k`, the kernels, and the contiguity
helpers `_contig`, `_wbuf`, `_wback`); split out so each file holds one concern.
"""

from __future__ import annotations

import ctypes
import sys
from array import array

from alpha.core import checks as ck
from alpha.tensor.cpu_kernels import oom, ptr


def row_layout(t) -> tuple[int, int, int] | None:
    """(inner, so, si) when the rows of t (every index but the last, which must be contiguous)
    start at (r // inner) * so + (r % inner) * si elements from t's first one — a contiguous
    tensor, or the heads of a packed qkv narrowed to q or k; None for any other layout."""
    C = t.shape[-1]
    if C > 1 and t.strides[-1] != 1:
        return None
    merged: list[tuple[int, int]] = []  # (size, stride) of the row dims, contiguous runs merged
    for n, st in zip(t.shape[:-1], t.strides[:-1]):
        if n == 1:
            continue
        if merged and merged[-1][1] == st * n:
            merged[-1] = (merged[-1][0] * n, st)
        else:
            merged.append((n, st))
    if not merged:
        return (1, C, 0)
    if len(merged) == 1:
        return (1, merged[0][1], 0)
    if len(merged) == 2:
        return (merged[1][0], merged[0][1], merged[1][1])
    return None


class CPUNNOps:
    # the model options decode_step / prefill_step take (others: declined, NotImplementedError)
    step_options = frozenset({"rope", "softcap", "logit_softcap"})

    # ---- softmax ------------------------------------------------------------------------------
    def _rowwise_fwd(self, fn, out, x) -> None:
        C = x.shape[-1]
        if x.numel == 0:
            return
        xc = self._contig(x)
        buf = self._wbuf(out, False)
        fn(ptr(buf), ptr(xc), x.numel // C, C)
        self._wback(out, buf)

    def _rowwise_bwd(self, fn, dx, dout, out) -> None:
        C = out.shape[-1]
        if out.numel == 0:
            return
        buf = self._wbuf(dx, True)
        dout, out = self._contig(dout), self._contig(out)
        fn(ptr(buf), ptr(dout), ptr(out), out.numel // C, C)
        self._wback(dx, buf)

    def _softmax_forward(self, out, x) -> None:
        self._rowwise_fwd(self.k.softmax_forward, out, x)

    def _softmax_backward(self, dx, dout, out) -> None:
        self._rowwise_bwd(self.k.softmax_backward, dx, dout, out)

    def _log_softmax_forward(self, out, x) -> None:
        self._rowwise_fwd(self.k.log_softmax_forward, out, x)

    def _log_softmax_backward(self, dx, dout, out) -> None:
        self._rowwise_bwd(self.k.log_softmax_backward, dx, dout, out)

    # ---- layernorm ----------------------------------------------------------------------------
    def _layernorm_forward(self, out, mean, rstd, x, weight, bias, eps) -> None:
        C = x.shape[-1]
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

    def _layernorm_backward(self, dx, dweight, dbias, dout, x, weight, mean, rstd) -> None:
        C = x.shape[-1]
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
            raise oom("layernorm_backward")
        self._wback(dx, dxb)
        self._wback(dweight, dwb)
        if dbias is not None:
            self._wback(dbias, dbb)

    # ---- rmsnorm (also qk-norm's, over the heads inside a packed qkv) ------------------------
    def _rmsnorm_forward(self, out, rstd, x, weight, eps) -> None:
        C = x.shape[-1]
        N = x.numel // C
        if N == 0:
            return
        layout = row_layout(x)
        if layout is None or layout != row_layout(out):  # rows the kernel cannot walk: copy
            x, layout = self._contig(x), (1, C, 0)
            ob = self._wbuf(out, False)
        else:
            ob = out
        rb = self._wbuf(rstd, False)
        self.k.rmsnorm_forward(ptr(ob), ptr(rb), ptr(x), ptr(self._contig(weight)), N, C,
                               *layout, eps)
        self._wback(out, ob)
        self._wback(rstd, rb)

    def _rmsnorm_backward(self, dx, dweight, dout, x, weight, rstd) -> None:
        C = x.shape[-1]
        N = x.numel // C
        if N == 0:
            return
        layout = row_layout(x)
        if layout is None or not layout == row_layout(dx) == row_layout(dout):
            x, dout, layout = self._contig(x), self._contig(dout), (1, C, 0)
            dxb = self._wbuf(dx, True)
        else:
            dxb = dx
        dwb = self._wbuf(dweight, True)
        rc = self.k.rmsnorm_backward(ptr(dxb), ptr(dwb), ptr(dout), ptr(x),
                                     ptr(self._contig(weight)), ptr(self._contig(rstd)), N, C,
                                     *layout)
        if rc:
            raise oom("rmsnorm_backward")
        self._wback(dx, dxb)
        self._wback(dweight, dwb)

    # ---- activations --------------------------------------------------------------------------
    def _pointwise(self, fn, out, x) -> None:
        if x.numel == 0:
            return
        xc = self._contig(x)
        buf = self._wbuf(out, False)
        fn(ptr(buf), ptr(xc), x.numel)
        self._wback(out, buf)

    def _pointwise_bwd(self, fn, dx, dout, x) -> None:
        if x.numel == 0:
            return
        buf = self._wbuf(dx, True)
        dout, x = self._contig(dout), self._contig(x)
        fn(ptr(buf), ptr(dout), ptr(x), x.numel)
        self._wback(dx, buf)

    def _gelu_forward(self, out, x) -> None:
        self._pointwise(self.k.gelu_forward, out, x)

    def _gelu_backward(self, dx, dout, x) -> None:
        self._pointwise_bwd(self.k.gelu_backward, dx, dout, x)

    def _relu_forward(self, out, x) -> None:
        self._pointwise(self.k.relu_forward, out, x)

    def _relu_backward(self, dx, dout, x) -> None:
        self._pointwise_bwd(self.k.relu_backward, dx, dout, x)

    def _relu2_forward(self, out, x) -> None:
        self._pointwise(self.k.relu2_forward, out, x)

    def _relu2_backward(self, dx, dout, x) -> None:
        self._pointwise_bwd(self.k.relu2_backward, dx, dout, x)

    def _softcap_forward(self, out, x, cap) -> None:
        if x.numel == 0:
            return
        xc = self._contig(x)
        buf = self._wbuf(out, False)
        self.k.softcap_forward(ptr(buf), ptr(xc), x.numel, cap)
        self._wback(out, buf)

    def _softcap_backward(self, dx, dout, out, cap) -> None:
        if out.numel == 0:
            return
        buf = self._wbuf(dx, True)
        dout, out = self._contig(dout), self._contig(out)
        self.k.softcap_backward(ptr(buf), ptr(dout), ptr(out), out.numel, cap)
        self._wback(dx, buf)

    def _silu_forward(self, out, x) -> None:
        self._pointwise(self.k.silu_forward, out, x)

    def _silu_backward(self, dx, dout, x) -> None:
        self._pointwise_bwd(self.k.silu_backward, dx, dout, x)

    def _swiglu_forward(self, out, x, H) -> None:
        if out.numel == 0:
            return
        buf = self._wbuf(out, False)
        x = self._contig(x)
        self.k.swiglu_forward(ptr(buf), ptr(x), out.numel // H, H)
        self._wback(out, buf)

    def _swiglu_backward(self, dx, dout, x, H) -> None:
        if dout.numel == 0:
            return
        buf = self._wbuf(dx, True)
        dout, x = self._contig(dout), self._contig(x)
        self.k.swiglu_backward(ptr(buf), ptr(dout), ptr(x),
                               dout.numel // H, H)
        self._wback(dx, buf)

    def _dropout_forward(self, out, x, u, p) -> None:
        if x.numel == 0:
            return
        buf = self._wbuf(out, False)
        x, u = self._contig(x), self._contig(u)
        self.k.dropout_forward(ptr(buf), ptr(x), ptr(u), p,
                               x.numel)
        self._wback(out, buf)

    def _dropout_backward(self, dx, dout, u, p) -> None:
        if u.numel == 0:
            return
        buf = self._wbuf(dx, True)
        dout, u = self._contig(dout), self._contig(u)
        self.k.dropout_backward(ptr(buf), ptr(dout), ptr(u), p,
                                u.numel)
        self._wback(dx, buf)

    # ---- embeddings ------------------------------------------------------------------------
    def _find_outside(self, ids, V, ignore):
        ids = self._contig(ids)
        check = self.k.crossentropy_check if ignore else self.k.embedding_check
        bad = check(ptr(ids), ids.numel, V)
        if bad < 0:
            return None
        return bad, ids.storage.view("i32", ids.offset + bad, 1)[0]

    def _embedding_forward(self, out, ids, table) -> None:
        if out.numel == 0:
            return
        ids = self._contig(ids)
        buf = self._wbuf(out, False)
        table = self._contig(table)
        self.k.embedding_forward(ptr(buf), ptr(ids), ptr(table), ids.numel, table.shape[1])
        self._wback(out, buf)

    def _embedding_backward(self, dtable, dout, ids) -> None:
        if dout.numel == 0:
            return
        ids = self._contig(ids)
        buf = self._wbuf(dtable, True)
        dout = self._contig(dout)
        self.k.embedding_backward(ptr(buf), ptr(dout), ptr(ids), ids.numel, dtable.shape[1])
        self._wback(dtable, buf)

    # ---- fused cross-entropy -----------------------------------------------------------------
    def _crossentropy_forward(self, losses, logits, targets) -> None:
        N, V = logits.shape
        if N == 0:
            return
        buf = self._wbuf(losses, False)
        logits, targets = self._contig(logits), self._contig(targets)
        self.k.crossentropy_forward(ptr(buf), ptr(logits), ptr(targets), N, V)
        self._wback(losses, buf)

    def _crossentropy_backward(self, dlogits, dlosses, logits, targets) -> None:
        N, V = logits.shape
        if N == 0:
            return
        buf = self._wbuf(dlogits, True)
        dlosses, logits = self._contig(dlosses), self._contig(logits)
        targets = self._contig(targets)
        self.k.crossentropy_backward(ptr(buf), ptr(dlosses), ptr(logits), ptr(targets), N, V)
        self._wback(dlogits, buf)

    # ---- fused causal self-attention ----------------------------------------------------------
    def _attention_forward(self, out, lse, qkv, n_head, softcap=0.0) -> None:
        B, T, C = out.shape
        if B * T * C == 0:
            return
        ob, lb = self._wbuf(out, False), self._wbuf(lse, False)
        qkv = self._contig(qkv)
        if self.k.attention_forward(ptr(ob), ptr(lb), ptr(qkv), B, T, C,
                                    n_head, softcap):
            raise oom("attention_forward")
        self._wback(out, ob)
        self._wback(lse, lb)

    def _attention_backward(self, dqkv, dout, qkv, out, lse, n_head, softcap=0.0) -> None:
        B, T, C = out.shape
        if B * T * C == 0:
            return
        buf = self._wbuf(dqkv, True)
        dout, qkv = self._contig(dout), self._contig(qkv)
        out, lse = self._contig(out), self._contig(lse)
        if self.k.attention_backward(ptr(buf), ptr(dout),
                                     ptr(qkv), ptr(out),
                                     ptr(lse), B, T, C, n_head, softcap):
            raise oom("attention_backward")
        self._wback(dqkv, buf)

    def _kv_attention(self, out, q, k, v, n_head, start, softcap=0.0) -> None:
        B, Tq, C = q.shape
        if B * Tq * C == 0:
            return
        q, k, v = (t if t.strides[2] == 1 else self._contig(t) for t in (q, k, v))
        buf = self._wbuf(out, False)
        if self.k.kv_attention(ptr(buf), ptr(q), q.strides[0], q.strides[1], ptr(k),
                               k.strides[0], k.strides[1], ptr(v), v.strides[0], v.strides[1],
                               B, Tq, C, n_head, start, softcap):
            raise oom("kv_attention")
        self._wback(out, buf)

    # ---- rotary position embedding --------------------------------------------------------------
    def _rope_forward(self, out, qkv, positions, cos, sin, n_head) -> None:
        self._rope(self.k.rope_forward, out, False, qkv, positions, cos, sin, n_head)

    def _rope_backward(self, dqkv, dout, positions, cos, sin, n_head) -> None:
        self._rope(self.k.rope_backward, dqkv, True, dout, positions, cos, sin, n_head)

    def _rope(self, fn, out, add, x, positions, cos, sin, n_head) -> None:
        B, T, C3 = x.shape
        if B * T == 0:
            return
        buf = self._wbuf(out, add)
        x, positions = self._contig(x), self._contig(positions)
        cos, sin = self._contig(cos), self._contig(sin)
        fn(ptr(buf), ptr(x), ptr(positions), positions.numel, ptr(cos), ptr(sin), B * T,
           C3 // 3, n_head)
        self._wback(out, buf)

    # ---- the batch-invariant product and the fused decode block (for inference) --------------
    def _matmul_rows(self, out, a, b, trans_b) -> None:
        """Every row computed as if it were alone (csrc/matmul_small.c `alpha_sgemm_rows`)."""
        M, K = a.shape
        N = out.shape[1]
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

    def _block_decode(self, x, cache, slots, positions, params, n_head, activation, eps,
                      **options) -> None:
        """In one C call (`csrc/decode.c`), bit-identical to the GPT's op-by-op cached forward
        and, row by row, to the same call with M = 1. The params tuple's checks are done here,
        once per tuple, and remembered with its pointers (the model passes the same tuple every
        token), so a call costs a few microseconds of Python. `options`: rope=(cos, sin) and
        softcap=c are done in the same C call; any other (norm, qk_norm) is declined
        (NotImplementedError) and the model runs that block op by op."""
        op = "block_decode"
        unknown = set(options) - {"rope", "softcap"}
        if unknown:
            raise NotImplementedError(f"need block_decode with {', '.join(sorted(unknown))}")
        cos, sin = options.get("rope") or (None, None)
        softcap = float(options.get("softcap", 0.0))
        ck.need_softcap(op, softcap)
        M, C = x.shape
        T = cache.shape[1]
        seen = self.__dict__.setdefault("_block_params", {})  # key -> (params, checked args)
        key = (id(params), C, n_head, activation)
        hit = seen.get(key)
        if hit is None or hit[0] is not params:
            hit = (params,) + self._block_decode_args(op, params, C, n_head, activation)
            if len(seen) > 256:
                seen.clear()
            seen[key] = hit  # holds `params`, so its id is not reused while remembered
        _, ptrs, H, act = hit
        if cos is not None:
            self._check_rope_tables(op, cos, sin, C // n_head, positions)
        idx = array("q", slots) + array("q", positions)
        base = idx.buffer_info()[0]
        if self.k.block_decode(ptr(x), M, ptr(cache), T * 2 * C, base, base + 8 * M, *ptrs, C, H,
                               n_head, act, eps, None if cos is None else ptr(cos),
                               None if sin is None else ptr(sin), softcap, cache.dtype == "u16"):
            raise oom(op)

    @staticmethod
    def _check_rope_tables(op, cos, sin, hs, positions) -> None:
        for name, t in (("cos", cos), ("sin", sin)):
            if (t.shape != cos.shape or t.ndim != 2 or t.shape[1] != hs // 2 or t.dtype != "f32"
                    or not t.is_contiguous):
                raise ValueError(f"{op}: rope {name} {t.shape} {t.dtype} must be contiguous f32 "
                                 f"(L, {hs // 2})")
        if max(positions) >= cos.shape[0]:
            raise ValueError(f"{op}: position {max(positions)} is outside the rope tables' "
                             f"[0, {cos.shape[0]})")

    _ACTS = {"gelu": 0, "relu": 1, "silu": 2, "swiglu": 3, "relu2": 4}  # decode.c's ACT_*

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

    def _decode_step(self, ids, caches, slots, positions, params, n_head, activation, eps,
                     **options):
        """One C call for the whole step (`csrc/decode.c` `decode_step`: the embedding, every
        block as `_block_decode` runs it, ln_f and the head), so the same bits as the model's
        op-by-op path, and the engine's thread gives up the interpreter lock once a step."""
        return self._whole_step("decode_step", ids, 1, caches, slots, positions, params, n_head,
                                activation, eps, options)

    def _prefill_step(self, ids, caches, slots, starts, params, n_head, activation, eps,
                      **options):
        """Its twin for T > 1 new positions per sequence (`csrc/decode.c` `prefill_step`)."""
        return self._whole_step("prefill_step", ids, ids.shape[1], caches, slots, starts, params,
                                n_head, activation, eps, options)

    def _whole_step(self, op, ids, T, caches, slots, starts, params, n_head, activation, eps,
                    options):
        """decode_step / prefill_step. The params' checks and pointers are remembered with the
        tuple (the model passes the same one every step), and so are the logits returned (one
        tensor per batch size, per tuple: two models decoding at once on two threads never share
        one). Declines what `_block_decode` declines (norm, qk_norm)."""
        unknown = set(options) - self.step_options
        if unknown:
            raise NotImplementedError(f"need {op} with {', '.join(sorted(unknown))}")
        cos, sin = options.get("rope") or (None, None)
        softcap = float(options.get("softcap", 0.0))
        ck.need_softcap(op, softcap)
        M, (V, C) = len(slots), params[0].shape
        seen = self.__dict__.setdefault("_step_params", {})  # key -> (params, checked args)
        key = (id(params), n_head, activation)
        hit = seen.get(key)
        if hit is None or hit[0] is not params:
            hit = (params,) + self._decode_step_args(op, params, n_head, activation) + ({},)
            # an entry holds a model's weights and their packed copy: drop those whose tuple
            # nothing else holds (its model or cache is gone: an unloaded server model)
            for k in [k for k, h in seen.items() if sys.getrefcount(h[0]) <= 2]:
                del seen[k]
            if len(seen) > 16:
                seen.clear()
            seen[key] = hit  # holds `params`, so its id is not reused while remembered
        _, fixed, layer_ptrs, packed, H, act, outs = hit
        wte, wpe, n_pos, ln_w, ln_b, head_t, head_ld = fixed
        if cos is not None:
            self._check_rope_tables(op, cos, sin, C // n_head, [p + T - 1 for p in starts])
        logits = outs.get(M)
        if logits is None:
            logits = outs[M] = self.empty((M, V), "f32")
        ids = self._contig(ids)
        cache_ptrs = (ctypes.c_void_p * len(caches))(*[ptr(c) for c in caches])
        idx = array("q", slots) + array("q", starts)
        base = idx.buffer_info()[0]
        rows = (M,) if op == "decode_step" else (M, T)
        rc = getattr(self.k, op)(ptr(logits), ptr(ids), *rows, wte, V, wpe, n_pos, len(caches),
                                 cache_ptrs, caches[0].shape[1] * 2 * C, base, base + 8 * M,
                                 layer_ptrs, packed[0], ln_w, ln_b, head_t, head_ld, C, H,
                                 n_head, act,
                                 eps, None if cos is None else ptr(cos),
                                 None if sin is None else ptr(sin), softcap,
                                 caches[0].dtype == "u16")  # u16: an f16 cache (csrc/half.h)
        if rc == -2:
            raise ValueError(f"{op}: an id is outside [0, {V}) or a position outside the "
                             f"position table ({n_pos})")
        if rc:
            raise oom(op)
        cap = options.get("logit_softcap")
        if cap:
            self.softcap_forward(logits, logits, cap)
        return logits

    def _decode_step_args(self, op, params, n_head, activation):
        """(fixed pointers, per-layer pointer array, packed weights, H, activation code) for
        `decode_step`, after checking every weight. Packed weights: (pointer array, the buffer
        holding them), each layer's four matrices and the head in contiguous panels
        (`alpha_pack_panels`):
        decode_step reads every weight from memory once per step (they do not stay in cache
        between steps), and a row-major panel is K pieces a row apart, which the hardware
        prefetchers follow poorly; packed, a batch-32 step's products ran ~1.8x faster, batch 1
        ~1.6x, the same bits. They are copies made when the tuple is first seen: like head_t
        (alpha/model/kvcache.py), a tuple belongs to the weights it was made with."""
        wte, wpe, blocks, ln_w, ln_b, head_t = params
        V, C = wte.shape
        layer_ptrs, H, act = [], 0, 0
        for p in blocks:
            ptrs, H, act = self._block_decode_args(op, p, C, n_head, activation)
            layer_ptrs.extend(ptrs)
        for name, t, want in (("wte", wte, (V, C)), ("ln_f weight", ln_w, (C,)),
                              ("ln_f bias", ln_b, (C,)), ("head_t", head_t, (C, V)),
                              ("wpe", wpe, (wpe.shape[0] if wpe is not None else 0, C))):
            if t is None and name in ("wpe", "ln_f bias"):
                continue
            rows = t is not None and t.ndim == 2 and t.strides[1] == 1 \
                and t.strides[0] >= t.shape[1]  # head_t's rows may be padded
            if t is None or t.shape != want or t.dtype != "f32" or not (
                    t.is_contiguous or (name == "head_t" and rows)):
                got = "None" if t is None else f"{t.shape} {t.dtype}"
                raise ValueError(f"{op}: {name} is {got}; expected contiguous f32 {want}")
        fixed = (ptr(wte), None if wpe is None else ptr(wpe),
                 0 if wpe is None else wpe.shape[0], ptr(ln_w),
                 None if ln_b is None else ptr(ln_b), ptr(head_t), head_t.strides[0])
        mats = [p[i] for p in blocks for i in (2, 4, 8, 10)] + [head_t]
        addrs, whole = self._pack_panels(mats)
        packed = ((ctypes.c_void_p * len(addrs))(*addrs), whole)
        return fixed, (ctypes.c_void_p * len(layer_ptrs))(*layer_ptrs), packed, H, act

    def _pack_panels(self, mats):
        """Every w (K, N) f32 of `mats` (unit column stride) as `alpha_pack_panels` lays it out,
        one after another (64-byte aligned) in one buffer: (addresses, the buffer). One buffer
        from `zeros`, not one per matrix, so that it lies on huge pages (cpu_storage.py): a step
        reads all of it, ~12k 4-KB pages for config B."""
        sizes = [(w.shape[0] * w.shape[1] + 15) // 16 * 16 for w in mats]
        whole = self.zeros((sum(sizes),), "f32")
        addrs, at = [], ptr(whole)
        for w, n in zip(mats, sizes):
            self.k.alpha_pack_panels(at, ptr(w), w.strides[0], w.shape[0], w.shape[1])
            addrs.append(at)
            at += 4 * n
        return addrs, whole
