"""HeliosBackend: the Backend protocol (alpha.core.backend) on a Vulkan device.

Data lives in GPU memory (`HeliosStorage` over a sub-allocated range); ops record dispatches into
the device's command stream and return at once; only to_array, sum_squares, all_finite,
synchronize and the host-side argument checks that must read data (embedding ids, cross-entropy
targets) wait. f32/i32/u32 run on the GPU; f64 and u16 tensors (references and token caches) are
stored on the GPU but copied/cast through the host. Kernel builders live in alpha/helios/kernels.
"""

from __future__ import annotations

import ctypes
import math
import struct
from array import array

from alpha.core import rng as _rng
from alpha.core.backend import BINARY_OPS, DTYPES, UNARY_OPS
from alpha.tensor import checks as c
from alpha.tensor.tensor import Tensor, check_shape
from alpha.helios.device import Device
from alpha.helios.pipeline import Pipelines
from alpha.helios.kernels import elementwise as kel
from alpha.helios.kernels import rows as krows
from alpha.helios.ops_matmul import MatmulOps
from alpha.helios.ops_nn import NNOps, _positions

GPU_DTYPES = ("f32", "i32", "u32")
MAX_GROUPS = 65535


class HeliosStorage:
    """A GPU range. `shadow`: the host copy of an i32 tensor uploaded by from_array, kept until
    a GPU op writes it, so id/target range checks need no read-back (and no wait)."""

    __slots__ = ("alloc", "nbytes", "shadow")

    def __init__(self, alloc, nbytes: int):
        self.alloc, self.nbytes, self.shadow = alloc, nbytes, None


