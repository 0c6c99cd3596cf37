"""Tensor-core matmul through VK_NV_cooperative_matrix2: C[b] = alpha * A[b] @ B[b] + beta * C[b]
(+ bias), 16-bit inputs (bf16 or fp16), fp32 accumulation, fp32 C. Same push constants as the
other matmul kernels (`matmul.PARAMS`, then the bias address), so the backend picks per call.

The whole workgroup owns one BM x BN workgroup-scope accumulator and multiplies BM x BK by BK x BN
workgroup-scope operands loaded with tensor addressing (SPV_NV_tensor_addressing): a tensor
layout gives each operand's dimensions and strides, a slice picks the tile, a transposing view
reads an operand stored the other way round (A as (K, M), B as (N, K)), so all three transposes
are one kernel. The driver stages the tiles through shared memory and pipelines the k loop
itself (the hand-written staging of `coopmat.py` is what subgroup-scope matrices need). Layouts
that clamp (ClampMode Constant) read zeros outside the operand and the stores skip what lies
outside C: any M, N, K and edge tiles without a separate path. `exact` (the caller checks that
M, N and K divide into whole tiles and that strides and bases are 16-byte multiples) uses
unclamped layouts and tells the compiler the strides are multiples of 8 elements.

The epilogue works on the whole accumulator: alpha scales it, beta adds C read through the same
clamped layout, and the bias is a BM x BN accumulator loaded with row stride 0 (every row the
same N values): the same roundings, in the same order, as the subgroup kernel.

Measured on an H200 (driver 580; bench/gpu_coopmat2.py, bench/gpu_results.md): 128x128x64 on
128 invocations 318 TFLOP/s at 8192^3 (A @ B^T 329; unrolled by 2: 316 / 336), the same as the
subgroup kernel (324 / 326, cuBLAS 800), and 5% slower in GPT-2 small's training step, so the
backend keeps it off (`MatmulOps.coop2`). 256 invocations, k steps of 16 or 32 and every tile
bigger than 128x128x64 ran slower (23-280); operands loaded a step ahead spilled (52).

What it is not: a causal-attention kernel (ops_attention keeps `coopmat.py` for those) or a
mixed-precision one (the inputs must already be 16-bit: `pack16`).
"""

from __future__ import annotations

from dataclasses import dataclass

from alpha.spirv.dsl import Kernel
from alpha.helios.kernels.coopmat import BIAS, USE_A, USE_ACC, USE_B, _Coop, tile_origin
from alpha.helios.kernels.matmul import PARAMS

SCOPE_WORKGROUP = 2
CLAMP_UNDEFINED, CLAMP_CONSTANT = 0, 1  # TensorClampMode
ALIGNED = 0x2  # MemoryAccess Aligned (PhysicalStorageBuffer accesses must say their alignment)
VIEW = 0x1  # TensorAddressingOperands TensorView


@dataclass(frozen=True)
class Cm2Config:
    """The default: 4 subgroups of 64x64 and k steps of 64 (the fastest on an H200)."""
    BM: int = 128  # tile rows
    BN: int = 128  # tile cols
    BK: int = 64   # k step
    threads: int = 128  # invocations (the device lists the workgroup sizes per granularity)
    unroll: int = 1  # k steps per loop iteration
    group_m: int = 8  # tile order: G tile rows walked down a column before moving right


DEFAULT = Cm2Config()


