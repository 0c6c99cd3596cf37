"""The plumbing of the fused flash-attention kernels (`flash.py`): shared-memory tiles of bf16
rows, the lane layout (each invocation owns half a row of its subgroup's 16), the tile walk with
the next tiles' loads in flight, and the 16-row products -- on cooperative matrices, or by scalar
loops in the emulated variant that lavapipe runs (see `flash.py`)."""

from __future__ import annotations

from contextlib import contextmanager

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
        self.v2 = self.m.type_vector(self.f32, 2)
        # products handed to the invocations, as float pairs: an invocation's columns come in
        # adjacent pairs, read with one 8-byte load
        self.R = self._shared(self.v2, self.BT * RS // 2)
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

    def ld_pair(self, idx: Val, arr=None) -> list[Val]:
        """Elements idx, idx + 1 (idx even) of a shared array of float pairs (R by default)."""
        fn, k = self.fn, self.k
        p = fn.op("OpAccessChain", self.R if arr is None else arr, (idx >> 1).id,
                  type=self.m.type_pointer("Workgroup", self.v2))
        v = fn.op("OpLoad", p, *self.na, type=self.v2)
        return [Val(k, fn.op("OpCompositeExtract", v, e, type=self.f32), "f32") for e in (0, 1)]

    def st_r(self, idx: Val, v, arr=None) -> None:
        """Element idx of a shared array of float pairs (R by default) = v."""
        p = self.fn.op("OpAccessChain", self.R if arr is None else arr, (idx >> 1).id,
                       (idx & 1).id, type=self.m.type_pointer("Workgroup", self.f32))
        self.fn.op("OpStore", p, self.k.coerce(v, "f32").id, *self.na)

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
        self.put(dst, self.fetch(src, T, head, row0))

    def fetch(self, src: Val, T: Val, head: Val, row0: Val, regs=None) -> list:
        """`load_tile`'s global loads into Function variables (`regs`: reuse those)."""
        k, fn = self.k, self.fn
        buf = self.buffer(src, self.u4, 16, "u16x8")
        zero = self.m.constant_composite(self.u4, *[self.m.constant(self.u32, 0)] * 4)
        n = self.BT * 8 // self.nt
        regs = regs or [fn.variable(self.m.type_pointer("Function", self.u4)) for _ in range(n)]
        for i, v in enumerate(regs):
            u = self.tid + i * self.nt
            r, cu = u >> 3, u & 7
            fn.op("OpStore", v, zero)
            with k.if_(row0 + r < T):
                fn.op("OpStore", v, self.gload(buf, "u16x8", (head * T + row0 + r) * 8 + cu,
                                               self.u4, self.ga))
        return regs

    def put(self, dst, regs) -> None:
        fn = self.fn
        for i, v in enumerate(regs):
            u = self.tid + i * self.nt
            p = fn.op("OpAccessChain", dst, ((u >> 3) * UNITS + (u & 7)).id,
                      type=self.m.type_pointer("Workgroup", self.u4))
            fn.op("OpStore", p, fn.op("OpLoad", v, type=self.u4), *self.na)

    @contextmanager
    def walk(self, start: Val, end: Val, T: Val, head: Val, srcs, extra=None):
        """for t in [start, end): tile t of srcs[0] in X and of srcs[1] in Y (rows t * BT..),
        `extra(row0)` run beside the shared stores; yields t. The next tiles' global loads are
        issued before this tile's products and stored to shared memory after them (loading
        between two barriers instead ran the whole attention 4.8x slower on an H200)."""
        k, BT = self.k, self.BT
        regs = [self.fetch(src, T, head, start * BT) for src in srcs]
        self.barrier()  # the operands held in registers were read from PB
        for dst, r in zip((self.X, self.Y), regs):
            self.put(dst, r)
        if extra:
            extra(start * BT)
        self.barrier()
        with k.loop(start, end) as t:
            more = (t + 1) < end
            with k.if_(more):
                for src, r in zip(srcs, regs):
                    self.fetch(src, T, head, (t + 1) * BT, r)
            yield t
            self.barrier()
            with k.if_(more):
                for dst, r in zip((self.X, self.Y), regs):
                    self.put(dst, r)
                if extra:
                    extra((t + 1) * BT)
            self.barrier()

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
        return self.read_pairs(self.R, base, width)

    def read_pairs(self, arr, base, width: int) -> list[Val]:
        """This invocation's columns of a row of `width` at element `base` of a shared array
        of float pairs."""
        out = []
        for j in range(width // 4):
            out += self.ld_pair(base + self.half * 2 + 4 * j, arr)
        return out

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
        p = self.fn.op("OpAccessChain", self.R, ((self.rbase + nj * FRAG) >> 1).id,
                       type=self.m.type_pointer("Workgroup", self.v2))
        self.fn.op("OpCooperativeMatrixStoreKHR", p, value, self.cp.c(ROW_MAJOR),
                   self.cp.c(RS // 2), *self.na)

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

    def accumulators(self, dst, base: Val, scale: Val, ok: Val, zero: bool = False):
        """Accumulators of a 16 x 64 block that lives across the loop, bound for
        dst[base + c] += scale * value (`store_acc` at the end; rows where `ok`): zeroed
        cooperative matrices (real), or the destination itself (emulated: every tile's part
        is added as it comes; `zero`: the destination's rows zeroed first)."""
        fn, m = self.fn, self.m
        if not self.real:
            if zero:
                self.store_rows(dst, [0.0] * (HD // 2), ok, base, 0, False)
            return (dst, base, scale, ok)
        accs = []
        for _ in range(HD // FRAG):
            v = fn.variable(m.type_pointer("Function", self.tC))
            fn.op("OpStore", v, self.zero_acc)
            accs.append(v)
        return (accs, dst, base, scale, ok)

    def store_acc(self, accs, row_factor: Val | None = None) -> None:
        """The accumulated block added to its destination (through R: the invocations' rows).
        With `row_factor` (this row's): the destination becomes block * row_factor instead."""
        if not self.real:
            if row_factor is not None:
                dst, base, _, ok = accs
                self.scale_dst(dst, base, ok, row_factor)
            return
        accs, dst, base, scale, ok = accs
        for nj, v in enumerate(accs):
            r = self.fn.op("OpMatrixTimesScalar", self.fn.op("OpLoad", v, type=self.tC),
                           scale.id, type=self.tC)
            self._store_acc(r, nj)
        self.sync()
        vals = self.read_row(HD)
        if row_factor is not None:
            vals = [v * row_factor for v in vals]
        self.store_rows(dst, vals, ok, base, 0, row_factor is None)
        self.sync()

    def scale_dst(self, dst, base: Val, ok: Val, factor: Val) -> None:
        with self.k.if_(ok):
            for c in self.cols(HD):
                dst[base + c] = dst[base + c] * factor

    def rescale(self, accs, alpha: Val, need: Val) -> None:
        """An accumulated block's rows times their alpha, where `need` holds on some lane of the
        subgroup (real: through R and back into the accumulators; emulated: in place in the
        destination, every time: alpha is 1 where nothing changed)."""
        k, fn = self.k, self.fn
        if not self.real:
            dst, base, _, ok = accs
            self.scale_dst(dst, base, ok, alpha)
            return
        k.m.capability("GroupNonUniformVote")
        anyv = k.op("OpGroupNonUniformAny", "bool", k.const(SCOPE_SUBGROUP, "u32").id, need.id)
        with k.if_(anyv):  # uniform in the subgroup
            self.sync()  # every lane has read R (the scores)
            for nj, v in enumerate(accs[0]):
                self._store_acc(fn.op("OpLoad", v, type=self.tC), nj)
            self.sync()
            base = self.rbase + self.row * RS
            for c, x in zip(self.cols(HD), self.read_row(HD)):
                self.st_r(base + c, x * alpha)
            self.sync()
            for nj, v in enumerate(accs[0]):
                p = fn.op("OpAccessChain", self.R, ((self.rbase + nj * FRAG) >> 1).id,
                          type=self.m.type_pointer("Workgroup", self.v2))
                fn.op("OpStore", v, fn.op("OpCooperativeMatrixLoadKHR", p, self.cp.c(ROW_MAJOR),
                                          self.cp.c(RS // 2), *self.na, type=self.tC))

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
