"""The CPU backend: the Backend protocol (`alpha.core.backend`) over C kernels loaded with ctypes.

Each method checks shapes and dtypes (tuple compares, `alpha.tensor.checks`), makes a contiguous
temporary where a kernel needs contiguous data and the caller passed a strided view, and calls
one C function (`alpha/tensor/csrc/*.c`, built by `alpha.tensor.build`). Wrappers stay thin: the
ctypes functions are looked up once with their argtypes, so an op costs a few microseconds of
Python on top of the kernel. Matmul lives in `alpha.tensor.cpu_matmul`.

Not here: autograd (alpha/autograd), kernel variants (bench/).
"""

from __future__ import annotations

import ctypes
import math
from array import array

from alpha.core.backend import BINARY_OPS, DTYPES, UNARY_OPS
from alpha.tensor import build
from alpha.tensor import checks as ck
from alpha.tensor.cpu_kernels import (
    TYPECODE, DTYPE_ID, INT_DTYPES, ITEMSIZE, MAX_DIMS, Kernels, dims, ptr,
)
from alpha.tensor.cpu_nn import CPUNNOps
from alpha.tensor.cpu_storage import CPUStorage
from alpha.tensor.tensor import Tensor, check_shape

_BIN = {"add": 0, "sub": 1, "mul": 2, "div": 3, "max": 4, "min": 5}
_AXPY, _WHERE = 6, 7
_UN = {"neg": 0, "exp": 1, "log": 2, "sqrt": 3, "rsqrt": 4, "tanh": 5, "abs": 6, "square": 7,
       "reciprocal": 8}
_SCALAR = {"add": 10, "sub": 11, "mul": 12, "div": 13, "max": 14, "min": 15, "pow": 16,
           "rsub": 17, "rdiv": 18}
assert set(_BIN) == set(BINARY_OPS) and set(_UN) == set(UNARY_OPS)


