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

from alpha.helios.kernels.coopmat import (ALIGNED, COL_MAJOR, FRAG, NONPRIVATE, ROW_MAJOR,
                                          SCOPE_SUBGROUP, USE_A, USE_ACC, USE_B, _Coop,
                                          _bf16_bits, _subgroup_barrier)
from alpha.spirv.dsl import Kernel, Val

HD = 64  # head dim
UNITS = HD // 8 + 1  # a shared bf16 row: 64 values in 16-byte units, plus one pad unit
RS = HD + 4  # a shared fp32 row of results: 64 values plus 16 bytes of pad
NEG = -1.0e30  # "minus infinity" of the running max (exp(NEG - m) is 0, never NaN)
MODES = ("coopmat", "emulated")
SUBGROUPS = {"coopmat": 4, "emulated": 2}  # 64- and 32-row tiles


def block(mode: str) -> int:
    """Rows of a tile (queries or keys) for `mode`'s kernels."""
    return SUBGROUPS[mode] * FRAG


class _Flash:
    """One flash kernel under construction: shared tiles, the lane layout, the products."""

    def __init__(self, name: str, params: list, mode: str):
        assert mode in MODES
        self.real = mode == "coopmat"
        self.nsg = SUBGROUPS[mode]
        self.BT = self.nsg * FRAG
        self.nt = self.nsg * 32
        k = self.k = Kernel(f"{name}_{mode}", (self.nt, 1, 1), params,
                            version=(1, 6) if self.real else (1, 5))
        m = self.m = k.m
        self.fn = k.fn
        if self.real:
            self.cp = _Coop(k, "bf16")
            self.tA = self.cp.matrix(self.cp.elem16, USE_A)
            self.tB = self.cp.matrix(self.cp.elem16, USE_B)
            self.tC = self.cp.matrix(k.ty("f32"), USE_ACC)
            self.zero_acc = m.constant_composite(self.tC, m.constant(k.ty("f32"), 0.0))
        m.capability("Int64", "GroupNonUniform", "GroupNonUniformShuffle")
        self.na = [NONPRIVATE] if self.real else []  # shared accesses ordered by barriers
        self.ga = [ALIGNED, 16] if self.real else [0x2, 16]  # 16-byte global loads
        self.u32, self.f32 = k.ty("u32"), k.ty("f32")
        self.u4 = m.type_vector(self.u32, 4)
        self._bufs: dict = {}
        self.tid = k.local_id(0)
        if self.real:
            self.sg = k._builtin_scalar("SubgroupId")
            self.lane = k._builtin_scalar("SubgroupLocalInvocationId")
        else:  # 32-invocation groups of our own (lavapipe's subgroups are 8 wide)
            self.sg = self.tid >> 5
            self.lane = self.tid & 31
        self.row = self.lane >> 1  # this invocation's row of its subgroup's 16
        self.half = self.lane & 1
        self.X = self._shared(self.u4, self.BT * UNITS)  # the other side's tiles
        self.Y = self._shared(self.u4, self.BT * UNITS)
        self.PB = self._shared(self.u4, self.BT * UNITS)  # P / dS (bf16), operand staging
        self.R = self._shared(self.f32, self.BT * RS)  # products handed to the invocations
        self.rbase = self.sg * (FRAG * RS)  # this subgroup's 16 rows of R
        self.pbrow = self.sg * FRAG  # ... and of PB

    # ---- memory ----------------------------------------------------------------------------
    def _shared(self, elem, n):
        m = self.m
        return m.variable(m.type_pointer("Workgroup", m.type_array(elem, n)), "Workgroup")

    def buffer(self, addr: Val, elem: int, size: int, key: str) -> int:
        """A PhysicalStorageBuffer pointer to `elem[]` (stride `size`) at a u64 address."""
        m = self.m
        if key not in self._bufs:
            st = m.type_struct(m.type_runtime_array(elem, size), key=("fbuf", key))
            m.decorate(st, "Block")
            m.member_decorate(st, 0, "Offset", 0)
            self._bufs[key] = (m.type_pointer("PhysicalStorageBuffer", st),
                               m.type_pointer("PhysicalStorageBuffer", elem))
        return self.fn.op("OpConvertUToPtr", addr.id, type=self._bufs[key][0])

    def gload(self, buf, key, idx: Val, t, access) -> int:
        p = self.fn.op("OpAccessChain", buf, self.k.const(0, "u32").id, idx.id,
                       type=self._bufs[key][1])
        return self.fn.op("OpLoad", p, access, type=t)

    def ld_r(self, idx: Val, arr=None) -> Val:
        p = self.fn.op("OpAccessChain", self.R if arr is None else arr, idx.id,
                       type=self.m.type_pointer("Workgroup", self.f32))
        return Val(self.k, self.fn.op("OpLoad", p, *self.na, type=self.f32), "f32")

    def st_r(self, idx: Val, v: Val, arr=None) -> None:
        p = self.fn.op("OpAccessChain", self.R if arr is None else arr, idx.id,
                       type=self.m.type_pointer("Workgroup", self.f32))
        self.fn.op("OpStore", p, v.id, *self.na)

    def _word_ptr(self, arr, unit: Val, comp: Val) -> int:
        return self.fn.op("OpAccessChain", arr, unit.id, comp.id,
                          type=self.m.type_pointer("Workgroup", self.u32))

    def bf16_at(self, arr, r: Val, c: Val) -> Val:
        """Element (r, c) of a shared bf16 tile as f32 (the emulated products' reads)."""
        w = Val(self.k, self.fn.op("OpLoad", self._word_ptr(arr, r * UNITS + (c >> 3),
                                                            (c >> 1) & 3),
                                   *self.na, type=self.u32), "u32")
        return (((w >> ((c & 1) * 16)) & 0xFFFF) << 16).bits("f32")

    def load_tile(self, dst, src: Val, T: Val, head: Val, row0: Val) -> None:
        """Rows row0.. of one head of a (B*H, T, 64) bf16 tensor into a shared tile (zeros past
        T): 16 bytes per invocation and step."""
        k, fn = self.k, self.fn
        buf = self.buffer(src, self.u4, 16, "u16x8")
        zero = self.m.constant_composite(self.u4, *[self.m.constant(self.u32, 0)] * 4)
        for i in range(self.BT * 8 // self.nt):
            u = self.tid + i * self.nt
            r, cu = u >> 3, u & 7
            v = fn.variable(self.m.type_pointer("Function", self.u4))
            fn.op("OpStore", v, zero)
            with k.if_(row0 + r < T):
                fn.op("OpStore", v, self.gload(buf, "u16x8", (head * T + row0 + r) * 8 + cu,
                                               self.u4, self.ga))
            p = fn.op("OpAccessChain", dst, (r * UNITS + cu).id,
                      type=self.m.type_pointer("Workgroup", self.u4))
            fn.op("OpStore", p, fn.op("OpLoad", v, type=self.u4), *self.na)

    def barrier(self) -> None:
        self.k.barrier()

    def sync(self) -> None:
        """Order a subgroup's shared-memory hand-offs (a workgroup barrier when emulated: the
        32-invocation groups are not hardware subgroups there)."""
        if self.real:
            _subgroup_barrier(self.k)
        else:
            self.k.barrier()

    def partner(self, x: Val) -> Val:
        """x of the lane holding the other half of this row."""
        k = self.k
        return k.op("OpGroupNonUniformShuffleXor", "f32", k.const(SCOPE_SUBGROUP, "u32").id,
                    x.id, k.const(1, "u32").id)

    # ---- the lane layout -------------------------------------------------------------------
    def cols(self, width: int) -> list[Val]:
        """This invocation's columns of its row (width/2 of them)."""
        return [self.half * 2 + (4 * j + e) for j in range(width // 4) for e in (0, 1)]

    def read_row(self, width: int) -> list[Val]:
        base = self.rbase + self.row * RS
        return [self.ld_r(base + c) for c in self.cols(width)]

    def write_pairs(self, vals: list[Val]) -> None:
        """This invocation's values of its row into its subgroup's rows of PB as bf16."""
        k = self.k
        prow = self.pbrow + self.row
        for j in range(len(vals) // 2):
            c = self.half * 2 + 4 * j
            word = _bf16_bits(k, vals[2 * j]) | (_bf16_bits(k, vals[2 * j + 1]) << 16)
            self.fn.op("OpStore", self._word_ptr(self.PB, prow * UNITS + (c >> 3),
                                                 (c >> 1) & 3), word.id, *self.na)

    # ---- products: a 16-row block of the subgroup times a shared tile -----------------------
    # A: ("frags", [fragments]) held in registers (real), ("tile", shared tile) (emulated), or
    #    ("pb",) this subgroup's rows of PB.  B: (tile, "T") = tile^T, (tile, "N") = tile.
    def a_frags(self) -> list:
        """The subgroup's 16 rows of PB (64 wide) as A fragments, for a product's A that stays
        the same over the loop (Q, dO; K, V)."""
        return [self._frag(self.PB, self.pbrow * UNITS + kk * 2, self.tA, ROW_MAJOR)
                for kk in range(HD // FRAG)]

    def _frag(self, arr, idx: Val, t, layout):
        p = self.fn.op("OpAccessChain", arr, idx.id,
                       type=self.m.type_pointer("Workgroup", self.u4))
        return self.fn.op("OpCooperativeMatrixLoadKHR", p, self.cp.c(layout), self.cp.c(UNITS),
                          *self.na, type=t)

    def _b_frag(self, tile, how, kk, nj):
        if how == "T":  # B(k, n) = tile[n][k]
            return self._frag(tile, self.k.const(nj * FRAG * UNITS + kk * 2, "u32"), self.tB,
                              COL_MAJOR)
        return self._frag(tile, self.k.const(kk * FRAG * UNITS + nj * 2, "u32"), self.tB,
                          ROW_MAJOR)

    def _dims(self, b):
        """(k, n) of a product with B = b."""
        return (HD, self.BT) if b[1] == "T" else (self.BT, HD)

    def product(self, a, b, accs=None):
        """A @ B for the subgroup's 16 rows. Without `accs`: into its rows of R. With `accs`
        (from `accumulators`): added to them."""
        K, N = self._dims(b)
        if not self.real:
            self._emulated(a, b, K, N, accs)
            return
        fn = self.fn
        res = ([self.zero_acc] * (N // FRAG) if accs is None else
               [fn.op("OpLoad", v, type=self.tC) for v in accs[0]])
        for kk in range(K // FRAG):
            if a[0] == "frags":
                af = a[1][kk]
            else:
                af = self._frag(self.PB, self.pbrow * UNITS + kk * 2, self.tA, ROW_MAJOR)
            for nj in range(N // FRAG):
                bf = self._b_frag(b[0], b[1], kk, nj)
                res[nj] = fn.op("OpCooperativeMatrixMulAddKHR", af, bf, res[nj], type=self.tC)
        if accs is None:
            for nj, r in enumerate(res):
                self._store_acc(r, nj)
        else:
            for v, r in zip(accs[0], res):
                fn.op("OpStore", v, r)

    def _store_acc(self, value, nj) -> None:
        p = self.fn.op("OpAccessChain", self.R, (self.rbase + nj * FRAG).id,
                       type=self.m.type_pointer("Workgroup", self.f32))
        self.fn.op("OpCooperativeMatrixStoreKHR", p, value, self.cp.c(ROW_MAJOR),
                   self.cp.c(RS), *self.na)

    def _col(self, i: Val) -> Val:
        """This invocation's i-th column (runtime i: the emulated loops stay loops)."""
        return (i >> 1) * 4 + self.half * 2 + (i & 1)

    def _emulated(self, a, b, K, N, accs) -> None:
        """The product by scalar loops, one invocation's N/2 outputs: into R, or added to the
        accumulator array."""
        k = self.k
        tile, how = b
        with k.loop(0, N // 2) as i:
            c = self._col(i)
            acc = k.var("f32", 0.0)
            with k.loop(0, K) as t:
                x = self.bf16_at(self.PB if a[0] == "pb" else a[1], self.pbrow + self.row, t)
                y = self.bf16_at(tile, c, t) if how == "T" else self.bf16_at(tile, t, c)
                acc.set(acc.get() + x * y)
            if accs is None:
                self.st_r(self.rbase + self.row * RS + c, acc.get())
            else:  # straight into the destination (a private array indexed in a loop takes
                #    lavapipe minutes to compile)
                dst, base, scale, ok = accs
                with k.if_(ok):
                    dst[base + c] = dst[base + c] + acc.get() * scale

    def accumulators(self, dst, base: Val, scale: Val, ok: Val):
        """Accumulators of a 16 x 64 block that lives across the loop, bound for
        dst[base + c] += scale * value (`store_acc` at the end; rows where `ok`): zeroed
        cooperative matrices (real), or the destination itself (emulated: every tile's part
        is added as it comes)."""
        fn, m = self.fn, self.m
        if not self.real:
            return (dst, base, scale, ok)
        accs = []
        for _ in range(HD // FRAG):
            v = fn.variable(m.type_pointer("Function", self.tC))
            fn.op("OpStore", v, self.zero_acc)
            accs.append(v)
        return (accs, dst, base, scale, ok)

    def store_acc(self, accs) -> None:
        """The accumulated block added to its destination (through R: the invocations' rows)."""
        if not self.real:
            return
        accs, dst, base, scale, ok = accs
        for nj, v in enumerate(accs):
            r = self.fn.op("OpMatrixTimesScalar", self.fn.op("OpLoad", v, type=self.tC),
                           scale.id, type=self.tC)
            self._store_acc(r, nj)
        self.sync()
        self.store_rows(dst, self.read_row(HD), ok, base, 0, True)
        self.sync()

    def held(self, src: Val, T: Val, head: Val, row0: Val):
        """A 16 x 64 A operand constant over the loop (the subgroup's rows row0 + 16 sg + r of
        one head): fragments staged through PB (real), or a shared tile of its own (emulated)."""
        if self.real:
            self.load_tile(self.PB, src, T, head, row0)
            self.barrier()
            frags = self.a_frags()
            self.barrier()
            return ("frags", frags)
        arr = self._shared(self.u4, self.BT * UNITS)  # emulated: stays in shared memory
        self.extra_shared = getattr(self, "extra_shared", 0) + self.BT * UNITS * 16
        self.load_tile(arr, src, T, head, row0)
        self.barrier()
        return ("tile", arr)

    def store_rows(self, dst, vals, ok: Val, row_index: Val, col0: Val, add: bool) -> None:
        """dst[row_index + col0 + c] (+)= this invocation's values, when ok."""
        k = self.k
        with k.if_(ok):
            for c, v in zip(self.cols(HD), vals):
                i = row_index + col0 + c
                dst[i] = dst[i] + v if add else v

    def finish(self) -> Kernel:
        self.k.shared_bytes = (3 * self.BT * UNITS * 16 + self.BT * RS * 4
                               + getattr(self, "extra_shared", 0))
        return self.k


HEAD_PARAMS = [("q", "u64"), ("k", "u64"), ("v", "u64")]
SHAPE_PARAMS = [("T", "u32"), ("H", "u32"), ("scale", "f32")]


def flash_forward(mode: str = "coopmat") -> Kernel:
    """out (B, T, H*64) and lse (B*H, T) of causal attention; grid (query tiles, B*H)."""
    f = _Flash("flash_fwd", [("out", "f32*"), ("lse", "f32*")] + HEAD_PARAMS + SHAPE_PARAMS,
               mode)
    k = f.k
    out, lse, qa, ka, va, T, H, scale = k.params()
    BT = f.BT
    nq = (T + (BT - 1)) / BT
    qt = nq - 1 - k.group_id(0)  # the longest rows first
    bh = k.group_id(1)
    q0 = qt * BT
    qrow = q0 + f.sg * FRAG + f.row
    qa_ = f.held(qa, T, bh, q0)
    m = k.var("f32", NEG)
    lsum = k.var("f32", 0.0)  # this invocation's half of the row sum
    o = [k.var("f32", 0.0) for _ in range(HD // 2)]
    with k.loop(0, qt + 1) as t:
        k0 = t * BT
        f.barrier()
        f.load_tile(f.X, ka, T, bh, k0)
        f.load_tile(f.Y, va, T, bh, k0)
        f.barrier()
        f.product(qa_, (f.X, "T"))
        f.sync()
        cols = f.cols(BT)
        vis = [(k0 + c) <= qrow for c in cols]
        s = [k.select(v, x * scale, NEG) for v, x in zip(vis, f.read_row(BT))]
        mx = s[0]
        for x in s[1:]:
            mx = k.fmax(mx, x)
        mx = k.fmax(mx, f.partner(mx))
        m_old = m.get()
        m_new = k.fmax(m_old, mx)
        alpha = k.exp(m_old - m_new)
        p = [k.select(v, k.exp(x - m_new), 0.0) for v, x in zip(vis, s)]
        total = p[0]
        for x in p[1:]:
            total = total + x
        lsum.set(lsum.get() * alpha + total)
        m.set(m_new)
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


def flash_backward_q(mode: str = "coopmat") -> Kernel:
    """dqkv[..., 0:C] += dQ; grid (query tiles, B*H). dd: D = rowsum(dO * O) (B*H, T)."""
    f = _Flash("flash_bwd_q", [("dqkv", "f32*"), ("lse", "f32*"), ("dd", "f32*")]
               + HEAD_PARAMS + [("do", "u64")] + SHAPE_PARAMS, mode)
    k = f.k
    dqkv, lse, dd, qa, ka, va, doa, T, H, scale = k.params()
    BT = f.BT
    nq = (T + (BT - 1)) / BT
    qt = nq - 1 - k.group_id(0)
    bh = k.group_id(1)
    q0 = qt * BT
    qrow = q0 + f.sg * FRAG + f.row
    ok = qrow < T
    row_lse, row_d = k.var("f32", 0.0), k.var("f32", 0.0)
    with k.if_(ok):
        row_lse.set(lse[bh * T + qrow])
        row_d.set(dd[bh * T + qrow])
    qa_ = f.held(qa, T, bh, q0)
    doa_ = f.held(doa, T, bh, q0)
    C = H * HD
    dq = f.accumulators(dqkv, ((bh / H) * T + qrow) * (3 * C) + (bh % H) * HD, scale, ok)
    with k.loop(0, qt + 1) as t:
        k0 = t * BT
        f.barrier()
        f.load_tile(f.X, ka, T, bh, k0)
        f.load_tile(f.Y, va, T, bh, k0)
        f.barrier()
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
    f = _Flash("flash_bwd_kv", [("dqkv", "f32*"), ("lse", "f32*"), ("dd", "f32*")]
               + HEAD_PARAMS + [("do", "u64")] + SHAPE_PARAMS, mode)
    k = f.k
    dqkv, lse, dd, qa, ka, va, doa, T, H, scale = k.params()
    BT = f.BT
    nq = (T + (BT - 1)) / BT
    kt = k.group_id(0)  # the longest column walks first
    bh = k.group_id(1)
    k0 = kt * BT
    krow = k0 + f.sg * FRAG + f.row
    LD = f._shared(f.f32, 2 * BT)  # lse and D of the query tile
    f.extra_shared = 8 * BT
    ka_ = f.held(ka, T, bh, k0)
    va_ = f.held(va, T, bh, k0)
    C = H * HD
    ok = krow < T
    row = ((bh / H) * T + krow) * (3 * C) + (bh % H) * HD
    dk = f.accumulators(dqkv, row + C, scale, ok)
    dv = f.accumulators(dqkv, row + 2 * C, k.const(1.0, "f32"), ok)
    with k.loop(kt, nq) as t:
        q0 = t * BT
        f.barrier()
        f.load_tile(f.X, qa, T, bh, q0)
        f.load_tile(f.Y, doa, T, bh, q0)
        i = f.tid % BT
        lv = k.var("f32", 0.0)
        with k.if_(q0 + i < T):
            with k.if_(f.tid < BT):
                lv.set(lse[bh * T + q0 + i])
            with k.if_(f.tid >= BT):
                lv.set(dd[bh * T + q0 + i])
        f.st_r(f.tid, lv.get(), LD)
        f.barrier()
        f.product(ka_, (f.X, "T"))
        f.sync()
        cols = f.cols(BT)
        p = [k.select((krow <= q0 + c) & (q0 + c < T), k.exp(x * scale - f.ld_r(c, LD)), 0.0)
             for c, x in zip(cols, f.read_row(BT))]
        f.write_pairs(p)
        f.sync()
        f.product(("pb",), (f.Y, "N"), dv)
        f.product(va_, (f.Y, "T"))
        f.sync()
        f.write_pairs([pj * (x - f.ld_r(c + BT, LD)) for pj, c, x in zip(p, cols, f.read_row(BT))])
        f.sync()
        f.product(("pb",), (f.X, "N"), dk)
    f.store_acc(dk)
    f.store_acc(dv)
    return f.finish()


def flash_rowdot() -> Kernel:
    """dd (B*H, T) = rowsum(dO * O) per (sequence, head, position) of dout and out (B, T, H*64):
    the D of the backward (one invocation per row of 64)."""
    k = Kernel("flash_rowdot", (256, 1, 1), [("dd", "f32*"), ("dout", "f32*"), ("out", "f32*"),
                                              ("n", "u32"), ("T", "u32"), ("H", "u32")])
    dd, dout, out, n, T, H = k.params()
    with k.loop(k.gid, n, k.nthreads) as i:
        bh, t = i / T, i % T
        base = ((bh / H) * T + t) * (H * HD) + (bh % H) * HD
        acc = k.var("f32", 0.0)
        with k.loop(0, HD) as d:
            acc.set(acc.get() + dout[base + d] * out[base + d])
        dd[i] = acc.get()
    return k
