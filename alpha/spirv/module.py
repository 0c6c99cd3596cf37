"""SPIR-V module builder: ids, the logical-layout sections, deduplicated types and constants,
functions made of blocks, and the binary writer.

What it is: a thin, exact layer over the SPIR-V binary format (spec section 2.3 and 2.4); every
instruction goes through `Module.op`/`Function.op`, which checks the opcode against the generated
grammar table. What it is not: an optimiser or a validator — `spirv-val` validates (tests run it on
every module the kernels emit). `alpha.spirv.dsl` builds kernels on top of this.
"""

from __future__ import annotations

import struct
from array import array

from alpha.spirv.grammar import ENUMS, OPS

MAGIC = 0x07230203
GENERATOR = 0  # "unregistered tool"


def enum(kind: str, value) -> int:
    """An enumerant by name (e.g. enum("StorageClass", "Workgroup")) or a number unchanged."""
    if isinstance(value, int):
        return value
    try:
        return ENUMS[kind][value]
    except KeyError:
        raise ValueError(f"unknown SPIR-V {kind} {value!r}") from None


def string_words(s: str) -> list[int]:
    """A nul-terminated UTF-8 literal string packed little-endian into words."""
    data = s.encode() + b"\0"
    data += b"\0" * (-len(data) % 4)
    return list(struct.unpack(f"<{len(data) // 4}I", data))


def encode(opname: str, operands) -> list[int]:
    """One instruction: word count and opcode, then operands (ints are words, strs literal
    strings, lists are spliced)."""
    if opname not in OPS:
        raise ValueError(f"unknown SPIR-V instruction {opname}")
    words: list[int] = []
    for o in operands:
        if isinstance(o, str):
            words += string_words(o)
        elif isinstance(o, (list, tuple)):
            words += [int(w) & 0xFFFFFFFF for w in o]
        else:
            words.append(int(o) & 0xFFFFFFFF)
    n = len(words) + 1
    if n > 0xFFFF:
        raise ValueError(f"{opname}: instruction too long ({n} words)")
    return [(n << 16) | OPS[opname][0]] + words


def has_result(opname: str) -> tuple[bool, bool]:
    """(has result type, has result id) for an instruction."""
    kinds = OPS[opname][1].split()
    rt = bool(kinds) and kinds[0] == "IdResultType"
    res = "IdResult" in kinds[:2]
    return rt, res


class TypeInfo:
    """What the builder knows about a type id: kind ('void', 'bool', 'int', 'float', 'vector',
    'array', 'rtarray', 'struct', 'pointer', 'function', 'coopmat', 'tlayout', 'tview'), width,
    signedness, element."""

    __slots__ = ("id", "kind", "width", "signed", "elem", "count", "storage", "members")

    def __init__(self, id, kind, width=0, signed=False, elem=None, count=0, storage=None,
                 members=()):
        self.id, self.kind, self.width, self.signed = id, kind, width, signed
        self.elem, self.count, self.storage, self.members = elem, count, storage, members

    def __repr__(self):
        return f"TypeInfo(%{self.id} {self.kind}{self.width or ''})"


class Function:
    """One function: parameters, then blocks. `op` appends to the current block."""

    def __init__(self, module: "Module", fid: int, ret: int, ftype: int, control: int = 0):
        self.module = module
        self.id = fid
        self.header = encode("OpFunction", [ret, fid, control, ftype])
        self.variables: list[int] = []  # OpVariable Function: must open the first block
        self.blocks: list[list[int]] = []
        self.block_labels: list[int] = []
        self.current: list[int] | None = None
        self.terminated = True

    def label(self, lid: int | None = None) -> int:
        """Start a new block (the previous one must have been terminated)."""
        if not self.terminated:
            raise ValueError("new block before the previous one was terminated")
        lid = lid if lid is not None else self.module.id()
        self.current = []
        self.blocks.append(self.current)
        self.block_labels.append(lid)
        self.terminated = False
        return lid

    def op(self, opname: str, *operands, type: int | None = None) -> int | None:
        """Emit into the current block. With `type`, allocates and returns the result id."""
        if self.terminated:
            raise ValueError(f"{opname} after a block terminator (start a new label)")
        rt, res = has_result(opname)
        rid = None
        if rt:
            if type is None:
                raise ValueError(f"{opname} needs a result type")
            rid = self.module.id()
            operands = (type, rid) + operands
        elif res:
            rid = self.module.id()
            operands = (rid,) + operands
        self.current.extend(encode(opname, operands))
        if opname in ("OpBranch", "OpBranchConditional", "OpReturn", "OpReturnValue",
                      "OpKill", "OpUnreachable", "OpSwitch", "OpTerminateInvocation"):
            self.terminated = True
        return rid

    def variable(self, ptr_type: int, init: int | None = None) -> int:
        vid = self.module.id()
        ops = [ptr_type, vid, enum("StorageClass", "Function")] + ([init] if init else [])
        self.variables.extend(encode("OpVariable", ops))
        return vid

    def words(self) -> list[int]:
        if not self.terminated:
            raise ValueError(f"function %{self.id}: last block not terminated")
        out = list(self.header)
        for i, (lid, body) in enumerate(zip(self.block_labels, self.blocks)):
            out += encode("OpLabel", [lid])
            if i == 0:
                out += self.variables
            out += body
        return out + encode("OpFunctionEnd", [])