def _groups(n: int, local: int = 256, cap: int = 4096) -> int:
    return max(1, min(cap, (n + local - 1) // local))


class HeliosBackend(MatmulOps, NNOps):
    name = "helios"

    def __init__(self):
        self.dev = Device()
        self.pipes = Pipelines(self.dev)
        self.float64 = bool(self.dev.features.shaderFloat64)

    # ---- plumbing ------------------------------------------------------------------------
    def _addr(self, t: Tensor) -> int:
        return t.storage.alloc.address + t.offset * t.itemsize

    def _launch(self, key, build, values, groups) -> None:
        prog = self.pipes.get(key, build)
        push = struct.pack(prog.push_format, *values) if prog.push_size else b""
        self.dev.dispatch(prog, push, groups)

    def _new(self, shape, dtype="f32") -> Tensor:
        shape = check_shape(shape)
        nbytes = math.prod(shape) * DTYPES[dtype][1]
        return Tensor(self, HeliosStorage(self.dev.device_pool.alloc(nbytes), nbytes), shape,
                      dtype)

    def _contig(self, t: Tensor) -> Tensor:
        if t.is_contiguous:
            return t
        out = self._new(t.shape, t.dtype)
        self.copy(out, t)
        return out

    def _map(self, name, operands, shape, body, scalars=(), scalar_types=()):
        """operands: (tensor, role) with role in/out/inout; inputs broadcast to `shape`."""
        n = math.prod(shape)
        if n == 0:
            return
        strides = [c.broadcast_strides(t, shape) for t, _ in operands]
        cshape, cstrides = kel.collapse(shape, strides)
        specs = [(kel.STORE_TYPE[t.dtype if name != "copy" else "u32"], st, role)
                 for (t, role), st in zip(operands, cstrides)]
        flat = len(cshape) == 1 and all(st[0] == 1 for _, st, _ in specs)
        key = ("map", name, tuple(specs), tuple(scalar_types), None if flat else cshape)
        build = lambda: kel.map_kernel(name, cshape, specs, list(scalar_types), body)  # noqa
        values = [self._addr(t) for t, _ in operands] + list(scalars) + ([n] if flat else [])
        self._launch(key, build, values, (_groups(n), 1, 1))

    # ---- host transfers --------------------------------------------------------------------
    def _write_bytes(self, alloc, byte_off: int, data: bytes) -> None:
        if not data:
            return
        dev = self.dev
        if dev.direct_upload and not dev.busy:
            ctypes.memmove(alloc.host_ptr + byte_off, data, len(data))
            return
        staging = dev.host_pool.alloc(len(data))
        ctypes.memmove(staging.host_ptr, data, len(data))
        dev.copy(staging.block.buffer, staging.offset, alloc.block.buffer,
                 alloc.offset + byte_off, len(data))
        dev.pending_host.append(staging)

    def _read_bytes(self, alloc, byte_off: int, n: int) -> bytes:
        dev = self.dev
        if n == 0:
            dev.synchronize()
            return b""
        if alloc.host_ptr and dev.device_type in ("cpu", "integrated"):
            dev.synchronize()
            return ctypes.string_at(alloc.host_ptr + byte_off, n)
        staging = dev.host_pool.alloc(n)
        dev.copy(alloc.block.buffer, alloc.offset + byte_off, staging.block.buffer,
                 staging.offset, n)
        dev.synchronize()
        return ctypes.string_at(staging.host_ptr, n)

    def _span(self, t: Tensor) -> tuple[int, int]:
        """(first element, element count) of the storage range a view touches."""
        if t.numel == 0:
            return t.offset, 0
        last = t.offset + sum((n - 1) * s for n, s in zip(t.shape, t.strides))
        return t.offset, last - t.offset + 1

    def _host_values(self, t: Tensor) -> array:
        code, size = DTYPES[t.dtype]
        start, count = self._span(t)
        raw = array(code, self._read_bytes(t.storage.alloc, start * size, count * size))
        if t.is_contiguous:
            return raw
        return array(code, [raw[i - start] for i in _positions(t)])

    def _host_store(self, t: Tensor, values) -> None:
        t.storage.shadow = None
        code, size = DTYPES[t.dtype]
        vals = array(code, values)
        if t.is_contiguous:
            self._write_bytes(t.storage.alloc, t.offset * size, vals.tobytes())
            return
        start, count = self._span(t)
        raw = array(code, self._read_bytes(t.storage.alloc, start * size, count * size))
        for i, v in zip(_positions(t), vals):
            raw[i - start] = v
        self._write_bytes(t.storage.alloc, start * size, raw.tobytes())

    # ---- memory --------------------------------------------------------------------------
    def empty(self, shape, dtype="f32") -> Tensor:
        if dtype not in DTYPES:
            raise TypeError(f"unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
        return self._new(shape, dtype)

    def zeros(self, shape, dtype="f32") -> Tensor:
        t = self.empty(shape, dtype)
        a = t.storage.alloc
        self.dev.fill_zero(a.block.buffer, a.offset, a.size)
        return t

    def from_array(self, data, shape=None, dtype="f32") -> Tensor:
        if dtype not in DTYPES:
            raise TypeError(f"unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
        code = DTYPES[dtype][0]
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = array(code, bytes(data))
        elif not (isinstance(data, array) and data.typecode == code):
            if dtype in ("f32", "f64"):
                data = array(code, data)
            else:
                data = array(code, [int(v) for v in data])
        shape = check_shape((len(data),) if shape is None else shape)
        if math.prod(shape) != len(data):
            raise ValueError(f"from_array: {len(data)} values do not fill shape {shape}")
        t = self._new(shape, dtype)
        self._write_bytes(t.storage.alloc, 0, data.tobytes())
        if dtype == "i32":
            t.storage.shadow = array("i", data)  # a copy: the caller may reuse data
        return t

    def to_array(self, x: Tensor):
        if not x.is_contiguous and x.dtype in GPU_DTYPES:
            x = self._contig(x)
        return self._host_values(x)

    def fill(self, out, value) -> None:
        out.storage.shadow = None
        if out.dtype not in GPU_DTYPES:
            self._host_store(out, [value] * out.numel)
            return
        t = out.dtype
        v = float(value) if t == "f32" else int(value)
        self._map("fill", [(out, "out")], out.shape, lambda k, ins, s: [s[0]], [v], [t])

    def copy(self, out, x) -> None:
        c.need_shape("copy", "out", out, x.shape, "x")
        if out.dtype != x.dtype:
            raise TypeError(f"copy: out has dtype {out.dtype} but x has {x.dtype}; use cast")
        out.storage.shadow = None
        if out.dtype not in GPU_DTYPES:
            self._host_store(out, self._host_values(x))
            return
        self._map("copy", [(out, "out"), (x, "in")], out.shape, lambda k, ins, s: [ins[1]])

    def cast(self, out, x) -> None:
        c.need_shape("cast", "out", out, x.shape, "x")
        out.storage.shadow = None
        if out.dtype in GPU_DTYPES and x.dtype in GPU_DTYPES:
            if out.dtype == x.dtype:
                return self.copy(out, x)
            dt = out.dtype
            self._map(f"cast_{x.dtype}_{dt}", [(out, "out"), (x, "in")], out.shape,
                      lambda k, ins, s: [ins[1].to(dt)])
            return
        vals = self._host_values(x)
        if out.dtype in ("f32", "f64"):
            vals = [float(v) for v in vals]
        else:
            vals = [int(v) for v in vals]  # int() truncates toward zero
        self._host_store(out, vals)

    def synchronize(self) -> None:
        self.dev.synchronize()

    # ---- random numbers ---------------------------------------------------------------------
    def rng_uniform(self, out, key, position) -> None:
        c.need_f32("rng_uniform", ("out", out))
        t = out if out.is_contiguous else self._new(out.shape)
        n = t.numel
        if n:
            k0, k1 = key
            self._launch(("rng_uniform",), krows.rng_uniform,
                         [self._addr(t), n, position & 0xFFFFFFFF, position >> 32, k0, k1],
                         (_groups(n), 1, 1))
        if t is not out:
            self.copy(out, t)

    def rng_normal(self, out, key, position, mean=0.0, std=1.0) -> None:
        c.need_f32("rng_normal", ("out", out))
        n = out.numel
        vals = None
        try:
            from alpha.tensor import get_backend
            cpu = get_backend("cpu")
            tmp = cpu.empty((n,))
            cpu.rng_normal(tmp, key, position, mean, std)
            vals = cpu.to_array(tmp)
        except Exception:  # no C compiler: the pure-Python definition gives the same numbers
            zs = _rng.normals_from_words(_rng.words(tuple(key), position, 2 * ((n + 1) // 2)), n)
            vals = array("f", [mean + std * z for z in zs])
        self._host_store(out, vals)

    # ---- elementwise ---------------------------------------------------------------------
    def binary(self, out, op, a, b) -> None:
        if op not in BINARY_OPS:
            raise ValueError(f"binary: unknown op {op!r} (known: {', '.join(BINARY_OPS)})")
        c.need_f32("binary", ("out", out), ("a", a), ("b", b))
        shape = c.broadcast_shape(a.shape, b.shape)
        c.need_shape("binary", "out", out, shape, f"a {a.shape} and b {b.shape}")
        fn = kel.BINARY[op]
        self._map(f"binary_{op}", [(out, "out"), (a, "in"), (b, "in")], shape,
                  lambda k, ins, s: [fn(k, ins[1], ins[2])])

    def binary_scalar(self, out, op, a, s) -> None:
        if op not in kel.SCALAR:
            raise ValueError(f"binary_scalar: unknown op {op!r} (known: "
                             f"{', '.join(kel.SCALAR)})")
        c.need_f32("binary_scalar", ("out", out), ("a", a))
        c.need_shape("binary_scalar", "out", out, a.shape, "a")
        fn = kel.SCALAR[op]
        self._map(f"scalar_{op}", [(out, "out"), (a, "in")], a.shape,
                  lambda k, ins, sc: [fn(k, ins[1], sc[0])], [float(s)], ["f32"])

    def unary(self, out, op, x) -> None:
        if op not in UNARY_OPS:
            raise ValueError(f"unary: unknown op {op!r} (known: {', '.join(UNARY_OPS)})")
        c.need_f32("unary", ("out", out), ("x", x))
        c.need_shape("unary", "out", out, x.shape, "x")
        fn = kel.UNARY[op]
        self._map(f"unary_{op}", [(out, "out"), (x, "in")], x.shape,
                  lambda k, ins, s: [fn(k, ins[1])])

    def axpy(self, out, x, alpha=1.0) -> None:
        c.need_f32("axpy", ("out", out), ("x", x))
        c.need_shape("axpy", "x", x, out.shape, "out")
        self._map("axpy", [(out, "inout"), (x, "in")], out.shape,
                  lambda k, ins, s: [ins[0] + s[0] * ins[1]], [float(alpha)], ["f32"])

    def where_mask(self, out, x, mask, value) -> None:
        c.need_f32("where_mask", ("out", out), ("x", x), ("mask", mask))
        c.need_shape("where_mask", "out", out, x.shape, "x")
        c.need_broadcasts_to("where_mask", "mask", mask, "x", x.shape)
        self._map("where_mask", [(out, "out"), (x, "in"), (mask, "in")], x.shape,
                  lambda k, ins, s: [k.select(ins[2].ne(0.0), s[0], ins[1])],
                  [float(value)], ["f32"])

    # ---- reductions ----------------------------------------------------------------------
    def _rows_to(self, out, x2, kind) -> None:
        """out (R elements, any shape) = row reduction of contiguous x2 viewed (R, L)."""
        R = out.numel
        L = x2.numel // R if R else 0
        if R == 0:
            return
        if L == 0:
            self.fill(out, 0.0)
            return
        o = out if out.is_contiguous else self._new(out.shape)
        self._launch(("row", kind), lambda: krows.row_reduce(kind),
                     [self._addr(o), self._addr(x2), R, L], (min(R, MAX_GROUPS), 1, 1))
        if o is not out:
            self.copy(out, o)

    def _moved_last(self, x, axes):
        keep = [d for d in range(x.ndim) if d not in axes]
        return self._contig(x.permute(keep + list(axes)))

    def sum(self, out, x, axes, keepdim=False) -> None:
        c.need_f32("sum", ("out", out), ("x", x))
        axes = c.normalize_axes("sum", axes, x.shape)
        c.need_shape("sum", "out", out, c.reduced_shape(x.shape, axes, keepdim),
                     f"x {x.shape} reduced over {tuple(axes)}")
        if sorted(axes) == list(range(len(axes))) and x.is_contiguous and out.is_contiguous \
                and 0 < out.numel < x.numel:
            self._colsum(out, x, x.numel // out.numel, out.numel, add=False)
            return
        self._rows_to(out, self._moved_last(x, axes), "sum")

    def _chunks(self, L: int, C: int) -> tuple[int, int]:
        """(rows per chunk, chunks) for a two-stage column reduction of (L, C)."""
        want = max(1, min(256, (L + 31) // 32, (4096 * 64) // max(C, 1)))
        rows = (L + want - 1) // want
        return rows, (L + rows - 1) // rows

    def _colsum(self, out, x, L, C, add):
        rows, chunks = self._chunks(L, C)
        part = self._new((chunks, C))
        self._launch(("colsum_partial",), krows.colsum_partial,
                     [self._addr(part), self._addr(x), L, C, rows],
                     ((C + krows.COL_LOCAL - 1) // krows.COL_LOCAL, chunks, 1))
        self._launch(("colsum_finish", add), lambda: krows.colsum_finish(add),
                     [self._addr(out), self._addr(part), chunks, C], (_groups(C), 1, 1))

    def sum_to(self, out, x) -> None:
        c.need_f32("sum_to", ("out", out), ("x", x))
        c.need_broadcasts_to("sum_to", "out", out, "x", x.shape)
        pad = x.ndim - out.ndim
        axes = [d for d in range(x.ndim) if d < pad or (out.shape[d - pad] == 1
                                                         and x.shape[d] != 1)]
        if not axes:
            self.axpy(out, self._contig(x).view(out.shape) if x.is_contiguous else
                      self._contig(x).view(out.shape))
            return
        tmp = self._new(c.reduced_shape(x.shape, axes, False))
        self.sum(tmp, x, axes)
        self.axpy(out, tmp.view(out.shape))

    def max(self, out, x, axis, keepdim=False) -> None:
        c.need_f32("max", ("out", out), ("x", x))
        (axis,) = c.normalize_axes("max", [axis], x.shape)
        c.need_data("max", f"axis {axis} of x", x.shape[axis], x)
        c.need_shape("max", "out", out, c.reduced_shape(x.shape, [axis], keepdim),
                     f"x {x.shape} reduced over axis {axis}")
        self._rows_to(out, self._moved_last(x, [axis]), "max")

    def _partials(self, x, kind) -> list:
        x = self._contig(x)
        n = x.numel
        if n == 0:
            return []
        groups = _groups(n, 256, 256)
        acc_t = "f64" if (kind == "sumsq" and self.float64) else "f32"
        part = self._new((groups * (2 if acc_t == "f64" else 1),))
        self._launch(("partial", kind, acc_t), lambda: krows.partial_reduce(kind, acc_t),
                     [self._addr(part), self._addr(x), n], (groups, 1, 1))
        raw = self._read_bytes(part.storage.alloc, 0, groups * (8 if acc_t == "f64" else 4))
        return list(array("d" if acc_t == "f64" else "f", raw))

    def sum_squares(self, x) -> float:
        c.need_f32("sum_squares", ("x", x))
        return math.fsum(self._partials(x, "sumsq"))

    def all_finite(self, x) -> bool:
        c.need_f32("all_finite", ("x", x))
        return sum(self._partials(x, "nonfinite")) == 0


__all__ = ["HeliosBackend"]
