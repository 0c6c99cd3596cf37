"""Batched SGEMM: C[b] = alpha * A[b] @ B[b] + beta * C[b] with arbitrary element strides for A
and B (so transposes and views cost nothing) and a contiguous C.

Tiled SIMT kernel: a workgroup computes a BM x BN tile of C with (BM/TM) x (BN/TN) invocations,
each holding a TM x TN register block; K advances BK at a time through shared memory (A stored
k-major so the inner loop reads both tiles as rows). Edges are guarded (any M, N, K). The
configuration (`MatmulConfig`) is the shape class; a cooperative-matrix variant (fp16/bf16 in,
f32 accumulate; `alpha.spirv` has the KHR instructions) slots in as another builder with the same
push-constant signature.
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


def matmul_kernel(cfg: MatmulConfig, contiguous_k: bool = False) -> Kernel:
    BM, BN, BK, TM, TN = cfg.BM, cfg.BN, cfg.BK, cfg.TM, cfg.TN
    nt = cfg.threads
    k = Kernel(f"matmul_{BM}x{BN}x{BK}_{TM}x{TN}", (nt, 1, 1), PARAMS)
    c, a, b, M, N, K, sab, sam, sak, sbb, sbk, sbn, alpha, beta = k.params()
    As = k.shared("f32", BK * BM)
    Bs = k.shared("f32", BK * BN)
    tid = k.local_id(0)
    tx = tid % (BN // TN)
    ty = tid / (BN // TN)
    n0 = k.group_id(0) * BN
    m0 = k.group_id(1) * BM
    batch = k.group_id(2)
    abase = batch * sab
    bbase = batch * sbb
    acc = [[k.var("f32", 0.0) for _ in range(TN)] for _ in range(TM)]
    with k.loop(0, K, BK) as k0:
        # stage A (BM x BK) as As[kk*BM + m], and B (BK x BN) as Bs[kk*BN + n]
        for l in range((BM * BK + nt - 1) // nt):
            idx = tid + l * nt
            if contiguous_k:  # consecutive invocations walk k: coalesced when sak == 1
                m, kk = idx / BK, idx % BK
            else:
                kk, m = idx / BM, idx % BM
            gm, gk = m0 + m, k0 + kk
            ok = (gm < M) & (gk < K)
            v = k.var("f32", 0.0)
            with k.if_(ok):
                v.set(a[abase + gm * sam + gk * sak])
            if (BM * BK) % nt:
                with k.if_(idx < BM * BK):
                    As[kk * BM + m] = v.get()
            else:
                As[kk * BM + m] = v.get()
        for l in range((BN * BK + nt - 1) // nt):
            idx = tid + l * nt
            kk, n = idx / BN, idx % BN
            gn, gk = n0 + n, k0 + kk
            ok = (gn < N) & (gk < K)
            v = k.var("f32", 0.0)
            with k.if_(ok):
                v.set(b[bbase + gk * sbk + gn * sbn])
            if (BN * BK) % nt:
                with k.if_(idx < BN * BK):
                    Bs[kk * BN + n] = v.get()
            else:
                Bs[kk * BN + n] = v.get()
        k.barrier()
        regs = [[a_.get() for a_ in row] for row in acc]
        for kk in range(BK):
            av = [As[ty * TM + (kk * BM + i)] for i in range(TM)]
            bv = [Bs[tx * TN + (kk * BN + j)] for j in range(TN)]
            for i in range(TM):
                for j in range(TN):
                    regs[i][j] = regs[i][j] + av[i] * bv[j]
        for i in range(TM):
            for j in range(TN):
                acc[i][j].set(regs[i][j])
        k.barrier()
    cbase = batch * (M * N)
    for i in range(TM):
        gm = m0 + ty * TM + i
        for j in range(TN):
            gn = n0 + tx * TN + j
            with k.if_((gm < M) & (gn < N)):
                ci = cbase + gm * N + gn
                res = alpha * acc[i][j].get()
                with k.if_(beta.ne(0.0)):
                    c[ci] = res + beta * c[ci]
                with k.if_(beta.eq(0.0)):
                    c[ci] = res
    return k
