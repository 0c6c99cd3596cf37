"""Argument checks shared by every backend (CPU, reference, helios): cheap tuple compares that
raise the errors the Backend protocol promises.

- a shape mismatch raises ValueError naming the shapes involved;
- a wrong dtype raises TypeError naming the dtype;
- an empty tensor where data is needed raises ValueError.

Nothing here touches tensor data, so it works for any backend's Tensor. Functions are named
`need_*` (raise or return nothing) or compute a shape (`broadcast_shape`, `reduced_shape`).
"""

from __future__ import annotations

from typing import Sequence


def need_dtype(op: str, name: str, t, dtypes: Sequence[str]) -> None:
    """TypeError unless t.dtype is one of `dtypes`."""
    if t.dtype not in dtypes:
        raise TypeError(f"{op}: {name} has dtype {t.dtype}, expected {' or '.join(dtypes)}")


def need_f32(op: str, *named) -> None:
    """Every (name, tensor) pair is f32 (None tensors are skipped)."""
    for name, t in named:
        if t is not None and t.dtype != "f32":
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


def need_same_shape(op: str, ref_name: str, ref, *named) -> None:
    """Every (name, tensor) pair has ref's shape (None tensors are skipped)."""
    for name, t in named:
        if t is not None and t.shape != ref.shape:
            raise ValueError(f"{op}: {name} has shape {t.shape}, expected {ref.shape} "
                             f"(from {ref_name})")


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


def broadcast_strides(t, shape: Sequence[int]) -> list[int]:
    """Strides (in elements) that read t as if broadcast to `shape`: 0 on broadcast dims."""
    pad = len(shape) - t.ndim
    strides = [0] * pad
    for d in range(t.ndim):
        strides.append(0 if t.shape[d] == 1 else t.strides[d])
    return strides


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
