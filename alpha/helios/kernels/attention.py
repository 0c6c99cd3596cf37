"""Causal self-attention, one workgroup per (query, head, batch) row, exact softmax with the
scores held in shared memory (keys up to `max_keys`, the kernel's shape class).

Forward: S_j = scale * q.k_j (j <= start + t), P = softmax(S), out = P @ V, lse saved.
Backward (three passes, no atomics, deterministic):
  D[t]   = dout_t . out_t                                   (`attention_backward_d`)
  dq_t  += scale * sum_j P_tj (dout_t.v_j - D_t) k_j         (`attention_backward_dq`, per query)
  dk_j  += scale * sum_t P_tj (dout_t.v_j - D_t) q_t;
  dv_j  += sum_t P_tj dout_t                                 (`attention_backward_dkv`, per key)
q, k, v, out are addressed as base + b*sb + t*st + h*hs + d (d contiguous), so packed qkv and
KV-cache views need no copies.

Every builder takes `softcap` (a compile-time constant, part of the pipeline's cache key): with
c > 0 each scaled score s is capped to c * tanh(s / c) before the softmax (Gemma 2), and the
backward's dS is multiplied by the cap's derivative 1 - tanh(s / c)^2. c = 0 builds exactly the
GPT-2 kernels.
"""

from __future__ import annotations

from alpha.spirv.dsl import Kernel

LOCAL = 64
NEG_INF = float("-inf")

FWD_PARAMS = [("out", "f32*"), ("lse", "f32*"), ("q", "f32*"), ("k", "f32*"), ("v", "f32*"),
              ("qsb", "u32"), ("qst", "u32"), ("ksb", "u32"), ("kst", "u32"),
              ("osb", "u32"), ("ost", "u32"), ("Tq", "u32"), ("start", "u32"), ("H", "u32"),
              ("hs", "u32"), ("scale", "f32"), ("write_lse", "u32")]


def tanh_clamped(k, x):
    """tanh, with x clamped to [-15, 15] first: tanh(15) is 1.0 in f32, and a driver's
    exp-based tanh would give inf / inf = NaN far out."""
    return k.tanh(k.fmin(k.fmax(x, -15.0), 15.0))


def _cap(k, s, softcap: float):
    """The capped score c * tanh(s / c); s itself when softcap is 0."""
    return tanh_clamped(k, s * (1.0 / softcap)) * softcap if softcap else s


def _cap_grad(k, s, softcap: float):
    """(capped score, d capped / d s) of a scaled score s; (s, None) when softcap is 0."""
    if not softcap:
        return s, None
    th = tanh_clamped(k, s * (1.0 / softcap))
    return th * softcap, 1.0 - th * th


def _times(x, g):
    return x if g is None else x * g


def _suffix(softcap: float) -> str:
    return f"_cap{softcap:g}".replace(".", "p").replace("-", "m") if softcap else ""


def _dot(k, p, pbase, q, qbase, n):
    acc = k.var("f32", 0.0)
    with k.loop(0, n) as d:
        acc.set(acc.get() + p[pbase + d] * q[qbase + d])
    return acc.get()


def attention_forward(max_keys: int, softcap: float = 0.0) -> Kernel:
    k = Kernel("attention_forward" + _suffix(softcap), (LOCAL, 1, 1), FWD_PARAMS)
    (out, lse, q, kk, v, qsb, qst, ksb, kst, osb, ost, Tq, start, H, hs, scale,
     write_lse) = k.params()
    S = k.shared("f32", max_keys)
    sh = k.shared("f32", LOCAL)
    t, h, b = k.group_id(0), k.group_id(1), k.group_id(2)
    lid = k.local_id(0)
    nkeys = start + t + 1
    qbase = b * qsb + t * qst + h * hs
    mx = k.var("f32", NEG_INF)
    with k.loop(lid, nkeys, LOCAL) as j:
        s = _cap(k, _dot(k, q, qbase, kk, b * ksb + j * kst + h * hs, hs) * scale, softcap)
        S[j] = s
        mx.set(k.fmax(mx.get(), s))
    m = k.reduce_max(mx.get(), sh)
    sm = k.var("f32", 0.0)
    with k.loop(lid, nkeys, LOCAL) as j:
        p = k.exp(S[j] - m)
        S[j] = p
        sm.set(sm.get() + p)
    total = k.reduce_sum(sm.get(), sh)
    inv = 1.0 / total
    obase = b * osb + t * ost + h * hs
    with k.loop(lid, hs, LOCAL) as d:
        acc = k.var("f32", 0.0)
        vcol = b * ksb + h * hs + d
        with k.loop(0, nkeys) as j:
            acc.set(acc.get() + S[j] * v[vcol + j * kst])
        out[obase + d] = acc.get() * inv
    with k.if_(lid.eq(0) & write_lse.ne(0)):
        lse[(b * H + h) * Tq + t] = m + k.log(total)
    return k


