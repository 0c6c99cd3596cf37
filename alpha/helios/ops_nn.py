"""The model-level ops of HeliosBackend: softmax, layernorm, activations, dropout, embeddings,
cross-entropy, attention and AdamW (forward/backward pairs side by side). A mixin: the plumbing
(`_launch`, `_map`, `_contig`, `_new`, host transfers) lives in alpha/helios/backend.py.
"""

from __future__ import annotations

import math
from array import array

from alpha.tensor import checks as c
from alpha.helios.kernels import attention as katt
from alpha.helios.kernels import elementwise as kel
from alpha.helios.kernels import rows as krows

MAX_GROUPS = 65535


def _groups(n: int, local: int = 256, cap: int = 4096) -> int:
    return max(1, min(cap, (n + local - 1) // local))


class NNOps:
    # ---- rows: softmax, layernorm ------------------------------------------------------------
    def _row_op(self, key, build, outs, ins, extra=(), add=False, rc=None):
        """Run a row kernel on contiguous operands; non-contiguous outputs go through temps."""
        ins = [self._contig(t) for t in ins]
        temps = []
        for t in outs:
            if t.is_contiguous:
                temps.append(t)
            else:
                tmp = self._new(t.shape)
                if add:
                    self.copy(tmp, t)
                temps.append(tmp)
        R, C = rc or (ins[0].numel // ins[0].shape[-1], ins[0].shape[-1])
        if R:
            self._launch(key, build, [self._addr(t) for t in temps + ins] + [R, C] + list(extra),
                         (min(R, MAX_GROUPS), 1, 1))
        for t, tmp in zip(outs, temps):
            if t is not tmp:
                self.copy(t, tmp)

    def softmax_forward(self, out, x) -> None:
        self._softmax_fwd("softmax_forward", out, x, False)

    def log_softmax_forward(self, out, x) -> None:
        self._softmax_fwd("log_softmax_forward", out, x, True)

    def _softmax_fwd(self, op, out, x, log):
        c.need_f32(op, ("out", out), ("x", x))
        c.need_last_dim(op, x)
        c.need_shape(op, "out", out, x.shape, "x")
        self._row_op(("softmax_fwd", log), lambda: krows.softmax_forward(log), [out], [x])

    def softmax_backward(self, dx, dout, out) -> None:
        self._softmax_bwd("softmax_backward", dx, dout, out, False)

    def log_softmax_backward(self, dx, dout, out) -> None:
        self._softmax_bwd("log_softmax_backward", dx, dout, out, True)

    def _softmax_bwd(self, op, dx, dout, out, log):
        c.need_f32(op, ("dx", dx), ("dout", dout), ("out", out))
        c.need_last_dim(op, out)
        c.need_same_shape(op, "out", out, ("dout", dout), ("dx", dx))
        self._row_op(("softmax_bwd", log), lambda: krows.softmax_backward(log), [dx],
                     [dout, out], add=True)

    def layernorm_forward(self, out, mean, rstd, x, weight, bias, eps=1e-5) -> None:
        op = "layernorm_forward"
        c.need_f32(op, ("out", out), ("mean", mean), ("rstd", rstd), ("x", x),
                   ("weight", weight), ("bias", bias))
        C = c.need_last_dim(op, x)
        c.need_shape(op, "weight", weight, (C,), "x")
        if bias is not None:
            c.need_shape(op, "bias", bias, (C,), "x")
        c.need_shape(op, "out", out, x.shape, "x")
        c.need_shape(op, "mean", mean, x.shape[:-1], "x")
        c.need_shape(op, "rstd", rstd, x.shape[:-1], "x")
        hb = bias is not None
        ins = [x, weight] + ([bias] if hb else [])
        self._row_op(("ln_fwd", hb), lambda: krows.layernorm_forward(hb), [out, mean, rstd],
                     ins, [float(eps)])

    def layernorm_backward(self, dx, dweight, dbias, dout, x, weight, mean, rstd) -> None:
        op = "layernorm_backward"
        c.need_f32(op, ("dx", dx), ("dweight", dweight), ("dbias", dbias), ("dout", dout),
                   ("x", x), ("weight", weight), ("mean", mean), ("rstd", rstd))
        C = c.need_last_dim(op, x)
        c.need_same_shape(op, "x", x, ("dx", dx), ("dout", dout))
        c.need_same_shape(op, "weight", weight, ("dweight", dweight), ("dbias", dbias))
        c.need_shape(op, "weight", weight, (C,), "x")
        c.need_shape(op, "mean", mean, x.shape[:-1], "x")
        c.need_shape(op, "rstd", rstd, x.shape[:-1], "x")
        self._row_op(("ln_bwd_dx",), krows.layernorm_backward_dx, [dx],
                     [dout, x, weight, mean, rstd], add=True)
        hb = dbias is not None
        outs = [dweight] + ([dbias] if hb else [])
        temps = [t if t.is_contiguous else self._new(t.shape) for t in outs]
        for t, tmp in zip(outs, temps):
            if t is not tmp:
                self.copy(tmp, t)
        ins = [self._contig(t) for t in (dout, x, mean, rstd)]
        R = x.numel // C
        if R:
            rows, chunks = self._chunks(R, C)
            parts = [self._new((chunks, C)) for _ in temps]
            self._launch(("ln_bwd_params", hb), lambda: krows.layernorm_params_partial(hb),
                         [self._addr(t) for t in parts + ins] + [R, C, rows],
                         ((C + krows.COL_LOCAL - 1) // krows.COL_LOCAL, chunks, 1))
            for t, p in zip(temps, parts):
                self._launch(("colsum_finish", True), lambda: krows.colsum_finish(True),
                             [self._addr(t), self._addr(p), chunks, C], (_groups(C), 1, 1))
        for t, tmp in zip(outs, temps):
            if t is not tmp:
                self.copy(t, tmp)

    # ---- activations ---------------------------------------------------------------------------
    def _act_fwd(self, op, out, x, fn):
        c.need_f32(op, ("out", out), ("x", x))
        c.need_shape(op, "out", out, x.shape, "x")
        self._map(op, [(out, "out"), (x, "in")], x.shape, lambda k, ins, s: [fn(k, ins[1])])

    def _act_bwd(self, op, dx, dout, x, grad):
        c.need_f32(op, ("dx", dx), ("dout", dout), ("x", x))
        c.need_same_shape(op, "x", x, ("dout", dout), ("dx", dx))
        self._map(op, [(dx, "inout"), (dout, "in"), (x, "in")], x.shape,
                  lambda k, ins, s: [ins[0] + ins[1] * grad(k, ins[2])])

    def gelu_forward(self, out, x) -> None:
        self._act_fwd("gelu_forward", out, x, kel.gelu_forward)

    def gelu_backward(self, dx, dout, x) -> None:
        self._act_bwd("gelu_backward", dx, dout, x, kel.gelu_grad)

    def relu_forward(self, out, x) -> None:
        self._act_fwd("relu_forward", out, x, lambda k, v: k.select(v > 0.0, v, 0.0))

    def relu_backward(self, dx, dout, x) -> None:
        self._act_bwd("relu_backward", dx, dout, x, lambda k, v: k.select(v > 0.0, 1.0, 0.0))

    def silu_forward(self, out, x) -> None:
        self._act_fwd("silu_forward", out, x, kel.silu_forward)

    def silu_backward(self, dx, dout, x) -> None:
        self._act_bwd("silu_backward", dx, dout, x, kel.silu_grad)

    def _swiglu_check(self, op, x, other, name):
        if x.ndim < 1 or x.shape[-1] % 2:
            raise ValueError(f"{op}: x {x.shape} needs an even last dim")
        H = x.shape[-1] // 2
        c.need_shape(op, name, other, x.shape[:-1] + (H,), "x")
        return H

    def swiglu_forward(self, out, x) -> None:
        op = "swiglu_forward"
        c.need_f32(op, ("out", out), ("x", x))
        H = self._swiglu_check(op, x, out, "out")
        xa, xb = x.narrow(-1, 0, H), x.narrow(-1, H, H)
        self._map(op, [(out, "out"), (xa, "in"), (xb, "in")], out.shape,
                  lambda k, ins, s: [kel.silu_forward(k, ins[1]) * ins[2]])

    def swiglu_backward(self, dx, dout, x) -> None:
        op = "swiglu_backward"
        c.need_f32(op, ("dx", dx), ("dout", dout), ("x", x))
        H = self._swiglu_check(op, x, dout, "dout")
        c.need_shape(op, "dx", dx, x.shape, "x")
        xa, xb = x.narrow(-1, 0, H), x.narrow(-1, H, H)
        da, db = dx.narrow(-1, 0, H), dx.narrow(-1, H, H)

        def body(k, ins, s):
            ga, gb, g, a, b = ins
            return [ga + g * b * kel.silu_grad(k, a), gb + g * kel.silu_forward(k, a)]
        self._map(op, [(da, "inout"), (db, "inout"), (dout, "in"), (xa, "in"), (xb, "in")],
                  dout.shape, body)

    def dropout_forward(self, out, x, u, p) -> None:
        op = "dropout_forward"
        c.need_f32(op, ("out", out), ("x", x), ("u", u))
        if not 0.0 <= p < 1.0:
            raise ValueError(f"{op}: p={p} must be in [0, 1)")
        c.need_same_shape(op, "x", x, ("u", u), ("out", out))
        self._map(op, [(out, "out"), (x, "in"), (u, "in")], x.shape,
                  lambda k, ins, s: [k.select(ins[2] >= s[0], ins[1] / s[1], 0.0)],
                  [float(p), 1.0 - p], ["f32", "f32"])

    def dropout_backward(self, dx, dout, u, p) -> None:
        op = "dropout_backward"
        c.need_f32(op, ("dx", dx), ("dout", dout), ("u", u))
        if not 0.0 <= p < 1.0:
            raise ValueError(f"{op}: p={p} must be in [0, 1)")
        c.need_same_shape(op, "dout", dout, ("u", u), ("dx", dx))
        self._map(op, [(dx, "inout"), (dout, "in"), (u, "in")], dout.shape,
                  lambda k, ins, s: [ins[0] + k.select(ins[2] >= s[0], ins[1] / s[1], 0.0)],
                  [float(p), 1.0 - p], ["f32", "f32"])

    # ---- embeddings ---------------------------------------------------------------------------
    def _ids_on_host(self, t):
        sh = t.storage.shadow
        if sh is None:
            return self._host_values(t)
        if t.is_contiguous:
            return sh[t.offset:t.offset + t.numel]
        return [sh[i] for i in _positions(t)]

    def _check_ids(self, op, ids, V):
        for i in self._ids_on_host(ids):
            if not 0 <= i < V:
                raise ValueError(f"{op}: id {i} is outside the table's [0, {V})")

    def embedding_forward(self, out, ids, table) -> None:
        op = "embedding_forward"
        c.need_dtype(op, "ids", ids, ("i32",))
        c.need_f32(op, ("out", out), ("table", table))
        if table.ndim != 2:
            raise ValueError(f"{op}: table {table.shape} must be (V, C)")
        V, C = table.shape
        c.need_shape(op, "out", out, ids.shape + (C,), f"ids {ids.shape} and table {table.shape}")
        self._check_ids(op, ids, V)
        n = out.numel
        if n == 0:
            return
        o = out if out.is_contiguous else self._new(out.shape)
        ids, table = self._contig(ids), self._contig(table)
        self._launch(("embedding_forward",), krows.embedding_forward,
                     [self._addr(o), self._addr(ids), self._addr(table), n, C],
                     (_groups(n), 1, 1))
        if o is not out:
            self.copy(out, o)

    def embedding_backward(self, dtable, dout, ids) -> None:
        op = "embedding_backward"
        c.need_dtype(op, "ids", ids, ("i32",))
        c.need_f32(op, ("dtable", dtable), ("dout", dout))
        if dtable.ndim != 2:
            raise ValueError(f"{op}: dtable {dtable.shape} must be (V, C)")
        V, C = dtable.shape
        c.need_shape(op, "dout", dout, ids.shape + (C,),
                     f"ids {ids.shape} and dtable {dtable.shape}")
        self._check_ids(op, ids, V)
        N = ids.numel
        if N == 0 or C == 0:
            return
        d = dtable if dtable.is_contiguous else self._contig(dtable)
        dout = self._contig(dout)
        host = list(self._ids_on_host(ids))
        perm = sorted(range(N), key=host.__getitem__)  # stable: token order within an id
        seg, uid = [0], []
        for p, i in enumerate(perm):
            if not uid or host[i] != uid[-1]:
                if uid:
                    seg.append(p)
                uid.append(host[i])
        seg.append(N)
        ts = [self.from_array(array("i", v), None, "i32") for v in (perm, seg, uid)]
        U = len(uid)
        self._launch(("embedding_backward_segments",), krows.embedding_backward_segments,
                     [self._addr(d), self._addr(dout)] + [self._addr(t) for t in ts] + [U, C],
                     ((C + krows.COL_LOCAL - 1) // krows.COL_LOCAL, min(U, MAX_GROUPS), 1))
        if d is not dtable:
            self.copy(dtable, d)

    # ---- cross-entropy ------------------------------------------------------------------------
    def _ce_check(self, op, logits, targets):
        c.need_dtype(op, "targets", targets, ("i32",))
        c.need_f32(op, ("logits", logits))
        if logits.ndim != 2:
            raise ValueError(f"{op}: logits {logits.shape} must be (N, V)")
        N, V = logits.shape
        c.need_shape(op, "targets", targets, (N,), "logits")
        c.need_data(op, "V", V, logits)
        for t in self._ids_on_host(targets):
            if t != -1 and not 0 <= t < V:
                raise ValueError(f"{op}: target {t} is outside [0, {V}) (and is not -1)")
        return N, V

    def crossentropy_forward(self, losses, logits, targets) -> None:
        op = "crossentropy_forward"
        c.need_f32(op, ("losses", losses))
        N, V = self._ce_check(op, logits, targets)
        c.need_shape(op, "losses", losses, (N,), "logits")
        self._row_op(("ce_fwd",), krows.crossentropy_forward, [losses], [logits, targets])

    def crossentropy_backward(self, dlogits, dlosses, logits, targets) -> None:
        op = "crossentropy_backward"
        c.need_f32(op, ("dlogits", dlogits), ("dlosses", dlosses))
        N, V = self._ce_check(op, logits, targets)
        c.need_shape(op, "dlosses", dlosses, (N,), "logits")
        c.need_shape(op, "dlogits", dlogits, (N, V), "logits")
        self._row_op(("ce_bwd",), krows.crossentropy_backward, [dlogits],
                     [dlosses, logits, targets], add=True, rc=(N, V))

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

    def attention_forward(self, out, lse, qkv, n_head) -> None:
        op = "attention_forward"
        c.need_f32(op, ("out", out), ("lse", lse), ("qkv", qkv))
        B, T, C, hs = c.need_qkv(op, qkv, n_head)
        c.need_shape(op, "out", out, (B, T, C), "qkv")
        c.need_shape(op, "lse", lse, (B, n_head, T), "qkv")
        if B * T == 0:
            return
        qkv = self._contig(qkv)
        o = out if out.is_contiguous else self._new(out.shape)
        lo = lse if lse.is_contiguous else self._new(lse.shape)
        self._attn_fwd(o, lo, qkv, qkv.narrow(2, C, C), qkv.narrow(2, 2 * C, C), B, T, 0,
                       n_head, hs, True)
        if o is not out:
            self.copy(out, o)
        if lo is not lse:
            self.copy(lse, lo)

    def _tiled_attention(self, hs: int) -> bool:
        """Tiled kernels unroll hs x tile-rows FMAs: fast on GPUs, but LLVM (lavapipe) needs
        minutes to compile them past hs 16, so a CPU device keeps the row kernels there."""
        limit = 16 if self.dev.device_type == "cpu" else katt.MAX_TILED_HS
        return hs <= limit

    def _attn_fwd(self, out, lse, q, k, v, B, Tq, start, H, hs, write_lse):
        values = [self._addr(out), self._addr(lse), self._addr(q), self._addr(k),
                  self._addr(v), q.strides[0], q.strides[1], k.strides[0], k.strides[1],
                  out.strides[0], out.strides[1], Tq, start, H, hs, 1.0 / math.sqrt(hs),
                  int(write_lse)]
        if self._tiled_attention(hs):
            self._launch(("attn_fwd_tiled", hs), lambda: katt.attention_forward_tiled(hs),
                         values, ((Tq + katt.BLOCK - 1) // katt.BLOCK, H, B))
            return
        mk = self._keys_class(start + Tq)
        self._launch(("attn_fwd", mk), lambda: katt.attention_forward(mk), values, (Tq, H, B))

    def attention_backward(self, dqkv, dout, qkv, out, lse, n_head) -> None:
        op = "attention_backward"
        c.need_f32(op, ("dqkv", dqkv), ("dout", dout), ("qkv", qkv), ("out", out), ("lse", lse))
        B, T, C, hs = c.need_qkv(op, qkv, n_head)
        c.need_shape(op, "dqkv", dqkv, qkv.shape, "qkv")
        c.need_shape(op, "dout", dout, (B, T, C), "qkv")
        c.need_shape(op, "out", out, (B, T, C), "qkv")
        c.need_shape(op, "lse", lse, (B, n_head, T), "qkv")
        if B * T == 0:
            return
        qkv, dout, out, lse = (self._contig(t) for t in (qkv, dout, out, lse))
        g = dqkv if dqkv.is_contiguous else self._contig(dqkv)
        H = n_head
        D = self._new((B, H, T))
        n = B * H * T
        self._launch(("attn_bwd_d",), katt.attention_backward_d,
                     [self._addr(D), self._addr(dout), self._addr(out), n, T, H, hs],
                     (_groups(n, 64), 1, 1))
        base = self._addr(g)
        qb = self._addr(qkv)
        values = [base, base + C * 4, base + 2 * C * 4, self._addr(dout), qb, qb + C * 4,
                  qb + 2 * C * 4, self._addr(lse), self._addr(D), T * 3 * C, 3 * C, T * C, C,
                  T, H, hs, 1.0 / math.sqrt(hs)]
        if self._tiled_attention(hs):
            blocks = ((T + katt.BLOCK - 1) // katt.BLOCK, H, B)
            self._launch(("attn_bwd_dq_tiled", hs),
                         lambda: katt.attention_backward_dq_tiled(hs), values, blocks)
            for which in ("dk", "dv"):
                self._launch(("attn_bwd_kv_tiled", hs, which),
                             lambda: katt.attention_backward_kv_tiled(hs, which), values, blocks)
        else:
            mk = self._keys_class(T)
            self._launch(("attn_bwd_dq", mk), lambda: katt.attention_backward_dq(mk), values,
                         (T, H, B))
            self._launch(("attn_bwd_dkv", mk), lambda: katt.attention_backward_dkv(mk), values,
                         (T, H, B))
        if g is not dqkv:
            self.copy(dqkv, g)

    # ---- inference (the serving engine) -------------------------------------------------
    def matmul_rows(self, out, a, b, *, trans_b=False) -> None:
        """Batch-invariant rows: its matmul shaders give each output element one fixed k order, whatever M."""
        self.matmul(out, a, b, trans_b=trans_b)

    def block_decode(self, x, cache, slots, positions, params, n_head, activation, eps) -> None:
        raise NotImplementedError("need block_decode (the model runs the block op by op)")

    def kv_attention(self, out, q, k, v, n_head, start) -> None:
        op = "kv_attention"
        c.need_f32(op, ("out", out), ("q", q), ("k", k), ("v", v))
        if q.ndim != 3:
            raise ValueError(f"{op}: q {q.shape} must be (B, Tq, C)")
        B, Tq, C = q.shape
        if n_head < 1 or C % n_head:
            raise ValueError(f"{op}: C={C} of q {q.shape} is not divisible by n_head={n_head}")
        c.need_shape(op, "out", out, q.shape, "q")
        if k.ndim != 3 or k.shape[0] != B or k.shape[2] != C:
            raise ValueError(f"{op}: k {k.shape} does not match q {q.shape}")
        c.need_shape(op, "v", v, k.shape, "k")
        if start < 0 or start + Tq > k.shape[1]:
            raise ValueError(f"{op}: positions {start}..{start + Tq - 1} do not fit k {k.shape}")
        if B * Tq == 0:
            return
        if q.strides[2] != 1:
            q = self._contig(q)
        if k.strides[2] != 1 or v.strides != k.strides:
            k, v = self._contig(k), self._contig(v)
        o = out if out.is_contiguous else self._new(out.shape)
        self._attn_fwd(o, o, q, k, v, B, Tq, start, n_head, C // n_head, False)
        if o is not out:
            self.copy(out, o)

    # ---- optimizer ----------------------------------------------------------------------------
    def adamw_step(self, param, grad, m, v, *, lr, beta1, beta2, eps, weight_decay, step,
                   grad_scale=1.0) -> None:
        op = "adamw_step"
        c.need_f32(op, ("param", param), ("grad", grad), ("m", m), ("v", v))
        for name, t in (("grad", grad), ("m", m), ("v", v)):
            c.need_numel(op, name, t, "param", param)
        if step < 1:
            raise ValueError(f"adamw_step: step={step} must be >= 1")
        ts = [param, grad, m, v]
        if len({t.shape for t in ts}) > 1:
            ts = [self._contig(t) if t is not param else t for t in ts]
            if not param.is_contiguous:
                raise NotImplementedError("need adamw_step on a non-contiguous param of "
                                          "another shape than grad")
            ts = [t.view(param.numel) for t in ts]
        scalars = [lr, beta1, beta2, eps, weight_decay, 1.0 - beta1 ** step,
                   1.0 - beta2 ** step, grad_scale]
        self._map(op, [(ts[0], "inout"), (ts[1], "in"), (ts[2], "inout"), (ts[3], "inout")],
                  ts[0].shape, kel.adamw_body, [float(s) for s in scalars], ["f32"] * 8)


def _positions(t) -> list[int]:
    """Storage positions of a view's elements in row-major order."""
    pos = [t.offset]
    for n, s in zip(t.shape, t.strides):
        pos = [p + i * s for p in pos for i in range(n)]
    return pos

