"""Fused causal flash attention (head dim 64) on tensor cores: forward and backward without the
(B*H, T, T) score matrices.

Inputs are q, k, v (and dO) packed head-major to bf16 ((B*H, T, 64) u16 tensors, `pack_heads`);
products multiply bf16 on the matrix units with fp32 accumulation. A workgroup has NSG subgroups
of 32 invocations; subgroup s owns 16 rows of the workgroup's 16*NSG-row tile and the other side
runs over tiles of the same size:

- `flash_forward`: rows are queries; for every key tile up to the diagonal, S = Q K^T goes from
  the accumulators to shared memory, where each invocation updates the online softmax of half a
  row (running max m, running sum l, rescale alpha = exp(m_old - m_new)) and writes P as bf16;
  O_part = P V goes to shared memory the same way and the invocations keep O = O * alpha +
  O_part in registers (KHR cooperative matrices cannot scale the rows of an accumulator). It
  writes out (B, T, C) and the row log-sum-exp (B*H, T): nothing else is saved.
- `flash_backward_q`: rows are queries; recomputes P = exp(S - lse) tile by tile, dP = dO V^T,
  dS = P * (dP - D) (D = rowsum(dO * O), `flash_rowdot`), dQ += dS K in accumulators.
- `flash_backward_kv`: rows are keys, running over the query tiles from the diagonal on:
  S^T = K Q^T, P^T, dV += P^T dO, dP^T = V dO^T, dS^T, dK += dS^T Q.
dQ has its own pass (it recomputes S and dP) so that every gradient element is written by one
invocation in a fixed order: no atomics, the same bits every run. dq, dk and dv are added into
the (B, T, 3C) gradient of qkv directly.

Each invocation owns half a row: row lane >> 1, columns 4j + 2h + e (h = lane & 1, e in 0, 1),
so the row reductions are one shuffle with the neighbouring lane and P is written as bf16 pairs.

`mode="emulated"` builds the same kernels with the matrix products done by scalar loops
(32-row tiles: lavapipe has 32 KiB of shared memory and no cooperative matrices). Everything but
the fragment loads, multiplies and stores is the same code, so the tests run the algorithm --
tile walk, masks, online softmax, shared-memory hand-offs, the gradient order -- on lavapipe
against float64; the coopmat kernels pass spirv-val there and are checked on the GPU by
`bench/gpu_attention.py`.
"""

from __future__ import annotations

from alpha.helios.kernels.flash_tiles import FRAG, HD, MODES, NEG, _Flash, block
from alpha.spirv.dsl import Kernel

__all__ = ["HD", "MODES", "block", "flash_forward", "flash_backward_q", "flash_backward_kv",
           "flash_rowdot"]

HEAD_PARAMS = [("q", "u64"), ("k", "u64"), ("v", "u64")]
SHAPE_PARAMS = [("T", "u32"), ("H", "u32"), ("scale", "f32")]
BWD_PARAMS = ([("dqkv", "f32*"), ("lse", "f32*"), ("dd", "f32*")] + HEAD_PARAMS
              + [("do", "u64")] + SHAPE_PARAMS)


def _query_tile(f: _Flash, T):
    """The workgroup's query tile (the longest rows first: causal rows near the end walk the
    most key tiles) -> (qt, bh, q0, qrow): tile index, sequence*head, first row, this
    invocation's row."""
    k = f.k
    nq = (T + (f.BT - 1)) / f.BT
    qt = nq - 1 - k.group_id(0)
    bh = k.group_id(1)
    q0 = qt * f.BT
    return qt, bh, q0, q0 + f.sg * FRAG + f.row


def _masked_scores(f: _Flash, qa_, k0, qrow, scale):
    """S = Q K^T of key tile k0 through shared memory -> (vis, s, mx): which columns are at or
    before this row (causal), the scaled scores of this half row (-inf-like NEG past it), and
    the whole row's max (one shuffle with the partner lane)."""
    k = f.k
    f.product(qa_, (f.X, "T"))
    f.sync()
    vis = [(k0 + c) <= qrow for c in f.cols(f.BT)]
    s = [k.select(v, x * scale, NEG) for v, x in zip(vis, f.read_row(f.BT))]
    mx = s[0]
    for x in s[1:]:
        mx = k.fmax(mx, x)
    return vis, s, k.fmax(mx, f.partner(mx))


def _probabilities(k, vis, s, m, m_new, alpha, lsum):
    """The online softmax's step for this half row: P = exp(S - m_new) where visible, the
    running sum rescaled by alpha plus this tile's part, the running max set to m_new."""
    p = [k.select(v, k.exp(x - m_new), 0.0) for v, x in zip(vis, s)]
    total = p[0]
    for x in p[1:]:
        total = total + x
    lsum.set(lsum.get() * alpha + total)
    m.set(m_new)
    return p