BWD_PARAMS = [("dq", "f32*"), ("dk", "f32*"), ("dv", "f32*"), ("dout", "f32*"),
              ("q", "f32*"), ("k", "f32*"), ("v", "f32*"), ("lse", "f32*"), ("D", "f32*"),
              ("sb", "u32"), ("st", "u32"), ("dsb", "u32"), ("dst", "u32"), ("T", "u32"),
              ("H", "u32"), ("hs", "u32"), ("scale", "f32")]


def attention_backward_d() -> Kernel:
    """D[(b*H + h)*T + t] = dout_t . out_t over the head's hs columns; one invocation each."""
    k = Kernel("attention_backward_d", (64, 1, 1),
               [("D", "f32*"), ("dout", "f32*"), ("out", "f32*"), ("n", "u32"), ("T", "u32"),
                ("H", "u32"), ("hs", "u32")])
    D, dout, out, n, T, H, hs = k.params()
    with k.loop(k.gid, n, k.nthreads) as i:
        t = i % T
        bh = i / T
        h = bh % H
        b = bh / H
        base = (b * T + t) * (H * hs) + h * hs
        D[i] = _dot(k, dout, base, out, base, hs)
    return k


def attention_backward_dq(max_keys: int, softcap: float = 0.0) -> Kernel:
    k = Kernel("attention_backward_dq" + _suffix(softcap), (LOCAL, 1, 1), BWD_PARAMS)
    dq, dk, dv, dout, q, kk, v, lse, D, sb, st, dsb, dst, T, H, hs, scale = k.params()
    S = k.shared("f32", max_keys)
    t, h, b = k.group_id(0), k.group_id(1), k.group_id(2)
    lid = k.local_id(0)
    row = (b * H + h) * T + t
    L, Dt = lse[row], D[row]
    qbase = b * sb + t * st + h * hs
    gbase = b * dsb + t * dst + h * hs
    with k.loop(lid, t + 1, LOCAL) as j:
        kbase = b * sb + j * st + h * hs
        s, g = _cap_grad(k, _dot(k, q, qbase, kk, kbase, hs) * scale, softcap)
        p = k.exp(s - L)
        dp = _dot(k, dout, gbase, v, kbase, hs)
        S[j] = _times(p * (dp - Dt), g) * scale
    k.barrier()
    with k.loop(lid, hs, LOCAL) as d:
        acc = k.var("f32", 0.0)
        with k.loop(0, t + 1) as j:
            acc.set(acc.get() + S[j] * kk[b * sb + j * st + h * hs + d])
        dq[qbase + d] = dq[qbase + d] + acc.get()
    return k


def attention_backward_dkv(max_keys: int, softcap: float = 0.0) -> Kernel:
    k = Kernel("attention_backward_dkv" + _suffix(softcap), (LOCAL, 1, 1), BWD_PARAMS)
    dq, dk, dv, dout, q, kk, v, lse, D, sb, st, dsb, dst, T, H, hs, scale = k.params()
    P = k.shared("f32", max_keys)
    G = k.shared("f32", max_keys)
    j, h, b = k.group_id(0), k.group_id(1), k.group_id(2)
    lid = k.local_id(0)
    kbase = b * sb + j * st + h * hs
    # queries t in [j, T): index t - j
    with k.loop(j + lid, T, LOCAL) as t:
        row = (b * H + h) * T + t
        qbase = b * sb + t * st + h * hs
        gbase = b * dsb + t * dst + h * hs
        s, g = _cap_grad(k, _dot(k, q, qbase, kk, kbase, hs) * scale, softcap)
        p = k.exp(s - lse[row])
        dp = _dot(k, dout, gbase, v, kbase, hs)
        P[t - j] = p
        G[t - j] = _times(p * (dp - D[row]), g) * scale
    k.barrier()
    with k.loop(lid, hs, LOCAL) as d:
        ak = k.var("f32", 0.0)
        av = k.var("f32", 0.0)
        with k.loop(j, T) as t:
            ak.set(ak.get() + G[t - j] * q[b * sb + t * st + h * hs + d])
            av.set(av.get() + P[t - j] * dout[b * dsb + t * dst + h * hs + d])
        dk[kbase + d] = dk[kbase + d] + ak.get()
        dv[kbase + d] = dv[kbase + d] + av.get()
    return k


