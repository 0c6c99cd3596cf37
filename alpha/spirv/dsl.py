"""A small expression DSL over `alpha.spirv.module` for compute kernels.

A `Kernel` is one GLCompute entry point whose buffers are reached through 64-bit buffer device
addresses passed in push constants (so launching needs no descriptor sets: the host packs
addresses and scalars into the push-constant bytes, `Kernel.push_format`). Values (`Val`) carry
their scalar type ("f32", "u32", "i32", "bool", ...) and overload Python operators; control flow is
structured (`with k.if_(c):`, `with k.loop(a, b) as i:`), mutable locals are Function variables
(`k.var`). Example — y = a*x + y over n elements with a grid-stride loop:

    k = Kernel("axpy", local=(256, 1, 1), params=[("y", "f32*"), ("x", "f32*"), ("n", "u32"),
                                                   ("a", "f32")])
    y, x, n, a = k.params()
    with k.loop(k.gid, n, k.nthreads) as i:
        y[i] = a * x[i] + y[i]
    words = k.finish()
"""

from __future__ import annotations

import struct
from contextlib import contextmanager

from alpha.spirv.grammar import GLSL_STD_450
from alpha.spirv.module import Module, enum

SCALARS = {"f32": ("float", 32, False), "f16": ("float", 16, False), "f64": ("float", 64, False),
           "u32": ("int", 32, False), "i32": ("int", 32, True), "u64": ("int", 64, False),
           "u16": ("int", 16, False), "bool": ("bool", 0, False)}
SEM_ACQREL_WG = 0x8 | 0x100  # AcquireRelease | WorkgroupMemory
SCOPE_WORKGROUP, SCOPE_SUBGROUP, SCOPE_DEVICE = 2, 3, 1


