"""Tensor-core matmul through VK_KHR_cooperative_matrix: C[b] = alpha * A[b] @ B[b] + beta * C[b],
16-bit inputs (bf16 or fp16) multiplied on the matrix units with fp32 accumulation, fp32 C.

Same push constants as the SIMT kernel (`matmul.PARAMS`: addresses, M N K, element strides,
alpha, beta), so the backend chooses between them per call. A workgroup computes a BM x BN tile of
C with (BM/WM) x (BN/WN) subgroups, each holding (WM/16) x (WN/16) 16x16 fp32 accumulators. K
advances BK at a time; the next step's global loads are issued into registers before this step's
products (`prefetch`) and stored to shared memory after them, either into a second buffer (two
`stages`: one barrier a step) or, once every subgroup is past its products, into the one buffer
(one stage: two barriers a step, but half the shared memory, so the default's k steps of 64 fit
in 48 KiB). The last step is peeled off the loop, so the loop body never tests for a next step;
with `exact` tiles (the caller checks M, N and K divide) the loads have no bounds checks either.
`group_m` walks the tiles in groups of tile rows (the workgroups in flight share A and B tiles in
L2).

Shared tiles keep the global layout of each operand (no transpose on the way in): A is stored
k-contiguous (rows of k; loaded RowMajor) or m-contiguous (loaded ColumnMajor), B n-contiguous
(RowMajor) or k-contiguous (ColumnMajor), so all three transposes are the same kernel. Shared
memory is an array of 16-byte units (8 elements) padded by one unit per row, which keeps the
fragment loads free of bank conflicts; global->shared copies move whole units.

Inputs come in three element types: "bf16" and "f16" (16-bit storage) and "f32" (converted to the
16-bit type while it is copied into shared memory: mixed precision without a separate cast pass;
bf16 rounds to nearest even). `vec` kernels read 16-byte vectors and need the contiguous
dimension and every other stride to be multiples of 8 (16-bit) or 4 (f32) elements with 16-byte
aligned bases; the others read element by element with full bounds checks (any strides, any
sizes). Edge tiles (M or N not multiples of the tile) go through a per-subgroup fp32 scratch (in
the operand tiles' shared memory, after a barrier) with guarded stores; interior tiles store their
accumulators straight to C. With `bias`, the store adds an fp32 (N,) vector to every row last (a
linear layer's `x @ W + b` in one pass over C, the same bits as a separate add).

`mode="emulated"` builds the same kernel with the fragment products and accumulators as scalar
loops (lavapipe has no cooperative matrices): the tests run its tiles, walk and epilogue there.

Measured on an H200 (driver 580; bench/gpu_matmul_sweep.py, bench/gpu_results.md): the default
(128x128, k steps of 64 through one buffer, groups of 8 tile rows) 324 TFLOP/s at 8192^3, 41% of
cuBLAS bf16 (793 in the same run; the previous 128x128x32 double-buffered tile 275). Wider tiles
(128x256, 256x128, 128x192), 8 subgroups, k steps of 32 in slices and narrower tiles all ran
slower: within 48 KiB of shared memory per workgroup, the deeper k step won.
Workgroup-scope matrices (VK_NV_cooperative_matrix2) loaded straight from global memory ran at
5-70 TFLOP/s; loaded with tensor addressing (`coopmat2.py`) they tie this kernel.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from alpha.spirv.dsl import GLSL_STD_450, Kernel, Val
from alpha.helios.kernels.matmul import PARAMS

BIAS = [("bias", "f32*")]  # the push constant after PARAMS of the kernels that add a bias

SCOPE_SUBGROUP = 3
USE_A, USE_B, USE_ACC = 0, 1, 2
ROW_MAJOR, COL_MAJOR = 0, 1
ALIGNED = 0x2 | 0x20  # MemoryAccess Aligned | NonPrivatePointer (Vulkan memory model: the
#                       accesses that barriers order must be non-private)
NONPRIVATE = 0x20
SUBGROUP = 32  # the kernels assume 32-wide subgroups (NVIDIA); the backend checks the device
FRAG = 16  # 16x16x16 fragments (what every NVIDIA coopmat device lists for bf16 and f16)
UNIT = 8  # 16-bit elements per 16-byte shared unit
CAUSAL = (None, "skip_upper", "k_to_m", "k_from_m")  # see coopmat_kernel
MODES = ("coopmat", "emulated")
DTYPES = ("bf16", "f16")  # what the matrix units multiply


@dataclass(frozen=True)
class CoopConfig:
    BM: int = 128  # tile rows
    BN: int = 128  # tile cols
    BK: int = 32   # k step
    WM: int = 64   # rows per subgroup
    WN: int = 64   # cols per subgroup
    prefetch: bool = True  # next tile's loads held in registers across the multiply (else
    #                        stored to the other shared buffer before it: fewer registers)
    stages: int = 2  # shared buffers per operand: 2 (one barrier per k step) or 1 (two
    #                  barriers a step, prefetch only: bigger tiles fit in 48 KiB)
    group_m: int = 0  # tile order: 0 walks C's tiles row by row; G walks G tile rows down a
    #                   column before moving right (the A and B tiles in flight share L2)

    @property
    def subgroups(self) -> int:
        return (self.BM // self.WM) * (self.BN // self.WN)

    @property
    def threads(self) -> int:
        return self.subgroups * SUBGROUP

    def units(self, a_kcontig: bool = True, b_ncontig: bool = True) -> tuple:
        """(rows, 16-byte units per row incl. the pad unit) of one shared A and one B tile."""
        a = (self.BM, self.BK // UNIT + 1) if a_kcontig else (self.BK, self.BM // UNIT + 1)
        b = (self.BK, self.BN // UNIT + 1) if b_ncontig else (self.BN, self.BK // UNIT + 1)
        return a, b

    def shared_bytes(self, a_kcontig: bool = True, b_ncontig: bool = True) -> int:
        (ar, au), (br, bu) = self.units(a_kcontig, b_ncontig)
        # the edge tiles' fp32 scratch reuses the operand tiles once the products are done
        return max(self.stages * 16 * (ar * au + br * bu), 4 * FRAG * FRAG * self.subgroups)


# 4 subgroups of 64x64, k steps of 64 through one shared buffer (bench/gpu_matmul_sweep.py on an
# H200: 325 TFLOP/s at 8192^3, against 285 for k steps of 32 through two buffers), in groups of
# 8 tile rows (the LM head's product 231 -> 254)
DEFAULT = CoopConfig(BK=64, stages=1, group_m=8)
SMALL = CoopConfig(64, 64, 32, 32, 32)  # small products: more tiles
# what `bench helios` sweeps at 4096^3 (bench/gpu_matmul_sweep.py sweeps more, at 8192^3)
CONFIGS = (DEFAULT, CoopConfig(BK=64, stages=1), CoopConfig(), CoopConfig(group_m=8), SMALL)


class _Coop:
    """SPIR-V plumbing the scalar DSL lacks: vector units, typed buffer views of a 64-bit
    address, cooperative-matrix types and instructions."""

    def __init__(self, k: Kernel, dtype: str, real: bool = True):
        """real=False: the plumbing without cooperative matrices or the Vulkan memory model
        (the emulated kernels lavapipe runs)."""
        self.k, self.m, self.fn = k, k.m, k.fn
        m = self.m
        m.capability("StorageBuffer16BitAccess", "Int64")
        self.ga = ALIGNED if real else ALIGNED & ~NONPRIVATE  # global access operands
        self.na = [NONPRIVATE] if real else []  # shared accesses ordered by barriers
        if not real:
            self.elem16 = None
        elif dtype == "bf16":
            m.capability("BFloat16TypeKHR", "BFloat16CooperativeMatrixKHR")
            m.extension("SPV_KHR_bfloat16")
            self.elem16 = m.type_float(16, 0)
        else:
            self.elem16 = m.type_float(16)
        if real:
            m.capability("CooperativeMatrixKHR", "Float16", "GroupNonUniform",
                         "VulkanMemoryModel")
            m.extension("SPV_KHR_cooperative_matrix")
            m.memory_model("PhysicalStorageBuffer64", "Vulkan")
        self.u32 = k.ty("u32")
        self.u4 = m.type_vector(self.u32, 4)
        self.f4 = m.type_vector(k.ty("f32"), 4)
        self._bufs: dict = {}

    def c(self, v: int) -> int:
        return self.k.const(v, "u32").id

    def buffer(self, addr: Val, elem: int, size: int, key: str) -> int:
        """A PhysicalStorageBuffer pointer to `elem[]` at a u64 address."""
        m = self.m
        if key not in self._bufs:
            rt = m.type_runtime_array(elem, size)
            st = m.type_struct(rt, key=("cbuf", key))
            m.decorate(st, "Block")
            m.member_decorate(st, 0, "Offset", 0)
            self._bufs[key] = (m.type_pointer("PhysicalStorageBuffer", st),
                               m.type_pointer("PhysicalStorageBuffer", elem), size)
        ptr, _, _ = self._bufs[key]
        return self.fn.op("OpConvertUToPtr", addr.id, type=ptr)

    def elem_ptr(self, buf: int, key: str, idx: Val) -> int:
        _, ep, _ = self._bufs[key]
        return self.fn.op("OpAccessChain", buf, self.c(0), idx.id, type=ep)

    def load(self, buf, key, idx, t) -> int:
        return self.fn.op("OpLoad", self.elem_ptr(buf, key, idx),
                          [self.ga, self._bufs[key][2]], type=t)

    def matrix(self, elem: int, use: int) -> int:
        return self.m.type_coopmat(elem, self.c(SCOPE_SUBGROUP), self.c(FRAG), self.c(FRAG),
                                   self.c(use))


def _bf16_bits(k: Kernel, x: Val) -> Val:
    """f32 -> bf16 bits (round to nearest even; NaN stays a quiet NaN) as the low 16 of a u32."""
    b = x.bits("u32")
    r = (b + (0x7FFF + ((b >> 16) & 1))) >> 16
    return k.select(k.isnan(x), 0x7FC0, r)


def _f16_bits(k: Kernel, x: Val) -> Val:
    """f32 -> fp16 bits, round to nearest even, in integer arithmetic (Vulkan leaves
    OpFConvert's rounding to the driver): F. Giesen's float_to_half_fast3_rtne."""
    b = x.bits("u32")
    sign = (b >> 16) & 0x8000
    u = b & 0x7FFFFFFF
    # |x| < 2^-14 (fp16 subnormal or zero): let an fp32 add by 0.5 round the mantissa
    sub = ((u.bits("f32") + 0.5).bits("u32")) - 0x3F000000
    norm = (u + (0xC8000FFF + ((u >> 13) & 1))) >> 13  # rebias the exponent (-112 << 23)
    h = k.select(u < 0x38800000, sub, norm)
    h = k.select(u >= 0x47800000, k.select(u > 0x7F800000, 0x7E00, 0x7C00), h)
    return h | sign


def tile_origin(k: Kernel, group_m: int, M: Val, N: Val, BM: int, BN: int) -> tuple:
    """The first row and column of the output tile this workgroup computes. With group_m,
    the same tiles in grouped order: workgroups in flight share rows of A and columns of B
    (group_m tile rows walked column by column), so more of them hit in L2."""
    tn, tm = k.group_id(0), k.group_id(1)
    if group_m:
        tiles_n = (N + (BN - 1)) / BN
        pid = tm * tiles_n + tn
        width = tiles_n * group_m
        first = (pid / width) * group_m
        rows = k.umin((M + (BM - 1)) / BM - first, group_m)
        r = pid % width
        tm, tn = first + r % rows, r / rows
    n0, m0 = tn * BN, tm * BM
    return m0, n0


def coopmat_kernel(cfg: CoopConfig, dtype: str = "bf16", src: str = "bf16",
                   a_kcontig: bool = True, b_ncontig: bool = True, vec: bool = True,
                   causal: str | None = None, exact: bool = False,
                   mode: str = "coopmat", bias: bool = False) -> Kernel:
    """dtype: the 16-bit type the matrix units multiply ("bf16" | "f16"); src: the element type
    of A and B in memory (dtype itself, or "f32" to convert on the way into shared memory).

    causal: the products of causal attention, where row m of a score matrix only sees columns
    n <= m, skip what is known to be masked (one batch entry = one (sequence, head)):
    "skip_upper" leaves C tiles entirely above the diagonal unwritten (S = Q K^T, dP = dO V^T:
    the row kernels never read there); "k_to_m" ends K at the tile's last row (P V, dS K: A is
    zero for k > m); "k_from_m" starts K at the tile's first row (P^T dO, dS^T Q: A = X^T with
    X zero for k < m).

    exact: the caller guarantees M % BM == N % BN == K % BK == 0 (and `vec`): the loads skip
    their bounds checks, which leaves the k loop's body without a branch for the compiler to
    schedule across. mode "emulated": the same tiles, walk and epilogue with the fragment
    products done by scalar loops (lavapipe has no cooperative matrices: the tests).

    bias: one more push constant, the address of an fp32 (N,) vector (16-byte aligned) added to
    every row of C at the store, after alpha and beta: the same roundings as the product then
    a separate add (a linear layer's forward without a second pass over C). Whole tiles add it
    as a 16x16 accumulator loaded with row stride 0 (every row the same 16 biases)."""
    BM, BN, BK, WM, WN = cfg.BM, cfg.BN, cfg.BK, cfg.WM, cfg.WN
    assert src in (dtype, "f32") and BK % FRAG == 0 and WM % FRAG == 0 and WN % FRAG == 0
    assert causal in CAUSAL and mode in MODES and (vec or not exact)
    assert cfg.stages == 2 or (cfg.stages == 1 and cfg.prefetch)
    real = mode == "coopmat"
    nt = cfg.threads
    params = [(n, "u64" if t.endswith("*") else t) for n, t in PARAMS + BIAS * bias]
    name = (f"coopmat_{dtype}_{src}_{BM}x{BN}x{BK}_{WM}x{WN}_{'k' if a_kcontig else 'm'}"
            f"{'n' if b_ncontig else 'k'}{'_vec' if vec else ''}"
            f"{'' if cfg.prefetch else '_direct'}{'' if cfg.stages == 2 else '_single'}"
            f"{f'_g{cfg.group_m}' if cfg.group_m else ''}{'_exact' if exact else ''}"
            f"{'_' + causal if causal else ''}{'_bias' if bias else ''}"
            f"{'' if real else '_emulated'}")
    k = Kernel(name, (nt, 1, 1), params, version=(1, 6) if real else (1, 5))
    cp = _Coop(k, dtype, real)
    c_addr, a_addr, b_addr, M, N, K, sab, sam, sak, sbb, sbk, sbn, alpha, beta = \
        k.params()[:len(PARAMS)]
    m_ = cp.m
    # shared: `stages` buffers per operand, rows padded by one 16-byte unit; the edge
    # epilogue's fp32 scratch (16x16 per subgroup) reuses the same memory
    (a_rows, a_units), (b_rows, b_units) = cfg.units(a_kcontig, b_ncontig)
    a_size, b_size = a_rows * a_units, b_rows * b_units
    n_units = max(cfg.stages * (a_size + b_size), FRAG * FRAG * cfg.subgroups // 4)
    sh = m_.variable(m_.type_pointer("Workgroup", m_.type_array(cp.u4, n_units)), "Workgroup")
    wg_u4 = m_.type_pointer("Workgroup", cp.u4)
    wg_u32 = m_.type_pointer("Workgroup", cp.u32)
    f32 = k.ty("f32")

    def a_at(s):  # first unit of shared A buffer s (and B's, below)
        return s * a_size

    def b_at(s):
        return cfg.stages * a_size + s * b_size

    tid = k.local_id(0)
    if real:
        sg = k._builtin_scalar("SubgroupId")
        lane = k._builtin_scalar("SubgroupLocalInvocationId")
    else:  # 32-invocation groups of our own (lavapipe's subgroups are narrower)
        sg, lane = tid >> 5, tid & 31
    m0, n0 = tile_origin(k, cfg.group_m, M, N, BM, BN)
    batch = k.group_id(2)
    abase = batch * sab
    bbase = batch * sbb
    wn_count = BN // WN
    wm0 = (sg / wn_count) * WM
    wn0 = (sg % wn_count) * WN

    if src == "f32":
        key = "f32x4" if vec else "f32"
        elem, esize = (cp.f4, 16) if vec else (f32, 4)
    else:
        key = "u16x8" if vec else "u16"
        elem, esize = (cp.u4, 16) if vec else (k.ty("u16"), 2)
    a_buf = cp.buffer(a_addr, elem, esize, key)
    b_buf = cp.buffer(b_addr, elem, esize, key)
    bits = _bf16_bits if dtype == "bf16" else _f16_bits

    def unit_plan(rows_total, units_per_row):
        """For each unit this invocation copies: (shared index, row, first element of the row
        segment, guard or None)."""
        plan = []
        per_row = units_per_row - 1  # real units (the pad unit is never written)
        total = rows_total * per_row
        for i in range((total + nt - 1) // nt):
            u = tid + i * nt
            r, cu = u / per_row, u % per_row
            guard = (u < total) if total % nt else None
            plan.append((r * units_per_row + cu, r, cu * UNIT, guard))
        return plan

    # A: "outer" is the non-contiguous dim (m for k-contig), "inner" the contiguous one
    a_plan = unit_plan(a_rows, a_units)
    b_plan = unit_plan(b_rows, b_units)

    def vector_words(buf, e):
        """The 8 elements from element index e (a multiple of 8) as 4 u32 of 16-bit pairs."""
        if src != "f32":
            v = cp.load(buf, key, e >> 3, cp.u4)
            return [Val(k, k.fn.op("OpCompositeExtract", v, w, type=cp.u32), "u32")
                    for w in range(4)]
        vals = []
        for h in range(2):
            v4 = cp.load(buf, key, (e >> 2) + h, cp.f4)
            vals += [Val(k, k.fn.op("OpCompositeExtract", v4, j, type=f32), "f32")
                     for j in range(4)]
        return [bits(k, vals[2 * w]) | (bits(k, vals[2 * w + 1]) << 16) for w in range(4)]

    def gather(buf, base, outer_g, inner_g, s_outer, s_inner, outer_lim, inner_lim):
        """One unit (8 consecutive inner elements) of a global operand as a u32x4 (16-bit
        bits packed in pairs); zeros outside [0, outer_lim) x [0, inner_lim)."""
        if exact:
            ws = vector_words(buf, base + outer_g * s_outer + inner_g)
        elif vec:
            words = [k.var("u32", 0) for _ in range(4)]
            with k.if_((outer_g < outer_lim) & (inner_g < inner_lim)):
                for w, v in zip(words, vector_words(buf, base + outer_g * s_outer + inner_g)):
                    w.set(v)
            ws = [w.get() for w in words]
        else:
            halves = []
            for j in range(UNIT):
                h = k.var("u32", 0)
                ig = inner_g + j
                with k.if_((outer_g < outer_lim) & (ig < inner_lim)):
                    e = base + outer_g * s_outer + ig * s_inner
                    if src == "f32":
                        h.set(bits(k, Val(k, cp.load(buf, key, e, f32), "f32")))
                    else:
                        h.set(Val(k, cp.load(buf, key, e, k.ty("u16")), "u16").to("u32"))
                halves.append(h.get())
            ws = [halves[2 * w] | (halves[2 * w + 1] << 16) for w in range(4)]
        return cp.fn.op("OpCompositeConstruct", *[w.id for w in ws], type=cp.u4)

    def operand_units(plan, buf, base, outer0, inner0, s_outer, s_inner, outer_lim, inner_lim):
        return [gather(buf, base, outer0 + r, inner0 + ci, s_outer, s_inner, outer_lim,
                       inner_lim) for _, r, ci, _ in plan]

    def load_tiles(k0):
        if a_kcontig:
            ua = operand_units(a_plan, a_buf, abase, m0, k0, sam, sak, M, K)
        else:
            ua = operand_units(a_plan, a_buf, abase, k0, m0, sak, sam, K, M)
        if b_ncontig:
            ub = operand_units(b_plan, b_buf, bbase, k0, n0, sbk, sbn, K, N)
        else:
            ub = operand_units(b_plan, b_buf, bbase, n0, k0, sbn, sbk, N, K)
        return ua, ub

    staged_a = [k.fn.variable(m_.type_pointer("Function", cp.u4)) for _ in a_plan]
    staged_b = [k.fn.variable(m_.type_pointer("Function", cp.u4)) for _ in b_plan]

    def stage(k0):
        ua, ub = load_tiles(k0)
        for var, v in zip(staged_a + staged_b, ua + ub):
            k.fn.op("OpStore", var, v)

    def store_shared(buf_sel):
        for off, plan, staged in ((a_at(buf_sel), a_plan, staged_a),
                                  (b_at(buf_sel), b_plan, staged_b)):
            for (sidx, _, _, guard), var in zip(plan, staged):
                v = k.fn.op("OpLoad", var, type=cp.u4)
                with contextlib.ExitStack() as g:
                    if guard is not None:
                        g.enter_context(k.if_(guard))
                    p = k.fn.op("OpAccessChain", sh, (off + sidx).id, type=wg_u4)
                    k.fn.op("OpStore", p, v, *cp.na)

    fi, fj = WM // FRAG, WN // FRAG
    if real:
        tA = cp.matrix(cp.elem16, USE_A)
        tB = cp.matrix(cp.elem16, USE_B)
        tC = cp.matrix(f32, USE_ACC)
        zero = m_.constant_composite(tC, m_.constant(f32, 0.0))
        acc = [[k.fn.variable(m_.type_pointer("Function", tC)) for _ in range(fj)]
               for _ in range(fi)]
        for row in acc:
            for v in row:
                k.fn.op("OpStore", v, zero)
    else:  # lane l holds elements l + 32 q (q < 8) of each 16x16 accumulator
        emu = _Emulated(k, cp, sh, dtype, lane, fi * fj)

    def frag_load(idx: Val, t, stride_units, layout):
        p = k.fn.op("OpAccessChain", sh, idx.id, type=wg_u4)
        return k.fn.op("OpCooperativeMatrixLoadKHR", p, cp.c(layout), cp.c(stride_units),
                       NONPRIVATE, type=t)

    def multiply(buf_sel):
        """acc += the products of shared buffer buf_sel."""
        aoff, boff = a_at(buf_sel), b_at(buf_sel)
        if not real:
            a_el = ((lambda r, c: (aoff, r, c, a_units)) if a_kcontig else
                    (lambda r, c: (aoff, c, r, a_units)))
            b_el = ((lambda r, c: (boff, r, c, b_units)) if b_ncontig else
                    (lambda r, c: (boff, c, r, b_units)))
            emu.multiply(BK, fj, wm0, wn0, a_el, b_el)
            return
        for kk in range(BK // FRAG):
            afr = []
            for i in range(fi):
                if a_kcontig:
                    idx = aoff + (wm0 + i * FRAG) * a_units + kk * (FRAG // UNIT)
                    afr.append(frag_load(idx, tA, a_units, ROW_MAJOR))
                else:
                    idx = aoff + (kk * FRAG) * a_units + (wm0 + i * FRAG) / UNIT
                    afr.append(frag_load(idx, tA, a_units, COL_MAJOR))
            for j in range(fj):  # one B fragment live at a time (fewer registers)
                if b_ncontig:
                    idx = boff + (kk * FRAG) * b_units + (wn0 + j * FRAG) / UNIT
                    bfr = frag_load(idx, tB, b_units, ROW_MAJOR)
                else:
                    idx = boff + (wn0 + j * FRAG) * b_units + kk * (FRAG // UNIT)
                    bfr = frag_load(idx, tB, b_units, COL_MAJOR)
                for i in range(fi):
                    cur = k.fn.op("OpLoad", acc[i][j], type=tC)
                    nxt = k.fn.op("OpCooperativeMatrixMulAddKHR", afr[i], bfr, cur, type=tC)
                    k.fn.op("OpStore", acc[i][j], nxt)

    body = contextlib.ExitStack()
    if causal == "skip_upper":  # uniform per workgroup: the barriers inside stay legal
        body.enter_context(k.if_(n0 <= m0 + (BM - 1)))
    t0, k_end = k.const(0, "u32"), K
    if causal == "k_to_m":
        k_end = k.umin(K, m0 + BM)
    elif causal == "k_from_m":
        t0 = m0 / BK
    double = cfg.stages == 2
    # prologue: the first tile into buffer t0 & 1 (two buffers alternate with t's parity);
    # the last step is peeled off the loop, so every step inside loads the next tile
    stage(t0 * BK)
    store_shared(t0 & 1 if double else 0)
    k.barrier()
    last = k.umax((k_end + (BK - 1)) / BK, t0 + 1) - 1
    with k.loop(t0, last) as t:
        stage((t + 1) * BK)
        if not double:  # refilled once every subgroup is past its products
            multiply(0)
            k.barrier()
            store_shared(0)
        else:
            if not cfg.prefetch:
                store_shared((t + 1) & 1)
            multiply(t & 1)
            if cfg.prefetch:
                store_shared((t + 1) & 1)
        k.barrier()
    multiply(last & 1 if double else 0)

    # epilogue: C = alpha * acc (+ beta * C) (+ bias)
    cbase = batch * (M * N)
    c_buf = cp.buffer(c_addr, f32, 4, "c_f32")
    if bias:  # the same element type as C: the typed view is shared, the address is not
        bias_buf = cp.buffer(k.params()[len(PARAMS)], f32, 4, "c_f32")

    def write(gm, gn, v: Val):
        with k.if_((gm < M) & (gn < N)):
            ci = cbase + gm * N + gn
            res = k.var("f32", alpha * v)
            with k.if_(beta.ne(0.0)):
                res.set(res.get() + beta * Val(k, cp.load(c_buf, "c_f32", ci, f32), "f32"))
            if bias:
                res.set(res.get() + Val(k, cp.load(bias_buf, "c_f32", gn, f32), "f32"))
            k.fn.op("OpStore", cp.elem_ptr(c_buf, "c_f32", ci), res.get().id, cp.ga, 4)

    if not real:
        emu.epilogue(fj, lambda r, c, v: write(m0 + wm0 + r, n0 + wn0 + c, v))
        body.close()
        k.shared_bytes = cfg.shared_bytes(a_kcontig, b_ncontig)
        return k
    interior = ((m0 + BM) <= M) & ((n0 + BN) <= N) & ((N & 3).eq(0))
    with k.if_(interior):
        for i in range(fi):
            for j in range(fj):
                idx = cbase + (m0 + wm0 + i * FRAG) * N + (n0 + wn0 + j * FRAG)
                p = cp.elem_ptr(c_buf, "c_f32", idx)
                res = k.fn.op("OpMatrixTimesScalar", k.fn.op("OpLoad", acc[i][j], type=tC),
                              alpha.id, type=tC)
                out = k.fn.variable(m_.type_pointer("Function", tC))
                k.fn.op("OpStore", out, res)
                with k.if_(beta.ne(0.0)):
                    old = k.fn.op("OpCooperativeMatrixLoadKHR", p, cp.c(ROW_MAJOR), N.id,
                                  ALIGNED, 16, type=tC)
                    sc = k.fn.op("OpMatrixTimesScalar", old, beta.id, type=tC)
                    k.fn.op("OpStore", out, k.fn.op("OpFAdd", res, sc, type=tC))
                if bias:
                    bp = cp.elem_ptr(bias_buf, "c_f32", n0 + wn0 + j * FRAG)
                    row = k.fn.op("OpCooperativeMatrixLoadKHR", bp, cp.c(ROW_MAJOR), cp.c(0),
                                  ALIGNED, 16, type=tC)
                    k.fn.op("OpStore", out, k.fn.op("OpFAdd", k.fn.op("OpLoad", out, type=tC),
                                                    row, type=tC))
                k.fn.op("OpCooperativeMatrixStoreKHR", p, k.fn.op("OpLoad", out, type=tC),
                        cp.c(ROW_MAJOR), N.id, ALIGNED, 16)
    with k.if_(~interior):  # uniform per workgroup, like the barrier inside
        k.barrier()  # every subgroup is done reading the operand tiles the scratch reuses
        sbase = sg * (FRAG * FRAG // 4)  # this subgroup's 16x16 fp32 (64 units)
        for i in range(fi):
            for j in range(fj):
                p = k.fn.op("OpAccessChain", sh, sbase.id, type=wg_u4)
                k.fn.op("OpCooperativeMatrixStoreKHR", p, k.fn.op("OpLoad", acc[i][j], type=tC),
                        cp.c(ROW_MAJOR), cp.c(FRAG // 4), NONPRIVATE)
                _subgroup_barrier(k)
                for e in range(FRAG * FRAG // SUBGROUP):
                    el = lane + e * SUBGROUP
                    w = k.fn.op("OpLoad", k.fn.op("OpAccessChain", sh, (sbase + (el >> 2)).id,
                                                  (el & 3).id, type=wg_u32),
                                NONPRIVATE, type=cp.u32)
                    v = Val(k, w, "u32").bits("f32")
                    write(m0 + wm0 + (i * FRAG) + el / FRAG, n0 + wn0 + (j * FRAG) + el % FRAG,
                          v)
                _subgroup_barrier(k)
    body.close()
    k.shared_bytes = cfg.shared_bytes(a_kcontig, b_ncontig)
    return k


class _Emulated:
    """The fragment products and the accumulators of `coopmat_kernel` in scalar code: lane l of
    a 32-invocation group owns elements l + 32 q (q < 8) of each of its 16x16 accumulators,
    row 2 q + l / 16, column l % 16, in a Function array."""

    def __init__(self, k: Kernel, cp: "_Coop", sh: int, dtype: str, lane: Val, frags: int):
        self.k, self.cp, self.sh, self.dtype = k, cp, sh, dtype
        self.row, self.col = lane >> 4, lane & 15
        m, f32 = k.m, k.ty("f32")
        arr = m.type_array(f32, frags * 8)
        self.acc = k.fn.variable(m.type_pointer("Function", arr))
        self.f32_fn = m.type_pointer("Function", f32)
        self.frags = frags
        with k.loop(0, frags * 8) as e:
            k.fn.op("OpStore", self._slot(e), k.const(0.0, "f32").id)

    def _slot(self, e: Val) -> int:
        return self.k.fn.op("OpAccessChain", self.acc, e.id, type=self.f32_fn)

    def _elem(self, off, r: Val, c: Val, units: int) -> Val:
        """Element (r, c) of a shared 16-bit tile of `units` per row starting at unit off."""
        k, cp = self.k, self.cp
        p = k.fn.op("OpAccessChain", self.sh, (off + r * units + (c >> 3)).id,
                    ((c >> 1) & 3).id, type=k.m.type_pointer("Workgroup", cp.u32))
        w = Val(k, k.fn.op("OpLoad", p, type=cp.u32), "u32")
        h = (w >> ((c & 1) * 16)) & 0xFFFF
        if self.dtype == "bf16":
            return (h << 16).bits("f32")
        v2 = k.m.type_vector(k.ty("f32"), 2)
        pair = k.fn.op("OpExtInst", k.glsl, GLSL_STD_450["UnpackHalf2x16"], h.id, type=v2)
        return Val(k, k.fn.op("OpCompositeExtract", pair, 0, type=k.ty("f32")), "f32")

    def multiply(self, BK: int, fj: int, wm0: Val, wn0: Val, a_el, b_el) -> None:
        """acc += A (rows wm0.., k < BK) B (k < BK, cols wn0..) of this shared step; a_el(m, k)
        and b_el(k, n) give (first unit, row, col, units per row) of an element."""
        k = self.k
        with k.loop(0, self.frags) as f:
            with k.loop(0, 8) as q:
                r = wm0 + (f / fj) * FRAG + self.row + q * 2
                c = wn0 + (f % fj) * FRAG + self.col
                s = k.var("f32", 0.0)
                with k.loop(0, BK) as kk:
                    s.set(s.get() + self._elem(*a_el(r, kk)) * self._elem(*b_el(kk, c)))
                slot = self._slot(f * 8 + q)
                old = Val(k, k.fn.op("OpLoad", slot, type=k.ty("f32")), "f32")
                k.fn.op("OpStore", slot, (old + s.get()).id)

    def epilogue(self, fj: int, write) -> None:
        """write(row, col, value) for every accumulator element this lane holds (row, col
        within the subgroup's WM x WN)."""
        k = self.k
        with k.loop(0, self.frags) as f:
            with k.loop(0, 8) as q:
                v = Val(k, k.fn.op("OpLoad", self._slot(f * 8 + q), type=k.ty("f32")), "f32")
                write((f / fj) * FRAG + self.row + q * 2, (f % fj) * FRAG + self.col, v)


def _subgroup_barrier(k: Kernel) -> None:
    """Order this subgroup's shared-memory writes before its reads (scratch hand-off)."""
    u = "u32"
    k.fn.op("OpControlBarrier", k.const(SCOPE_SUBGROUP, u).id, k.const(SCOPE_SUBGROUP, u).id,
            k.const(0x8 | 0x100, u).id)


def pack16_kernel(dtype: str) -> Kernel:
    """out[i] = the 16-bit (bf16 or fp16) bits of x[2i] | those of x[2i+1] << 16: f32 -> 16-bit
    storage (a u16 tensor viewed as pairs) for the tensor-core matmul's inputs."""
    k = Kernel(f"pack_{dtype}", (256, 1, 1), [("out", "u32*"), ("x", "f32*"), ("n", "u32")])
    out, x, n = k.params()
    bits = _bf16_bits if dtype == "bf16" else _f16_bits
    with k.loop(k.gid, n, k.nthreads) as i:
        out[i] = bits(k, x[2 * i]) | (bits(k, x[2 * i + 1]) << 16)
    return k
