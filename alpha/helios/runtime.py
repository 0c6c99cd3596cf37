"""The helios runtime: what every op stands on — allocate GPU tensors, copy bytes in and out,
launch a kernel, run an elementwise map, copy a view. Both halves of the backend (`backend.py`
and `ops_nn.py`) reach the device only through this object's public methods, never through each
other's helpers.

It does no argument checks (the front, `alpha.core.backend.Backend`, did them) and knows no op
semantics beyond copying; the kernels themselves are built in `alpha/helios/kernels`.
"""

from __future__ import annotations

import ctypes
import math
import struct
from array import array

from alpha.core.backend import DTYPES
from alpha.helios.device import Device
from alpha.helios.kernels import elementwise as kel
from alpha.helios.kernels import rows as krows
from alpha.helios.pipeline import Pipelines
from alpha.tensor.tensor import Tensor, broadcast_strides

GPU_DTYPES = ("f32", "i32", "u32")  # f64 and u16 live on the GPU but move through the host
MAX_GROUPS = 65535


class HeliosStorage:
    """A GPU range (values derived from it live in the device's write record, derived.py)."""

    __slots__ = ("alloc", "nbytes")

    def __init__(self, alloc, nbytes: int):
        self.alloc, self.nbytes = alloc, nbytes


def groups(n: int, local: int = 256, cap: int = 4096) -> int:
    """Workgroups for n items of `local` threads each, at most `cap` (kernels loop over the
    rest)."""
    return max(1, min(cap, (n + local - 1) // local))


def positions(t: Tensor) -> list[int]:
    """Storage positions of a view's elements in row-major order."""
    pos = [t.offset]
    for n, s in zip(t.shape, t.strides):
        pos = [p + i * s for p in pos for i in range(n)]
    return pos


def whole(t: Tensor) -> bool:
    """t is all of its allocation's elements, in order."""
    return t.offset == 0 and t.is_contiguous and t.numel * t.itemsize == t.storage.nbytes


def column_chunks(L: int, C: int) -> tuple[int, int]:
    """(rows per chunk, chunks) for a two-stage column reduction of (L, C)."""
    want = max(1, min(256, (L + 31) // 32, (4096 * 64) // max(C, 1)))
    rows = (L + want - 1) // want
    return rows, (L + rows - 1) // rows


class Runtime:
    def __init__(self, backend):
        self.backend = backend  # the owner of every tensor this runtime makes
        self.dev = Device()
        self.pipes = Pipelines(self.dev)
        self.float64 = bool(self.dev.features.shaderFloat64)

    # ---- allocate and launch -----------------------------------------------------------------
    def new(self, shape, dtype: str = "f32") -> Tensor:
        """A contiguous tensor in a fresh GPU range (shape already checked)."""
        nbytes = math.prod(shape) * DTYPES[dtype][1]
        return Tensor(self.backend, HeliosStorage(self.dev.device_pool.alloc(nbytes), nbytes),
                      shape, dtype)

    def addr(self, t: Tensor) -> int:
        """The device address of t's first element (kernels take buffer device addresses)."""
        return t.storage.alloc.address + t.offset * t.itemsize

    def launch(self, key, build, values, grid, writes=None, overwrites=()) -> None:
        """Record one dispatch of the pipeline cached under `key` (`build()` makes it once) with
        push constants `values` over `grid` workgroups. `writes`: every tensor it writes (the
        write record, alpha/helios/derived.py); None when unknown, which forgets every value
        derived from GPU memory. `overwrites`: those of them it writes all of, whole
        allocations (a zero fill of them just before is dropped: `Device.defer`)."""
        prog = self.pipes.get(key, build)
        push = struct.pack(prog.push_format, *values) if prog.push_size else b""
        self.dev.dispatch(prog, push, grid,
                          writes=None if writes is None else [t.storage.alloc for t in writes],
                          overwrites=[t.storage.alloc for t in overwrites if whole(t)])

    def map(self, name, operands, shape, body, scalars=(), scalar_types=()) -> None:
        """An elementwise kernel over `shape`. operands: (tensor, role) with role in/out/inout;
        inputs broadcast to `shape`; body(kernel, loaded values, scalars) -> stored values."""
        n = math.prod(shape)
        if n == 0:
            return
        strides = [broadcast_strides(t, shape) for t, _ in operands]
        cshape, cstrides = kel.collapse(shape, strides)
        specs = [(kel.STORE_TYPE[t.dtype if name != "copy" else "u32"], st, role)
                 for (t, role), st in zip(operands, cstrides)]
        flat = len(cshape) == 1 and all(st[0] == 1 for _, st, _ in specs)
        key = ("map", name, tuple(specs), tuple(scalar_types), None if flat else cshape)
        build = lambda: kel.map_kernel(name, cshape, specs, list(scalar_types), body)  # noqa
        values = [self.addr(t) for t, _ in operands] + list(scalars) + ([n] if flat else [])
        read = [t.storage.alloc for t, role in operands if role != "out"]
        self.launch(key, build, values, (groups(n), 1, 1),
                    [t for t, role in operands if role != "in"],
                    [t for t, role in operands if role == "out"
                     and all(a is not t.storage.alloc for a in read)])

    def copy(self, out: Tensor, x: Tensor) -> None:
        """out[...] = x for views of one shape and dtype (on the GPU for GPU dtypes)."""
        if out.dtype not in GPU_DTYPES:
            self.host_store(out, self.host_values(x))
            return
        self.map("copy", [(out, "out"), (x, "in")], out.shape, lambda k, ins, s: [ins[1]])

    def contig(self, t: Tensor) -> Tensor:
        """t itself when contiguous, else a contiguous copy."""
        if t.is_contiguous:
            return t
        out = self.new(t.shape, t.dtype)
        self.copy(out, t)
        return out

    def colsum(self, out: Tensor, x: Tensor, L: int, C: int, add: bool) -> None:
        """out (C,) (+)= column sums of contiguous x viewed (L, C): partial sums per chunk of
        rows, then a fixed-order finish (deterministic, no atomics)."""
        rows, chunks = column_chunks(L, C)
        part = self.new((chunks, C))
        self.launch(("colsum_partial",), krows.colsum_partial,
                    [self.addr(part), self.addr(x), L, C, rows],
                    ((C + krows.COL_LOCAL - 1) // krows.COL_LOCAL, chunks, 1), [part])
        self.launch(("colsum_finish", add), lambda: krows.colsum_finish(add),
                    [self.addr(out), self.addr(part), chunks, C], (groups(C), 1, 1), [out])

    # ---- host transfers --------------------------------------------------------------------
    def write_bytes(self, alloc, byte_off: int, data: bytes) -> None:
        if not data:
            return
        dev = self.dev
        # a step being recorded copies through staging: the copy is replayed, a store is not
        if dev.direct_upload and not dev.busy and dev.capture is None:
            ctypes.memmove(alloc.host_ptr + byte_off, data, len(data))
            dev.derived.wrote([alloc])
            return
        staging = dev.host_pool.alloc(len(data))
        ctypes.memmove(staging.host_ptr, data, len(data))
        dev.copy(staging.block.buffer, staging.offset, alloc.block.buffer,
                 alloc.offset + byte_off, len(data), writes=[alloc])
        dev.pending_host.append(staging)

    def read_bytes(self, alloc, byte_off: int, n: int) -> bytes:
        """n bytes of a GPU range (waits for pending work)."""
        dev = self.dev
        if dev.capture is not None:  # the host would decide on this step's values only
            dev.capture.why_not = dev.capture.why_not or "a read-back while recording the step"
        if n == 0:
            dev.synchronize()
            return b""
        # host memory (the replayed decode step's logits live there) or a CPU-side device: the
        # mapping is read straight after the wait
        if alloc.host_ptr and (dev.device_type in ("cpu", "integrated")
                               or (alloc.pool is dev.host_pool and dev.host_coherent)):
            dev.synchronize()
            return ctypes.string_at(alloc.host_ptr + byte_off, n)
        staging = dev.host_pool.alloc(n)
        dev.copy(alloc.block.buffer, alloc.offset + byte_off, staging.block.buffer,
                 staging.offset, n, writes=[staging])
        dev.synchronize()
        return ctypes.string_at(staging.host_ptr, n)

    def span(self, t: Tensor) -> tuple[int, int]:
        """(first element, element count) of the storage range a view touches."""
        if t.numel == 0:
            return t.offset, 0
        last = t.offset + sum((n - 1) * s for n, s in zip(t.shape, t.strides))
        return t.offset, last - t.offset + 1

    def host_values(self, t: Tensor) -> array:
        """t's elements on the host, row-major (waits)."""
        code, size = DTYPES[t.dtype]
        start, count = self.span(t)
        raw = array(code, self.read_bytes(t.storage.alloc, start * size, count * size))
        if t.is_contiguous:
            return raw
        return array(code, [raw[i - start] for i in positions(t)])

    def host_store(self, t: Tensor, values) -> None:
        """t[...] = values (row-major) from the host."""
        code, size = DTYPES[t.dtype]
        vals = array(code, values)
        if t.is_contiguous:
            self.write_bytes(t.storage.alloc, t.offset * size, vals.tobytes())
            return
        start, count = self.span(t)
        raw = array(code, self.read_bytes(t.storage.alloc, start * size, count * size))
        for i, v in zip(positions(t), vals):
            raw[i - start] = v
        self.write_bytes(t.storage.alloc, start * size, raw.tobytes())
