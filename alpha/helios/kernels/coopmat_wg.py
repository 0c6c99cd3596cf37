"""Tensor-core matmul with workgroup-scope cooperative matrices (VK_NV_cooperative_matrix2): the
whole workgroup owns one BM x BN fp32 accumulator and multiplies BM x BK by BK x BN tiles loaded
straight from global memory; the driver chooses the subgroup split, the shared-memory staging and
the pipelining (what `coopmat.py` spells out by hand for subgroup-scope matrices).

Same push constants as the other matmul kernels. Only for tiles that fit exactly: M % BM == N %
BN == K % BK == 0, 16-bit inputs whose contiguous dimension has stride 1 and whose other strides
and bases are multiples of 8 elements (16-byte rows of uvec4 units), C rows 16-byte aligned; the
backend checks this and otherwise uses `coopmat.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from alpha.spirv.dsl import Kernel
from alpha.helios.kernels.coopmat import (ALIGNED, COL_MAJOR, ROW_MAJOR, USE_A, USE_ACC, USE_B,
                                          _Coop)
from alpha.helios.kernels.matmul import PARAMS

SCOPE_WORKGROUP = 2
UNIT = 8  # 16-bit elements per uvec4


@dataclass(frozen=True)
class WgConfig:
    BM: int = 128
    BN: int = 128
    BK: int = 32
    threads: int = 256


def wg_matmul_kernel(cfg: WgConfig, dtype: str, a_kcontig: bool, b_ncontig: bool) -> Kernel:
    BM, BN, BK = cfg.BM, cfg.BN, cfg.BK
    params = [(n, "u64" if t.endswith("*") else t) for n, t in PARAMS]
    name = (f"coopmat_wg_{dtype}_{BM}x{BN}x{BK}_{cfg.threads}_{'k' if a_kcontig else 'm'}"
            f"{'n' if b_ncontig else 'k'}")
    k = Kernel(name, (cfg.threads, 1, 1), params, version=(1, 6))
    cp = _Coop(k, dtype)
    m = cp.m
    c_addr, a_addr, b_addr, M, N, K, sab, sam, sak, sbb, sbk, sbn, alpha, beta = k.params()
    f32 = k.ty("f32")

    def mat(elem, rows, cols, use):
        return m.type_coopmat(elem, cp.c(SCOPE_WORKGROUP), cp.c(rows), cp.c(cols), cp.c(use))

    tA, tB, tC = mat(cp.elem16, BM, BK, USE_A), mat(cp.elem16, BK, BN, USE_B), \
        mat(f32, BM, BN, USE_ACC)
    a_buf = cp.buffer(a_addr, cp.u4, 16, "u16x8")
    b_buf = cp.buffer(b_addr, cp.u4, 16, "u16x8")
    c_buf = cp.buffer(c_addr, f32, 4, "c_f32")
    n0 = k.group_id(0) * BN
    m0 = k.group_id(1) * BM
    batch = k.group_id(2)
    abase = batch * sab
    bbase = batch * sbb
    acc = k.fn.variable(m.type_pointer("Function", tC))
    k.fn.op("OpStore", acc, m.constant_composite(tC, m.constant(f32, 0.0)))
    with k.loop(0, K, BK) as k0:
        if a_kcontig:
            ai, astride, alay = (abase + m0 * sam + k0) >> 3, sam >> 3, ROW_MAJOR
        else:
            ai, astride, alay = (abase + k0 * sak + m0) >> 3, sak >> 3, COL_MAJOR
        if b_ncontig:
            bi, bstride, blay = (bbase + k0 * sbk + n0) >> 3, sbk >> 3, ROW_MAJOR
        else:
            bi, bstride, blay = (bbase + n0 * sbn + k0) >> 3, sbn >> 3, COL_MAJOR
        av = k.fn.op("OpCooperativeMatrixLoadKHR", cp.elem_ptr(a_buf, "u16x8", ai),
                     cp.c(alay), astride.id, ALIGNED, 16, type=tA)
        bv = k.fn.op("OpCooperativeMatrixLoadKHR", cp.elem_ptr(b_buf, "u16x8", bi),
                     cp.c(blay), bstride.id, ALIGNED, 16, type=tB)
        cur = k.fn.op("OpLoad", acc, type=tC)
        k.fn.op("OpStore", acc, k.fn.op("OpCooperativeMatrixMulAddKHR", av, bv, cur, type=tC))
    p = cp.elem_ptr(c_buf, "c_f32", batch * (M * N) + m0 * N + n0)
    res = k.fn.op("OpMatrixTimesScalar", k.fn.op("OpLoad", acc, type=tC), alpha.id, type=tC)
    out = k.fn.variable(m.type_pointer("Function", tC))
    k.fn.op("OpStore", out, res)
    with k.if_(beta.ne(0.0)):
        old = k.fn.op("OpCooperativeMatrixLoadKHR", p, cp.c(ROW_MAJOR), N.id, ALIGNED, 16,
                      type=tC)
        sc = k.fn.op("OpMatrixTimesScalar", old, beta.id, type=tC)
        k.fn.op("OpStore", out, k.fn.op("OpFAdd", res, sc, type=tC))
    k.fn.op("OpCooperativeMatrixStoreKHR", p, k.fn.op("OpLoad", out, type=tC), cp.c(ROW_MAJOR),
            N.id, ALIGNED, 16)
    return k