class CPUBackend(CPUNNOps):
    name = "cpu"

    def __init__(self):
        self.k = Kernels(build.lib())
        self._matmul = None

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
    def empty(self, shape, dtype="f32") -> Tensor:
        if dtype not in ITEMSIZE:
            raise TypeError(f"unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
        shape = check_shape(shape)
        return Tensor(self, CPUStorage(math.prod(shape) * ITEMSIZE[dtype]), shape, dtype)

    def zeros(self, shape, dtype="f32") -> Tensor:
        return self.empty(shape, dtype)  # CPUStorage memory starts zeroed

    def from_array(self, data, shape=None, dtype="f32") -> Tensor:
        if dtype not in ITEMSIZE:
            raise TypeError(f"unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
        code = TYPECODE[dtype]
        if isinstance(data, (bytes, bytearray, memoryview)):
            raw = memoryview(data).cast("B")
            if len(raw) % ITEMSIZE[dtype]:
                raise ValueError(f"from_array: {len(raw)} bytes is not a whole number of "
                                 f"{dtype} elements")
            host = array(code)
            host.frombytes(raw)
        elif isinstance(data, array) and data.typecode == code:
            host = data
        elif dtype in INT_DTYPES:
            host = array(code, [int(v) for v in data])
        else:
            host = array(code, data if isinstance(data, array) else list(data))
        n = len(host)
        shape = check_shape((n,) if shape is None else shape)
        if math.prod(shape) != n:
            raise ValueError(f"from_array: {n} values do not fill shape {shape}")
        t = self.empty(shape, dtype)
        if n:
            ctypes.memmove(t.storage.ptr, host.buffer_info()[0], n * ITEMSIZE[dtype])
        return t

    def to_array(self, x: Tensor):
        x = self._contig(x)
        n = x.numel
        host = array(TYPECODE[x.dtype], bytes(n * ITEMSIZE[x.dtype]))
        if n:
            ctypes.memmove(host.buffer_info()[0], ptr(x), n * ITEMSIZE[x.dtype])
        return host

    def fill(self, out: Tensor, value: float) -> None:
        if out.numel == 0:
            return
        one = array(TYPECODE[out.dtype], [int(value) if out.dtype in INT_DTYPES else value])
        if out.is_contiguous:
            self.k.fill_contig(ptr(out), one.buffer_info()[0], ITEMSIZE[out.dtype], out.numel)
            return
        nd = out.ndim
        self.k.strided_copy(ptr(out), dims(out.strides), one.buffer_info()[0],
                            dims([0] * nd), dims(out.shape), nd, ITEMSIZE[out.dtype])

    def copy(self, out: Tensor, x: Tensor) -> None:
        ck.need_shape("copy", "out", out, x.shape, ("x", x))
        if out.dtype != x.dtype:
            raise TypeError(f"copy: out has dtype {out.dtype} but x has {x.dtype}; use cast")
        if out.numel:
            self._strided_copy(out, x)

    def cast(self, out: Tensor, x: Tensor) -> None:
        ck.need_shape("cast", "out", out, x.shape, ("x", x))
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

    def synchronize(self) -> None:
        pass

    # ---- random numbers ---------------------------------------------------------------------
    def rng_uniform(self, out: Tensor, key, position: int) -> None:
        ck.need_f32("rng_uniform", ("out", out))
        buf = self._wbuf(out, False)
        self.k.rng_uniform(ptr(buf), buf.numel, key[0], key[1], position)
        self._wback(out, buf)

    def rng_normal(self, out: Tensor, key, position: int, mean=0.0, std=1.0) -> None:
        ck.need_f32("rng_normal", ("out", out))
        buf = self._wbuf(out, False)
        self.k.rng_normal(ptr(buf), buf.numel, key[0], key[1], position, mean, std)
        self._wback(out, buf)

    def rng_words(self, key, position: int, n: int) -> array:
        """n raw 32-bit words of a stream (a CPU extra used by tests and integer sampling)."""
        host = array("I", bytes(4 * n))
        if n:
            self.k.rng_words(host.buffer_info()[0], n, key[0], key[1], position)
        return host

    # ---- matmul --------------------------------------------------------------------------
    def matmul(self, out, a, b, *, trans_a=False, trans_b=False, accumulate=False,
               alpha=1.0) -> None:
        mm = self._matmul
        if mm is None:
            try:  # the SGEMM lives in its own module; imported once, on first use
                from alpha.tensor.cpu_matmul import matmul as mm
            except ImportError as e:
                raise NotImplementedError(f"need matmul (alpha.tensor.cpu_matmul: {e})") \
                    from None
            self._matmul = mm
        mm(out, a, b, trans_a=trans_a, trans_b=trans_b, accumulate=accumulate, alpha=alpha)

    # ---- elementwise ---------------------------------------------------------------------
    def binary(self, out, op, a, b) -> None:
        code = _BIN.get(op)
        if code is None:
            raise ValueError(f"binary: unknown op {op!r} (known: {', '.join(_BIN)})")
        self._binary(f"binary {op}", out, a, b, code, 0.0)

    def _binary(self, opname, out, a, b, code, s) -> None:
        if out.dtype != "f32" or a.dtype != "f32" or b.dtype != "f32":
            ck.need_f32(opname, ("out", out), ("a", a), ("b", b))
        if a.shape == b.shape:
            shape = a.shape
        else:
            try:
                shape = ck.broadcast_shape(a.shape, b.shape)
            except ValueError:
                raise ValueError(f"{opname}: shapes {a.shape} and {b.shape} do not broadcast") \
                    from None
        if out.shape != shape:
            raise ValueError(f"{opname}: out has shape {out.shape}, expected {shape} "
                             f"(from a {a.shape} and b {b.shape})")
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
        self.k.ew_binary(ptr(out), dims(out.strides), ptr(a),
                         dims(ck.broadcast_strides(a, shape)), ptr(b),
                         dims(ck.broadcast_strides(b, shape)), dims(shape), nd, code, s)

    def _unary(self, opname, out, x, code, s) -> None:
        if out.dtype != "f32" or x.dtype != "f32":
            ck.need_f32(opname, ("out", out), ("x", x))
        if out.shape != x.shape:
            raise ValueError(f"{opname}: out has shape {out.shape}, expected {x.shape} (from x)")
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

    def binary_scalar(self, out, op, a, s) -> None:
        code = _SCALAR.get(op)
        if code is None:
            raise ValueError(f"binary_scalar: unknown op {op!r} (known: {', '.join(_SCALAR)})")
        self._unary(f"binary_scalar {op}", out, a, code, float(s))

    def unary(self, out, op, x) -> None:
        code = _UN.get(op)
        if code is None:
            raise ValueError(f"unary: unknown op {op!r} (known: {', '.join(_UN)})")
        self._unary(f"unary {op}", out, x, code, 0.0)

    def axpy(self, out, x, alpha=1.0) -> None:
        if out.shape != x.shape:
            raise ValueError(f"axpy: out has shape {out.shape}, expected {x.shape} (from x)")
        self._binary("axpy", out, out, x, _AXPY, float(alpha))

    def where_mask(self, out, x, mask, value) -> None:
        ck.need_f32("where_mask", ("out", out), ("x", x), ("mask", mask))
        ck.need_shape("where_mask", "out", out, x.shape, ("x", x))
        ck.need_broadcasts_to("where_mask", "mask", mask, "x", x.shape)
        self._binary("where_mask", out, x, mask, _WHERE, float(value))

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

    def sum(self, out, x, axes, keepdim=False) -> None:
        ck.need_f32("sum", ("out", out), ("x", x))
        axes = ck.normalize_axes("sum", axes, x.shape)
        ck.need_shape("sum", "out", out, ck.reduced_shape(x.shape, axes, keepdim),
                      f"x {x.shape} and axes {tuple(axes)}")
        if out.numel == 0:
            return
        if keepdim:
            self._reduce(out, x, axes, 0, 0, lambda d: out.strides[d])
        else:
            pos = {d: i for i, d in enumerate(d for d in range(x.ndim) if d not in axes)}
            self._reduce(out, x, axes, 0, 0, lambda d: out.strides[pos[d]])

    def sum_to(self, out, x) -> None:
        ck.need_f32("sum_to", ("out", out), ("x", x))
        ck.need_broadcasts_to("sum_to", "out", out, "x", x.shape)
        if out.numel == 0:
            return
        pad = x.ndim - out.ndim
        red = [d for d in range(x.ndim) if d < pad or out.shape[d - pad] == 1]
        self._reduce(out, x, red, 0, 1, lambda d: out.strides[d - pad])

    def max(self, out, x, axis, keepdim=False) -> None:
        ck.need_f32("max", ("out", out), ("x", x))
        (axis,) = ck.normalize_axes("max", [axis], x.shape)
        ck.need_data("max", f"axis {axis} of x", x.shape[axis], x)
        ck.need_shape("max", "out", out, ck.reduced_shape(x.shape, [axis], keepdim),
                      ("x", x))
        if out.numel == 0:
            return
        if keepdim:
            self._reduce(out, x, [axis], 1, 0, lambda d: out.strides[d])
        else:
            self._reduce(out, x, [axis], 1, 0, lambda d: out.strides[d - (d > axis)])

    def sum_squares(self, x) -> float:
        ck.need_f32("sum_squares", ("x", x))
        if x.numel == 0:
            return 0.0
        x = self._contig(x)
        return float(self.k.sum_squares_f32(ptr(x), x.numel))

    def all_finite(self, x) -> bool:
        ck.need_f32("all_finite", ("x", x))
        if x.numel == 0:
            return True
        x = self._contig(x)
        return bool(self.k.all_finite_f32(ptr(x), x.numel))