def flash_forward(mode: str = "coopmat", lazy: bool = True) -> Kernel:
    """out (B, T, H*64) and lse (B*H, T) of causal attention; grid (query tiles, B*H)."""
    if lazy:
        return _forward_lazy(mode)
    f = _Flash("flash_fwd", [("out", "f32*"), ("lse", "f32*")] + HEAD_PARAMS + SHAPE_PARAMS,
               mode)
    k = f.k
    out, lse, qa, ka, va, T, H, scale = k.params()
    qt, bh, q0, qrow = _query_tile(f, T)
    qa_ = f.held(qa, T, bh, q0)
    m = k.var("f32", NEG)
    lsum = k.var("f32", 0.0)  # this invocation's half of the row sum
    o = [k.var("f32", 0.0) for _ in range(HD // 2)]
    with f.walk(k.const(0, "u32"), qt + 1, T, bh, (ka, va)) as t:
        vis, s, mx = _masked_scores(f, qa_, t * f.BT, qrow, scale)
        m_old = m.get()
        m_new = k.fmax(m_old, mx)
        alpha = k.exp(m_old - m_new)
        p = _probabilities(k, vis, s, m, m_new, alpha, lsum)
        f.write_pairs(p)
        f.sync()
        f.product(("pb",), (f.Y, "N"))
        f.sync()
        for acc, x in zip(o, f.read_row(HD)):
            acc.set(acc.get() * alpha + x)
    total = lsum.get() + f.partner(lsum.get())
    inv = 1.0 / total
    C = H * HD
    ok = qrow < T
    f.store_rows(out, [acc.get() * inv for acc in o], ok, ((bh / H) * T + qrow) * C,
                 (bh % H) * HD, False)
    with k.if_(ok & f.half.eq(0)):
        lse[bh * T + qrow] = m.get() + k.log(total)
    return f.finish()


LAZY = 8.0  # the running max moves only when a row's max exceeds it by this (e^8 ~ 3000)


def _forward_lazy(mode: str) -> Kernel:
    """The forward with O in accumulators, rescaled only when a row's max grows by more than
    LAZY over the max its P values use (FlashAttention-4's conditional rescaling: P = exp(S -
    m_used) stays below e^LAZY, the sum and O use the same m_used; past the first tiles the max
    rarely moves), instead of O_part through shared memory on every tile."""
    f = _Flash("flash_fwd_lazy", [("out", "f32*"), ("lse", "f32*")] + HEAD_PARAMS
               + SHAPE_PARAMS, mode)
    k = f.k
    out, lse, qa, ka, va, T, H, scale = k.params()
    qt, bh, q0, qrow = _query_tile(f, T)
    C = H * HD
    ok = qrow < T
    qa_ = f.held(qa, T, bh, q0)
    m = k.var("f32", NEG)
    lsum = k.var("f32", 0.0)  # this invocation's half of the row sum
    o = f.accumulators(out, ((bh / H) * T + qrow) * C + (bh % H) * HD, k.const(1.0, "f32"), ok,
                       zero=True)
    with f.walk(k.const(0, "u32"), qt + 1, T, bh, (ka, va)) as t:
        vis, s, mx = _masked_scores(f, qa_, t * f.BT, qrow, scale)
        m_old = m.get()
        first = m_old < NEG / 2
        grow = mx > m_old + LAZY
        m_new = k.select(first | grow, k.fmax(m_old, mx), m_old)
        alpha = k.exp(m_old - m_new)  # 1 unless the max moved; 0 on the first tile
        p = _probabilities(k, vis, s, m, m_new, alpha, lsum)
        f.rescale(o, alpha, grow & ~first)  # O is still zero on the first tile
        f.write_pairs(p)
        f.sync()
        f.product(("pb",), (f.Y, "N"), o)
    total = lsum.get() + f.partner(lsum.get())
    f.store_acc(o, 1.0 / total)
    with k.if_(ok & f.half.eq(0)):
        lse[bh * T + qrow] = m.get() + k.log(total)
    return f.finish()


def flash_backward_q(mode: str = "coopmat") -> Kernel:
    """dqkv[..., 0:C] += dQ; grid (query tiles, B*H). dd: D = rowsum(dO * O) (B*H, T)."""
    f = _Flash("flash_bwd_q", BWD_PARAMS, mode)
    k = f.k
    dqkv, lse, dd, qa, ka, va, doa, T, H, scale = k.params()
    BT = f.BT
    qt, bh, q0, qrow = _query_tile(f, T)
    ok = qrow < T
    row_lse, row_d = k.var("f32", 0.0), k.var("f32", 0.0)
    with k.if_(ok):
        row_lse.set(lse[bh * T + qrow])
        row_d.set(dd[bh * T + qrow])
    qa_ = f.held(qa, T, bh, q0)
    doa_ = f.held(doa, T, bh, q0)
    C = H * HD
    dq = f.accumulators(dqkv, ((bh / H) * T + qrow) * (3 * C) + (bh % H) * HD, scale, ok)
    with f.walk(k.const(0, "u32"), qt + 1, T, bh, (ka, va)) as t:
        k0 = t * BT
        f.product(qa_, (f.X, "T"))
        f.sync()
        cols = f.cols(BT)
        p = [k.select((k0 + c) <= qrow, k.exp(x * scale - row_lse.get()), 0.0)
             for c, x in zip(cols, f.read_row(BT))]
        f.sync()
        f.product(doa_, (f.Y, "T"))
        f.sync()
        f.write_pairs([pj * (x - row_d.get()) for pj, x in zip(p, f.read_row(BT))])
        f.sync()
        f.product(("pb",), (f.X, "N"), dq)
    f.store_acc(dq)
    return f.finish()


def flash_backward_kv(mode: str = "coopmat") -> Kernel:
    """dqkv[..., C:2C] += dK, dqkv[..., 2C:3C] += dV; grid (key tiles, B*H)."""
    f = _Flash("flash_bwd_kv", BWD_PARAMS, mode)
    k = f.k
    dqkv, lse, dd, qa, ka, va, doa, T, H, scale = k.params()
    BT = f.BT
    nq = (T + (BT - 1)) / BT
    kt = k.group_id(0)  # the longest column walks first
    bh = k.group_id(1)
    k0 = kt * BT
    krow = k0 + f.sg * FRAG + f.row
    LD = f._shared(f.v2, BT)  # lse and D of the query tile (float pairs)
    f.extra_shared = 8 * BT
    ka_ = f.held(ka, T, bh, k0)
    va_ = f.held(va, T, bh, k0)
    C = H * HD
    ok = krow < T
    row = ((bh / H) * T + krow) * (3 * C) + (bh % H) * HD
    dk = f.accumulators(dqkv, row + C, scale, ok)
    dv = f.accumulators(dqkv, row + 2 * C, k.const(1.0, "f32"), ok)

    def stage_ld(q0):
        i = f.tid % BT
        lv = k.var("f32", 0.0)
        with k.if_(q0 + i < T):
            with k.if_(f.tid < BT):
                lv.set(lse[bh * T + q0 + i])
            with k.if_(f.tid >= BT):
                lv.set(dd[bh * T + q0 + i])
        f.st_r(f.tid, lv.get(), LD)

    with f.walk(kt, nq, T, bh, (qa, doa), stage_ld) as t:
        q0 = t * BT
        f.product(ka_, (f.X, "T"))
        f.sync()
        cols = f.cols(BT)
        tile_lse = f.read_pairs(LD, 0, BT)
        p = [k.select((krow <= q0 + c) & (q0 + c < T), k.exp(x * scale - m), 0.0)
             for c, x, m in zip(cols, f.read_row(BT), tile_lse)]
        f.write_pairs(p)
        f.sync()
        f.product(("pb",), (f.Y, "N"), dv)
        f.product(va_, (f.Y, "T"))
        f.sync()
        tile_d = f.read_pairs(LD, BT, BT)
        f.write_pairs([pj * (x - d) for pj, x, d in zip(p, f.read_row(BT), tile_d)])
        f.sync()
        f.product(("pb",), (f.X, "N"), dk)
    f.store_acc(dk)
    f.store_acc(dv)
    return f.finish()


ROWDOT_ROWS = 16  # rows of 64 a workgroup of 256 sums: 4 KB of dO and O read contiguously


def flash_rowdot() -> Kernel:
    """dd (B*H, T) = rowsum(dO * O) per (sequence, head, position) of dout and out (B, T, H*64):
    the D of the backward. A workgroup takes 16 rows in memory order, its invocations read
    consecutive floats (one invocation per row read 64 floats 3 KB away from its neighbours':
    1.3 ms a step in GPT-2 small), the products go through shared memory and 16 invocations
    add a row each."""
    k = Kernel("flash_rowdot", (256, 1, 1), [("dd", "f32*"), ("dout", "f32*"), ("out", "f32*"),
                                              ("n", "u32"), ("T", "u32"), ("H", "u32")])
    dd, dout, out, n, T, H = k.params()
    per = ROWDOT_ROWS * HD
    sh = k.shared("f32", per)
    lid = k.local_id(0)
    total = n * HD
    with k.loop(k.group_id(0), (n + ROWDOT_ROWS - 1) / ROWDOT_ROWS, k.num_groups(0)) as blk:
        for u in range(per // 256):
            e = blk * per + lid + 256 * u
            v = k.var("f32", 0.0)
            with k.if_(e < total):
                v.set(dout[e] * out[e])
            sh[lid + 256 * u] = v.get()
        k.barrier()
        m = blk * ROWDOT_ROWS + lid  # memory row (b*T + t)*H + h
        with k.if_((lid < ROWDOT_ROWS) & (m < n)):
            acc = k.var("f32", 0.0)
            with k.loop(0, HD) as d:
                acc.set(acc.get() + sh[lid * HD + d])
            h, bt = m % H, m / H
            dd[((bt / T) * H + h) * T + bt % T] = acc.get()
        k.barrier()
    return k
