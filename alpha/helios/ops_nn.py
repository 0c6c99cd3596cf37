"""The model-level ops of HeliosBackend: softmax, layernorm, rmsnorm, activations, soft-cap, dropout, embeddings,
cross-entropy, attention and AdamW (forward/backward pairs side by side), as the hooks of the
checking front (`alpha.core.backend.Backend`). A mixin of HeliosBackend that reaches the device
only through `self.rt`, the runtime (alpha/helios/runtime.py).
"""

from __future__ import annotations

import math

from alpha.core.errors import CompilerNotFound
from alpha.helios.kernels import attention as katt
from alpha.helios.kernels import elementwise as kel
from alpha.helios.kernels import rope as krope
from alpha.helios.kernels import rows as krows
from alpha.helios.runtime import MAX_GROUPS, column_chunks, groups, positions


ZERO = ("zero",)  # the write record's mark of an allocation known to hold zeros (backend._fill)
HOST_COPY = ("host",)  # an i32 allocation's values on the host, as uploaded (backend._from_array)


def _lse_key(logits) -> tuple:
    """The write record's key of the log-sum-exp of the rows of the view `logits`."""
    return ("lse", logits.offset, logits.shape, logits.strides)


def _cap_key(softcap: float) -> tuple:
    """The attention pipelines' cache-key suffix: GPT-2's kernels keep their plain keys."""
    return (softcap,) if softcap else ()


_CHECKS = []  # [the CPU backend's kernels, or None where they cannot be built]


def _host_checks():
    """The C library's embedding_check and crossentropy_check (alpha.tensor.cpu_kernels), or
    None without a C compiler (the checks then run in Python)."""
    if not _CHECKS:
        from alpha.tensor import build
        from alpha.tensor.cpu_kernels import Kernels
        try:
            _CHECKS.append(Kernels(build.lib()))
        except (CompilerNotFound, RuntimeError, OSError):
            _CHECKS.append(None)
    return _CHECKS[0]


