"""Tensor: a shape, strides and an offset (all in elements) over one backend's storage.

A Tensor does no math: ops live on the backend (`alpha.core.backend.Backend`) and in autograd.
Views (`view`, `transpose`, `permute`, `narrow`, indexing) share storage and never copy.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from alpha.core.backend import DTYPES
from alpha.core.checks import check_shape


def contiguous_strides(shape: Sequence[int]) -> tuple[int, ...]:
    strides = []
    acc = 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= n
    return tuple(reversed(strides))


def broadcast_strides(t: "Tensor", shape: Sequence[int]) -> list[int]:
    """Strides (in elements) that read t as if broadcast to `shape`: 0 on broadcast dims."""
    pad = len(shape) - t.ndim
    strides = [0] * pad
    for d in range(t.ndim):
        strides.append(0 if t.shape[d] == 1 else t.strides[d])
    return strides


class Tensor:
    __slots__ = ("backend", "storage", "shape", "strides", "offset", "dtype")

    def __init__(self, backend, storage: Any, shape: Sequence[int], dtype: str = "f32",
                 strides: Sequence[int] | None = None, offset: int = 0):
        if dtype not in DTYPES:
            raise TypeError(f"unknown dtype {dtype!r} (known: {', '.join(DTYPES)})")
        self.backend = backend
        self.storage = storage  # backend-specific: the CPU keeps an object with a .ptr address
        self.shape = check_shape(shape)
        self.strides = tuple(strides) if strides is not None else contiguous_strides(self.shape)
        self.offset = offset
        self.dtype = dtype

    # ---- facts -------------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def itemsize(self) -> int:
        return DTYPES[self.dtype][1]

    @property
    def nbytes(self) -> int:
        return self.numel * self.itemsize

    @property
    def is_contiguous(self) -> bool:
        expect = 1
        for n, s in zip(reversed(self.shape), reversed(self.strides)):
            if n != 1 and s != expect:
                return False
            expect *= n
        return True

    def __repr__(self) -> str:
        return f"Tensor(shape={self.shape}, dtype={self.dtype}, backend={self.backend.name})"

    # ---- views (no copies) ---------------------------------------------------------------
    def _derive(self, shape, strides, offset) -> "Tensor":
        return Tensor(self.backend, self.storage, shape, self.dtype, strides, offset)

    def view(self, *shape) -> "Tensor":
        """Same data, new shape; needs a contiguous tensor. One dimension may be -1."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        shape = list(shape)
        if shape.count(-1) > 1:
            raise ValueError(f"view {tuple(shape)}: at most one dimension can be -1")
        if -1 in shape:
            known = math.prod(n for n in shape if n != -1)
            if known == 0 or self.numel % known:
                raise ValueError(f"cannot view shape {self.shape} as {tuple(shape)}")
            shape[shape.index(-1)] = self.numel // known
        shape = check_shape(shape)
        if math.prod(shape) != self.numel:
            raise ValueError(f"cannot view shape {self.shape} ({self.numel} elements) as {shape}")
        if not self.is_contiguous:
            raise ValueError(f"view of a non-contiguous tensor {self.shape}; copy it first")
        return self._derive(shape, contiguous_strides(shape), self.offset)

    def _dim(self, d: int) -> int:
        if not -self.ndim <= d < self.ndim:
            raise ValueError(f"dimension {d} out of range for shape {self.shape}")
        return d % self.ndim

    def permute(self, *dims) -> "Tensor":
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        dims = [self._dim(d) for d in dims]
        if sorted(dims) != list(range(self.ndim)):
            raise ValueError(f"permute {tuple(dims)} is not a permutation of {self.ndim} dims")
        return self._derive(
            [self.shape[d] for d in dims], [self.strides[d] for d in dims], self.offset
        )

    def transpose(self, d0: int = -2, d1: int = -1) -> "Tensor":
        dims = list(range(self.ndim))
        a, b = self._dim(d0), self._dim(d1)
        dims[a], dims[b] = dims[b], dims[a]
        return self.permute(dims)

    @property
    def T(self) -> "Tensor":
        return self.transpose(-2, -1)

    def narrow(self, dim: int, start: int, length: int) -> "Tensor":
        dim = self._dim(dim)
        if start < 0 or length < 0 or start + length > self.shape[dim]:
            raise ValueError(
                f"narrow({dim}, {start}, {length}) out of range for shape {self.shape}"
            )
        shape = list(self.shape)
        shape[dim] = length
        return self._derive(shape, self.strides, self.offset + start * self.strides[dim])

    def __getitem__(self, idx) -> "Tensor":
        """Basic indexing on leading dims: ints drop the dim, slices (step 1 or more) keep it."""
        if not isinstance(idx, tuple):
            idx = (idx,)
        if len(idx) > self.ndim:
            raise ValueError(f"too many indices {idx} for shape {self.shape}")
        shape, strides, offset = [], [], self.offset
        for d, ix in enumerate(idx):
            n, s = self.shape[d], self.strides[d]
            if isinstance(ix, int):
                if not -n <= ix < n:
                    raise ValueError(f"index {ix} out of range for dim {d} of shape {self.shape}")
                offset += (ix % n) * s
            elif isinstance(ix, slice):
                start, stop, step = ix.indices(n)
                if step < 1:
                    raise ValueError("negative slice steps are not supported")
                count = max(0, (stop - start + step - 1) // step)
                offset += start * s
                shape.append(count)
                strides.append(s * step)
            else:
                raise TypeError(f"unsupported index {ix!r}")
        shape += self.shape[len(idx):]
        strides += self.strides[len(idx):]
        return self._derive(shape, strides, offset)

    # ---- host access ---------------------------------------------------------------------
    def to_array(self):
        return self.backend.to_array(self)

    def tolist(self) -> list:
        flat = list(self.to_array())
        for n in reversed(self.shape[1:]):
            flat = [flat[i:i + n] for i in range(0, len(flat), n)] if n else []
        return flat

    def item(self) -> float:
        if self.numel != 1:
            raise ValueError(f"item() needs one element, shape is {self.shape}")
        return self.to_array()[0]