# ---- tiled kernels (flash-attention style): one invocation per query (or key) row ------------
# The head size HS is a compile-time constant (the row lives in registers); key/query tiles of
# BK rows are staged in shared memory and read by every invocation of the block (broadcast).
# Used when HS <= MAX_TILED_HS; the row kernels above handle any head size.
MAX_TILED_HS = 128
BLOCK = 64


def _tile_rows(HS: int, forward: bool) -> int:
    return max(4, min(32 if forward else 16, 2048 // HS))


def _stage(k, lid, dsts, BK, HS, row0, nrows, srcs):
    """Cooperatively copy rows row0..row0+BK-1 (clamped to nrows-1) of each source into its
    shared tile: srcs are (pointer, base, row stride)."""
    for e in range((BK * HS + BLOCK - 1) // BLOCK):
        idx = lid + e * BLOCK
        r, d = idx / HS, idx % HS
        row = k.umin(row0 + r, nrows - 1)

        def body():
            for dst, (ptr, base, stride) in zip(dsts, srcs):
                dst[idx] = ptr[base + row * stride + d]
        if (BK * HS) % BLOCK and e == (BK * HS) // BLOCK:
            with k.if_(idx < BK * HS):
                body()
        else:
            body()


def _dot_tile(k, regs, tile, row, HS):
    acc = regs[0] * tile[row * HS]
    for d in range(1, HS):
        acc = acc + regs[d] * tile[row * HS + d]
    return acc


def attention_forward_tiled(HS: int, softcap: float = 0.0) -> Kernel:
    BK = _tile_rows(HS, True)
    k = Kernel(f"attention_forward_tiled{HS}" + _suffix(softcap), (BLOCK, 1, 1), FWD_PARAMS)
    (out, lse, q, kk, v, qsb, qst, ksb, kst, osb, ost, Tq, start, H, hs, scale,
     write_lse) = k.params()
    Ks, Vs = k.shared("f32", BK * HS), k.shared("f32", BK * HS)
    qb, h, b = k.group_id(0), k.group_id(1), k.group_id(2)
    lid = k.local_id(0)
    t = qb * BLOCK + lid
    valid = t < Tq
    tc = k.umin(t, Tq - 1)
    qbase = b * qsb + tc * qst + h * HS
    qr = [q[qbase + d] * scale for d in range(HS)]
    limit = start + tc
    nkeys = start + k.umin(qb * BLOCK + (BLOCK - 1), Tq - 1) + 1
    m, l = k.var("f32", NEG_INF), k.var("f32", 0.0)
    acc = [k.var("f32", 0.0) for _ in range(HS)]
    kvbase = b * ksb + h * HS
    with k.loop(0, nkeys, BK) as kt:
        _stage(k, lid, [Ks, Vs], BK, HS, kt, nkeys, [(kk, kvbase, kst), (v, kvbase, kst)])
        k.barrier()
        with k.if_(valid & (kt <= limit)):
            s = [k.select(kt + j <= limit, _cap(k, _dot_tile(k, qr, Ks, j, HS), softcap), NEG_INF)
                 for j in range(BK)]
            mt = m.get()
            for sj in s:
                mt = k.fmax(mt, sj)
            corr = k.exp(m.get() - mt)
            p = [k.exp(sj - mt) for sj in s]
            lv = l.get() * corr
            for pj in p:
                lv = lv + pj
            for d in range(HS):
                a = acc[d].get() * corr
                for j in range(BK):
                    a = a + p[j] * Vs[j * HS + d]
                acc[d].set(a)
            m.set(mt)
            l.set(lv)
        k.barrier()
    with k.if_(valid):
        inv = 1.0 / l.get()
        obase = b * osb + tc * ost + h * HS
        for d in range(HS):
            out[obase + d] = acc[d].get() * inv
        with k.if_(write_lse.ne(0)):
            lse[(b * H + h) * Tq + tc] = m.get() + k.log(l.get())
    return k


def attention_backward_dq_tiled(HS: int, softcap: float = 0.0) -> Kernel:
    BK = _tile_rows(HS, False)
    k = Kernel(f"attention_backward_dq_tiled{HS}" + _suffix(softcap), (BLOCK, 1, 1), BWD_PARAMS)
    dq, dk, dv, dout, q, kk, v, lse, D, sb, st, dsb, dst, T, H, hs, scale = k.params()
    Ks, Vs = k.shared("f32", BK * HS), k.shared("f32", BK * HS)
    qb, h, b = k.group_id(0), k.group_id(1), k.group_id(2)
    lid = k.local_id(0)
    t = qb * BLOCK + lid
    valid = t < T
    tc = k.umin(t, T - 1)
    qbase = b * sb + tc * st + h * HS
    gbase = b * dsb + tc * dst + h * HS
    qr = [q[qbase + d] * scale for d in range(HS)]
    gr = [dout[gbase + d] for d in range(HS)]
    row = (b * H + h) * T + tc
    L, Dt = lse[row], D[row]
    acc = [k.var("f32", 0.0) for _ in range(HS)]
    nkeys = k.umin(qb * BLOCK + BLOCK, T)
    kvbase = b * sb + h * HS
    with k.loop(0, nkeys, BK) as kt:
        _stage(k, lid, [Ks, Vs], BK, HS, kt, nkeys, [(kk, kvbase, st), (v, kvbase, st)])
        k.barrier()
        with k.if_(valid & (kt <= tc)):
            ds = []
            for j in range(BK):
                s, g = _cap_grad(k, _dot_tile(k, qr, Ks, j, HS), softcap)
                p = k.select(kt + j <= tc, k.exp(s - L), 0.0)
                ds.append(_times(p * (_dot_tile(k, gr, Vs, j, HS) - Dt), g))
            for d in range(HS):
                a = acc[d].get()
                for j in range(BK):
                    a = a + ds[j] * Ks[j * HS + d]
                acc[d].set(a)
        k.barrier()
    with k.if_(valid):
        for d in range(HS):
            dq[qbase + d] = dq[qbase + d] + acc[d].get() * scale
    return k


def attention_backward_kv_tiled(HS: int, which: str, softcap: float = 0.0) -> Kernel:
    """which "dv": dv_j += sum_t P_tj dout_t; "dk": dk_j += scale sum_t dS_tj q_t."""
    BK = _tile_rows(HS, False)
    k = Kernel(f"attention_backward_{which}_tiled{HS}" + _suffix(softcap), (BLOCK, 1, 1),
               BWD_PARAMS)
    dq, dk, dv, dout, q, kk, v, lse, D, sb, st, dsb, dst, T, H, hs, scale = k.params()
    Qs, Gs = k.shared("f32", BK * HS), k.shared("f32", BK * HS)
    Ls, Ds = k.shared("f32", BK), k.shared("f32", BK)
    kb, h, b = k.group_id(0), k.group_id(1), k.group_id(2)
    lid = k.local_id(0)
    j = kb * BLOCK + lid
    valid = j < T
    jc = k.umin(j, T - 1)
    kbase = b * sb + jc * st + h * HS
    kr = [kk[kbase + d] * scale for d in range(HS)]
    vr = [v[kbase + d] for d in range(HS)] if which == "dk" else None
    acc = [k.var("f32", 0.0) for _ in range(HS)]
    lrow = (b * H + h) * T
    with k.loop(kb * BLOCK, T, BK) as tt:
        _stage(k, lid, [Qs], BK, HS, tt, T, [(q, b * sb + h * HS, st)])
        _stage(k, lid, [Gs], BK, HS, tt, T, [(dout, b * dsb + h * HS, dst)])
        with k.if_(lid < BK):
            r = k.umin(tt + lid, T - 1)
            Ls[lid] = lse[lrow + r]
            Ds[lid] = D[lrow + r]
        k.barrier()
        with k.if_(valid & (tt + (BK - 1) >= jc)):
            w = []
            for r in range(BK):
                t = tt + r
                ok = (t >= jc) & (t < T)
                s, g = _cap_grad(k, _dot_tile(k, kr, Qs, r, HS), softcap)
                p = k.select(ok, k.exp(s - Ls[r]), 0.0)
                w.append(p if which == "dv" else _times(p * (_dot_tile(k, vr, Gs, r, HS) - Ds[r]),
                                                        g))
            src = Gs if which == "dv" else Qs
            for d in range(HS):
                a = acc[d].get()
                for r in range(BK):
                    a = a + w[r] * src[r * HS + d]
                acc[d].set(a)
        k.barrier()
    dst_ptr = dv if which == "dv" else dk
    with k.if_(valid):
        for d in range(HS):
            g = acc[d].get() if which == "dv" else acc[d].get() * scale
            dst_ptr[kbase + d] = dst_ptr[kbase + d] + g
    return k
