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
from alpha.tensor.cpu_storage import CPUStorage
from alpha.tensor.tensor import Tensor, check_shape

_P = ctypes.c_void_p
_I64 = ctypes.c_int64
_INT = ctypes.c_int
_F = ctypes.c_float
_D = ctypes.c_double
_U32 = ctypes.c_uint32
_U64 = ctypes.c_uint64
_PI64 = ctypes.POINTER(ctypes.c_int64)
_DIMS = ctypes.c_int64 * 16
MAX_DIMS = 16

_ISZ = {k: v[1] for k, v in DTYPES.items()}
_CODE = {k: v[0] for k, v in DTYPES.items()}
_DTYPE_ID = {k: i for i, k in enumerate(DTYPES)}  # the order copy.c's cast_copy expects
_INT_DTYPES = ("i32", "u16", "u32")

_BIN = {"add": 0, "sub": 1, "mul": 2, "div": 3, "max": 4, "min": 5}
_AXPY, _WHERE = 6, 7
_UN = {"neg": 0, "exp": 1, "log": 2, "sqrt": 3, "rsqrt": 4, "tanh": 5, "abs": 6, "square": 7,
       "reciprocal": 8}
_SCALAR = {"add": 10, "sub": 11, "mul": 12, "div": 13, "max": 14, "min": 15, "pow": 16,
           "rsub": 17, "rdiv": 18}
assert set(_BIN) == set(BINARY_OPS) and set(_UN) == set(UNARY_OPS)

# C function name -> (restype, argtypes)
_SIGNATURES = {
    "strided_copy": (None, [_P, _PI64, _P, _PI64, _PI64, _INT, _INT]),
    "cast_copy": (None, [_P, _INT, _P, _INT, _I64]),
    "fill_contig": (None, [_P, _P, _INT, _I64]),
    "ew_binary": (None, [_P, _PI64, _P, _PI64, _P, _PI64, _PI64, _INT, _INT, _F]),
    "ew_unary": (None, [_P, _PI64, _P, _PI64, _PI64, _INT, _INT, _F]),
    "ew_binary_contig": (None, [_P, _P, _P, _I64, _INT, _F]),
    "ew_unary_contig": (None, [_P, _P, _I64, _INT, _F]),
    "reduce_f32": (None, [_P, _P, _INT, _INT, _PI64, _PI64, _PI64, _INT, _PI64, _PI64, _INT]),
    "sum_squares_f32": (_D, [_P, _I64]),
    "all_finite_f32": (_INT, [_P, _I64]),
    "softmax_forward": (None, [_P, _P, _I64, _I64]),
    "softmax_backward": (None, [_P, _P, _P, _I64, _I64]),
    "log_softmax_forward": (None, [_P, _P, _I64, _I64]),
    "log_softmax_backward": (None, [_P, _P, _P, _I64, _I64]),
    "layernorm_forward": (None, [_P, _P, _P, _P, _P, _P, _I64, _I64, _F]),
    "layernorm_backward": (_INT, [_P, _P, _P, _P, _P, _P, _P, _P, _I64, _I64]),
    "gelu_forward": (None, [_P, _P, _I64]),
    "gelu_backward": (None, [_P, _P, _P, _I64]),
    "relu_forward": (None, [_P, _P, _I64]),
    "relu_backward": (None, [_P, _P, _P, _I64]),
    "silu_forward": (None, [_P, _P, _I64]),
    "silu_backward": (None, [_P, _P, _P, _I64]),
    "swiglu_forward": (None, [_P, _P, _I64, _I64]),
    "swiglu_backward": (None, [_P, _P, _P, _I64, _I64]),
    "dropout_forward": (None, [_P, _P, _P, _F, _I64]),
    "dropout_backward": (None, [_P, _P, _P, _F, _I64]),
    "embedding_check": (_I64, [_P, _I64, _I64]),
    "embedding_forward": (None, [_P, _P, _P, _I64, _I64]),
    "embedding_backward": (None, [_P, _P, _P, _I64, _I64]),
    "crossentropy_check": (_I64, [_P, _I64, _I64]),
    "crossentropy_forward": (None, [_P, _P, _P, _I64, _I64]),
    "crossentropy_backward": (None, [_P, _P, _P, _P, _I64, _I64]),
    "attention_forward": (_INT, [_P, _P, _P, _I64, _I64, _I64, _I64]),
    "attention_backward": (_INT, [_P, _P, _P, _P, _P, _I64, _I64, _I64, _I64]),
    "kv_attention": (_INT, [_P, _P, _I64, _I64, _P, _I64, _I64, _P, _I64, _I64, _I64, _I64,
                            _I64, _I64, _I64]),
    "adamw_step": (None, [_P, _P, _P, _P, _I64, _D, _D, _D, _D, _D, _I64, _D]),
    "rng_uniform": (None, [_P, _I64, _U32, _U32, _U64]),
    "rng_normal": (None, [_P, _I64, _U32, _U32, _U64, _D, _D]),
    "rng_words": (None, [_P, _I64, _U32, _U32, _U64]),
}


