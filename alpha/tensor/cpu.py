"""The CPU backend: the Backend protocol (`alpha.core.backend`) over C kernels loaded with ctypes.

The arguments arrive checked (the front, `alpha.core.backend.Backend`); each hook makes a contiguous
temporary where a kernel needs contiguous data and the caller passed a strided view, and calls
one C function (`alpha/tensor/csrc/*.c`, built by `alpha.tensor.build`). Wrappers stay thin: the
ctypes functions are looked up once with their argtypes, so an op costs a few microseconds of
Python on top of the kernel. Matmul lives in `alpha.tensor.cpu_matmul`.

Not here: autograd (alpha/autograd), kernel variants (bench/).
"""

from __future__ import annotations

import math
from array import array

from alpha.core.backend import BINARY_OPS, SCALAR_OPS, UNARY_OPS, Backend
from alpha.tensor import build
from alpha.tensor.cpu_kernels import (
    TYPECODE, DTYPE_ID, INT_DTYPES, ITEMSIZE, MAX_DIMS, Kernels, dims, host_copy, ptr,
)
from alpha.tensor.cpu_matmul import matmul as sgemm
from alpha.tensor.cpu_nn import CPUNNOps
from alpha.tensor.cpu_optim import CPUOptimOps
from alpha.tensor.cpu_storage import METER, CPUStorage
from alpha.tensor.tensor import Tensor, broadcast_strides

_BIN = {"add": 0, "sub": 1, "mul": 2, "div": 3, "max": 4, "min": 5}
_AXPY, _WHERE = 6, 7
_UN = {"neg": 0, "exp": 1, "log": 2, "sqrt": 3, "rsqrt": 4, "tanh": 5, "abs": 6, "square": 7,
       "reciprocal": 8}
_SCALAR = {"add": 10, "sub": 11, "mul": 12, "div": 13, "max": 14, "min": 15, "pow": 16,
           "rsub": 17, "rdiv": 18}
assert set(_BIN) == set(BINARY_OPS) and set(_UN) == set(UNARY_OPS)
assert set(_SCALAR) == set(SCALAR_OPS)


