"""The Backend protocol: every operation the model, autograd and trainer may ask of a device.

The CPU backend (`alpha.tensor.cpu`, C kernels through ctypes), the float64 reference backend
(`alpha.tensor.reference`, pure Python, the living definition of every op) and helios
(`alpha.helios`, Vulkan) implement this same protocol. Autograd and the model call nothing else.

`Backend` below is also the one front every backend is called through: each public method checks
its arguments (`alpha.core.checks`; one wording for every backend) and then calls the hook of the
same name with a leading underscore (`matmul` -> `_matmul`), which a backend implements with its
own plumbing and kernels and nothing else. A hook receives arguments already checked, positionally
(keyword-only options too), with axes normalised. A backend that lacks a hook raises
NotImplementedError("need <op>"). The checks cost well under a microsecond on the hot ops.

Conventions (llm.c's):
- Arguments go outputs first, then inputs and weights, then sizes and scalars.
- Forward ops OVERWRITE their outputs. Backward ops ADD into their gradient outputs (`+=`), so
  gradients accumulate into existing buffers; whoever owns a gradient buffer zeroes it.
- Tensors are `alpha.tensor.Tensor` (named "Tensor" in the annotations below, not imported: core
  sits under alpha.tensor): (backend, storage, shape, strides, offset, dtype). Strides
  and offset are in elements. Inputs may be non-contiguous views (a backend may copy them to a
  contiguous temporary); outputs must be contiguous unless an op says otherwise.
- Dtypes: "f32" (all math), "f64" (references), "i32" (token ids/targets), "u16"/"u32" (token
  caches). Float ops take f32 (the reference backend also takes f64); ids take i32.
- Shapes are checked: a mismatch raises ValueError naming the shapes; a wrong dtype raises TypeError
  naming it; an empty tensor where data is needed raises ValueError.
- A backend that lacks an op raises NotImplementedError("need <op>").
- Results must not depend on the number of threads (bit-identical for 1 and N threads).
"""

from __future__ import annotations

import math
from array import array
from typing import Sequence

from alpha.core import checks as ck
from alpha.core.backend_attention import AttentionOps
from alpha.core.backend_optim import OptimizerOps

# What the annotations below call Tensor: alpha.tensor.Tensor, not imported (core sits under it).
Tensor = "alpha.tensor.Tensor"

# dtype name -> (array typecode, bytes per element)
DTYPES = {
    "f32": ("f", 4),
    "f64": ("d", 8),
    "i32": ("i", 4),
    "u16": ("H", 2),
    "u32": ("I", 4),
}
FLOAT_DTYPES = ("f32", "f64")

UNARY_OPS = ("neg", "exp", "log", "sqrt", "rsqrt", "tanh", "abs", "square", "reciprocal")
BINARY_OPS = ("add", "sub", "mul", "div", "max", "min")
SCALAR_OPS = BINARY_OPS + ("pow", "rsub", "rdiv")
INT_DTYPES = ("i32", "u16", "u32")


def host_array(data, dtype: str) -> array:
    """`from_array`'s input as an `array.array` of dtype's typecode (the caller's own array when
    it already is one: a backend that keeps it must copy)."""
    code, size = DTYPES[dtype]
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = memoryview(data).cast("B")
        if len(raw) % size:
            raise ValueError(f"from_array: {len(raw)} bytes is not a whole number of "
                             f"{dtype} elements")
        host = array(code)
        host.frombytes(raw)
        return host
    if isinstance(data, array) and data.typecode == code:
        return data
    if dtype in INT_DTYPES:
        return array(code, [int(v) for v in data])  # range-checked by array
    return array(code, data if isinstance(data, (array, list)) else list(data))