class NNOps:
    # the residual add and the layernorm after it in one kernel (add_layernorm_forward: x + y
    # stored and normalised as it is read). False: the add, then the layernorm (benchmarks:
    # the before)
    fuse_add_norm = True

    # ---- rows: softmax, layernorm ------------------------------------------------------------
    def _row_op(self, key, build, outs, ins, extra=(), add=False, rc=None, overwrites=()):
        """Run a row kernel on contiguous operands; non-contiguous outputs go through temps.
        `overwrites`: outputs it writes all of (see `Runtime.launch`)."""
        ins = [self.rt.contig(t) for t in ins]
        temps = []
        for t in outs:
            if t.is_contiguous:
                temps.append(t)
            else:
                tmp = self.rt.new(t.shape)
                if add:
                    self.rt.copy(tmp, t)
                temps.append(tmp)
        R, C = rc or (ins[0].numel // ins[0].shape[-1], ins[0].shape[-1])
        if R:
            addrs = [self.rt.addr(t) for t in temps + ins]
            self.rt.launch(key, build, addrs + [R, C] + list(extra), (min(R, MAX_GROUPS), 1, 1),
                           temps, [t for t in overwrites if t.is_contiguous and all(
                               i.storage.alloc is not t.storage.alloc for i in ins)])
        for t, tmp in zip(outs, temps):
            if t is not tmp:
                self.rt.copy(t, tmp)

    def _softmax_forward(self, out, x) -> None:
        self._softmax_fwd(out, x, False)

    def _log_softmax_forward(self, out, x) -> None:
        self._softmax_fwd(out, x, True)

    def _softmax_fwd(self, out, x, log):
        self._row_op(("softmax_fwd", log), lambda: krows.softmax_forward(log), [out], [x])

    def _softmax_backward(self, dx, dout, out) -> None:
        self._softmax_bwd(dx, dout, out, False)

    def _log_softmax_backward(self, dx, dout, out) -> None:
        self._softmax_bwd(dx, dout, out, True)

    def _softmax_bwd(self, dx, dout, out, log):
        self._row_op(("softmax_bwd", log), lambda: krows.softmax_backward(log), [dx],
                     [dout, out], add=True)

    def _out16(self, out, C=2):
        """The 16-bit type a producer writes beside its fp32 `out` for the tensor-core matmul
        that reads it next (rows of C, pairs in words: even), or None (no tensor cores, odd
        sizes, or a view: the matmul packs then)."""
        dt = self.matmul_dtype
        if dt in self._matrix_types() and out.is_contiguous and out.numel and C % 2 == 0 \
                and out.numel % 2 == 0:
            return dt
        return None

    def _keep16(self, out, u, dt) -> None:
        """Record u (written beside out) as out's `dt` packing in the write record."""
        self.dev.derived.put(out.storage.alloc, self._pack_key(out, dt), u)

    def _layernorm_forward(self, out, mean, rstd, x, weight, bias, eps) -> None:
        hb = bias is not None
        ins = [x, weight] + ([bias] if hb else [])
        dt = self._out16(out, x.shape[-1])
        u = [self.rt.new(out.shape, "u16")] if dt else []
        self._row_op(("ln_fwd", hb, dt), lambda: krows.layernorm_forward(hb, dt),
                     [out] + u + [mean, rstd], ins, [float(eps)])
        if dt:
            self._keep16(out, u[0], dt)

    def _add_layernorm_forward(self, sum_out, out, mean, rstd, x, y, weight, bias, eps) -> None:
        if not self.fuse_add_norm:
            return super()._add_layernorm_forward(sum_out, out, mean, rstd, x, y, weight, bias,
                                                  eps)
        hb = bias is not None
        ins = [x, y, weight] + ([bias] if hb else [])
        dt = self._out16(out, x.shape[-1])
        u = [self.rt.new(out.shape, "u16")] if dt else []
        self._row_op(("add_ln_fwd", hb, dt), lambda: krows.layernorm_forward(hb, dt, add=True),
                     [sum_out, out] + u + [mean, rstd], ins, [float(eps)])
        if dt:
            self._keep16(out, u[0], dt)

    def _layernorm_backward(self, dx, dweight, dbias, dout, x, weight, mean, rstd) -> None:
        C = x.shape[-1]
        self._row_op(("ln_bwd_dx",), krows.layernorm_backward_dx, [dx],
                     [dout, x, weight, mean, rstd], add=True)
        hb = dbias is not None
        outs = [dweight] + ([dbias] if hb else [])
        temps = [t if t.is_contiguous else self.rt.new(t.shape) for t in outs]
        for t, tmp in zip(outs, temps):
            if t is not tmp:
                self.rt.copy(tmp, t)
        ins = [self.rt.contig(t) for t in (dout, x, mean, rstd)]
        R = x.numel // C
        if R:
            rows, chunks = column_chunks(R, C)
            parts = [self.rt.new((chunks, C)) for _ in temps]
            self.rt.launch(("ln_bwd_params", hb), lambda: krows.layernorm_params_partial(hb),
                           [self.rt.addr(t) for t in parts + ins] + [R, C, rows],
                           ((C + krows.COL_LOCAL - 1) // krows.COL_LOCAL, chunks, 1), parts)
            for t, p in zip(temps, parts):
                self.rt.launch(("colsum_finish", True), lambda: krows.colsum_finish(True),
                               [self.rt.addr(t), self.rt.addr(p), chunks, C], (groups(C), 1, 1),
                               [t])
        for t, tmp in zip(outs, temps):
            if t is not tmp:
                self.rt.copy(t, tmp)

    def _rmsnorm_forward(self, out, rstd, x, weight, eps) -> None:
        self._row_op(("rms_fwd",), krows.rmsnorm_forward, [out, rstd], [x, weight],
                     [float(eps)])

    def _rmsnorm_backward(self, dx, dweight, dout, x, weight, rstd) -> None:
        C = x.shape[-1]
        self._row_op(("rms_bwd_dx",), krows.rmsnorm_backward_dx, [dx], [dout, x, weight, rstd],
                     add=True)
        R = x.numel // C
        if not R:
            return
        dw = dweight if dweight.is_contiguous else self.rt.contig(dweight)
        ins = [self.rt.contig(t) for t in (dout, x, rstd)]
        rows, chunks = column_chunks(R, C)
        part = self.rt.new((chunks, C))
        self.rt.launch(("rms_bwd_params",), krows.rmsnorm_params_partial,
                       [self.rt.addr(t) for t in [part] + ins] + [R, C, rows],
                       ((C + krows.COL_LOCAL - 1) // krows.COL_LOCAL, chunks, 1), [part])
        self.rt.launch(("colsum_finish", True), lambda: krows.colsum_finish(True),
                       [self.rt.addr(dw), self.rt.addr(part), chunks, C], (groups(C), 1, 1),
                       [dw])
        if dw is not dweight:
            self.rt.copy(dweight, dw)

    # ---- activations ---------------------------------------------------------------------------
    def _act_fwd(self, op, out, x, fn):
        dt = self._out16(out)
        if dt and x.is_contiguous:
            # the MLP's hidden activation feeds a tensor-core product: its 16-bit copy is
            # written here and kept in the write record as out's packing
            n = out.numel
            u = self.rt.new(out.shape, "u16")
            self.rt.launch(("map_packed", op, dt), lambda: kel.map_packed(op, fn, dt),
                           [self.rt.addr(out), self.rt.addr(u), self.rt.addr(x), n // 2],
                           (groups(n // 2), 1, 1), [out, u])
            self._keep16(out, u, dt)
            return
        self.rt.map(op, [(out, "out"), (x, "in")], x.shape, lambda k, ins, s: [fn(k, ins[1])])

    def _act_bwd(self, op, dx, dout, x, grad):
        if self.dev.derived.get(dx.storage.alloc, ZERO) is not None:
            # a fresh gradient (the MLP's hidden one: 200 MB a layer in GPT-2 small): written
            # without being read
            self.rt.map(op + "_set", [(dx, "out"), (dout, "in"), (x, "in")], x.shape,
                        lambda k, ins, s: [ins[1] * grad(k, ins[2])])
            return
        self.rt.map(op, [(dx, "inout"), (dout, "in"), (x, "in")], x.shape,
                    lambda k, ins, s: [ins[0] + ins[1] * grad(k, ins[2])])

    def _gelu_forward(self, out, x) -> None:
        self._act_fwd("gelu_forward", out, x, kel.gelu_forward)

    def _gelu_backward(self, dx, dout, x) -> None:
        self._act_bwd("gelu_backward", dx, dout, x, kel.gelu_grad)

    def _relu_forward(self, out, x) -> None:
        self._act_fwd("relu_forward", out, x, lambda k, v: k.select(v > 0.0, v, 0.0))

    def _relu_backward(self, dx, dout, x) -> None:
        self._act_bwd("relu_backward", dx, dout, x, lambda k, v: k.select(v > 0.0, 1.0, 0.0))

    def _relu2_forward(self, out, x) -> None:
        self._act_fwd("relu2_forward", out, x, lambda k, v: k.select(v > 0.0, v * v, 0.0))

    def _relu2_backward(self, dx, dout, x) -> None:
        self._act_bwd("relu2_backward", dx, dout, x, lambda k, v: k.select(v > 0.0, 2.0 * v, 0.0))

    def _softcap_forward(self, out, x, cap) -> None:
        self.rt.map("softcap_forward", [(out, "out"), (x, "in")], x.shape,
                    lambda k, ins, s: [kel.softcap_forward(k, ins[1], s[0])], [cap], ["f32"])

    def _softcap_backward(self, dx, dout, out, cap) -> None:
        self.rt.map("softcap_backward", [(dx, "inout"), (dout, "in"), (out, "in")], out.shape,
                    lambda k, ins, s: [ins[0] + ins[1] * kel.softcap_grad(k, ins[2], s[0])],
                    [cap], ["f32"])

    def _silu_forward(self, out, x) -> None:
        self._act_fwd("silu_forward", out, x, kel.silu_forward)

    def _silu_backward(self, dx, dout, x) -> None:
        self._act_bwd("silu_backward", dx, dout, x, kel.silu_grad)

    def _swiglu_forward(self, out, x, H) -> None:
        op = "swiglu_forward"
        xa, xb = x.narrow(-1, 0, H), x.narrow(-1, H, H)
        self.rt.map(op, [(out, "out"), (xa, "in"), (xb, "in")], out.shape,
                    lambda k, ins, s: [kel.silu_forward(k, ins[1]) * ins[2]])

    def _swiglu_backward(self, dx, dout, x, H) -> None:
        op = "swiglu_backward"
        xa, xb = x.narrow(-1, 0, H), x.narrow(-1, H, H)
        da, db = dx.narrow(-1, 0, H), dx.narrow(-1, H, H)

        def body(k, ins, s):
            ga, gb, g, a, b = ins
            return [ga + g * b * kel.silu_grad(k, a), gb + g * kel.silu_forward(k, a)]
        self.rt.map(op, [(da, "inout"), (db, "inout"), (dout, "in"), (xa, "in"), (xb, "in")],
                    dout.shape, body)

    def _dropout_forward(self, out, x, u, p) -> None:
        op = "dropout_forward"
        self.rt.map(op, [(out, "out"), (x, "in"), (u, "in")], x.shape,
                    lambda k, ins, s: [k.select(ins[2] >= s[0], ins[1] / s[1], 0.0)],
                    [float(p), 1.0 - p], ["f32", "f32"])

    def _dropout_backward(self, dx, dout, u, p) -> None:
        op = "dropout_backward"
        self.rt.map(op, [(dx, "inout"), (dout, "in"), (u, "in")], dout.shape,
                    lambda k, ins, s: [ins[0] + k.select(ins[2] >= s[0], ins[1] / s[1], 0.0)],
                    [float(p), 1.0 - p], ["f32", "f32"])

    # ---- embeddings ---------------------------------------------------------------------------
    def _ids_on_host(self, t):
        sh = self.dev.derived.get(t.storage.alloc, HOST_COPY)
        if sh is None:
            return self.rt.host_values(t)
        if t.is_contiguous:
            return sh[t.offset:t.offset + t.numel]
        return [sh[i] for i in positions(t)]

    def _find_outside(self, ids, V, ignore):
        # the view's min and max, found once and kept in the write record (a step checks the
        # same ids and targets six times); uploaded ids are checked by the CPU backend's C
        # check instead, when it is there: min and max of 16k ids cost ~0.3 ms each in Python,
        # on every step of a replayed training step (its ids are new every time)
        rec, key = self.dev.derived, ("bounds", ids.offset, ids.shape, ids.strides)
        bounds = rec.get(ids.storage.alloc, key)
        if bounds is None:
            sh = rec.get(ids.storage.alloc, HOST_COPY)
            checks = _host_checks() if sh is not None and ids.is_contiguous else None
            if checks is not None and ids.numel:
                host = sh[ids.offset:ids.offset + ids.numel]
                check = checks.crossentropy_check if ignore else checks.embedding_check
                bad = check(host.buffer_info()[0], len(host), V)
                return None if bad < 0 else (bad, host[bad])
            host = self._ids_on_host(ids)
            bounds = (min(host), max(host)) if len(host) else (0, 0)
            rec.put(ids.storage.alloc, key, bounds)
        if bounds[0] >= (-1 if ignore else 0) and bounds[1] < V:
            return None
        host = self._ids_on_host(ids)
        for i, v in enumerate(host):
            if not (0 <= v < V or (ignore and v == -1)):
                return i, v
        return None

    def _embedding_forward(self, out, ids, table) -> None:
        C = table.shape[1]
        n = out.numel
        if n == 0:
            return
        o = out if out.is_contiguous else self.rt.new(out.shape)
        ids, table = self.rt.contig(ids), self.rt.contig(table)
        self.rt.launch(("embedding_forward",), krows.embedding_forward,
                       [self.rt.addr(o), self.rt.addr(ids), self.rt.addr(table), n, C],
                       (groups(n), 1, 1), [o])
        if o is not out:
            self.rt.copy(out, o)

    def _embedding_backward(self, dtable, dout, ids) -> None:
        C = dtable.shape[1]
        N = ids.numel
        if N == 0 or C == 0:
            return
        d = dtable if dtable.is_contiguous else self.rt.contig(dtable)
        dout = self.rt.contig(dout)
        ids = self.rt.contig(ids)
        perm, srt, seglen = (self.rt.new((N,), t) for t in ("i32", "i32", "u32"))
        self.rt.launch(("embedding_rank",), krows.embedding_rank,
                       [self.rt.addr(t) for t in (perm, srt, seglen, ids)] + [N],
                       (groups(N), 1, 1), [perm, srt, seglen], [perm, srt, seglen])
        addrs = [self.rt.addr(t) for t in (d, dout, perm, srt, seglen)]
        self.rt.launch(("embedding_backward_sorted",), krows.embedding_backward_sorted,
                       addrs + [N, C],
                       ((C + krows.COL_LOCAL - 1) // krows.COL_LOCAL, min(N, MAX_GROUPS), 1),
                       [d])
        if d is not dtable:
            self.rt.copy(dtable, d)

    # ---- cross-entropy ------------------------------------------------------------------------
    def _crossentropy_forward(self, losses, logits, targets) -> None:
        lse = self.rt.new(logits.shape[:1])
        self._row_op(("ce_fwd",), krows.crossentropy_forward, [losses, lse], [logits, targets])
        # kept for the backward while the logits are not written
        self.dev.derived.put(logits.storage.alloc, _lse_key(logits), lse)

    def _crossentropy_backward(self, dlogits, dlosses, logits, targets) -> None:
        """From the forward's log-sum-exp (one read of the logits); written without a read
        where dlogits is known to hold zeros (a fresh gradient); with tensor cores, the 16-bit
        copy the next matmul reads is written too (kept in the write record as its packing)."""
        R, V = logits.shape
        rec = self.dev.derived
        lse = rec.get(logits.storage.alloc, _lse_key(logits))
        if lse is None:  # no forward of these logits since they were last written
            lse = self.rt.new((R,))
            self._row_op(("ce_fwd",), krows.crossentropy_forward, [self.rt.new((R,)), lse],
                         [logits, targets])
        overwrite = rec.get(dlogits.storage.alloc, ZERO) is not None
        out16 = self._out16(dlogits, V)
        outs = [dlogits] + ([self.rt.new((R, V), "u16")] if out16 else [])
        self._row_op(("ce_bwd", overwrite, out16),
                     lambda: krows.crossentropy_backward(overwrite, out16), outs,
                     [dlosses, logits, targets, lse], add=True, rc=(R, V),
                     overwrites=[dlogits] if overwrite and out16 else [])  # every row
        if out16:
            self._keep16(dlogits, outs[1], out16)

    # ---- attention ----------------------------------------------------------------------------
    def _keys_class(self, n: int) -> int:
        cls = 64
        while cls < n:
            cls *= 2
        limit = self.dev.limits.maxComputeSharedMemorySize // 4 - 2 * katt.LOCAL
        if 2 * cls > limit:
            raise NotImplementedError(f"need attention for {n} keys (shared memory holds "
                                      f"{limit // 2})")
        return cls

    def _attention_forward(self, out, lse, qkv, n_head, softcap=0.0) -> None:
        B, T, C = out.shape
        hs = C // n_head
        if B * T == 0:
            return
        qkv = self.rt.contig(qkv)
        o = out if out.is_contiguous else self.rt.new(out.shape)
        lo = lse if lse.is_contiguous else self.rt.new(lse.shape)
        self._attn_fwd(o, lo, qkv, qkv.narrow(2, C, C), qkv.narrow(2, 2 * C, C), B, T, 0,
                       n_head, hs, True, softcap)
        if o is not out:
            self.rt.copy(out, o)
        if lo is not lse:
            self.rt.copy(lse, lo)

    def _tiled_attention(self, hs: int) -> bool:
        """Tiled kernels unroll hs x tile-rows FMAs: fast on GPUs, but LLVM (lavapipe) needs
        minutes to compile them past hs 16, so a CPU device keeps the row kernels there."""
        limit = 16 if self.dev.device_type == "cpu" else katt.MAX_TILED_HS
        return hs <= limit

    def _attn_fwd(self, out, lse, q, k, v, B, Tq, start, H, hs, write_lse, softcap):
        values = [self.rt.addr(out), self.rt.addr(lse), self.rt.addr(q), self.rt.addr(k),
                  self.rt.addr(v), q.strides[0], q.strides[1], k.strides[0], k.strides[1],
                  out.strides[0], out.strides[1], Tq, start, H, hs, 1.0 / math.sqrt(hs),
                  int(write_lse)]
        if self._tiled_attention(hs):
            self.rt.launch(("attn_fwd_tiled", hs) + _cap_key(softcap),
                           lambda: katt.attention_forward_tiled(hs, softcap),
                           values, ((Tq + katt.BLOCK - 1) // katt.BLOCK, H, B), [out, lse])
            return
        mk = self._keys_class(start + Tq)
        self.rt.launch(("attn_fwd", mk) + _cap_key(softcap),
                       lambda: katt.attention_forward(mk, softcap), values, (Tq, H, B),
                       [out, lse])

    def _attention_backward(self, dqkv, dout, qkv, out, lse, n_head, softcap=0.0) -> None:
        B, T, C = out.shape
        hs = C // n_head
        if B * T == 0:
            return
        qkv, dout, out, lse = (self.rt.contig(t) for t in (qkv, dout, out, lse))
        g = dqkv if dqkv.is_contiguous else self.rt.contig(dqkv)
        H = n_head
        D = self.rt.new((B, H, T))
        n = B * H * T
        self.rt.launch(("attn_bwd_d",), katt.attention_backward_d,
                       [self.rt.addr(D), self.rt.addr(dout), self.rt.addr(out), n, T, H, hs],
                       (groups(n, 64), 1, 1), [D])
        base = self.rt.addr(g)
        qb = self.rt.addr(qkv)
        values = [base, base + C * 4, base + 2 * C * 4, self.rt.addr(dout), qb, qb + C * 4,
                  qb + 2 * C * 4, self.rt.addr(lse), self.rt.addr(D), T * 3 * C, 3 * C, T * C, C,
                  T, H, hs, 1.0 / math.sqrt(hs)]
        if self._tiled_attention(hs):
            blocks = ((T + katt.BLOCK - 1) // katt.BLOCK, H, B)
            self.rt.launch(("attn_bwd_dq_tiled", hs) + _cap_key(softcap),
                           lambda: katt.attention_backward_dq_tiled(hs, softcap), values, blocks,
                           [g])
            for which in ("dk", "dv"):
                self.rt.launch(("attn_bwd_kv_tiled", hs, which) + _cap_key(softcap),
                               lambda: katt.attention_backward_kv_tiled(hs, which, softcap),
                               values, blocks, [g])
        else:
            mk = self._keys_class(T)
            self.rt.launch(("attn_bwd_dq", mk) + _cap_key(softcap),
                           lambda: katt.attention_backward_dq(mk, softcap), values, (T, H, B),
                           [g])
            self.rt.launch(("attn_bwd_dkv", mk) + _cap_key(softcap),
                           lambda: katt.attention_backward_dkv(mk, softcap), values, (T, H, B),
                           [g])
        if g is not dqkv:
            self.rt.copy(dqkv, g)

    # ---- inference (the serving engine) -------------------------------------------------
    # (_matmul_rows lives with the matmuls, in ops_matmul.py)

    # (no _block_decode: the model runs the block op by op)

    def _kv_attention(self, out, q, k, v, n_head, start, softcap=0.0) -> None:
        B, Tq, C = q.shape
        if B * Tq == 0:
            return
        if q.strides[2] != 1:
            q = self.rt.contig(q)
        if k.strides[2] != 1 or v.strides != k.strides:
            k, v = self.rt.contig(k), self.rt.contig(v)
        o = out if out.is_contiguous else self.rt.new(out.shape)
        self._attn_fwd(o, o, q, k, v, B, Tq, start, n_head, C // n_head, False, softcap)
        if o is not out:
            self.rt.copy(out, o)

    # ---- rotary position embedding (kernels/rope.py) -------------------------------------------
    def _rope_forward(self, out, qkv, positions, cos, sin, n_head) -> None:
        self._rope(False, out, qkv, positions, cos, sin, n_head)

    def _rope_backward(self, dqkv, dout, positions, cos, sin, n_head) -> None:
        self._rope(True, dqkv, dout, positions, cos, sin, n_head)

    def _rope(self, backward, out, x, positions, cos, sin, n_head) -> None:
        B, T, C3 = x.shape
        C = C3 // 3
        n = B * T * C  # one invocation per (row, rotated pair or v element)
        if n == 0:
            return
        o = out if out.is_contiguous else self.rt.contig(out)  # (a backward adds into it)
        x, positions = self.rt.contig(x), self.rt.contig(positions)
        cos, sin = self.rt.contig(cos), self.rt.contig(sin)
        self.rt.launch(("rope", backward), lambda: krope.rope(backward),
                       [self.rt.addr(o), self.rt.addr(x), self.rt.addr(positions),
                        self.rt.addr(cos), self.rt.addr(sin), n, C, C // n_head // 2,
                        positions.numel], (groups(n), 1, 1), [o])
        if o is not out:
            self.rt.copy(out, o)

    # ---- optimizer ----------------------------------------------------------------------------
    def _adamw_step(self, param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step,
                    grad_scale) -> None:
        op = "adamw_step"
        ts = [param, grad, m, v]
        if len({t.shape for t in ts}) > 1:
            ts = [self.rt.contig(t) if t is not param else t for t in ts]
            if not param.is_contiguous:
                raise NotImplementedError("need adamw_step on a non-contiguous param of "
                                          "another shape than grad")
            ts = [t.view(param.numel) for t in ts]
        scalars = [lr, beta1, beta2, eps, weight_decay, 1.0 - beta1 ** step,
                   1.0 - beta2 ** step, grad_scale]
        self.rt.map(op, [(ts[0], "inout"), (ts[1], "in"), (ts[2], "inout"), (ts[3], "inout")],
                    ts[0].shape, kel.adamw_body, [float(s) for s in scalars], ["f32"] * 8)

