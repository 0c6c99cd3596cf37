"""HeliosBackend: the Backend protocol (alpha.core.backend) on a Vulkan device.

Arguments arrive checked (the front, `alpha.core.backend.Backend`); the device is reached only
through `self.rt` (alpha/helios/runtime.py). Data lives in GPU memory (`HeliosStorage` over a
sub-allocated range); ops record dispatches into
the device's command stream and return at once; only to_array, sum_squares, all_finite,
synchronize and the host-side argument checks that must read data (embedding ids, cross-entropy
targets) wait. f32/i32/u32 run on the GPU; f64 and u16 tensors (references and token caches) are
stored on the GPU but copied/cast through the host. Kernel builders live in alpha/helios/kernels.
"""

from __future__ import annotations

import math
from array import array

from alpha.core.backend import Backend
from alpha.core.checks import reduced_shape
from alpha.helios.kernels import elementwise as kel
from alpha.helios.kernels import rows as krows
from alpha.helios.ops_attention import AttentionOps
from alpha.helios.ops_matmul import MatmulOps
from alpha.helios.ops_nn import HOST_COPY, ZERO, NNOps
from alpha.helios.ops_optim import OptimOps
from alpha.helios.replay import DecodeOps
from alpha.helios.runtime import GPU_DTYPES, MAX_GROUPS, Runtime, groups, whole
from alpha.tensor import host_rng
from alpha.tensor.tensor import Tensor