class Val:
    """An SSA value of a scalar type inside a kernel."""

    __slots__ = ("k", "id", "t")

    def __init__(self, k: "Kernel", vid: int, t: str):
        self.k, self.id, self.t = k, vid, t

    # ---- arithmetic -----------------------------------------------------------------------
    def _bin(self, other, fop, sop, uop, swap=False):
        o = self.k.coerce(other, self.t)
        a, b = (o, self) if swap else (self, o)
        kind = SCALARS[self.t][0]
        opname = fop if kind == "float" else (sop if SCALARS[self.t][2] else uop)
        if opname is None:
            raise TypeError(f"operator not defined for {self.t}")
        return self.k.op(opname, self.t, a.id, b.id)

    def __add__(self, o): return self._bin(o, "OpFAdd", "OpIAdd", "OpIAdd")
    def __radd__(self, o): return self._bin(o, "OpFAdd", "OpIAdd", "OpIAdd", True)
    def __sub__(self, o): return self._bin(o, "OpFSub", "OpISub", "OpISub")
    def __rsub__(self, o): return self._bin(o, "OpFSub", "OpISub", "OpISub", True)
    def __mul__(self, o): return self._bin(o, "OpFMul", "OpIMul", "OpIMul")
    def __rmul__(self, o): return self._bin(o, "OpFMul", "OpIMul", "OpIMul", True)
    def __truediv__(self, o): return self._bin(o, "OpFDiv", "OpSDiv", "OpUDiv")
    def __rtruediv__(self, o): return self._bin(o, "OpFDiv", "OpSDiv", "OpUDiv", True)
    def __floordiv__(self, o): return self._bin(o, None, "OpSDiv", "OpUDiv")
    def __mod__(self, o): return self._bin(o, "OpFRem", "OpSRem", "OpUMod")
    def __and__(self, o):
        if self.t == "bool":
            return self.k.op("OpLogicalAnd", "bool", self.id, self.k.coerce(o, "bool").id)
        return self._bin(o, None, "OpBitwiseAnd", "OpBitwiseAnd")
    def __or__(self, o):
        if self.t == "bool":
            return self.k.op("OpLogicalOr", "bool", self.id, self.k.coerce(o, "bool").id)
        return self._bin(o, None, "OpBitwiseOr", "OpBitwiseOr")
    def __xor__(self, o): return self._bin(o, None, "OpBitwiseXor", "OpBitwiseXor")
    def __lshift__(self, o): return self._bin(o, None, "OpShiftLeftLogical", "OpShiftLeftLogical")
    def __rshift__(self, o):
        return self._bin(o, None, "OpShiftRightArithmetic", "OpShiftRightLogical")

    def __neg__(self):
        if SCALARS[self.t][0] == "float":
            return self.k.op("OpFNegate", self.t, self.id)
        return self.k.op("OpSNegate", self.t, self.id)

    def __invert__(self):
        if self.t == "bool":
            return self.k.op("OpLogicalNot", "bool", self.id)
        return self.k.op("OpNot", self.t, self.id)

    # ---- comparisons (== and != stay Python's; use eq/ne) ------------------------------------
    def _cmp(self, o, f, s, u):
        o = self.k.coerce(o, self.t)
        kind = SCALARS[self.t][0]
        opname = f if kind == "float" else (s if SCALARS[self.t][2] else u)
        return self.k.op(opname, "bool", self.id, o.id)

    def __lt__(self, o): return self._cmp(o, "OpFOrdLessThan", "OpSLessThan", "OpULessThan")
    def __le__(self, o):
        return self._cmp(o, "OpFOrdLessThanEqual", "OpSLessThanEqual", "OpULessThanEqual")
    def __gt__(self, o):
        return self._cmp(o, "OpFOrdGreaterThan", "OpSGreaterThan", "OpUGreaterThan")
    def __ge__(self, o):
        return self._cmp(o, "OpFOrdGreaterThanEqual", "OpSGreaterThanEqual",
                         "OpUGreaterThanEqual")
    def eq(self, o): return self._cmp(o, "OpFOrdEqual", "OpIEqual", "OpIEqual")
    def ne(self, o): return self._cmp(o, "OpFUnordNotEqual", "OpINotEqual", "OpINotEqual")

    __hash__ = object.__hash__

    # ---- conversions ----------------------------------------------------------------------
    def to(self, t: str) -> "Val":
        """Numeric conversion (float<->int truncating toward zero, width changes)."""
        if t == self.t:
            return self
        sk, sw, ss = SCALARS[self.t]
        dk, dw, ds = SCALARS[t]
        if sk == "float" and dk == "float":
            opname = "OpFConvert"
        elif sk == "float":
            opname = "OpConvertFToS" if ds else "OpConvertFToU"
        elif dk == "float":
            opname = "OpConvertSToF" if ss else "OpConvertUToF"
        elif sw == dw:
            opname = "OpBitcast"
        else:
            opname = "OpSConvert" if ss else "OpUConvert"
        return self.k.op(opname, t, self.id)

    def bits(self, t: str) -> "Val":
        """Reinterpret the bits as another type of the same width."""
        return self.k.op("OpBitcast", t, self.id)


