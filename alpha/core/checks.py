"""Argument checks of the Backend protocol's front (`alpha.core.backend.Backend`): cheap tuple
compares that raise the errors the protocol promises, with one wording for every backend.

- a shape mismatch raises ValueError naming the shapes involved;
- a wrong dtype raises TypeError naming the dtype;
- an empty tensor where data is needed raises ValueError.

Nothing here touches tensor data, so it works for any backend's Tensor. Functions are named
`need_*` (raise or return nothing), compute a shape (`broadcast_shape`, `reduced_shape`), or check
one family of ops (`pointwise`, `rowwise`, `matmul_shapes`, ...) and return the sizes it found.
"""

from __future__ import annotations

import math
from typing import Sequence


def need_dtype(op: str, name: str, t, dtypes: Sequence[str]) -> None:
    """TypeError unless t.dtype is one of `dtypes`."""
    if t.dtype not in dtypes:
        raise TypeError(f"{op}: {name} has dtype {t.dtype}, expected {' or '.join(dtypes)}")


def need_float(op: str, floats: Sequence[str], *named) -> None:
    """Every (name, tensor) pair has a dtype in `floats` (None tensors are skipped). The message
    names f32, the protocol's float dtype, whatever extra dtypes a backend takes (the reference
    also takes f64), so that every backend words it the same."""
    for name, t in named:
        if t is not None and t.dtype not in floats:
            raise TypeError(f"{op}: {name} has dtype {t.dtype}, expected f32")


def need_shape(op: str, name: str, t, shape: Sequence[int], against="") -> None:
    """ValueError unless t.shape == shape. `against` says where the expected shape came from:
    a string, or a (name, tensor) pair formatted only when the check fails (hot paths avoid
    formatting shapes on every call)."""
    if t.shape != tuple(shape):
        if isinstance(against, tuple):
            against = f"{against[0]} {against[1].shape}"
        why = f" (from {against})" if against else ""
        raise ValueError(f"{op}: {name} has shape {t.shape}, expected {tuple(shape)}{why}")


def need_numel(op: str, name: str, t, ref_name: str, ref) -> None:
    """Same number of elements (flat buffers of equal size, shapes may differ)."""
    if t.numel != ref.numel:
        raise ValueError(f"{op}: {name} {t.shape} and {ref_name} {ref.shape} differ in size")


def need_data(op: str, name: str, n: int, t) -> None:
    """ValueError when a count that must be positive (a reduced length, a vocabulary) is 0."""
    if n == 0:
        raise ValueError(f"{op}: {name} of shape {t.shape} is empty where data is needed")


def need_last_dim(op: str, x) -> int:
    """x has at least one dim and a non-empty last dim; returns that dim's size."""
    if x.ndim < 1:
        raise ValueError(f"{op}: x of shape {x.shape} needs at least one dim")
    need_data(op, "last dim of x", x.shape[-1], x)
    return x.shape[-1]


def broadcast_shape(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    """numpy's broadcasting rule; ValueError naming both shapes when they do not broadcast."""
    a, b = tuple(a), tuple(b)
    if a == b:
        return a
    n = max(len(a), len(b))
    pa = (1,) * (n - len(a)) + a
    pb = (1,) * (n - len(b)) + b
    out = []
    for x, y in zip(pa, pb):
        if x != y and x != 1 and y != 1:
            raise ValueError(f"shapes {a} and {b} do not broadcast")
        out.append(y if x == 1 else x)
    return tuple(out)


def need_broadcasts_to(op: str, name: str, t, other_name: str, shape: Sequence[int]) -> None:
    """t's shape broadcasts to `shape` without changing it (mask to x, out of sum_to to x)."""
    shape = tuple(shape)
    pad = len(shape) - t.ndim
    ok = pad >= 0 and all(n in (1, shape[d + pad]) for d, n in enumerate(t.shape))
    if not ok:
        raise ValueError(f"{op}: {name} {t.shape} does not broadcast to {other_name} {shape}")


def normalize_axes(op: str, axes: Sequence[int], shape: Sequence[int]) -> list[int]:
    """Axes in [0, ndim), negatives allowed; ValueError for out-of-range or repeated axes."""
    ndim = len(shape)
    result = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"{op}: axis {a} out of range for shape {tuple(shape)}")
        result.append(a % ndim)
    if len(set(result)) != len(result):
        raise ValueError(f"{op}: repeated axis in {tuple(axes)}")
    return result


def reduced_shape(shape: Sequence[int], axes: Sequence[int], keepdim: bool) -> tuple[int, ...]:
    """The shape left after reducing `axes` (already normalised)."""
    if keepdim:
        return tuple(1 if d in axes else n for d, n in enumerate(shape))
    return tuple(n for d, n in enumerate(shape) if d not in axes)


def need_qkv(op: str, qkv, n_head: int) -> tuple[int, int, int, int]:
    """qkv (B, T, 3C) with C divisible by n_head; returns (B, T, C, head size)."""
    if qkv.ndim != 3 or qkv.shape[2] % 3:
        raise ValueError(f"{op}: qkv {qkv.shape} must be (B, T, 3C)")
    B, T, C3 = qkv.shape
    C = C3 // 3
    if n_head < 1 or C % n_head:
        raise ValueError(f"{op}: C={C} of qkv {qkv.shape} is not divisible by n_head={n_head}")
    return B, T, C, C // n_head


def need_softcap(op: str, softcap: float) -> None:
    """An attention logit cap: 0 (off) or a finite positive number."""
    if not (softcap >= 0 and math.isfinite(softcap)):
        raise ValueError(f"{op}: softcap={softcap} must be 0 (off) or a positive number")


