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
"""

from __future__ import annotations

from alpha.spirv.dsl import Kernel

LOCAL = 64
NEG_INF = float("-inf")

FWD_PARAMS = [("out", "f32*"), ("lse", "f32*"), ("q", "f32*"), ("k", "f32*"), ("v", "f32*"),
              ("qsb", "u32"), ("qst", "u32"), ("ksb", "u32"), ("kst", "u32"),
              ("osb", "u32"), ("ost", "u32"), ("Tq", "u32"), ("start", "u32"), ("H", "u32"),
              ("hs", "u32"), ("scale", "f32"), ("write_lse", "u32")]


def _dot(k, p, pbase, q, qbase, n):
    acc = k.var("f32", 0.0)
    with k.loop(0, n) as d:
        acc.set(acc.get() + p[pbase + d] * q[qbase + d])
    return acc.get()


def attention_forward(max_keys: int) -> Kernel:
    k = Kernel("attention_forward", (LOCAL, 1, 1), FWD_PARAMS)
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
        s = _dot(k, q, qbase, kk, b * ksb + j * kst + h * hs, hs) * scale
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


def attention_backward_dq(max_keys: int) -> Kernel:
    k = Kernel("attention_backward_dq", (LOCAL, 1, 1), BWD_PARAMS)
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
        p = k.exp(_dot(k, q, qbase, kk, kbase, hs) * scale - L)
        dp = _dot(k, dout, gbase, v, kbase, hs)
        S[j] = p * (dp - Dt) * scale
    k.barrier()
    with k.loop(lid, hs, LOCAL) as d:
        acc = k.var("f32", 0.0)
        with k.loop(0, t + 1) as j:
            acc.set(acc.get() + S[j] * kk[b * sb + j * st + h * hs + d])
        dq[qbase + d] = dq[qbase + d] + acc.get()
    return k


def attention_backward_dkv(max_keys: int) -> Kernel:
    k = Kernel("attention_backward_dkv", (LOCAL, 1, 1), BWD_PARAMS)
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
        p = k.exp(_dot(k, q, qbase, kk, kbase, hs) * scale - lse[row])
        dp = _dot(k, dout, gbase, v, kbase, hs)
        P[t - j] = p
        G[t - j] = p * (dp - D[row]) * scale
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