class Ptr:
    """An element pointer base: a buffer address (PhysicalStorageBuffer) or a shared array."""

    def __init__(self, k: "Kernel", base: int, t: str, storage: str):
        self.k, self.base, self.t, self.storage = k, base, t, storage

    def _elem(self, i) -> int:
        k = self.k
        i = k.coerce(i, "u32")
        ptype = k.m.type_pointer(self.storage, k.ty(self.t))
        if self.storage == "PhysicalStorageBuffer":
            return k.fn.op("OpAccessChain", self.base, k.const(0, "u32").id, i.id, type=ptype)
        return k.fn.op("OpAccessChain", self.base, i.id, type=ptype)

    def _access(self) -> list[int]:
        if self.storage == "PhysicalStorageBuffer":
            return [enum("MemoryAccess", "Aligned"), SCALARS[self.t][1] // 8]
        return []

    def __getitem__(self, i) -> Val:
        p = self._elem(i)
        return Val(self.k, self.k.fn.op("OpLoad", p, self._access(), type=self.k.ty(self.t)),
                   self.t)

    def __setitem__(self, i, v) -> None:
        p = self._elem(i)
        v = self.k.coerce(v, self.t)
        self.k.fn.op("OpStore", p, v.id, self._access())


class Var:
    """A mutable local (Function storage)."""

    def __init__(self, k: "Kernel", vid: int, t: str):
        self.k, self.id, self.t = k, vid, t

    def get(self) -> Val:
        return Val(self.k, self.k.fn.op("OpLoad", self.id, type=self.k.ty(self.t)), self.t)

    def set(self, v) -> None:
        self.k.fn.op("OpStore", self.id, self.k.coerce(v, self.t).id)


class Kernel:
    subgroup_reductions = True  # workgroup reductions start with subgroup arithmetic

    def __init__(self, name: str, local=(256, 1, 1), params=(), version=(1, 5)):
        self.name = name
        self.local = tuple(local)
        self.m = m = Module(version)
        m.capability("Shader", "PhysicalStorageBufferAddresses")
        m.memory_model("PhysicalStorageBuffer64", "GLSL450")
        self.glsl = m.ext_import("GLSL.std.450")
        void = m.type_void()
        self.fn = m.function(void, m.type_function(void))
        m.name(self.fn.id, "main")
        self.param_specs = list(params)
        self._builtins: dict[str, int] = {}
        self._setup_push()
        self.fn.label()
        self._params = self._load_params()

    # ---- types and constants ---------------------------------------------------------------
    def ty(self, t: str) -> int:
        kind, width, signed = SCALARS[t]
        if kind == "float":
            if width == 16:
                self.m.capability("Float16")
            if width == 64:
                self.m.capability("Float64")
            return self.m.type_float(width)
        if kind == "int":
            if width == 64:
                self.m.capability("Int64")
            if width == 16:
                self.m.capability("Int16")
            return self.m.type_int(width, signed)
        return self.m.type_bool()

    def const(self, value, t: str) -> Val:
        return Val(self, self.m.constant(self.ty(t), value), t)

    def coerce(self, v, t: str) -> Val:
        if isinstance(v, Val):
            if v.t != t:
                raise TypeError(f"type mismatch: {v.t} value where {t} is needed")
            return v
        if isinstance(v, bool) or t == "bool":
            return self.const(bool(v), "bool")
        return self.const(v, t)

    def op(self, opname: str, t: str, *operands) -> Val:
        return Val(self, self.fn.op(opname, *operands, type=self.ty(t)), t)

    # ---- parameters through push constants -------------------------------------------------
    def _setup_push(self) -> None:
        m = self.m
        members, offsets, fmt, off = [], [], "<", 0
        self._buf_structs = {}
        for pname, spec in self.param_specs:
            if spec.endswith("*"):
                et = spec[:-1]
                if et not in self._buf_structs:
                    rt = m.type_runtime_array(self.ty(et), SCALARS[et][1] // 8)
                    st = m.type_struct(rt, key=("buf", et))
                    m.decorate(st, "Block")
                    m.member_decorate(st, 0, "Offset", 0)
                    self._buf_structs[et] = m.type_pointer("PhysicalStorageBuffer", st)
                members.append(self._buf_structs[et])
                off = (off + 7) // 8 * 8
                fmt += "x" * (off - struct_size(fmt)) + "Q"
                offsets.append(off)
                off += 8
            else:
                members.append(self.ty(spec))
                size = SCALARS[spec][1] // 8
                off = (off + size - 1) // size * size
                fmt += "x" * (off - struct_size(fmt)) + {"f32": "f", "u32": "I", "i32": "i",
                                                         "f64": "d", "u64": "Q"}[spec]
                offsets.append(off)
                off += size
        self.push_format = fmt
        self.push_size = struct_size(fmt)
        if not members:
            self.push_var = None
            return
        st = m.type_struct(*members)
        m.decorate(st, "Block")
        for i, o in enumerate(offsets):
            m.member_decorate(st, i, "Offset", o)
        self.push_struct_members = members
        self.push_var = m.variable(m.type_pointer("PushConstant", st), "PushConstant")

    def _load_params(self) -> list:
        out = []
        for i, (pname, spec) in enumerate(self.param_specs):
            ptype = self.m.type_pointer("PushConstant", self.push_struct_members[i])
            p = self.fn.op("OpAccessChain", self.push_var, self.const(i, "u32").id, type=ptype)
            v = self.fn.op("OpLoad", p, type=self.push_struct_members[i])
            if spec.endswith("*"):
                out.append(Ptr(self, v, spec[:-1], "PhysicalStorageBuffer"))
            else:
                out.append(Val(self, v, spec))
        return out

    def params(self) -> list:
        return self._params

    # ---- built-in ids ----------------------------------------------------------------------
    def _builtin(self, name: str, component: int = 0) -> Val:
        m = self.m
        if name not in self._builtins:
            v3 = m.type_vector(self.ty("u32"), 3)
            var = m.variable(m.type_pointer("Input", v3), "Input")
            m.decorate(var, "BuiltIn", enum("BuiltIn", name))
            self._builtins[name] = var
        var = self._builtins[name]
        v3 = m.type_vector(self.ty("u32"), 3)
        # loaded where asked: the value dominates the code that follows it
        vec = self.fn.op("OpLoad", var, type=v3)
        return self.op("OpCompositeExtract", "u32", vec, component)

    def _builtin_scalar(self, name: str) -> Val:
        m = self.m
        if name not in self._builtins:
            var = m.variable(m.type_pointer("Input", self.ty("u32")), "Input")
            m.decorate(var, "BuiltIn", enum("BuiltIn", name))
            self._builtins[name] = var
        return Val(self, self.fn.op("OpLoad", self._builtins[name], type=self.ty("u32")), "u32")

    def global_id(self, c=0): return self._builtin("GlobalInvocationId", c)
    def local_id(self, c=0): return self._builtin("LocalInvocationId", c)
    def group_id(self, c=0): return self._builtin("WorkgroupId", c)
    def num_groups(self, c=0): return self._builtin("NumWorkgroups", c)

    def subgroup_size(self):
        self.m.capability("GroupNonUniform")
        return self._builtin_scalar("SubgroupSize")

    @property
    def gid(self) -> Val:
        return self.global_id(0)

    @property
    def nthreads(self) -> Val:
        return self.num_groups(0) * self.local[0]

    # ---- memory ----------------------------------------------------------------------------
    def shared(self, t: str, n: int) -> Ptr:
        m = self.m
        arr = m.type_array(self.ty(t), n)
        var = m.variable(m.type_pointer("Workgroup", arr), "Workgroup")
        return Ptr(self, var, t, "Workgroup")

    def var(self, t: str, init=None) -> Var:
        v = Var(self, self.fn.variable(self.m.type_pointer("Function", self.ty(t))), t)
        if init is not None:
            v.set(init)
        return v

    def barrier(self) -> None:
        u = "u32"
        self.fn.op("OpControlBarrier", self.const(SCOPE_WORKGROUP, u).id,
                   self.const(SCOPE_WORKGROUP, u).id, self.const(SEM_ACQREL_WG, u).id)

    # ---- math ------------------------------------------------------------------------------
    def ext(self, name: str, t: str, *args) -> Val:
        ids = [self.coerce(a, t).id for a in args]
        return self.op("OpExtInst", t, self.glsl, GLSL_STD_450[name], *ids)

    def exp(self, x): return self.ext("Exp", x.t, x)
    def log(self, x): return self.ext("Log", x.t, x)
    def sqrt(self, x): return self.ext("Sqrt", x.t, x)
    def rsqrt(self, x): return self.ext("InverseSqrt", x.t, x)
    def tanh(self, x): return self.ext("Tanh", x.t, x)
    def fabs(self, x): return self.ext("FAbs", x.t, x)
    def fmax(self, x, y): return self.ext("FMax", x.t, x, y)
    def fmin(self, x, y): return self.ext("FMin", x.t, x, y)
    def umin(self, x, y): return self.ext("UMin", x.t, x, y)
    def umax(self, x, y): return self.ext("UMax", x.t, x, y)
    def pow(self, x, y): return self.ext("Pow", x.t, x, y)
    def floor(self, x): return self.ext("Floor", x.t, x)

    def select(self, c: Val, a, b) -> Val:
        t = a.t if isinstance(a, Val) else (b.t if isinstance(b, Val) else
                                            ("f32" if isinstance(a, float) else "u32"))
        return self.op("OpSelect", t, c.id, self.coerce(a, t).id, self.coerce(b, t).id)

    def isnan(self, x): return self.op("OpIsNan", "bool", x.id)
    def isinf(self, x): return self.op("OpIsInf", "bool", x.id)

    def umul_hi_lo(self, a: Val, b: Val) -> tuple[Val, Val]:
        """32x32 -> 64-bit unsigned product as (hi, lo)."""
        m = self.m
        st = m.type_struct(self.ty("u32"), self.ty("u32"), key=("pair_u32",))
        r = self.fn.op("OpUMulExtended", a.id, self.coerce(b, "u32").id, type=st)
        lo = self.op("OpCompositeExtract", "u32", r, 0)
        hi = self.op("OpCompositeExtract", "u32", r, 1)
        return hi, lo

    # ---- structured control flow ------------------------------------------------------------
    @contextmanager
    def if_(self, cond: Val):
        fn = self.fn
        then_l, merge_l = self.m.id(), self.m.id()
        fn.op("OpSelectionMerge", merge_l, 0)
        fn.op("OpBranchConditional", cond.id, then_l, merge_l)
        fn.label(then_l)
        yield
        if not fn.terminated:
            fn.op("OpBranch", merge_l)
        fn.label(merge_l)

    @contextmanager
    def loop(self, start, end, step=1, t: str = "u32"):
        """for (i = start; i < end; i += step): yields i (a Val)."""
        fn = self.fn
        start, end, step = self.coerce(start, t), self.coerce(end, t), self.coerce(step, t)
        iv = self.var(t, start)
        header, check, body, cont, merge = (self.m.id() for _ in range(5))
        fn.op("OpBranch", header)
        fn.label(header)
        fn.op("OpLoopMerge", merge, cont, 0)
        fn.op("OpBranch", check)
        fn.label(check)
        i = iv.get()
        fn.op("OpBranchConditional", (i < end).id, body, merge)
        fn.label(body)
        yield i
        if not fn.terminated:
            fn.op("OpBranch", cont)
        fn.label(cont)
        iv.set(iv.get() + step)
        fn.op("OpBranch", header)
        fn.label(merge)

    # ---- workgroup reductions (fixed tree order: deterministic) -----------------------------
    def reduce(self, value: Val, scratch: Ptr, combine, subgroup_op: str | None = None) -> Val:
        """Combine one value per invocation of a 1-D workgroup; every invocation gets the
        result. `scratch` is a shared array of at least local[0] elements. With `subgroup_op`
        (e.g. "OpGroupNonUniformFAdd") a subgroup reduction runs first and one value per
        subgroup goes through shared memory (2 barriers instead of log2(local) + 2); the order
        is fixed by the device, so results are reproducible."""
        if subgroup_op is not None:
            self.m.capability("GroupNonUniform", "GroupNonUniformArithmetic")
            part = self.op(subgroup_op, value.t, self.const(SCOPE_SUBGROUP, "u32").id, 0,
                           value.id)
            lane = self._builtin_scalar("SubgroupLocalInvocationId")
            sg = self._builtin_scalar("SubgroupId")
            nsg = self._builtin_scalar("NumSubgroups")
            with self.if_(lane.eq(0)):
                scratch[sg] = part
            self.barrier()
            acc = self.var(value.t, scratch[0])
            with self.loop(1, nsg) as i:
                acc.set(combine(acc.get(), scratch[i]))
            out = acc.get()
            self.barrier()
            return out
        n = self.local[0]
        lid = self.local_id(0)
        scratch[lid] = value
        s = 1
        while s < n:
            s *= 2
        s //= 2
        while s >= 1:
            self.barrier()
            with self.if_((lid < s) & (lid + s < n)):
                scratch[lid] = combine(scratch[lid], scratch[lid + s])
            s //= 2
        self.barrier()
        out = scratch[0]
        self.barrier()
        return out

    def reduce_sum(self, value, scratch):
        op = "OpGroupNonUniformFAdd" if value.t.startswith("f") else "OpGroupNonUniformIAdd"
        return self.reduce(value, scratch, lambda a, b: a + b,
                           op if self.subgroup_reductions else None)

    def reduce_max(self, value, scratch):
        return self.reduce(value, scratch, lambda a, b: self.fmax(a, b),
                           "OpGroupNonUniformFMax" if self.subgroup_reductions else None)

    # ---- output ----------------------------------------------------------------------------
    def finish(self) -> list[int]:
        fn = self.fn
        if not fn.terminated:
            fn.op("OpReturn")
        m = self.m
        m.entry_point("GLCompute", fn.id, "main", m.global_vars)
        m.execution_mode(fn.id, "LocalSize", *self.local)
        return m.words()


def struct_size(fmt: str) -> int:
    return struct.calcsize(fmt)