def check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """A shape as a tuple of non-negative ints; ValueError otherwise."""
    shape = tuple(shape)
    for n in shape:
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"bad shape {shape}: dimensions must be non-negative integers")
    return shape


# ---- op families: the checks several ops share --------------------------------------------------


def pointwise(op: str, floats, out, x) -> None:
    """out = f(x) elementwise: both float, out has x's shape."""
    if out.dtype not in floats or x.dtype not in floats:
        need_float(op, floats, ("out", out), ("x", x))
    if out.shape != x.shape:
        need_shape(op, "out", out, x.shape, ("x", x))


def pointwise_backward(op: str, floats, dx, dout, x) -> None:
    """dx += dout * f'(x): all float, dout and dx have x's shape."""
    if dx.dtype not in floats or dout.dtype not in floats or x.dtype not in floats:
        need_float(op, floats, ("dx", dx), ("dout", dout), ("x", x))
    if dout.shape != x.shape or dx.shape != x.shape:
        need_shape(op, "dout", dout, x.shape, ("x", x))
        need_shape(op, "dx", dx, x.shape, ("x", x))


def rowwise(op: str, floats, out, x) -> None:
    """A forward over the last dim (softmax): out has x's shape, the last dim is not empty."""
    need_float(op, floats, ("out", out), ("x", x))
    need_shape(op, "out", out, x.shape, ("x", x))
    need_last_dim(op, x)


def rowwise_backward(op: str, floats, dx, dout, out) -> None:
    need_float(op, floats, ("dx", dx), ("dout", dout), ("out", out))
    need_shape(op, "dout", dout, out.shape, ("out", out))
    need_shape(op, "dx", dx, out.shape, ("out", out))
    need_last_dim(op, out)


def positive_cap(op: str, cap: float) -> None:
    """A soft-cap's c: a finite number > 0."""
    if not (isinstance(cap, (int, float)) and 0 < cap < math.inf):
        raise ValueError(f"{op}: cap={cap!r} must be a finite number > 0")


def swiglu_half(op: str, x, other, other_name: str) -> int:
    """x (..., 2H) and `other` (..., H); returns H."""
    if x.ndim < 1 or x.shape[-1] % 2:
        raise ValueError(f"{op}: x {x.shape} needs an even last dim")
    H = x.shape[-1] // 2
    need_shape(op, other_name, other, x.shape[:-1] + (H,), ("x", x))
    return H


def dropout_p(op: str, p: float) -> None:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{op}: p={p} must be in [0, 1)")


def table(op: str, name: str, t) -> tuple[int, int]:
    """A (V, C) embedding table; returns (V, C)."""
    if t.ndim != 2:
        raise ValueError(f"{op}: {name} {t.shape} must be (V, C)")
    return t.shape


def logits_targets(op: str, logits, targets, other, other_name: str) -> tuple[int, int]:
    """logits (N, V) with V > 0, targets (N,) i32, `other` (N,); returns (N, V)."""
    need_dtype(op, "targets", targets, ("i32",))
    if logits.ndim != 2:
        raise ValueError(f"{op}: logits {logits.shape} must be (N, V)")
    N, V = logits.shape
    need_data(op, "vocab dim of logits", V, logits)
    need_shape(op, "targets", targets, (N,), ("logits", logits))
    need_shape(op, other_name, other, (N,), ("logits", logits))
    return N, V


def matmul_shapes(out, a, b, trans_a: bool, trans_b: bool) -> None:
    """The ranks and sizes of `Backend.matmul`; ValueError naming all three shapes."""
    ash, bsh, osh = a.shape, b.shape, out.shape
    nd = len(ash)
    if nd < 2 or len(bsh) < 2 or len(osh) != nd or (len(bsh) != 2 and len(bsh) != nd):
        raise ValueError(f"matmul: bad ranks: {describe_matmul(out, a, b, trans_a, trans_b)}; "
                         "a and out need the same rank >= 2, b rank 2 or a's rank")
    if trans_a:
        K, M = ash[-2], ash[-1]
    else:
        M, K = ash[-2], ash[-1]
    if trans_b:
        N, Kb = bsh[-2], bsh[-1]
    else:
        Kb, N = bsh[-2], bsh[-1]
    if (Kb != K or osh[-2] != M or osh[-1] != N or osh[:-2] != ash[:-2]
            or (len(bsh) == nd and bsh[:-2] != ash[:-2])):
        raise ValueError("matmul: shapes do not match: "
                         + describe_matmul(out, a, b, trans_a, trans_b))


def describe_matmul(out, a, b, trans_a, trans_b) -> str:
    return (f"out {out.shape}, a {a.shape}{' (trans_a)' if trans_a else ''}, "
            f"b {b.shape}{' (trans_b)' if trans_b else ''}")


def kv_shapes(op: str, out, q, k, v, n_head: int, start: int) -> None:
    """q (B, Tq, C); k, v (B, Tmax, C); out like q; positions start..start+Tq-1 fit Tmax."""
    if q.ndim != 3:
        raise ValueError(f"{op}: q {q.shape} must be (B, Tq, C)")
    B, Tq, C = q.shape
    if k.ndim != 3 or k.shape[0] != B or k.shape[2] != C:
        raise ValueError(f"{op}: k {k.shape} does not match q {q.shape}")
    need_shape(op, "v", v, k.shape, ("k", k))
    need_shape(op, "out", out, q.shape, ("q", q))
    if n_head < 1 or C % n_head:
        raise ValueError(f"{op}: C={C} of q {q.shape} is not divisible by n_head={n_head}")
    if start < 0 or start + Tq > k.shape[1]:
        raise ValueError(f"{op}: positions {start}..{start + Tq - 1} do not fit k {k.shape}")