class _Kernels:
    """The C functions, each with restype/argtypes set once."""

    def __init__(self, L: ctypes.CDLL):
        for name, (res, args) in _SIGNATURES.items():
            fn = getattr(L, name)
            fn.restype = res
            fn.argtypes = args
            setattr(self, name, fn)


def _ptr(t: Tensor) -> int:
    return t.storage.ptr + t.offset * _ISZ[t.dtype]


def _dims(values) -> ctypes.Array:
    return _DIMS(*values)


def _oom(op: str) -> MemoryError:
    return MemoryError(f"{op}: out of memory for the kernel's work buffers")


class CPUBackend:
    name = "cpu"

    def __init__(self):
        self.k = _Kernels(build.lib())

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
        self.k.strided_copy(_ptr(out), _dims(out.strides), _ptr(x), _dims(x.strides),
                            _dims(out.shape), nd, _ISZ[out.dtype])

    # ---- memory ---------------------------------------------------------------------------
    def empty(self, shape, dtype="f32") -> Tensor:
        if dtype not in _ISZ:
            raise TypeError(f"unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
        shape = check_shape(shape)
        return Tensor(self, CPUStorage(math.prod(shape) * _ISZ[dtype]), shape, dtype)

    def zeros(self, shape, dtype="f32") -> Tensor:
        return self.empty(shape, dtype)  # CPUStorage memory starts zeroed

    def from_array(self, data, shape=None, dtype="f32") -> Tensor:
        if dtype not in _ISZ:
            raise TypeError(f"unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
        code = _CODE[dtype]
        if isinstance(data, (bytes, bytearray, memoryview)):
            raw = memoryview(data).cast("B")
            if len(raw) % _ISZ[dtype]:
                raise ValueError(f"from_array: {len(raw)} bytes is not a whole number of "
                                 f"{dtype} elements")
            host = array(code)
            host.frombytes(raw)
        elif isinstance(data, array) and data.typecode == code:
            host = data
        elif dtype in _INT_DTYPES:
            host = array(code, [int(v) for v in data])
        else:
            host = array(code, data if isinstance(data, array) else list(data))
        n = len(host)
        shape = check_shape((n,) if shape is None else shape)
        if math.prod(shape) != n:
            raise ValueError(f"from_array: {n} values do not fill shape {shape}")
        t = self.empty(shape, dtype)
        if n:
            ctypes.memmove(t.storage.ptr, host.buffer_info()[0], n * _ISZ[dtype])
        return t

    def to_array(self, x: Tensor):
        x = self._contig(x)
        n = x.numel
        host = array(_CODE[x.dtype], bytes(n * _ISZ[x.dtype]))
        if n:
            ctypes.memmove(host.buffer_info()[0], _ptr(x), n * _ISZ[x.dtype])
        return host

    def fill(self, out: Tensor, value: float) -> None:
        if out.numel == 0:
            return
        one = array(_CODE[out.dtype], [int(value) if out.dtype in _INT_DTYPES else value])
        if out.is_contiguous:
            self.k.fill_contig(_ptr(out), one.buffer_info()[0], _ISZ[out.dtype], out.numel)
            return
        nd = out.ndim
        self.k.strided_copy(_ptr(out), _dims(out.strides), one.buffer_info()[0],
                            _dims([0] * nd), _dims(out.shape), nd, _ISZ[out.dtype])

    def copy(self, out: Tensor, x: Tensor) -> None:
        ck.need_shape("copy", "out", out, x.shape, f"x {x.shape}")
        if out.dtype != x.dtype:
            raise TypeError(f"copy: out has dtype {out.dtype} but x has {x.dtype}; use cast")
        if out.numel:
            self._strided_copy(out, x)

    def cast(self, out: Tensor, x: Tensor) -> None:
        ck.need_shape("cast", "out", out, x.shape, f"x {x.shape}")
        if out.numel == 0:
            return
        if out.dtype == x.dtype:
            self._strided_copy(out, x)
            return
        xc = self._contig(x)
        buf = self._wbuf(out, False)
        self.k.cast_copy(_ptr(buf), _DTYPE_ID[out.dtype], _ptr(xc), _DTYPE_ID[x.dtype],
                         out.numel)
        self._wback(out, buf)

    def synchronize(self) -> None:
        pass

    # ---- random numbers ---------------------------------------------------------------------
    def rng_uniform(self, out: Tensor, key, position: int) -> None:
        ck.need_f32("rng_uniform", ("out", out))
        buf = self._wbuf(out, False)
        self.k.rng_uniform(_ptr(buf), buf.numel, key[0], key[1], position)
        self._wback(out, buf)

    def rng_normal(self, out: Tensor, key, position: int, mean=0.0, std=1.0) -> None:
        ck.need_f32("rng_normal", ("out", out))
        buf = self._wbuf(out, False)
        self.k.rng_normal(_ptr(buf), buf.numel, key[0], key[1], position, mean, std)
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
        try:
            from alpha.tensor.cpu_matmul import matmul
        except ImportError as e:  # the matmul kernel lives in its own module
            raise NotImplementedError(f"need matmul (alpha.tensor.cpu_matmul: {e})") from None
        matmul(out, a, b, trans_a=trans_a, trans_b=trans_b, accumulate=accumulate, alpha=alpha)

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
            self.k.ew_binary_contig(_ptr(out), _ptr(a), _ptr(b), n, code, s)
            return
        nd = len(shape)
        if nd > MAX_DIMS:
            raise ValueError(f"{opname}: {nd} dims, at most {MAX_DIMS} are supported")
        self.k.ew_binary(_ptr(out), _dims(out.strides), _ptr(a),
                         _dims(ck.broadcast_strides(a, shape)), _ptr(b),
                         _dims(ck.broadcast_strides(b, shape)), _dims(shape), nd, code, s)

    def _unary(self, opname, out, x, code, s) -> None:
        if out.dtype != "f32" or x.dtype != "f32":
            ck.need_f32(opname, ("out", out), ("x", x))
        if out.shape != x.shape:
            raise ValueError(f"{opname}: out has shape {out.shape}, expected {x.shape} (from x)")
        n = out.numel
        if n == 0:
            return
        if out.is_contiguous and x.is_contiguous:
            self.k.ew_unary_contig(_ptr(out), _ptr(x), n, code, s)
            return
        nd = out.ndim
        if nd > MAX_DIMS:
            raise ValueError(f"{opname}: {nd} dims, at most {MAX_DIMS} are supported")
        self.k.ew_unary(_ptr(out), _dims(out.strides), _ptr(x), _dims(x.strides),
                        _dims(out.shape), nd, code, s)

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
        ck.need_shape("where_mask", "out", out, x.shape, f"x {x.shape}")
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
        self.k.reduce_f32(_ptr(out), _ptr(x), op, accumulate, _dims(kshape), _dims(kx),
                          _dims(ko), len(kshape), _dims(rshape), _dims(rx), len(rshape))

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
                      f"x {x.shape}")
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
        return float(self.k.sum_squares_f32(_ptr(x), x.numel))

    def all_finite(self, x) -> bool:
        ck.need_f32("all_finite", ("x", x))
        if x.numel == 0:
            return True
        x = self._contig(x)
        return bool(self.k.all_finite_f32(_ptr(x), x.numel))

    # ---- softmax ------------------------------------------------------------------------------
    def _rowwise_fwd(self, opname, fn, out, x) -> None:
        ck.need_f32(opname, ("out", out), ("x", x))
        ck.need_shape(opname, "out", out, x.shape, f"x {x.shape}")
        C = ck.need_last_dim(opname, x)
        if x.numel == 0:
            return
        xc = self._contig(x)
        buf = self._wbuf(out, False)
        fn(_ptr(buf), _ptr(xc), x.numel // C, C)
        self._wback(out, buf)

    def _rowwise_bwd(self, opname, fn, dx, dout, out) -> None:
        ck.need_f32(opname, ("dx", dx), ("dout", dout), ("out", out))
        ck.need_shape(opname, "dout", dout, out.shape, f"out {out.shape}")
        ck.need_shape(opname, "dx", dx, out.shape, f"out {out.shape}")
        C = ck.need_last_dim(opname, out)
        if out.numel == 0:
            return
        buf = self._wbuf(dx, True)
        dout, out = self._contig(dout), self._contig(out)
        fn(_ptr(buf), _ptr(dout), _ptr(out), out.numel // C, C)
        self._wback(dx, buf)

    def softmax_forward(self, out, x) -> None:
        self._rowwise_fwd("softmax_forward", self.k.softmax_forward, out, x)

    def softmax_backward(self, dx, dout, out) -> None:
        self._rowwise_bwd("softmax_backward", self.k.softmax_backward, dx, dout, out)

    def log_softmax_forward(self, out, x) -> None:
        self._rowwise_fwd("log_softmax_forward", self.k.log_softmax_forward, out, x)

    def log_softmax_backward(self, dx, dout, out) -> None:
        self._rowwise_bwd("log_softmax_backward", self.k.log_softmax_backward, dx, dout, out)

    # ---- layernorm ----------------------------------------------------------------------------
    def layernorm_forward(self, out, mean, rstd, x, weight, bias, eps=1e-5) -> None:
        op = "layernorm_forward"
        ck.need_f32(op, ("out", out), ("mean", mean), ("rstd", rstd), ("x", x),
                    ("weight", weight), ("bias", bias))
        C = ck.need_last_dim(op, x)
        ck.need_shape(op, "out", out, x.shape, f"x {x.shape}")
        ck.need_shape(op, "weight", weight, (C,), f"x {x.shape}")
        if bias is not None:
            ck.need_shape(op, "bias", bias, (C,), f"x {x.shape}")
        ck.need_shape(op, "mean", mean, x.shape[:-1], f"x {x.shape}")
        ck.need_shape(op, "rstd", rstd, x.shape[:-1], f"x {x.shape}")
        N = x.numel // C
        if N == 0:
            return
        xc, w = self._contig(x), self._contig(weight)
        b = self._contig(bias) if bias is not None else None
        ob, mb, rb = self._wbuf(out, False), self._wbuf(mean, False), self._wbuf(rstd, False)
        self.k.layernorm_forward(_ptr(ob), _ptr(mb), _ptr(rb), _ptr(xc), _ptr(w),
                                 _ptr(b) if b is not None else None, N, C, eps)
        self._wback(out, ob)
        self._wback(mean, mb)
        self._wback(rstd, rb)

    def layernorm_backward(self, dx, dweight, dbias, dout, x, weight, mean, rstd) -> None:
        op = "layernorm_backward"
        ck.need_f32(op, ("dx", dx), ("dweight", dweight), ("dbias", dbias), ("dout", dout),
                    ("x", x), ("weight", weight), ("mean", mean), ("rstd", rstd))
        C = ck.need_last_dim(op, x)
        ck.need_shape(op, "dx", dx, x.shape, f"x {x.shape}")
        ck.need_shape(op, "dout", dout, x.shape, f"x {x.shape}")
        for name, t in (("dweight", dweight), ("dbias", dbias), ("weight", weight)):
            if t is not None:
                ck.need_shape(op, name, t, (C,), f"x {x.shape}")
        ck.need_shape(op, "mean", mean, x.shape[:-1], f"x {x.shape}")
        ck.need_shape(op, "rstd", rstd, x.shape[:-1], f"x {x.shape}")
        N = x.numel // C
        if N == 0:
            return
        dxb, dwb = self._wbuf(dx, True), self._wbuf(dweight, True)
        dbb = self._wbuf(dbias, True) if dbias is not None else None
        dout, x, weight = self._contig(dout), self._contig(x), self._contig(weight)
        mean, rstd = self._contig(mean), self._contig(rstd)
        rc = self.k.layernorm_backward(
            _ptr(dxb), _ptr(dwb), _ptr(dbb) if dbb is not None else None,
            _ptr(dout), _ptr(x), _ptr(weight), _ptr(mean), _ptr(rstd), N, C)
        if rc:
            raise _oom(op)
        self._wback(dx, dxb)
        self._wback(dweight, dwb)
        if dbias is not None:
            self._wback(dbias, dbb)

    # ---- activations --------------------------------------------------------------------------
    def _pointwise(self, opname, fn, out, x) -> None:
        if out.dtype != "f32" or x.dtype != "f32":
            ck.need_f32(opname, ("out", out), ("x", x))
        if out.shape != x.shape:
            ck.need_shape(opname, "out", out, x.shape, f"x {x.shape}")
        if x.numel == 0:
            return
        xc = self._contig(x)
        buf = self._wbuf(out, False)
        fn(_ptr(buf), _ptr(xc), x.numel)
        self._wback(out, buf)

    def _pointwise_bwd(self, opname, fn, dx, dout, x) -> None:
        if dx.dtype != "f32" or dout.dtype != "f32" or x.dtype != "f32":
            ck.need_f32(opname, ("dx", dx), ("dout", dout), ("x", x))
        if dout.shape != x.shape or dx.shape != x.shape:
            ck.need_shape(opname, "dout", dout, x.shape, f"x {x.shape}")
            ck.need_shape(opname, "dx", dx, x.shape, f"x {x.shape}")
        if x.numel == 0:
            return
        buf = self._wbuf(dx, True)
        dout, x = self._contig(dout), self._contig(x)
        fn(_ptr(buf), _ptr(dout), _ptr(x), x.numel)
        self._wback(dx, buf)

    def gelu_forward(self, out, x) -> None:
        self._pointwise("gelu_forward", self.k.gelu_forward, out, x)

    def gelu_backward(self, dx, dout, x) -> None:
        self._pointwise_bwd("gelu_backward", self.k.gelu_backward, dx, dout, x)

    def relu_forward(self, out, x) -> None:
        self._pointwise("relu_forward", self.k.relu_forward, out, x)

    def relu_backward(self, dx, dout, x) -> None:
        self._pointwise_bwd("relu_backward", self.k.relu_backward, dx, dout, x)

    def silu_forward(self, out, x) -> None:
        self._pointwise("silu_forward", self.k.silu_forward, out, x)

    def silu_backward(self, dx, dout, x) -> None:
        self._pointwise_bwd("silu_backward", self.k.silu_backward, dx, dout, x)

    def _swiglu_h(self, op, x, other, other_name) -> int:
        if x.ndim < 1 or x.shape[-1] % 2:
            raise ValueError(f"{op}: x {x.shape} needs an even last dim")
        H = x.shape[-1] // 2
        ck.need_shape(op, other_name, other, x.shape[:-1] + (H,), f"x {x.shape}")
        return H

    def swiglu_forward(self, out, x) -> None:
        ck.need_f32("swiglu_forward", ("out", out), ("x", x))
        H = self._swiglu_h("swiglu_forward", x, out, "out")
        if out.numel == 0:
            return
        buf = self._wbuf(out, False)
        x = self._contig(x)
        self.k.swiglu_forward(_ptr(buf), _ptr(x), out.numel // H, H)
        self._wback(out, buf)

    def swiglu_backward(self, dx, dout, x) -> None:
        ck.need_f32("swiglu_backward", ("dx", dx), ("dout", dout), ("x", x))
        H = self._swiglu_h("swiglu_backward", x, dout, "dout")
        ck.need_shape("swiglu_backward", "dx", dx, x.shape, f"x {x.shape}")
        if dout.numel == 0:
            return
        buf = self._wbuf(dx, True)
        dout, x = self._contig(dout), self._contig(x)
        self.k.swiglu_backward(_ptr(buf), _ptr(dout), _ptr(x),
                               dout.numel // H, H)
        self._wback(dx, buf)

    def dropout_forward(self, out, x, u, p) -> None:
        op = "dropout_forward"
        ck.need_f32(op, ("out", out), ("x", x), ("u", u))
        ck.need_shape(op, "out", out, x.shape, f"x {x.shape}")
        ck.need_shape(op, "u", u, x.shape, f"x {x.shape}")
        if not 0 <= p < 1:
            raise ValueError(f"{op}: p={p} must be in [0, 1)")
        if x.numel == 0:
            return
        buf = self._wbuf(out, False)
        x, u = self._contig(x), self._contig(u)
        self.k.dropout_forward(_ptr(buf), _ptr(x), _ptr(u), p,
                               x.numel)
        self._wback(out, buf)

    def dropout_backward(self, dx, dout, u, p) -> None:
        op = "dropout_backward"
        ck.need_f32(op, ("dx", dx), ("dout", dout), ("u", u))
        ck.need_shape(op, "dout", dout, u.shape, f"u {u.shape}")
        ck.need_shape(op, "dx", dx, u.shape, f"u {u.shape}")
        if not 0 <= p < 1:
            raise ValueError(f"{op}: p={p} must be in [0, 1)")
        if u.numel == 0:
            return
        buf = self._wbuf(dx, True)
        dout, u = self._contig(dout), self._contig(u)
        self.k.dropout_backward(_ptr(buf), _ptr(dout), _ptr(u), p,
                                u.numel)
        self._wback(dx, buf)

    # ---- embeddings ------------------------------------------------------------------------
    def _checked_ids(self, op, ids, V) -> Tensor:
        ck.need_dtype(op, "ids", ids, ("i32",))
        ids = self._contig(ids)
        bad = self.k.embedding_check(_ptr(ids), ids.numel, V)
        if bad >= 0:
            value = ids.storage.view("i32", ids.offset + bad, 1)[0]
            raise ValueError(f"{op}: id {value} (at flat index {bad}) is outside the table's "
                             f"[0, {V})")
        return ids

    def embedding_forward(self, out, ids, table) -> None:
        op = "embedding_forward"
        ck.need_f32(op, ("out", out), ("table", table))
        ck.need_dtype(op, "ids", ids, ("i32",))
        if table.ndim != 2:
            raise ValueError(f"{op}: table {table.shape} must be (V, C)")
        V, C = table.shape
        ck.need_shape(op, "out", out, ids.shape + (C,), f"ids {ids.shape} and table {table.shape}")
        ids = self._checked_ids(op, ids, V)
        if out.numel == 0:
            return
        buf = self._wbuf(out, False)
        table = self._contig(table)
        self.k.embedding_forward(_ptr(buf), _ptr(ids), _ptr(table), ids.numel, C)
        self._wback(out, buf)

    def embedding_backward(self, dtable, dout, ids) -> None:
        op = "embedding_backward"
        ck.need_f32(op, ("dtable", dtable), ("dout", dout))
        ck.need_dtype(op, "ids", ids, ("i32",))
        if dtable.ndim != 2:
            raise ValueError(f"{op}: dtable {dtable.shape} must be (V, C)")
        V, C = dtable.shape
        ck.need_shape(op, "dout", dout, ids.shape + (C,),
                      f"ids {ids.shape} and dtable {dtable.shape}")
        ids = self._checked_ids(op, ids, V)
        if dout.numel == 0:
            return
        buf = self._wbuf(dtable, True)
        dout = self._contig(dout)
        self.k.embedding_backward(_ptr(buf), _ptr(dout), _ptr(ids), ids.numel, C)
        self._wback(dtable, buf)

    # ---- fused cross-entropy -----------------------------------------------------------------
    def _ce_checks(self, op, logits, targets, other, other_name) -> tuple[int, int, Tensor]:
        ck.need_dtype(op, "targets", targets, ("i32",))
        if logits.ndim != 2:
            raise ValueError(f"{op}: logits {logits.shape} must be (N, V)")
        N, V = logits.shape
        ck.need_data(op, "vocab dim of logits", V, logits)
        ck.need_shape(op, "targets", targets, (N,), f"logits {logits.shape}")
        ck.need_shape(op, other_name, other, (N,), f"logits {logits.shape}")
        targets = self._contig(targets)
        bad = self.k.crossentropy_check(_ptr(targets), N, V)
        if bad >= 0:
            value = targets.storage.view("i32", targets.offset + bad, 1)[0]
            raise ValueError(f"{op}: target {value} (row {bad}) is outside [0, {V}) "
                             f"(and is not -1)")
        return N, V, targets

    def crossentropy_forward(self, losses, logits, targets) -> None:
        op = "crossentropy_forward"
        ck.need_f32(op, ("losses", losses), ("logits", logits))
        N, V, targets = self._ce_checks(op, logits, targets, losses, "losses")
        if N == 0:
            return
        buf = self._wbuf(losses, False)
        logits = self._contig(logits)
        self.k.crossentropy_forward(_ptr(buf), _ptr(logits), _ptr(targets), N, V)
        self._wback(losses, buf)

    def crossentropy_backward(self, dlogits, dlosses, logits, targets) -> None:
        op = "crossentropy_backward"
        ck.need_f32(op, ("dlogits", dlogits), ("dlosses", dlosses), ("logits", logits))
        N, V, targets = self._ce_checks(op, logits, targets, dlosses, "dlosses")
        ck.need_shape(op, "dlogits", dlogits, logits.shape, f"logits {logits.shape}")
        if N == 0:
            return
        buf = self._wbuf(dlogits, True)
        dlosses, logits = self._contig(dlosses), self._contig(logits)
        self.k.crossentropy_backward(_ptr(buf), _ptr(dlosses),
                                     _ptr(logits), _ptr(targets), N, V)
        self._wback(dlogits, buf)

    # ---- fused causal self-attention ----------------------------------------------------------
    def attention_forward(self, out, lse, qkv, n_head) -> None:
        op = "attention_forward"
        ck.need_f32(op, ("out", out), ("lse", lse), ("qkv", qkv))
        B, T, C, hs = ck.need_qkv(op, qkv, n_head)
        ck.need_shape(op, "out", out, (B, T, C), f"qkv {qkv.shape}")
        ck.need_shape(op, "lse", lse, (B, n_head, T), f"qkv {qkv.shape} and n_head={n_head}")
        if B * T * C == 0:
            return
        ob, lb = self._wbuf(out, False), self._wbuf(lse, False)
        qkv = self._contig(qkv)
        if self.k.attention_forward(_ptr(ob), _ptr(lb), _ptr(qkv), B, T, C,
                                    n_head):
            raise _oom(op)
        self._wback(out, ob)
        self._wback(lse, lb)

    def attention_backward(self, dqkv, dout, qkv, out, lse, n_head) -> None:
        op = "attention_backward"
        ck.need_f32(op, ("dqkv", dqkv), ("dout", dout), ("qkv", qkv), ("out", out),
                    ("lse", lse))
        B, T, C, hs = ck.need_qkv(op, qkv, n_head)
        ck.need_shape(op, "dqkv", dqkv, qkv.shape, f"qkv {qkv.shape}")
        ck.need_shape(op, "dout", dout, (B, T, C), f"qkv {qkv.shape}")
        ck.need_shape(op, "out", out, (B, T, C), f"qkv {qkv.shape}")
        ck.need_shape(op, "lse", lse, (B, n_head, T), f"qkv {qkv.shape} and n_head={n_head}")
        if B * T * C == 0:
            return
        buf = self._wbuf(dqkv, True)
        dout, qkv = self._contig(dout), self._contig(qkv)
        out, lse = self._contig(out), self._contig(lse)
        if self.k.attention_backward(_ptr(buf), _ptr(dout),
                                     _ptr(qkv), _ptr(out),
                                     _ptr(lse), B, T, C, n_head):
            raise _oom(op)
        self._wback(dqkv, buf)

    def kv_attention(self, out, q, k, v, n_head, start) -> None:
        op = "kv_attention"
        ck.need_f32(op, ("out", out), ("q", q), ("k", k), ("v", v))
        if q.ndim != 3:
            raise ValueError(f"{op}: q {q.shape} must be (B, Tq, C)")
        B, Tq, C = q.shape
        if k.ndim != 3 or k.shape[0] != B or k.shape[2] != C:
            raise ValueError(f"{op}: k {k.shape} does not match q {q.shape}")
        ck.need_shape(op, "v", v, k.shape, f"k {k.shape}")
        ck.need_shape(op, "out", out, q.shape, f"q {q.shape}")
        if n_head < 1 or C % n_head:
            raise ValueError(f"{op}: C={C} of q {q.shape} is not divisible by n_head={n_head}")
        if start < 0 or start + Tq > k.shape[1]:
            raise ValueError(f"{op}: positions {start}..{start + Tq - 1} do not fit k {k.shape}")
        if B * Tq * C == 0:
            return
        q, k, v = (t if t.strides[2] == 1 else self._contig(t) for t in (q, k, v))
        buf = self._wbuf(out, False)
        if self.k.kv_attention(_ptr(buf), _ptr(q), q.strides[0], q.strides[1], _ptr(k),
                               k.strides[0], k.strides[1], _ptr(v), v.strides[0], v.strides[1],
                               B, Tq, C, n_head, start):
            raise _oom(op)
        self._wback(out, buf)

    # ---- optimizer ---------------------------------------------------------------------------
    def adamw_step(self, param, grad, m, v, *, lr, beta1, beta2, eps, weight_decay, step,
                   grad_scale=1.0) -> None:
        op = "adamw_step"
        ck.need_f32(op, ("param", param), ("grad", grad), ("m", m), ("v", v))
        for name, t in (("grad", grad), ("m", m), ("v", v)):
            ck.need_numel(op, name, t, "param", param)
        if step < 1:
            raise ValueError(f"{op}: step={step} must be >= 1")
        n = param.numel
        if n == 0:
            return
        pb, mb, vb = self._wbuf(param, True), self._wbuf(m, True), self._wbuf(v, True)
        grad = self._contig(grad)
        self.k.adamw_step(_ptr(pb), _ptr(grad), _ptr(mb), _ptr(vb), n, lr, beta1,
                          beta2, eps, weight_decay, step, grad_scale)
        self._wback(param, pb)
        self._wback(m, mb)
        self._wback(v, vb)