class CPUBackend(CPUNNOps, CPUOptimOps, Backend):
    name = "cpu"
    kv_dtypes = ("f32", "f16")  # csrc/half.h: fp16 cache rows, widened to f32 as they are read

    def __init__(self):
        self.k = Kernels(build.lib())

    # ---- helpers ------------------------------------------------------------------------------
    def _contig(self, t: Tensor) -> Tensor:
        """t itself when contiguous, else a contiguous copy."""
        if t.is_contiguous:
            return t
        tmp = self.empty(t.shape, t.dtype)
        self._strided_copy(tmp, t)
        return tmp

    def _wbuf(self, t: Tensor, keep: bool) -> Tensor:
        """A contiguous buffer to write t's result into (t itself when contiguous); `keep`
        copies t's current values in (for ops that add into their output)."""
        if t.is_contiguous:
            return t
        tmp = self.empty(t.shape, t.dtype)
        if keep:
            self._strided_copy(tmp, t)
        return tmp

    def _wback(self, t: Tensor, buf: Tensor) -> None:
        if buf is not t:
            self._strided_copy(t, buf)

    def _strided_copy(self, out: Tensor, x: Tensor) -> None:
        nd = out.ndim
        if nd > MAX_DIMS:
            raise ValueError(f"copy: {nd} dims, at most {MAX_DIMS} are supported")
        self.k.strided_copy(ptr(out), dims(out.strides), ptr(x), dims(x.strides),
                            dims(out.shape), nd, ITEMSIZE[out.dtype])

    # ---- memory ---------------------------------------------------------------------------
    def _empty(self, shape, dtype) -> Tensor:
        return Tensor(self, CPUStorage(math.prod(shape) * ITEMSIZE[dtype]), shape, dtype)

    def _zeros(self, shape, dtype) -> Tensor:
        # CPUStorage memory starts zeroed; a big one on huge pages (cpu_storage.py)
        return Tensor(self, CPUStorage(math.prod(shape) * ITEMSIZE[dtype], huge=True), shape,
                      dtype)

    def _memory_meter(self):
        return METER

    def _from_array(self, host, shape, dtype) -> Tensor:
        t = self._empty(shape, dtype)
        if len(host):
            host_copy(t.storage.ptr, host.buffer_info()[0], len(host) * ITEMSIZE[dtype])
        return t

    def _to_array(self, x: Tensor):
        x = self._contig(x)
        n = x.numel
        host = array(TYPECODE[x.dtype])
        if n:  # one copy: array(code, bytes(size)) took ~0.4 ms for 512 KB (a decode step's logits)
            host.frombytes(x.storage.view(x.dtype, x.offset, n).cast("B"))
        return host

    def _fill(self, out: Tensor, value: float) -> None:
        if out.numel == 0:
            return
        one = array(TYPECODE[out.dtype], [int(value) if out.dtype in INT_DTYPES else value])
        if out.is_contiguous:
            self.k.fill_contig(ptr(out), one.buffer_info()[0], ITEMSIZE[out.dtype], out.numel)
            return
        nd = out.ndim
        self.k.strided_copy(ptr(out), dims(out.strides), one.buffer_info()[0],
                            dims([0] * nd), dims(out.shape), nd, ITEMSIZE[out.dtype])

    def _copy(self, out: Tensor, x: Tensor) -> None:
        if out.numel:
            self._strided_copy(out, x)

    def _cast(self, out: Tensor, x: Tensor) -> None:
        if out.numel == 0:
            return
        if out.dtype == x.dtype:
            self._strided_copy(out, x)
            return
        xc = self._contig(x)
        buf = self._wbuf(out, False)
        self.k.cast_copy(ptr(buf), DTYPE_ID[out.dtype], ptr(xc), DTYPE_ID[x.dtype],
                         out.numel)
        self._wback(out, buf)

    # ---- random numbers ---------------------------------------------------------------------
    def _rng_uniform(self, out: Tensor, key, position: int) -> None:
        buf = self._wbuf(out, False)
        self.k.rng_uniform(ptr(buf), buf.numel, key[0], key[1], position)
        self._wback(out, buf)

    def _rng_normal(self, out: Tensor, key, position: int, mean, std) -> None:
        buf = self._wbuf(out, False)
        self.k.rng_normal(ptr(buf), buf.numel, key[0], key[1], position, mean, std)
        self._wback(out, buf)

    # ---- matmul --------------------------------------------------------------------------
    def _matmul(self, out, a, b, trans_a, trans_b, accumulate, alpha) -> None:
        sgemm(out, a, b, trans_a, trans_b, accumulate, alpha)

    # ---- elementwise ---------------------------------------------------------------------
    def _binary(self, out, op, a, b, shape) -> None:
        self._ew_binary(f"binary {op}", out, a, b, shape, _BIN[op], 0.0)

    def _ew_binary(self, opname, out, a, b, shape, code, s) -> None:
        n = out.numel
        if n == 0:
            return
        if a.shape == shape and b.shape == shape and out.is_contiguous and a.is_contiguous \
                and b.is_contiguous:
            self.k.ew_binary_contig(ptr(out), ptr(a), ptr(b), n, code, s)
            return
        nd = len(shape)
        if nd > MAX_DIMS:
            raise ValueError(f"{opname}: {nd} dims, at most {MAX_DIMS} are supported")
        self.k.ew_binary(ptr(out), dims(out.strides), ptr(a), dims(broadcast_strides(a, shape)),
                         ptr(b), dims(broadcast_strides(b, shape)), dims(shape), nd, code, s)

    def _ew_unary(self, opname, out, x, code, s) -> None:
        n = out.numel
        if n == 0:
            return
        if out.is_contiguous and x.is_contiguous:
            self.k.ew_unary_contig(ptr(out), ptr(x), n, code, s)
            return
        nd = out.ndim
        if nd > MAX_DIMS:
            raise ValueError(f"{opname}: {nd} dims, at most {MAX_DIMS} are supported")
        self.k.ew_unary(ptr(out), dims(out.strides), ptr(x), dims(x.strides),
                        dims(out.shape), nd, code, s)

    def _binary_scalar(self, out, op, a, s) -> None:
        self._ew_unary(f"binary_scalar {op}", out, a, _SCALAR[op], s)

    def _unary(self, out, op, x) -> None:
        self._ew_unary(f"unary {op}", out, x, _UN[op], 0.0)

    def _axpy(self, out, x, alpha) -> None:
        self._ew_binary("axpy", out, out, x, out.shape, _AXPY, alpha)

    def _where_mask(self, out, x, mask, value) -> None:
        self._ew_binary("where_mask", out, x, mask, x.shape, _WHERE, value)

    # ---- reductions ----------------------------------------------------------------------
    def _reduce(self, out, x, red_axes, op, accumulate, out_strides_of) -> None:
        """out_strides_of(d) -> out's stride for kept x dim d."""
        kshape, kx, ko, rshape, rx = [], [], [], [], []
        for d in range(x.ndim):
            if d in red_axes:
                rshape.append(x.shape[d])
                rx.append(x.strides[d])
            else:
                kshape.append(x.shape[d])
                kx.append(x.strides[d])
                ko.append(out_strides_of(d))
        if len(kshape) > MAX_DIMS or len(rshape) > MAX_DIMS:
            raise ValueError(f"reduction over {x.ndim} dims: at most {MAX_DIMS} are supported")
        self.k.reduce_f32(ptr(out), ptr(x), op, accumulate, dims(kshape), dims(kx),
                          dims(ko), len(kshape), dims(rshape), dims(rx), len(rshape))

    def _sum(self, out, x, axes, keepdim) -> None:
        if out.numel == 0:
            return
        if keepdim:
            self._reduce(out, x, axes, 0, 0, lambda d: out.strides[d])
        else:
            pos = {d: i for i, d in enumerate(d for d in range(x.ndim) if d not in axes)}
            self._reduce(out, x, axes, 0, 0, lambda d: out.strides[pos[d]])

    def _sum_to(self, out, x) -> None:
        if out.numel == 0:
            return
        pad = x.ndim - out.ndim
        red = [d for d in range(x.ndim) if d < pad or out.shape[d - pad] == 1]
        self._reduce(out, x, red, 0, 1, lambda d: out.strides[d - pad])

    def _max(self, out, x, axis, keepdim) -> None:
        if out.numel == 0:
            return
        if keepdim:
            self._reduce(out, x, [axis], 1, 0, lambda d: out.strides[d])
        else:
            self._reduce(out, x, [axis], 1, 0, lambda d: out.strides[d - (d > axis)])

    def _sum_squares(self, x) -> float:
        if x.numel == 0:
            return 0.0
        x = self._contig(x)
        return float(self.k.sum_squares_f32(ptr(x), x.numel))

    def _all_finite(self, x) -> bool:
        if x.numel == 0:
            return True
        x = self._contig(x)
        return bool(self.k.all_finite_f32(ptr(x), x.numel))
