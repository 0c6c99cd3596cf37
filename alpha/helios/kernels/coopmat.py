"""Tensor-core matmul through VK_KHR_cooperative_matrix: C[b] = alpha * A[b] @ B[b] + beta * C[b],
16-bit inputs (bf16 or fp16) multiplied on the matrix units with fp32 accumulation, fp32 C.

Same push constants as the SIMT kernel (`matmul.PARAMS`: addresses, M N K, element strides,
alpha, beta), so the backend chooses between them per call. A workgroup computes a BM x BN tile of
C with (BM/WM) x (BN/WN) subgroups, each holding (WM/16) x (WN/16) 16x16 fp32 accumulators. K
advances BK at a time through two shared-memory buffers (double buffering: the global loads of
step t+1 are in flight while step t is multiplied; one barrier per step).

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
sizes). Edge tiles (M or N not multiples of the tile) go through a per-subgroup fp32 scratch with
guarded stores; interior tiles store their accumulators straight to C.

Measured on an H200 (driver 580): 250-267 TFLOP/s at 4096^3 and 8192^3 with the default tile,
about a third of cuBLAS bf16. Workgroup-scope matrices (VK_NV_cooperative_matrix2) loaded
straight from global memory, letting the driver tile, were correct but ran at 5-70 TFLOP/s.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from alpha.spirv.dsl import Kernel, Val
from alpha.helios.kernels.matmul import PARAMS

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


@dataclass(frozen=True)
class CoopConfig:
    BM: int = 128  # tile rows
    BN: int = 128  # tile cols
    BK: int = 32   # k step
    WM: int = 64   # rows per subgroup
    WN: int = 64   # cols per subgroup
    smem: str = "u32x4"  # shared element type: "u32x4" (16-byte units) or "h16x4" (4 x 16-bit)
    prefetch: bool = True  # next tile's loads held in registers across the multiply (else
    #                        stored to the other shared buffer before it: fewer registers)

    @property
    def subgroups(self) -> int:
        return (self.BM // self.WM) * (self.BN // self.WN)

    @property
    def threads(self) -> int:
        return self.subgroups * SUBGROUP

    def shared_bytes(self, a_kcontig: bool = True, b_ncontig: bool = True) -> int:
        a = (self.BM * (self.BK // UNIT + 1) if a_kcontig else
             self.BK * (self.BM // UNIT + 1))
        b = (self.BK * (self.BN // UNIT + 1) if b_ncontig else
             self.BN * (self.BK // UNIT + 1))
        return 2 * 16 * (a + b) + 4 * FRAG * FRAG * self.subgroups


DEFAULT = CoopConfig()  # 4 subgroups of 64x64 (the sweep's fastest on an H200: 250 TFLOP/s)
SMALL = CoopConfig(64, 64, 32, 32, 32)  # small products: more tiles
# what `bench helios` sweeps at 4096^3
CONFIGS = (DEFAULT, CoopConfig(prefetch=False), CoopConfig(128, 64, 32, 64, 32),
           CoopConfig(128, 128, 32, 128, 32, prefetch=False), CoopConfig(128, 256, 16, 64, 64),
           CoopConfig(128, 128, 16, 64, 64, prefetch=False), SMALL)


class _Coop:
    """SPIR-V plumbing the scalar DSL lacks: vector units, typed buffer views of a 64-bit
    address, cooperative-matrix types and instructions."""

    def __init__(self, k: Kernel, dtype: str):
        self.k, self.m, self.fn = k, k.m, k.fn
        m = self.m
        m.capability("CooperativeMatrixKHR", "Float16", "StorageBuffer16BitAccess", "Int64",
                     "GroupNonUniform", "VulkanMemoryModel")
        m.extension("SPV_KHR_cooperative_matrix")
        m.memory_model("PhysicalStorageBuffer64", "Vulkan")
        if dtype == "bf16":
            m.capability("BFloat16TypeKHR", "BFloat16CooperativeMatrixKHR")
            m.extension("SPV_KHR_bfloat16")
            self.elem16 = m.type_float(16, 0)
        else:
            self.elem16 = m.type_float(16)
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
                          [ALIGNED, self._bufs[key][2]], type=t)

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


def coopmat_kernel(cfg: CoopConfig, dtype: str = "bf16", src: str = "bf16",
                   a_kcontig: bool = True, b_ncontig: bool = True, vec: bool = True,
                   causal: str | None = None) -> Kernel:
    """dtype: the 16-bit type the matrix units multiply ("bf16" | "f16"); src: the element type
    of A and B in memory (dtype itself, or "f32" to convert on the way into shared memory).

    causal: the products of causal attention, where row m of a score matrix only sees columns
    n <= m, skip what is known to be masked (one batch entry = one (sequence, head)):
    "skip_upper" leaves C tiles entirely above the diagonal unwritten (S = Q K^T, dP = dO V^T:
    the row kernels never read there); "k_to_m" ends K at the tile's last row (P V, dS K: A is
    zero for k > m); "k_from_m" starts K at the tile's first row (P^T dO, dS^T Q: A = X^T with
    X zero for k < m)."""
    BM, BN, BK, WM, WN = cfg.BM, cfg.BN, cfg.BK, cfg.WM, cfg.WN
    assert src in (dtype, "f32") and BK % FRAG == 0 and WM % FRAG == 0 and WN % FRAG == 0
    assert causal in CAUSAL
    nt = cfg.threads
    params = [(n, "u64" if t.endswith("*") else t) for n, t in PARAMS]
    name = (f"coopmat_{dtype}_{src}_{BM}x{BN}x{BK}_{WM}x{WN}_{'k' if a_kcontig else 'm'}"
            f"{'n' if b_ncontig else 'k'}{'_vec' if vec else ''}"
            f"{'' if cfg.smem == 'u32x4' else '_' + cfg.smem}"
            f"{'' if cfg.prefetch else '_direct'}{'_' + causal if causal else ''}")
    k = Kernel(name, (nt, 1, 1), params, version=(1, 6))
    cp = _Coop(k, dtype)
    c_addr, a_addr, b_addr, M, N, K, sab, sam, sak, sbb, sbk, sbn, alpha, beta = k.params()
    m_ = cp.m
    # shared: two buffers per operand, rows padded by one 16-byte unit
    if a_kcontig:
        a_rows, a_units = BM, BK // UNIT + 1
    else:
        a_rows, a_units = BK, BM // UNIT + 1
    if b_ncontig:
        b_rows, b_units = BK, BN // UNIT + 1
    else:
        b_rows, b_units = BN, BK // UNIT + 1
    a_size, b_size = a_rows * a_units, b_rows * b_units
    if cfg.smem == "u32x4":
        sh_t, S = cp.u4, 1  # S: shared elements per 16-byte unit
    else:
        sh_t, S = m_.type_vector(cp.elem16, 4), 2
    cp.u2 = m_.type_vector(cp.u32, 2)
    As = m_.variable(m_.type_pointer("Workgroup", m_.type_array(sh_t, 2 * a_size * S)),
                     "Workgroup")
    Bs = m_.variable(m_.type_pointer("Workgroup", m_.type_array(sh_t, 2 * b_size * S)),
                     "Workgroup")
    f32 = k.ty("f32")
    scratch = m_.variable(m_.type_pointer("Workgroup",
                                          m_.type_array(f32, FRAG * FRAG * cfg.subgroups)),
                          "Workgroup")
    wg_sh = m_.type_pointer("Workgroup", sh_t)
    wg_f32 = m_.type_pointer("Workgroup", f32)

    tid = k.local_id(0)
    sg = k._builtin_scalar("SubgroupId")
    lane = k._builtin_scalar("SubgroupLocalInvocationId")
    n0 = k.group_id(0) * BN
    m0 = k.group_id(1) * BM
    batch = k.group_id(2)
    abase = batch * sab
    bbase = batch * sbb
    wn_count = BN // WN
    wm0 = (sg / wn_count) * WM
    wn0 = (sg % wn_count) * WN

    if src == "f32":
        a_buf = cp.buffer(a_addr, f32 if not vec else cp.f4, 4 if not vec else 16,
                          "f32" if not vec else "f32x4")
        b_buf = cp.buffer(b_addr, f32 if not vec else cp.f4, 4 if not vec else 16,
                          "f32" if not vec else "f32x4")
    else:
        u16 = k.ty("u16")
        a_buf = cp.buffer(a_addr, u16 if not vec else cp.u4, 2 if not vec else 16,
                          "u16" if not vec else "u16x8")
        b_buf = cp.buffer(b_addr, u16 if not vec else cp.u4, 2 if not vec else 16,
                          "u16" if not vec else "u16x8")
    key = {("f32", False): "f32", ("f32", True): "f32x4"}.get((src, vec),
                                                           "u16x8" if vec else "u16")
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

    def gather(buf, base, outer_g, inner_g, s_outer, s_inner, outer_lim, inner_lim):
        """One unit (8 consecutive inner elements) of a global operand as a u32x4 (16-bit
        bits packed in pairs); zeros outside [0, outer_lim) x [0, inner_lim)."""
        ok_outer = outer_g < outer_lim
        if vec:
            e = base + outer_g * s_outer + inner_g  # element index; s_inner == 1
            ok = ok_outer & (inner_g < inner_lim)
            words = [k.var("u32", 0) for _ in range(4)]
            with k.if_(ok):
                if src == "f32":
                    q = e >> 2
                    vals = []
                    for h in range(2):
                        v4 = cp.load(buf, key, q + h, cp.f4)
                        vals += [Val(k, k.fn.op("OpCompositeExtract", v4, j, type=f32), "f32")
                                 for j in range(4)]
                    for w in range(4):
                        words[w].set(bits(k, vals[2 * w]) | (bits(k, vals[2 * w + 1]) << 16))
                else:
                    v = cp.load(buf, key, e >> 3, cp.u4)
                    for w in range(4):
                        words[w].set(Val(k, k.fn.op("OpCompositeExtract", v, w, type=cp.u32),
                                         "u32"))
            ws = [w.get() for w in words]
        else:
            halves = []
            for j in range(UNIT):
                h = k.var("u32", 0)
                ig = inner_g + j
                with k.if_(ok_outer & (ig < inner_lim)):
                    e = base + outer_g * s_outer + ig * s_inner
                    if src == "f32":
                        x = Val(k, cp.load(buf, key, e, f32), "f32")
                        h.set(bits(k, x))
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
        for arr, size, plan, staged in ((As, a_size, a_plan, staged_a),
                                        (Bs, b_size, b_plan, staged_b)):
            off = buf_sel * size
            for (sidx, _, _, guard), var in zip(plan, staged):
                v = k.fn.op("OpLoad", var, type=cp.u4)

                def put(sidx=sidx, v=v):
                    if S == 1:
                        p = k.fn.op("OpAccessChain", arr, (off + sidx).id, type=wg_sh)
                        k.fn.op("OpStore", p, v, NONPRIVATE)
                        return
                    for h in range(2):  # two 8-byte halves of the unit, as 4 x 16-bit
                        pair = k.fn.op("OpVectorShuffle", v, v, 2 * h, 2 * h + 1, type=cp.u2)
                        p = k.fn.op("OpAccessChain", arr, ((off + sidx) * 2 + h).id,
                                    type=wg_sh)
                        k.fn.op("OpStore", p, k.fn.op("OpBitcast", pair, type=sh_t),
                                NONPRIVATE)
                if guard is None:
                    put()
                else:
                    with k.if_(guard):
                        put()

    tA = cp.matrix(cp.elem16, USE_A)
    tB = cp.matrix(cp.elem16, USE_B)
    tC = cp.matrix(f32, USE_ACC)
    zero = m_.constant_composite(tC, m_.constant(f32, 0.0))
    fi, fj = WM // FRAG, WN // FRAG
    acc = [[k.fn.variable(m_.type_pointer("Function", tC)) for _ in range(fj)]
           for _ in range(fi)]
    for row in acc:
        for v in row:
            k.fn.op("OpStore", v, zero)

    def frag_load(arr, idx: Val, t, stride_units, layout):
        p = k.fn.op("OpAccessChain", arr, (idx * S if S > 1 else idx).id, type=wg_sh)
        return k.fn.op("OpCooperativeMatrixLoadKHR", p, cp.c(layout), cp.c(stride_units * S),
                       NONPRIVATE, type=t)

    def multiply(buf_sel):
        aoff = buf_sel * a_size
        boff = buf_sel * b_size
        for kk in range(BK // FRAG):
            afr = []
            for i in range(fi):
                if a_kcontig:
                    idx = aoff + (wm0 + i * FRAG) * a_units + kk * (FRAG // UNIT)
                    afr.append(frag_load(As, idx, tA, a_units, ROW_MAJOR))
                else:
                    idx = aoff + (kk * FRAG) * a_units + (wm0 + i * FRAG) / UNIT
                    afr.append(frag_load(As, idx, tA, a_units, COL_MAJOR))
            for j in range(fj):  # one B fragment live at a time (fewer registers)
                if b_ncontig:
                    idx = boff + (kk * FRAG) * b_units + (wn0 + j * FRAG) / UNIT
                    bfr = frag_load(Bs, idx, tB, b_units, ROW_MAJOR)
                else:
                    idx = boff + (wn0 + j * FRAG) * b_units + kk * (FRAG // UNIT)
                    bfr = frag_load(Bs, idx, tB, b_units, COL_MAJOR)
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
    # prologue: the first tile into buffer t0 & 1 (the buffers alternate with t's parity)
    stage(t0 * BK)
    store_shared(t0 & 1)
    k.barrier()
    steps = (k_end + (BK - 1)) / BK
    with k.loop(t0, steps) as t:
        has_next = (t + 1) < steps
        with k.if_(has_next):
            stage((t + 1) * BK)
            if not cfg.prefetch:
                store_shared((t + 1) & 1)
        multiply(t & 1)
        if cfg.prefetch:
            with k.if_(has_next):
                store_shared((t + 1) & 1)
        k.barrier()

    # epilogue
    cbase = batch * (M * N)
    c_buf = cp.buffer(c_addr, f32, 4, "c_f32")
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
                k.fn.op("OpCooperativeMatrixStoreKHR", p, k.fn.op("OpLoad", out, type=tC),
                        cp.c(ROW_MAJOR), N.id, ALIGNED, 16)
    with k.if_(~interior):
        sbase = sg * (FRAG * FRAG)
        for i in range(fi):
            for j in range(fj):
                p = k.fn.op("OpAccessChain", scratch, sbase.id, type=wg_f32)
                k.fn.op("OpCooperativeMatrixStoreKHR", p, k.fn.op("OpLoad", acc[i][j], type=tC),
                        cp.c(ROW_MAJOR), cp.c(FRAG), NONPRIVATE)
                _subgroup_barrier(k)
                for e in range(FRAG * FRAG // SUBGROUP):
                    el = lane + e * SUBGROUP
                    gm = m0 + wm0 + (i * FRAG) + el / FRAG
                    gn = n0 + wn0 + (j * FRAG) + el % FRAG
                    with k.if_((gm < M) & (gn < N)):
                        v = Val(k, k.fn.op("OpLoad", k.fn.op("OpAccessChain", scratch,
                                                             (sbase + el).id, type=wg_f32),
                                           NONPRIVATE, type=f32), "f32")
                        ci = cbase + gm * N + gn
                        res = alpha * v
                        with k.if_(beta.ne(0.0)):
                            old = Val(k, cp.load(c_buf, "c_f32", ci, f32), "f32")
                            res2 = res + beta * old
                            k.fn.op("OpStore", cp.elem_ptr(c_buf, "c_f32", ci), res2.id,
                                    [ALIGNED, 4])
                        with k.if_(beta.eq(0.0)):
                            k.fn.op("OpStore", cp.elem_ptr(c_buf, "c_f32", ci), res.id,
                                    [ALIGNED, 4])
                _subgroup_barrier(k)
    body.close()
    k.shared_bytes = cfg.shared_bytes(a_kcontig, b_ncontig)
    return k


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