def coopmat2_kernel(cfg: Cm2Config, dtype: str = "bf16", a_kcontig: bool = True,
                    b_ncontig: bool = True, aligned: bool = True, exact: bool = False,
                    bias: bool = False) -> Kernel:
    """a_kcontig: A stored (M, K) with k the faster dimension (else (K, M), m faster); b_ncontig:
    B stored (K, N) (else (N, K)). aligned: the contiguous dimensions have stride 1 and the other
    strides, batch strides and bases are multiples of 8 elements (16 bytes). exact: aligned, and
    M % BM == N % BN == K % (BK * unroll) == 0."""
    BM, BN, BK, U = cfg.BM, cfg.BN, cfg.BK, cfg.unroll
    assert not exact or aligned
    params = [(n, "u64" if t.endswith("*") else t) for n, t in PARAMS + BIAS * bias]
    name = (f"coopmat2_{dtype}_{BM}x{BN}x{BK}_t{cfg.threads}_u{U}_g{cfg.group_m}_"
            f"{'k' if a_kcontig else 'm'}{'n' if b_ncontig else 'k'}"
            f"{'_aligned' if aligned else ''}{'_exact' if exact else ''}"
            f"{'_bias' if bias else ''}")
    k = Kernel(name, (cfg.threads, 1, 1), params, version=(1, 6))
    cp = _Coop(k, dtype)
    m, fn = cp.m, k.fn
    m.capability("CooperativeMatrixTensorAddressingNV", "TensorAddressingNV")
    m.extension("SPV_NV_cooperative_matrix2")
    m.extension("SPV_NV_tensor_addressing")
    c_addr, a_addr, b_addr, M, N, K, sab, sam, sak, sbb, sbk, sbn, alpha, beta = \
        k.params()[:len(PARAMS)]
    f32 = k.ty("f32")
    c = cp.c

    def mat(elem, rows, cols, use):
        return m.type_coopmat(elem, c(SCOPE_WORKGROUP), c(rows), c(cols), c(use))

    tA, tB, tC = mat(cp.elem16, BM, BK, USE_A), mat(cp.elem16, BK, BN, USE_B), \
        mat(f32, BM, BN, USE_ACC)
    zero16 = m.constant(cp.elem16, 0.0)
    zA, zB = m.constant_composite(tA, zero16), m.constant_composite(tB, zero16)
    zC = m.constant_composite(tC, m.constant(f32, 0.0))
    t_in = m.type_tensor_layout(c(2), c(CLAMP_UNDEFINED if exact else CLAMP_CONSTANT))
    t_out = m.type_tensor_layout(c(2), c(CLAMP_CONSTANT))
    t_view = m.type_tensor_view(c(2), m.constant(m.type_bool(), False), c(1), c(0))
    transpose = fn.op("OpCreateTensorViewNV", type=t_view)

    def layout(t, rows, cols, row_stride, col_stride):
        lay = fn.op("OpCreateTensorLayoutNV", type=t)
        lay = fn.op("OpTensorLayoutSetDimensionNV", lay, rows.id, cols.id, type=t)
        return fn.op("OpTensorLayoutSetStrideNV", lay, row_stride.id, col_stride.id, type=t)

    def stride(s):
        # a multiple of 8 the compiler can see (16-byte rows: vector loads, no split rows)
        return (s >> 3) << 3 if aligned else s

    one = k.const(1, "u32")
    # A as (M, K) or (K, M), B as (K, N) or (N, K): rows x cols of the stored layout
    if a_kcontig:
        lay_a = layout(t_in, M, K, stride(sam), one if aligned else sak)
    else:
        lay_a = layout(t_in, K, M, stride(sak), one if aligned else sam)
    if b_ncontig:
        lay_b = layout(t_in, K, N, stride(sbk), one if aligned else sbn)
    else:
        lay_b = layout(t_in, N, K, stride(sbn), one if aligned else sbk)

    m0, n0 = tile_origin(k, cfg.group_m, M, N, BM, BN)
    batch = k.group_id(2)
    align = 16 if aligned else 2
    a_buf = cp.buffer(a_addr, cp.elem16, 2, "e16")
    b_buf = cp.buffer(b_addr, cp.elem16, 2, "e16")
    a_ptr = cp.elem_ptr(a_buf, "e16", batch * sab)
    b_ptr = cp.elem_ptr(b_buf, "e16", batch * sbb)

    def load(ptr, zero, t, lay, r0, nr, c0, nc, view):
        sl = fn.op("OpTensorLayoutSliceNV", lay, r0.id, c(nr), c0.id, c(nc), type=t_in)
        return fn.op("OpCooperativeMatrixLoadTensorNV", ptr, zero, sl, [ALIGNED, align],
                     [VIEW, transpose] if view else [0], type=t)

    acc = fn.variable(m.type_pointer("Function", tC))
    fn.op("OpStore", acc, zC)

    def step(k0):
        if a_kcontig:
            av = load(a_ptr, zA, tA, lay_a, m0, BM, k0, BK, False)
        else:
            av = load(a_ptr, zA, tA, lay_a, k0, BK, m0, BM, True)
        if b_ncontig:
            bv = load(b_ptr, zB, tB, lay_b, k0, BK, n0, BN, False)
        else:
            bv = load(b_ptr, zB, tB, lay_b, n0, BN, k0, BK, True)
        cur = fn.op("OpLoad", acc, type=tC)
        fn.op("OpStore", acc, fn.op("OpCooperativeMatrixMulAddKHR", av, bv, cur, type=tC))

    steps = (K + (BK - 1)) / BK
    if U > 1:
        with k.loop(0, steps / U) as i:
            for j in range(U):
                step((i * U + j) * BK)
        if not exact:
            with k.loop((steps / U) * U, steps) as t:
                step(t * BK)
    else:
        with k.loop(0, steps) as t:
            step(t * BK)

    # epilogue: C = alpha * acc (+ beta * C) (+ bias), stored through a clamped layout
    c_buf = cp.buffer(c_addr, f32, 4, "c_f32")
    c_ptr = cp.elem_ptr(c_buf, "c_f32", batch * (M * N))
    lay_c = layout(t_out, M, N, N, one)
    sl_c = fn.op("OpTensorLayoutSliceNV", lay_c, m0.id, c(BM), n0.id, c(BN), type=t_out)
    out = fn.variable(m.type_pointer("Function", tC))
    fn.op("OpStore", out, fn.op("OpMatrixTimesScalar", fn.op("OpLoad", acc, type=tC), alpha.id,
                                type=tC))
    with k.if_(beta.ne(0.0)):
        old = fn.op("OpCooperativeMatrixLoadTensorNV", c_ptr, zC, sl_c, [ALIGNED, 4], [0],
                    type=tC)
        sc = fn.op("OpMatrixTimesScalar", old, beta.id, type=tC)
        fn.op("OpStore", out, fn.op("OpFAdd", fn.op("OpLoad", out, type=tC), sc, type=tC))
    if bias:
        bias_buf = cp.buffer(k.params()[len(PARAMS)], f32, 4, "c_f32")
        b0 = cp.elem_ptr(bias_buf, "c_f32", k.const(0, "u32"))
        lay_bias = layout(t_out, M, N, k.const(0, "u32"), one)
        sl_b = fn.op("OpTensorLayoutSliceNV", lay_bias, m0.id, c(BM), n0.id, c(BN), type=t_out)
        row = fn.op("OpCooperativeMatrixLoadTensorNV", b0, zC, sl_b, [ALIGNED, 4], [0], type=tC)
        fn.op("OpStore", out, fn.op("OpFAdd", fn.op("OpLoad", out, type=tC), row, type=tC))
    fn.op("OpCooperativeMatrixStoreTensorNV", c_ptr, fn.op("OpLoad", out, type=tC), sl_c,
          [ALIGNED, 4], [0])
    return k
