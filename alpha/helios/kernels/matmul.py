"""Batched SGEMM: C[b] = alpha * A[b] @ B[b] + beta * C[b] with arbitrary element strides for A
and B (so transposes and views cost nothing) and a contiguous C.

Tiled SIMT kernel: a workgroup computes a BM x BN tile of C with (BM/TM) x (BN/TN) invocations,
each holding a TM x TN register block; K advances BK at a time through shared memory (A stored
k-major so the inner loop reads both tiles as rows). Edges are guarded (any M, N, K). The
configuration (`MatmulConfig`) is the shape class. The tensor-core kernel (`coopmat.py`) has the
same push-constant signature; this one is the fallback, and with `rounding` it reproduces the
tensor-core numerics (16-bit inputs, fp32 products and sums) where there are no tensor cores.
"""

from __future__ import annotations

from dataclasses import dataclass

from alpha.spirv.dsl import Kernel

PARAMS = [("c", "f32*"), ("a", "f32*"), ("b", "f32*"), ("M", "u32"), ("N", "u32"), ("K", "u32"),
          ("sab", "u32"), ("sam", "u32"), ("sak", "u32"), ("sbb", "u32"), ("sbk", "u32"),
          ("sbn", "u32"), ("alpha", "f32"), ("beta", "f32")]