class MemoryMeter:
    """Bytes held by a backend's tensor storage now, and the most held at once (the high-water
    mark) since the last `reset_peak`. Backends count where they allocate and free storage."""

    __slots__ = ("in_use", "peak")

    def __init__(self):
        self.in_use = 0
        self.peak = 0

    def add(self, nbytes: int) -> None:
        self.in_use += nbytes
        if self.in_use > self.peak:
            self.peak = self.in_use

    def sub(self, nbytes: int) -> None:
        self.in_use -= nbytes

    def reset_peak(self) -> None:
        self.peak = self.in_use


def _dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise TypeError(f"unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
    return dtype


class Backend(AttentionOps, OptimizerOps):
    """The protocol and its checking front. Subclasses set `name` and implement the `_<op>` hooks;
    `floats` lists the dtypes their float ops take (the reference adds f64)."""

    name = "?"  # "cpu" | "reference" | "helios"
    floats: tuple[str, ...] = ("f32",)
    # the KV cache element types block_decode / decode_step / prefill_step take: "f16" is a u16
    # tensor of IEEE half bits (alpha/model/kvcache.py); a backend without it declines those
    kv_dtypes: tuple[str, ...] = ("f32",)

    def __getattr__(self, attr: str):
        # Reached only when normal lookup fails: a hook this backend does not implement.
        op = attr[1:]
        if attr.startswith("_") and not attr.startswith("__") and callable(getattr(Backend, op,
                                                                                   None)):
            def missing(*args, **kwargs):
                raise NotImplementedError(f"need {op} (the {self.name} backend lacks it)")
            return missing
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {attr!r}")

    # ---- memory ---------------------------------------------------------------------------
    def empty(self, shape: Sequence[int], dtype: str = "f32") -> "Tensor":
        """Uninitialised contiguous tensor."""
        return self._empty(ck.check_shape(shape), _dtype(dtype))

    def zeros(self, shape: Sequence[int], dtype: str = "f32") -> "Tensor":
        return self._zeros(ck.check_shape(shape), _dtype(dtype))

    def from_array(self, data, shape: Sequence[int] | None = None, dtype: str = "f32") -> "Tensor":
        """Upload a host sequence (array, list, bytes, memoryview) as a contiguous tensor.
        `shape` defaults to (len(data),). The hook gets an `array.array` (`host_array`)."""
        host = host_array(data, _dtype(dtype))
        n = len(host)
        shape = ck.check_shape((n,) if shape is None else shape)
        if math.prod(shape) != n:
            raise ValueError(f"from_array: {n} values do not fill shape {shape}")
        return self._from_array(host, shape, dtype)

    def to_array(self, x: "Tensor"):
        """Download to a host `array.array` of x's dtype, in row-major order of x's (view) shape.
        Waits for pending work."""
        return self._to_array(x)

    def fill(self, out: "Tensor", value: float) -> None:
        """out[...] = value."""
        self._fill(out, value)

    def copy(self, out: "Tensor", x: "Tensor") -> None:
        """out[...] = x, same shape; both may be strided views (this is how views are
        materialised and how KV-cache slices are written). Same dtype."""
        if out.shape != x.shape:
            ck.need_shape("copy", "out", out, x.shape, ("x", x))
        if out.dtype != x.dtype:
            raise TypeError(f"copy: out has dtype {out.dtype} but x has {x.dtype}; use cast")
        self._copy(out, x)

    def cast(self, out: "Tensor", x: "Tensor") -> None:
        """out = x converted to out's dtype (float<->float, int->float, float->int truncating)."""
        ck.need_shape("cast", "out", out, x.shape, ("x", x))
        self._cast(out, x)

    def synchronize(self) -> None:
        """Wait until all submitted work has finished (no-op on synchronous backends)."""

    def memory_stats(self) -> dict[str, int]:
        """{"in_use": bytes of tensor storage held now, "peak": the most held at once since
        `reset_peak_memory()`}: the CPU backend counts its host allocations (all CPU backends
        of the process together), helios its device memory (aligned ranges, staging excluded)."""
        meter = self._memory_meter()
        return {"in_use": meter.in_use, "peak": meter.peak}

    def reset_peak_memory(self) -> None:
        """Start a new high-water mark at what is held now."""
        self._memory_meter().reset_peak()

    # ---- random numbers (bit-identical to alpha.core.rng on every backend) -------------------
    def rng_uniform(self, out: "Tensor", key: tuple[int, int], position: int) -> None:
        """out (f32, contiguous, n elements) = uniforms from words position..position+n-1."""
        ck.need_float("rng_uniform", self.floats, ("out", out))
        self._rng_uniform(out, key, position)

    def rng_normal(self, out: "Tensor", key: tuple[int, int], position: int,
                   mean: float = 0.0, std: float = 1.0) -> None:
        """out = mean + std * normals from words position..position+2*ceil(n/2)-1 (float64 math,
        rounded to f32 at the end)."""
        ck.need_float("rng_normal", self.floats, ("out", out))
        self._rng_normal(out, key, position, mean, std)

    # ---- matmul --------------------------------------------------------------------------
    def matmul(self, out: "Tensor", a: "Tensor", b: "Tensor", *, trans_a: bool = False,
               trans_b: bool = False, accumulate: bool = False, alpha: float = 1.0,
               bias: "Tensor | None" = None) -> None:
        """out = alpha * op(a) @ op(b)  (+ out if accumulate) (+ bias), op(x) = x or its
        last-two-dims transpose. a: (..., M, K) [(..., K, M) if trans_a]; b: (..., K, N)
        [(..., N, K) if trans_b] or 2-D (shared by every batch entry of a); out: (..., M, N).
        When b has batch dims they must equal a's. bias (N,) is added to every row, last (a
        linear layer's forward: one op, which a backend may fuse into the product's store).
        (Weight gradients flatten (B, T, C) to (B*T, C) with `Tensor.view` and use trans_a.)
        Hooks: `_matmul`, and `_matmul_bias` when there is a bias."""
        fl = self.floats
        if out.dtype not in fl or a.dtype not in fl or b.dtype not in fl:
            ck.need_float("matmul", fl, ("out", out), ("a", a), ("b", b))
        ck.matmul_shapes(out, a, b, trans_a, trans_b)
        if bias is None:
            self._matmul(out, a, b, trans_a, trans_b, accumulate, alpha)
            return
        if bias.dtype not in fl:
            ck.need_float("matmul", fl, ("bias", bias))
        ck.need_shape("matmul", "bias", bias, out.shape[-1:], ("out", out))
        self._matmul_bias(out, a, b, trans_a, trans_b, accumulate, alpha, bias)

    def _matmul_bias(self, out, a, b, trans_a, trans_b, accumulate, alpha, bias) -> None:
        """The product, then the bias added in place: what a backend without a fused kernel
        computes (and the bits a fused one must give)."""
        self._matmul(out, a, b, trans_a, trans_b, accumulate, alpha)
        self._binary(out, "add", out, bias, out.shape)

    # ---- elementwise ---------------------------------------------------------------------
    def binary(self, out: "Tensor", op: str, a: "Tensor", b: "Tensor") -> None:
        """out = a <op> b with numpy broadcasting; op in BINARY_OPS; out has the broadcast
        shape. out may alias a or b. The hook also gets that shape."""
        if op not in BINARY_OPS:
            raise ValueError(f"binary: unknown op {op!r} (known: {', '.join(BINARY_OPS)})")
        fl = self.floats
        if out.dtype not in fl or a.dtype not in fl or b.dtype not in fl:
            ck.need_float(f"binary {op}", fl, ("out", out), ("a", a), ("b", b))
        shape = a.shape
        if b.shape != shape:
            try:
                shape = ck.broadcast_shape(shape, b.shape)
            except ValueError:
                raise ValueError(f"binary {op}: shapes {a.shape} and {b.shape} do not "
                                 "broadcast") from None
        if out.shape != shape:
            raise ValueError(f"binary {op}: out has shape {out.shape}, expected {shape} "
                             f"(from a {a.shape} and b {b.shape})")
        self._binary(out, op, a, b, shape)

    def binary_scalar(self, out: "Tensor", op: str, a: "Tensor", s: float) -> None:
        """out = a <op> s; op in SCALAR_OPS: BINARY_OPS plus "pow", "rsub" (s - a) and "rdiv"
        (s / a). The hook gets s as a float."""
        if op not in SCALAR_OPS:
            raise ValueError(f"binary_scalar: unknown op {op!r} (known: {', '.join(SCALAR_OPS)})")
        ck.pointwise(f"binary_scalar {op}", self.floats, out, a)
        self._binary_scalar(out, op, a, float(s))

    def unary(self, out: "Tensor", op: str, x: "Tensor") -> None:
        """out = op(x), op in UNARY_OPS. out may alias x."""
        if op not in UNARY_OPS:
            raise ValueError(f"unary: unknown op {op!r} (known: {', '.join(UNARY_OPS)})")
        ck.pointwise(f"unary {op}", self.floats, out, x)
        self._unary(out, op, x)

    def axpy(self, out: "Tensor", x: "Tensor", alpha: float = 1.0) -> None:
        """out += alpha * x (same shape). The workhorse of gradient accumulation."""
        fl = self.floats
        if out.dtype not in fl or x.dtype not in fl:
            ck.need_float("axpy", fl, ("out", out), ("x", x))
        if out.shape != x.shape:
            ck.need_shape("axpy", "x", x, out.shape, ("out", out))
        self._axpy(out, x, float(alpha))

    def where_mask(self, out: "Tensor", x: "Tensor", mask: "Tensor", value: float) -> None:
        """out = mask != 0 ? value : x (mask broadcast to x, f32)."""
        op = "where_mask"
        ck.need_float(op, self.floats, ("out", out), ("x", x), ("mask", mask))
        ck.need_shape(op, "out", out, x.shape, ("x", x))
        ck.need_broadcasts_to(op, "mask", mask, "x", x.shape)
        self._where_mask(out, x, mask, float(value))

    # ---- reductions ----------------------------------------------------------------------
    def sum(self, out: "Tensor", x: "Tensor", axes: Sequence[int], keepdim: bool = False) -> None:
        """out = x summed over `axes` (negative allowed). Accumulates in at least f32 with a
        fixed order, so the result does not depend on threads. The hook gets axes in
        [0, ndim)."""
        ck.need_float("sum", self.floats, ("out", out), ("x", x))
        axes = ck.normalize_axes("sum", axes, x.shape)
        ck.need_shape("sum", "out", out, ck.reduced_shape(x.shape, axes, keepdim),
                      f"x {x.shape} and axes {tuple(axes)}")
        self._sum(out, x, axes, keepdim)

    def sum_to(self, out: "Tensor", x: "Tensor") -> None:
        """out += x reduced (summed) to out's shape — the inverse of broadcasting, used by the
        backward of every broadcast op. out's shape must broadcast to x's."""
        ck.need_float("sum_to", self.floats, ("out", out), ("x", x))
        ck.need_broadcasts_to("sum_to", "out", out, "x", x.shape)
        self._sum_to(out, x)

    def max(self, out: "Tensor", x: "Tensor", axis: int, keepdim: bool = False) -> None:
        """out = max of x along one axis (the hook gets it in [0, ndim))."""
        ck.need_float("max", self.floats, ("out", out), ("x", x))
        (axis,) = ck.normalize_axes("max", [axis], x.shape)
        ck.need_data("max", f"axis {axis} of x", x.shape[axis], x)
        ck.need_shape("max", "out", out, ck.reduced_shape(x.shape, [axis], keepdim),
                      f"x {x.shape} and axis {axis}")
        self._max(out, x, axis, keepdim)

    def sum_squares(self, x: "Tensor") -> float:
        """sum(x**2) as a Python float (float64 accumulation): the global grad norm's term."""
        ck.need_float("sum_squares", self.floats, ("x", x))
        return self._sum_squares(x)

    def all_finite(self, x: "Tensor") -> bool:
        """True when x holds no NaN and no Inf."""
        ck.need_float("all_finite", self.floats, ("x", x))
        return self._all_finite(x)

    # ---- normalisation and activations (forward/backward pairs) -----------------------------
    def softmax_forward(self, out: "Tensor", x: "Tensor") -> None:
        """Softmax over the last dim."""
        ck.rowwise("softmax_forward", self.floats, out, x)
        self._softmax_forward(out, x)

    def softmax_backward(self, dx: "Tensor", dout: "Tensor", out: "Tensor") -> None:
        """dx += out * (dout - sum(dout * out, last dim))."""
        ck.rowwise_backward("softmax_backward", self.floats, dx, dout, out)
        self._softmax_backward(dx, dout, out)

    def log_softmax_forward(self, out: "Tensor", x: "Tensor") -> None:
        ck.rowwise("log_softmax_forward", self.floats, out, x)
        self._log_softmax_forward(out, x)

    def log_softmax_backward(self, dx: "Tensor", dout: "Tensor", out: "Tensor") -> None:
        """dx += dout - exp(out) * sum(dout, last dim)."""
        ck.rowwise_backward("log_softmax_backward", self.floats, dx, dout, out)
        self._log_softmax_backward(dx, dout, out)

    def layernorm_forward(self, out: "Tensor", mean: "Tensor", rstd: "Tensor", x: "Tensor",
                          weight: "Tensor", bias: "Tensor | None", eps: float = 1e-5) -> None:
        """Over the last dim C: x (..., C); weight, bias (C,) (bias may be None); mean, rstd (...)
        saved for the backward."""
        self._check_layernorm("layernorm_forward", out, mean, rstd, x, weight, bias)
        self._layernorm_forward(out, mean, rstd, x, weight, bias, eps)

    def _check_layernorm(self, op, out, mean, rstd, x, weight, bias) -> None:
        ck.need_float(op, self.floats, ("out", out), ("mean", mean), ("rstd", rstd), ("x", x),
                      ("weight", weight), ("bias", bias))
        C = ck.need_last_dim(op, x)
        ck.need_shape(op, "out", out, x.shape, ("x", x))
        ck.need_shape(op, "weight", weight, (C,), ("x", x))
        if bias is not None:
            ck.need_shape(op, "bias", bias, (C,), ("x", x))
        ck.need_shape(op, "mean", mean, x.shape[:-1], ("x", x))
        ck.need_shape(op, "rstd", rstd, x.shape[:-1], ("x", x))

    def add_layernorm_forward(self, sum_out: "Tensor", out: "Tensor", mean: "Tensor",
                              rstd: "Tensor", x: "Tensor", y: "Tensor", weight: "Tensor",
                              bias: "Tensor | None", eps: float = 1e-5) -> None:
        """The residual add and the layernorm after it: sum_out = x + y (same shapes, no
        broadcast), then `layernorm_forward` of sum_out into out, mean, rstd. Its backward is
        the add's and the layernorm's (`layernorm_backward` adds into the sum's gradient, which
        already holds the residual one). The same bits as the two ops, which is the default
        hook; a backend may do both in one pass."""
        op = "add_layernorm_forward"
        ck.need_float(op, self.floats, ("sum_out", sum_out), ("y", y))
        ck.need_shape(op, "y", y, x.shape, ("x", x))
        ck.need_shape(op, "sum_out", sum_out, x.shape, ("x", x))
        self._check_layernorm(op, out, mean, rstd, x, weight, bias)
        self._add_layernorm_forward(sum_out, out, mean, rstd, x, y, weight, bias, float(eps))

    def _add_layernorm_forward(self, sum_out, out, mean, rstd, x, y, weight, bias, eps) -> None:
        """The two ops one after the other: what a backend without a fused kernel computes (and
        the bits a fused one must give)."""
        self._binary(sum_out, "add", x, y, x.shape)
        self._layernorm_forward(out, mean, rstd, sum_out, weight, bias, eps)

    def layernorm_backward(self, dx: "Tensor", dweight: "Tensor", dbias: "Tensor | None",
                           dout: "Tensor", x: "Tensor", weight: "Tensor", mean: "Tensor",
                           rstd: "Tensor") -> None:
        """Adds into dx, dweight, dbias (dbias may be None)."""
        op = "layernorm_backward"
        ck.need_float(op, self.floats, ("dx", dx), ("dweight", dweight), ("dbias", dbias),
                      ("dout", dout), ("x", x), ("weight", weight), ("mean", mean),
                      ("rstd", rstd))
        C = ck.need_last_dim(op, x)
        ck.need_shape(op, "dx", dx, x.shape, ("x", x))
        ck.need_shape(op, "dout", dout, x.shape, ("x", x))
        for name, t in (("dweight", dweight), ("dbias", dbias), ("weight", weight)):
            if t is not None:
                ck.need_shape(op, name, t, (C,), ("x", x))
        ck.need_shape(op, "mean", mean, x.shape[:-1], ("x", x))
        ck.need_shape(op, "rstd", rstd, x.shape[:-1], ("x", x))
        self._layernorm_backward(dx, dweight, dbias, dout, x, weight, mean, rstd)

    def rmsnorm_forward(self, out: "Tensor", rstd: "Tensor", x: "Tensor", weight: "Tensor",
                        eps: float = 1e-5) -> None:
        """RMSNorm over the last dim C: out = x * rstd * weight with rstd (...) =
        1 / sqrt(mean(x^2) + eps), saved for the backward. No mean subtraction, no bias. x and
        out may be strided views (qk-norm normalises the heads inside a packed qkv)."""
        op = "rmsnorm_forward"
        ck.need_float(op, self.floats, ("out", out), ("rstd", rstd), ("x", x),
                      ("weight", weight))
        C = ck.need_last_dim(op, x)
        ck.need_shape(op, "out", out, x.shape, ("x", x))
        ck.need_shape(op, "weight", weight, (C,), ("x", x))
        ck.need_shape(op, "rstd", rstd, x.shape[:-1], ("x", x))
        self._rmsnorm_forward(out, rstd, x, weight, float(eps))

    def rmsnorm_backward(self, dx: "Tensor", dweight: "Tensor", dout: "Tensor", x: "Tensor",
                         weight: "Tensor", rstd: "Tensor") -> None:
        """Adds into dx and dweight: with n = x * rstd and dn = dout * weight,
        dx += rstd * (dn - n * mean(dn * n)); dweight += sum over rows of dout * n."""
        op = "rmsnorm_backward"
        ck.need_float(op, self.floats, ("dx", dx), ("dweight", dweight), ("dout", dout),
                      ("x", x), ("weight", weight), ("rstd", rstd))
        C = ck.need_last_dim(op, x)
        ck.need_shape(op, "dx", dx, x.shape, ("x", x))
        ck.need_shape(op, "dout", dout, x.shape, ("x", x))
        ck.need_shape(op, "dweight", dweight, (C,), ("x", x))
        ck.need_shape(op, "weight", weight, (C,), ("x", x))
        ck.need_shape(op, "rstd", rstd, x.shape[:-1], ("x", x))
        self._rmsnorm_backward(dx, dweight, dout, x, weight, rstd)

    def gelu_forward(self, out: "Tensor", x: "Tensor") -> None:
        """GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
        ck.pointwise("gelu_forward", self.floats, out, x)
        self._gelu_forward(out, x)

    def gelu_backward(self, dx: "Tensor", dout: "Tensor", x: "Tensor") -> None:
        ck.pointwise_backward("gelu_backward", self.floats, dx, dout, x)
        self._gelu_backward(dx, dout, x)

    def relu_forward(self, out: "Tensor", x: "Tensor") -> None:
        ck.pointwise("relu_forward", self.floats, out, x)
        self._relu_forward(out, x)

    def relu_backward(self, dx: "Tensor", dout: "Tensor", x: "Tensor") -> None:
        """dx += dout where x > 0."""
        ck.pointwise_backward("relu_backward", self.floats, dx, dout, x)
        self._relu_backward(dx, dout, x)

    def silu_forward(self, out: "Tensor", x: "Tensor") -> None:
        """x * sigmoid(x)."""
        ck.pointwise("silu_forward", self.floats, out, x)
        self._silu_forward(out, x)

    def silu_backward(self, dx: "Tensor", dout: "Tensor", x: "Tensor") -> None:
        ck.pointwise_backward("silu_backward", self.floats, dx, dout, x)
        self._silu_backward(dx, dout, x)

    def relu2_forward(self, out: "Tensor", x: "Tensor") -> None:
        """relu(x)^2 (the nanoGPT speedrun's MLP activation)."""
        ck.pointwise("relu2_forward", self.floats, out, x)
        self._relu2_forward(out, x)

    def relu2_backward(self, dx: "Tensor", dout: "Tensor", x: "Tensor") -> None:
        """dx += 2 relu(x) dout."""
        ck.pointwise_backward("relu2_backward", self.floats, dx, dout, x)
        self._relu2_backward(dx, dout, x)

    def softcap_forward(self, out: "Tensor", x: "Tensor", cap: float) -> None:
        """out = cap * tanh(x / cap), cap > 0 (Gemma 2's logit soft-capping). out may alias x."""
        op = "softcap_forward"
        ck.pointwise(op, self.floats, out, x)
        ck.positive_cap(op, cap)
        self._softcap_forward(out, x, float(cap))

    def softcap_backward(self, dx: "Tensor", dout: "Tensor", out: "Tensor", cap: float) -> None:
        """dx += dout * (1 - (out / cap)^2), from the forward's output (tanh' = 1 - tanh^2)."""
        op = "softcap_backward"
        ck.pointwise_backward(op, self.floats, dx, dout, out)
        ck.positive_cap(op, cap)
        self._softcap_backward(dx, dout, out, float(cap))

    def swiglu_forward(self, out: "Tensor", x: "Tensor") -> None:
        """x (..., 2H) -> out (..., H) = silu(x[..., :H]) * x[..., H:]. The hook also gets H."""
        ck.need_float("swiglu_forward", self.floats, ("out", out), ("x", x))
        H = ck.swiglu_half("swiglu_forward", x, out, "out")
        self._swiglu_forward(out, x, H)

    def swiglu_backward(self, dx: "Tensor", dout: "Tensor", x: "Tensor") -> None:
        op = "swiglu_backward"
        ck.need_float(op, self.floats, ("dx", dx), ("dout", dout), ("x", x))
        H = ck.swiglu_half(op, x, dout, "dout")
        ck.need_shape(op, "dx", dx, x.shape, ("x", x))
        self._swiglu_backward(dx, dout, x, H)

    def dropout_forward(self, out: "Tensor", x: "Tensor", u: "Tensor", p: float) -> None:
        """out = x * (u >= p) / (1 - p); u holds uniforms in [0, 1) of x's shape (from rng_uniform
        on the dropout stream)."""
        op = "dropout_forward"
        ck.need_float(op, self.floats, ("out", out), ("x", x), ("u", u))
        ck.need_shape(op, "out", out, x.shape, ("x", x))
        ck.need_shape(op, "u", u, x.shape, ("x", x))
        ck.dropout_p(op, p)
        self._dropout_forward(out, x, u, p)

    def dropout_backward(self, dx: "Tensor", dout: "Tensor", u: "Tensor", p: float) -> None:
        """dx += dout * (u >= p) / (1 - p)."""
        op = "dropout_backward"
        ck.need_float(op, self.floats, ("dx", dx), ("dout", dout), ("u", u))
        ck.need_shape(op, "dout", dout, u.shape, ("u", u))
        ck.need_shape(op, "dx", dx, u.shape, ("u", u))
        ck.dropout_p(op, p)
        self._dropout_backward(dx, dout, u, p)

    # ---- embeddings ------------------------------------------------------------------------
    def embedding_forward(self, out: "Tensor", ids: "Tensor", table: "Tensor") -> None:
        """ids (...,) i32; table (V, C); out (..., C) = table[ids]. An id outside [0, V) raises
        ValueError (checked before any write)."""
        op = "embedding_forward"
        ck.need_float(op, self.floats, ("out", out), ("table", table))
        ck.need_dtype(op, "ids", ids, ("i32",))
        V, C = ck.table(op, "table", table)
        ck.need_shape(op, "out", out, ids.shape + (C,), f"ids {ids.shape} and table {table.shape}")
        self._need_ids(op, ids, V)
        self._embedding_forward(out, ids, table)

    def embedding_backward(self, dtable: "Tensor", dout: "Tensor", ids: "Tensor") -> None:
        """dtable[ids[i]] += dout[i] (scatter-add; deterministic order)."""
        op = "embedding_backward"
        ck.need_float(op, self.floats, ("dtable", dtable), ("dout", dout))
        ck.need_dtype(op, "ids", ids, ("i32",))
        V, C = ck.table(op, "dtable", dtable)
        ck.need_shape(op, "dout", dout, ids.shape + (C,),
                      f"ids {ids.shape} and dtable {dtable.shape}")
        self._need_ids(op, ids, V)
        self._embedding_backward(dtable, dout, ids)

    def _need_ids(self, op: str, ids: "Tensor", V: int) -> None:
        bad = self._find_outside(ids, V, False)
        if bad is not None:
            raise ValueError(f"{op}: id {bad[1]} (at flat index {bad[0]}) is outside the "
                             f"table's [0, {V})")

    # ---- fused cross-entropy -----------------------------------------------------------------
    def crossentropy_forward(self, losses: "Tensor", logits: "Tensor", targets: "Tensor") -> None:
        """logits (N, V) f32, targets (N,) i32; losses (N,) = logsumexp(logits) - logits[target].
        A target of -1 is ignored (loss 0)."""
        op = "crossentropy_forward"
        ck.need_float(op, self.floats, ("losses", losses), ("logits", logits))
        N, V = ck.logits_targets(op, logits, targets, losses, "losses")
        self._need_targets(op, targets, V)
        self._crossentropy_forward(losses, logits, targets)

    def crossentropy_backward(self, dlogits: "Tensor", dlosses: "Tensor", logits: "Tensor",
                              targets: "Tensor") -> None:
        """dlogits[i] += (softmax(logits[i]) - onehot(target[i])) * dlosses[i]; ignored rows
        add 0."""
        op = "crossentropy_backward"
        ck.need_float(op, self.floats, ("dlogits", dlogits), ("dlosses", dlosses),
                      ("logits", logits))
        N, V = ck.logits_targets(op, logits, targets, dlosses, "dlosses")
        ck.need_shape(op, "dlogits", dlogits, logits.shape, ("logits", logits))
        self._need_targets(op, targets, V)
        self._crossentropy_backward(dlogits, dlosses, logits, targets)

    def _need_targets(self, op: str, targets: "Tensor", V: int) -> None:
        bad = self._find_outside(targets, V, True)
        if bad is not None:
            raise ValueError(f"{op}: target {bad[1]} (row {bad[0]}) is outside [0, {V}) "
                             "(and is not -1)")

    # (the hook behind both: `_find_outside(ids, V, ignore_minus_one)` returns the first
    # (flat index, value) of an i32 tensor outside [0, V), -1 allowed when asked, or None)

    # (attention, rope, matmul_rows and block_decode are in alpha/core/backend_attention.py)
    # (the optimizer ops are in alpha/core/backend_optim.py: adamw, lion, sgd, muon, adafactor)