class HeliosBackend(MatmulOps, AttentionOps, NNOps, OptimOps, DecodeOps, Backend):
    name = "helios"

    def __init__(self):
        self.rt = Runtime(self)
        self.dev, self.pipes, self.float64 = self.rt.dev, self.rt.pipes, self.rt.float64

    # ---- memory --------------------------------------------------------------------------
    def _empty(self, shape, dtype) -> Tensor:
        return self.rt.new(shape, dtype)

    def _zeros(self, shape, dtype) -> Tensor:
        t = self.rt.new(shape, dtype)
        a = t.storage.alloc
        self.dev.fill_zero(a.block.buffer, a.offset, a.size, writes=[a])
        self.dev.derived.put(a, ZERO, True)
        return t

    def _memory_meter(self):
        return self.dev.device_pool.meter

    def _from_array(self, host, shape, dtype) -> Tensor:
        t = self.rt.new(shape, dtype)
        self.rt.write_bytes(t.storage.alloc, 0, host.tobytes())
        if dtype == "i32":  # id range checks need no read-back (a copy: the caller may reuse)
            self.dev.derived.put(t.storage.alloc, HOST_COPY, array("i", host))
        return t

    def _to_array(self, x: Tensor):
        if not x.is_contiguous and x.dtype in GPU_DTYPES:
            x = self.rt.contig(x)
        return self.rt.host_values(x)

    def _fill(self, out, value) -> None:
        if out.dtype not in GPU_DTYPES:
            self.rt.host_store(out, [value] * out.numel)
            return
        t = out.dtype
        v = float(value) if t == "f32" else int(value)

        def record():
            self.rt.map("fill", [(out, "out")], out.shape, lambda k, ins, s: [s[0]], [v], [t])
        if v == 0 and whole(out):
            # a fresh gradient: ops that see the mark write it without reading it, and the
            # fill itself is dropped when the next command writes all of it
            self.dev.defer(out.storage.alloc, record)
            self.dev.derived.put(out.storage.alloc, ZERO, True)
            return
        record()

    def _copy(self, out, x) -> None:
        self.rt.copy(out, x)

    def _cast(self, out, x) -> None:
        if out.dtype in GPU_DTYPES and x.dtype in GPU_DTYPES:
            if out.dtype == x.dtype:
                return self.rt.copy(out, x)
            dt = out.dtype
            self.rt.map(f"cast_{x.dtype}_{dt}", [(out, "out"), (x, "in")], out.shape,
                        lambda k, ins, s: [ins[1].to(dt)])
            return
        vals = self.rt.host_values(x)
        if out.dtype in ("f32", "f64"):
            vals = [float(v) for v in vals]
        else:
            vals = [int(v) for v in vals]  # int() truncates toward zero
        self.rt.host_store(out, vals)

    def synchronize(self) -> None:
        self.dev.synchronize()

    # ---- random numbers ---------------------------------------------------------------------
    def _rng_uniform(self, out, key, position) -> None:
        t = out if out.is_contiguous else self.rt.new(out.shape)
        n = t.numel
        if n:
            k0, k1 = key
            based = self.dev.capture.rng if self.dev.capture is not None else None
            if based is not None and based[0] == tuple(key):
                # a step being recorded: words from the stream's position at each replay
                position -= based[1]
                self.rt.launch(("rng_uniform_based",), lambda: krows.rng_uniform(True),
                               [self.rt.addr(t), n, position & 0xFFFFFFFF, position >> 32, k0,
                                k1, self.rt.addr(based[2])], (groups(n), 1, 1), [t])
            else:
                self.rt.launch(("rng_uniform",), krows.rng_uniform,
                               [self.rt.addr(t), n, position & 0xFFFFFFFF, position >> 32,
                                k0, k1], (groups(n), 1, 1), [t])
        if t is not out:
            self.rt.copy(out, t)

    def _rng_normal(self, out, key, position, mean, std) -> None:
        # float64 Box-Muller on the host: GPUs lack float64 log/cos
        self.rt.host_store(out, host_rng.normals(key, position, out.numel, mean, std))

    # ---- elementwise ---------------------------------------------------------------------
    def _binary(self, out, op, a, b, shape) -> None:
        fn = kel.BINARY[op]
        self.rt.map(f"binary_{op}", [(out, "out"), (a, "in"), (b, "in")], shape,
                    lambda k, ins, s: [fn(k, ins[1], ins[2])])

    def _binary_scalar(self, out, op, a, s) -> None:
        fn = kel.SCALAR[op]
        self.rt.map(f"scalar_{op}", [(out, "out"), (a, "in")], a.shape,
                    lambda k, ins, sc: [fn(k, ins[1], sc[0])], [s], ["f32"])

    def _unary(self, out, op, x) -> None:
        fn = kel.UNARY[op]
        self.rt.map(f"unary_{op}", [(out, "out"), (x, "in")], x.shape,
                    lambda k, ins, s: [fn(k, ins[1])])

    def _axpy(self, out, x, alpha) -> None:
        self.rt.map("axpy", [(out, "inout"), (x, "in")], out.shape,
                    lambda k, ins, s: [ins[0] + s[0] * ins[1]], [float(alpha)], ["f32"])

    def _where_mask(self, out, x, mask, value) -> None:
        self.rt.map("where_mask", [(out, "out"), (x, "in"), (mask, "in")], x.shape,
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
            self._fill(out, 0.0)
            return
        o = out if out.is_contiguous else self.rt.new(out.shape)
        self.rt.launch(("row", kind), lambda: krows.row_reduce(kind),
                       [self.rt.addr(o), self.rt.addr(x2), R, L], (min(R, MAX_GROUPS), 1, 1),
                       [o])
        if o is not out:
            self.rt.copy(out, o)

    def _moved_last(self, x, axes):
        keep = [d for d in range(x.ndim) if d not in axes]
        return self.rt.contig(x.permute(keep + list(axes)))

    def _sum(self, out, x, axes, keepdim) -> None:
        if sorted(axes) == list(range(len(axes))) and x.is_contiguous and out.is_contiguous \
                and 0 < out.numel < x.numel:
            self.rt.colsum(out, x, x.numel // out.numel, out.numel, add=False)
            return
        self._rows_to(out, self._moved_last(x, axes), "sum")

    def _sum_to(self, out, x) -> None:
        pad = x.ndim - out.ndim
        axes = [d for d in range(x.ndim) if d < pad or (out.shape[d - pad] == 1
                                                        and x.shape[d] != 1)]
        if not axes:
            self._axpy(out, self.rt.contig(x).view(out.shape), 1.0)
            return
        if axes == list(range(len(axes))) and x.is_contiguous and out.is_contiguous \
                and out.numel == math.prod(x.shape[len(axes):]):
            # a bias gradient: column sums added straight into out (was: into a temporary,
            # then an axpy)
            self.rt.colsum(out, x, x.numel // out.numel, out.numel, add=True)
            return
        tmp = self.rt.new(reduced_shape(x.shape, axes, False))
        self._sum(tmp, x, axes, False)
        self._axpy(out, tmp.view(out.shape), 1.0)

    def _max(self, out, x, axis, keepdim) -> None:
        self._rows_to(out, self._moved_last(x, [axis]), "max")

    def _partials(self, x, kind) -> list:
        x = self.rt.contig(x)
        n = x.numel
        if n == 0:
            return []
        ng = groups(n, 256, 256)
        acc_t = "f64" if (kind == "sumsq" and self.float64) else "f32"
        part = self.rt.new((ng * (2 if acc_t == "f64" else 1),))
        self.rt.launch(("partial", kind, acc_t), lambda: krows.partial_reduce(kind, acc_t),
                       [self.rt.addr(part), self.rt.addr(x), n], (ng, 1, 1), [part])
        raw = self.rt.read_bytes(part.storage.alloc, 0, ng * (8 if acc_t == "f64" else 4))
        return list(array("d" if acc_t == "f64" else "f", raw))

    def _sum_squares(self, x) -> float:
        return math.fsum(self._partials(x, "sumsq"))

    def _all_finite(self, x) -> bool:
        return sum(self._partials(x, "nonfinite")) == 0


__all__ = ["HeliosBackend"]