@dataclass(frozen=True)
class MatmulConfig:
    BM: int = 64   # tile rows
    BN: int = 64   # tile cols
    BK: int = 16   # k step
    TM: int = 4    # rows per invocation
    TN: int = 4    # cols per invocation

    @property
    def threads(self) -> int:
        return (self.BM // self.TM) * (self.BN // self.TN)


SMALL = MatmulConfig(32, 32, 8, 2, 2)
DEFAULT = MatmulConfig()
LARGE = MatmulConfig(128, 128, 8, 8, 8)


def _lanes(t, T, B):
    """Tile rows (or cols) owned by invocation t: quads of 4 adjacent entries spaced B/(T/4)
    apart when T % 4 == 0 (so shared reads can be 128-bit and a warp reads consecutive
    quads), else T adjacent entries."""
    if T % 4 == 0:
        q = T // 4
        return [(qi * (B // q), t * 4, r) for qi in range(q) for r in range(4)]
    return [(0, t * T, r) for r in range(T)]


def round_bf16(k: Kernel, x):
    """x rounded to the nearest bf16 (ties to even), as an f32: what a bf16 matrix unit sees."""
    b = x.bits("u32")
    r = (b + (0x7FFF + ((b >> 16) & 1))) & 0xFFFF0000
    return k.select(k.isnan(x), x, r.bits("f32"))


ROUNDING = {None: None, "bf16": round_bf16}


def matmul_kernel(cfg: MatmulConfig, contiguous_k: bool = False, aligned: bool = False,
                  rounding: str | None = None) -> Kernel:
    """aligned: M % BM == N % BN == K % BK == 0, so no edge guards are emitted. rounding:
    "bf16" rounds every input element to that type as it is loaded (fp32 products and
    sums): the tensor-core numerics on a device without them (lavapipe, the tests). (No "f16":
    Vulkan leaves OpFConvert's rounding to the driver, and lavapipe truncates.)"""
    rnd = ROUNDING[rounding]
    BM, BN, BK, TM, TN = cfg.BM, cfg.BN, cfg.BK, cfg.TM, cfg.TN
    nt = cfg.threads
    SA = BM + 4 if contiguous_k else BM  # padded k-stride of As: conflict-free k-major stores
    k = Kernel(f"matmul_{BM}x{BN}x{BK}_{TM}x{TN}" + (f"_{rounding}" if rounding else ""),
               (nt, 1, 1), PARAMS)
    c, a, b, M, N, K, sab, sam, sak, sbb, sbk, sbn, alpha, beta = k.params()
    As = k.shared("f32", BK * SA)
    Bs = k.shared("f32", BK * BN)
    tid = k.local_id(0)
    tx = tid % (BN // TN)
    ty = tid / (BN // TN)
    n0 = k.group_id(0) * BN
    m0 = k.group_id(1) * BM
    batch = k.group_id(2)
    abase = batch * sab
    bbase = batch * sbb
    rows = _lanes(ty, TM, BM)
    cols = _lanes(tx, TN, BN)
    acc = [[k.var("f32", 0.0) for _ in range(TN)] for _ in range(TM)]

    # global -> registers (guarded loads), then registers -> shared, so the loads of the next
    # K step can be in flight while the current one is multiplied (register prefetch)
    plan = []  # (shared array, shared index, idx guard or None, global index fn, ptr, bounds fn)
    for l in range((BM * BK + nt - 1) // nt):
        idx = tid + l * nt
        if contiguous_k:  # consecutive invocations walk k: coalesced when sak == 1
            m, kk = idx / BK, idx % BK
        else:
            kk, m = idx / BM, idx % BM
        plan.append((As, kk * SA + m, (idx < BM * BK) if (BM * BK) % nt else None,
                     lambda k0, m=m, kk=kk: abase + (m0 + m) * sam + (k0 + kk) * sak, a,
                     lambda k0, m=m, kk=kk: ((m0 + m) < M) & ((k0 + kk) < K)))
    for l in range((BN * BK + nt - 1) // nt):
        idx = tid + l * nt
        kk, n = idx / BN, idx % BN
        plan.append((Bs, kk * BN + n, (idx < BN * BK) if (BN * BK) % nt else None,
                     lambda k0, n=n, kk=kk: bbase + (k0 + kk) * sbk + (n0 + n) * sbn, b,
                     lambda k0, n=n, kk=kk: ((n0 + n) < N) & ((k0 + kk) < K)))
    staged = [k.var("f32", 0.0) for _ in plan]

    def load(k0):
        for var, (_, _, _, gidx, src, bounds) in zip(staged, plan):
            if aligned:
                var.set(src[gidx(k0)] if rnd is None else rnd(k, src[gidx(k0)]))
            else:
                var.set(0.0)
                with k.if_(bounds(k0)):
                    var.set(src[gidx(k0)] if rnd is None else rnd(k, src[gidx(k0)]))

    def store():
        for var, (dst, sidx, idx_ok, _, _, _) in zip(staged, plan):
            if idx_ok is None:
                dst[sidx] = var.get()
            else:
                with k.if_(idx_ok):
                    dst[sidx] = var.get()

    load(k.const(0, "u32"))
    store()
    k.barrier()
    with k.loop(0, K, BK) as k0:
        nxt = k0 + BK
        with k.if_(nxt < K):
            load(nxt)
        regs = [[a_.get() for a_ in row] for row in acc]
        for kk in range(BK):
            abases = {}
            for qoff, base, _ in rows:
                if qoff not in abases:
                    abases[qoff] = base + (kk * SA + qoff)
            bbases = {}
            for qoff, base, _ in cols:
                if qoff not in bbases:
                    bbases[qoff] = base + (kk * BN + qoff)
            av = [As[abases[qoff] + r] if r else As[abases[qoff]] for qoff, _, r in rows]
            bv = [Bs[bbases[qoff] + r] if r else Bs[bbases[qoff]] for qoff, _, r in cols]
            for i in range(TM):
                for j in range(TN):
                    regs[i][j] = regs[i][j] + av[i] * bv[j]
        for i in range(TM):
            for j in range(TN):
                acc[i][j].set(regs[i][j])
        k.barrier()
        store()
        k.barrier()
    cbase = batch * (M * N)
    for i, (qi, bi, ri) in enumerate(rows):
        gm = m0 + bi + (qi + ri)
        for j, (qj, bj, rj) in enumerate(cols):
            gn = n0 + bj + (qj + rj)
            ci = cbase + gm * N + gn
            res = alpha * acc[i][j].get()
            if aligned:
                c[ci] = k.select(beta.ne(0.0), res + beta * c[ci], res)
                continue
            with k.if_((gm < M) & (gn < N)):
                with k.if_(beta.ne(0.0)):
                    c[ci] = res + beta * c[ci]
                with k.if_(beta.eq(0.0)):
                    c[ci] = res
    return k
