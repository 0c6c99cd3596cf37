"""The Backend protocol: every operation the model, autograd and trainer may ask of a device.

The CPU backend (`alpha.tensor.cpu`, C kernels through ctypes), the float64 reference backend
(`alpha.tensor.reference`, pure Python, the living definition of every op) and helios
(`alpha.helios`, Vulkan) implement this same protocol. Autograd and the model call nothing else.

Conventions (llm.c's):
- Arguments go outputs first, then inputs and weights, then sizes and scalars.
- Forward ops OVERWRITE their outputs. Backward ops ADD into their gradient outputs (`+=`), so
  gradients accumulate into existing buffers; whoever owns a gradient buffer zeroes it.
- Tensors are `alpha.tensor.Tensor`: (backend, storage, shape, strides, offset, dtype). Strides
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

from typing import TYPE_CHECKING, Protocol, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from alpha.tensor.tensor import Tensor

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


class Backend(Protocol):
    name: str  # "cpu" | "reference" | "helios"

    # ---- memory ---------------------------------------------------------------------------
    def empty(self, shape: Sequence[int], dtype: str = "f32") -> "Tensor":
        """Uninitialised contiguous tensor."""

    def zeros(self, shape: Sequence[int], dtype: str = "f32") -> "Tensor": ...

    def from_array(self, data, shape: Sequence[int] | None = None, dtype: str = "f32") -> "Tensor":
        """Upload a host sequence (array, list, bytes, memoryview) as a contiguous tensor.
        `shape` defaults to (len(data),)."""

    def to_array(self, x: "Tensor"):
        """Download to a host `array.array` of x's dtype, in row-major order of x's (view) shape.
        Waits for pending work."""

    def fill(self, out: "Tensor", value: float) -> None:
        """out[...] = value."""

    def copy(self, out: "Tensor", x: "Tensor") -> None:
        """out[...] = x, same shape; both may be strided views (this is how views are
        materialised and how KV-cache slices are written). Same dtype."""

    def cast(self, out: "Tensor", x: "Tensor") -> None:
        """out = x converted to out's dtype (float<->float, int->float, float->int truncating)."""

    def synchronize(self) -> None:
        """Wait until all submitted work has finished (no-op on synchronous backends)."""

    # ---- random numbers (bit-identical to alpha.core.rng on every backend) -------------------
    def rng_uniform(self, out: "Tensor", key: tuple[int, int], position: int) -> None:
        """out (f32, contiguous, n elements) = uniforms from words position..position+n-1."""

    def rng_normal(self, out: "Tensor", key: tuple[int, int], position: int,
                   mean: float = 0.0, std: float = 1.0) -> None:
        """out = mean + std * normals from words position..position+2*ceil(n/2)-1 (float64 math,
        rounded to f32 at the end)."""

    # ---- matmul --------------------------------------------------------------------------
    def matmul(self, out: "Tensor", a: "Tensor", b: "Tensor", *, trans_a: bool = False,
               trans_b: bool = False, accumulate: bool = False, alpha: float = 1.0) -> None:
        """out = alpha * op(a) @ op(b)  (+ out if accumulate), op(x) = x or its last-two-dims
        transpose. a: (..., M, K) [(..., K, M) if trans_a]; b: (..., K, N) [(..., N, K) if
        trans_b] or 2-D (shared by every batch entry of a); out: (..., M, N). When b has batch
        dims they must equal a's. (Weight gradients flatten (B, T, C) to (B*T, C) with
        `Tensor.view` and use trans_a.)"""

    # ---- elementwise ---------------------------------------------------------------------
    def binary(self, out: "Tensor", op: str, a: "Tensor", b: "Tensor") -> None:
        """out = a <op> b with numpy broadcasting; op in BINARY_OPS; out has the broadcast
        shape. out may alias a or b."""

    def binary_scalar(self, out: "Tensor", op: str, a: "Tensor", s: float) -> None:
        """out = a <op> s; op in BINARY_OPS plus "pow" and "rsub" (s - a), "rdiv" (s / a)."""

    def unary(self, out: "Tensor", op: str, x: "Tensor") -> None:
        """out = op(x), op in UNARY_OPS. out may alias x."""

    def axpy(self, out: "Tensor", x: "Tensor", alpha: float = 1.0) -> None:
        """out += alpha * x (same shape). The workhorse of gradient accumulation."""

    def where_mask(self, out: "Tensor", x: "Tensor", mask: "Tensor", value: float) -> None:
        """out = mask != 0 ? value : x (mask broadcast to x, f32)."""

    # ---- reductions ----------------------------------------------------------------------
    def sum(self, out: "Tensor", x: "Tensor", axes: Sequence[int], keepdim: bool = False) -> None:
        """out = x summed over `axes` (negative allowed). Accumulates in at least f32 with a
        fixed order, so the result does not depend on threads."""

    def sum_to(self, out: "Tensor", x: "Tensor") -> None:
        """out += x reduced (summed) to out's shape — the inverse of broadcasting, used by the
        backward of every broadcast op. out's shape must broadcast to x's."""

    def max(self, out: "Tensor", x: "Tensor", axis: int, keepdim: bool = False) -> None:
        """out = max of x along one axis."""

    def sum_squares(self, x: "Tensor") -> float:
        """sum(x**2) as a Python float (float64 accumulation): the global grad norm's term."""

    def all_finite(self, x: "Tensor") -> bool:
        """True when x holds no NaN and no Inf."""

    # ---- normalisation and activations (forward/backward pairs) -----------------------------
    def softmax_forward(self, out: "Tensor", x: "Tensor") -> None:
        """Softmax over the last dim."""

    def softmax_backward(self, dx: "Tensor", dout: "Tensor", out: "Tensor") -> None:
        """dx += out * (dout - sum(dout * out, last dim))."""

    def log_softmax_forward(self, out: "Tensor", x: "Tensor") -> None: ...

    def log_softmax_backward(self, dx: "Tensor", dout: "Tensor", out: "Tensor") -> None:
        """dx += dout - exp(out) * sum(dout, last dim)."""

    def layernorm_forward(self, out: "Tensor", mean: "Tensor", rstd: "Tensor", x: "Tensor",
                          weight: "Tensor", bias: "Tensor | None", eps: float = 1e-5) -> None:
        """Over the last dim C: x (..., C); weight, bias (C,) (bias may be None); mean, rstd (...)
        saved for the backward."""

    def layernorm_backward(self, dx: "Tensor", dweight: "Tensor", dbias: "Tensor | None",
                           dout: "Tensor", x: "Tensor", weight: "Tensor", mean: "Tensor",
                           rstd: "Tensor") -> None:
        """Adds into dx, dweight, dbias (dbias may be None)."""

    def gelu_forward(self, out: "Tensor", x: "Tensor") -> None:
        """GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""

    def gelu_backward(self, dx: "Tensor", dout: "Tensor", x: "Tensor") -> None: ...

    def relu_forward(self, out: "Tensor", x: "Tensor") -> None: ...

    def relu_backward(self, dx: "Tensor", dout: "Tensor", x: "Tensor") -> None:
        """dx += dout where x > 0."""

    def silu_forward(self, out: "Tensor", x: "Tensor") -> None:
        """x * sigmoid(x)."""

    def silu_backward(self, dx: "Tensor", dout: "Tensor", x: "Tensor") -> None: ...

    def swiglu_forward(self, out: "Tensor", x: "Tensor") -> None:
        """x (..., 2H) -> out (..., H) = silu(x[..., :H]) * x[..., H:]."""

    def swiglu_backward(self, dx: "Tensor", dout: "Tensor", x: "Tensor") -> None: ...

    def dropout_forward(self, out: "Tensor", x: "Tensor", u: "Tensor", p: float) -> None:
        """out = x * (u >= p) / (1 - p); u holds uniforms in [0, 1) of x's shape (from rng_uniform
        on the dropout stream)."""

    def dropout_backward(self, dx: "Tensor", dout: "Tensor", u: "Tensor", p: float) -> None:
        """dx += dout * (u >= p) / (1 - p)."""

    # ---- embeddings ------------------------------------------------------------------------
    def embedding_forward(self, out: "Tensor", ids: "Tensor", table: "Tensor") -> None:
        """ids (...,) i32; table (V, C); out (..., C) = table[ids]. An id outside [0, V) raises
        ValueError (checked before any write)."""

    def embedding_backward(self, dtable: "Tensor", dout: "Tensor", ids: "Tensor") -> None:
        """dtable[ids[i]] += dout[i] (scatter-add; deterministic order)."""

    # ---- fused cross-entropy -----------------------------------------------------------------
    def crossentropy_forward(self, losses: "Tensor", logits: "Tensor", targets: "Tensor") -> None:
        """logits (N, V) f32, targets (N,) i32; losses (N,) = logsumexp(logits) - logits[target].
        A target of -1 is ignored (loss 0)."""

    def crossentropy_backward(self, dlogits: "Tensor", dlosses: "Tensor", logits: "Tensor",
                              targets: "Tensor") -> None:
        """dlogits[i] += (softmax(logits[i]) - onehot(target[i])) * dlosses[i]; ignored rows add 0."""

    # ---- fused causal self-attention ----------------------------------------------------------
    def attention_forward(self, out: "Tensor", lse: "Tensor", qkv: "Tensor", n_head: int) -> None:
        """qkv (B, T, 3C) packed as [q | k | v], head h at columns h*hs:(h+1)*hs of each part;
        out (B, T, C); lse (B, n_head, T) f32: the log-sum-exp of each query's scaled scores,
        saved for the backward. Causal, scale 1/sqrt(hs)."""

    def attention_backward(self, dqkv: "Tensor", dout: "Tensor", qkv: "Tensor", out: "Tensor",
                           lse: "Tensor", n_head: int) -> None:
        """Adds into dqkv (B, T, 3C)."""

    def kv_attention(self, out: "Tensor", q: "Tensor", k: "Tensor", v: "Tensor", n_head: int,
                     start: int) -> None:
        """Inference attention with a KV cache. q (B, Tq, C) holds positions start..start+Tq-1;
        k, v (B, Tmax, C) hold positions 0..start+Tq-1 (the rest is ignored); out (B, Tq, C).
        Causal: query at position p sees keys 0..p. q, k, v may be strided views."""

    # ---- inference: batch invariance and the fused decode block -----------------------------
    def matmul_rows(self, out: "Tensor", a: "Tensor", b: "Tensor", *,
                    trans_b: bool = False) -> None:
        """out (M, N) = a (M, K) @ op(b), with every row computed exactly as it would be alone
        (M = 1): the same bits whatever M. Batched decode uses it, so a sequence's tokens never
        depend on what else is in the batch. A backend whose matmul already has that property
        may answer with its matmul."""

    def block_decode(self, x: "Tensor", cache: "Tensor", slots: Sequence[int],
                     positions: Sequence[int], params: tuple, n_head: int, activation: str,
                     eps: float) -> None:
        """Optional (raise NotImplementedError("need block_decode") to decline): one GPT block for
        one new token of each of M sequences, fused, with the exact bits of the model's op-by-op
        cached forward (alpha/model/gpt.py). x (M, C) the residual stream, updated in place;
        cache (S, Tmax, 2C) rows [k | v] of this layer: row positions[i] of slot slots[i] is
        written, rows 0..positions[i] attended; params: the block's 12 tensors ln_1.{w,b},
        attn.c_attn.{w,b}, attn.c_proj.{w,b}, ln_2.{w,b}, mlp.c_fc.{w,b}, mlp.c_proj.{w,b}
        (biases None when the model has none). Rows must not depend on each other."""

    # ---- optimizer ---------------------------------------------------------------------------
    def adamw_step(self, param: "Tensor", grad: "Tensor", m: "Tensor", v: "Tensor", *, lr: float,
                   beta1: float, beta2: float, eps: float, weight_decay: float, step: int,
                   grad_scale: float = 1.0) -> None:
        """One AdamW update, in place, on flat f32 buffers of equal size:
        g = grad * grad_scale; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
        mhat = m / (1 - b1^step); vhat = v / (1 - b2^step);
        param -= lr * (mhat / (sqrt(vhat) + eps) + weight_decay * param)."""