class Module:
    """A SPIR-V module under construction. `words()`/`binary()` lay it out in the order the
    spec requires (capabilities ... functions)."""

    def __init__(self, version: tuple[int, int] = (1, 5)):
        self.version = version
        self.bound = 1
        self.capabilities: list[str] = []
        self.extensions: list[str] = []
        self.ext_imports: dict[str, int] = {}
        self.memory_model_words: list[int] = []
        self.entry_points: list[int] = []
        self.execution_modes: list[int] = []
        self.debug: list[int] = []
        self.annotations: list[int] = []
        self.globals: list[int] = []  # types, constants, global variables, in definition order
        self.functions: list[Function] = []
        self._types: dict[tuple, int] = {}
        self._consts: dict[tuple, int] = {}
        self.types: dict[int, TypeInfo] = {}
        self.global_vars: list[int] = []

    def id(self) -> int:
        rid = self.bound
        self.bound += 1
        return rid

    # ---- preamble ----------------------------------------------------------------------
    def capability(self, *names: str) -> None:
        for name in names:
            enum("Capability", name)
            if name not in self.capabilities:
                self.capabilities.append(name)

    def extension(self, name: str) -> None:
        if name not in self.extensions:
            self.extensions.append(name)

    def ext_import(self, name: str = "GLSL.std.450") -> int:
        if name not in self.ext_imports:
            self.ext_imports[name] = self.id()
        return self.ext_imports[name]

    def memory_model(self, addressing: str = "Logical", model: str = "GLSL450") -> None:
        self.memory_model_words = encode("OpMemoryModel", [enum("AddressingModel", addressing),
                                                           enum("MemoryModel", model)])

    def entry_point(self, model: str, fn: int, name: str, interface=()) -> None:
        self.entry_points += encode("OpEntryPoint", [enum("ExecutionModel", model), fn, name,
                                                     list(interface)])

    def execution_mode(self, fn: int, mode: str, *literals: int) -> None:
        self.execution_modes += encode("OpExecutionMode", [fn, enum("ExecutionMode", mode),
                                                           list(literals)])

    def name(self, target: int, text: str) -> None:
        self.debug += encode("OpName", [target, text])

    def decorate(self, target: int, decoration: str, *literals: int) -> None:
        self.annotations += encode("OpDecorate", [target, enum("Decoration", decoration),
                                                  list(literals)])

    def member_decorate(self, struct_id: int, member: int, decoration: str, *literals) -> None:
        self.annotations += encode("OpMemberDecorate", [struct_id, member,
                                                        enum("Decoration", decoration),
                                                        list(literals)])

    # ---- types (deduplicated, except structs which carry decorations) -----------------------
    def _type(self, key: tuple, opname: str, operands, info: dict) -> int:
        if key in self._types:
            return self._types[key]
        tid = self.id()
        self.globals += encode(opname, [tid] + list(operands))
        self._types[key] = tid
        self.types[tid] = TypeInfo(tid, **info)
        return tid

    def type_void(self) -> int:
        return self._type(("void",), "OpTypeVoid", [], {"kind": "void"})

    def type_bool(self) -> int:
        return self._type(("bool",), "OpTypeBool", [], {"kind": "bool"})

    def type_int(self, width: int = 32, signed: bool = False) -> int:
        return self._type(("int", width, signed), "OpTypeInt", [width, int(signed)],
                          {"kind": "int", "width": width, "signed": signed})

    def type_float(self, width: int = 32, encoding: int | None = None) -> int:
        """encoding: an FP encoding operand (SPV_KHR_bfloat16: 0 = BFloat16KHR)."""
        if encoding is None:
            return self._type(("float", width), "OpTypeFloat", [width],
                              {"kind": "float", "width": width})
        return self._type(("float", width, encoding), "OpTypeFloat", [width, encoding],
                          {"kind": "float", "width": width})

    def type_vector(self, elem: int, count: int) -> int:
        e = self.types[elem]
        return self._type(("vector", elem, count), "OpTypeVector", [elem, count],
                          {"kind": "vector", "elem": elem, "count": count, "width": e.width,
                           "signed": e.signed})

    def type_array(self, elem: int, count: int) -> int:
        length = self.constant(self.type_int(32, False), count)
        return self._type(("array", elem, count), "OpTypeArray", [elem, length],
                          {"kind": "array", "elem": elem, "count": count})

    def type_runtime_array(self, elem: int, stride: int | None = None) -> int:
        tid = self._type(("rtarray", elem, stride), "OpTypeRuntimeArray", [elem],
                         {"kind": "rtarray", "elem": elem})
        if stride is not None and ("stride", tid) not in self._types:
            self._types[("stride", tid)] = tid
            self.decorate(tid, "ArrayStride", stride)
        return tid

    def type_struct(self, *members: int, key=None) -> int:
        """Structs are deduplicated only when given a `key` (they usually carry decorations)."""
        if key is None:
            key = ("struct", self.bound)
        return self._type(key, "OpTypeStruct", members, {"kind": "struct", "members": members})

    def type_pointer(self, storage: str, pointee: int) -> int:
        sc = enum("StorageClass", storage)
        return self._type(("pointer", sc, pointee), "OpTypePointer", [sc, pointee],
                          {"kind": "pointer", "elem": pointee, "storage": storage})

    def type_function(self, ret: int, *params: int) -> int:
        return self._type(("function", ret, params), "OpTypeFunction", [ret, *params],
                          {"kind": "function", "elem": ret, "members": params})

    def type_coopmat(self, elem: int, scope: int, rows: int, cols: int, use: int) -> int:
        """OpTypeCooperativeMatrixKHR; scope/rows/cols/use are constant ids."""
        return self._type(("coopmat", elem, scope, rows, cols, use), "OpTypeCooperativeMatrixKHR",
                          [elem, scope, rows, cols, use], {"kind": "coopmat", "elem": elem})

    def type_tensor_layout(self, dim: int, clamp: int) -> int:
        """OpTypeTensorLayoutNV (SPV_NV_tensor_addressing); dim/clamp are constant ids."""
        return self._type(("tlayout", dim, clamp), "OpTypeTensorLayoutNV", [dim, clamp],
                          {"kind": "tlayout"})

    def type_tensor_view(self, dim: int, has_dims: int, *perm: int) -> int:
        """OpTypeTensorViewNV; dim, has_dims (a bool) and the permutation are constant ids."""
        return self._type(("tview", dim, has_dims, perm), "OpTypeTensorViewNV",
                          [dim, has_dims, *perm], {"kind": "tview"})

    # ---- constants (deduplicated) -----------------------------------------------------------
    def constant(self, type_id: int, value) -> int:
        t = self.types[type_id]
        if t.kind == "bool":
            key = ("bool", bool(value))
            if key not in self._consts:
                cid = self.id()
                self.globals += encode("OpConstantTrue" if value else "OpConstantFalse",
                                       [type_id, cid])
                self._consts[key] = cid
            return self._consts[key]
        if t.kind == "float":
            fmt = {16: "<e", 32: "<f", 64: "<d"}[t.width]
            raw = struct.pack(fmt, value)
        elif t.kind == "int":
            if t.width == 64:
                raw = struct.pack("<Q", int(value) & (2**64 - 1))
            else:
                raw = struct.pack("<I", int(value) & ((1 << t.width) - 1))
        else:
            raise ValueError(f"constant of {t.kind} type: use constant_composite")
        raw += b"\0" * (-len(raw) % 4)
        words = list(struct.unpack(f"<{len(raw) // 4}I", raw))
        key = ("scalar", type_id, tuple(words))
        if key not in self._consts:
            cid = self.id()
            self.globals += encode("OpConstant", [type_id, cid, words])
            self._consts[key] = cid
        return self._consts[key]

    def constant_composite(self, type_id: int, *parts: int) -> int:
        key = ("composite", type_id, parts)
        if key not in self._consts:
            cid = self.id()
            self.globals += encode("OpConstantComposite", [type_id, cid, list(parts)])
            self._consts[key] = cid
        return self._consts[key]

    def variable(self, ptr_type: int, storage: str, init: int | None = None) -> int:
        """A module-scope OpVariable (listed in every entry point's interface)."""
        vid = self.id()
        self.globals += encode("OpVariable", [ptr_type, vid, enum("StorageClass", storage)]
                               + ([init] if init else []))
        self.global_vars.append(vid)
        return vid

    def function(self, ret: int, ftype: int, control: int = 0) -> Function:
        fn = Function(self, self.id(), ret, ftype, control)
        self.functions.append(fn)
        return fn

    # ---- output --------------------------------------------------------------------------
    def words(self) -> list[int]:
        body: list[int] = []
        for c in self.capabilities:
            body += encode("OpCapability", [enum("Capability", c)])
        for e in self.extensions:
            body += encode("OpExtension", [e])
        for name, iid in self.ext_imports.items():
            body += encode("OpExtInstImport", [iid, name])
        if not self.memory_model_words:
            self.memory_model()
        body += self.memory_model_words + self.entry_points + self.execution_modes
        body += self.debug + self.annotations + self.globals
        for fn in self.functions:
            body += fn.words()
        major, minor = self.version
        header = [MAGIC, (major << 16) | (minor << 8), GENERATOR, self.bound, 0]
        return header + body

    def binary(self) -> bytes:
        return array("I", self.words()).tobytes()
