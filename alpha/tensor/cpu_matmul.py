"""The CPU matmul: `matmul(out, a, b, ...)` with the semantics of `Backend.matmul`, on the packed,
register-blocked SGEMM in `csrc/matmul.c`.

No operand is ever copied: the C side takes a row stride and a column stride for each of op(A) and
op(B), so transposed views, `trans_a`/`trans_b` and sliced views all become stride arguments, and
its packing step reads any layout. Batch dims are passed as one stride when they collapse to one
(always for contiguous tensors); otherwise the batch is walked here, one C call per entry.
`out` needs a unit stride in its last dim (outputs are contiguous by the protocol) and must not
overlap a or b. f32 only.

This module is what `CPUBackend.matmul` calls once the front (`alpha.core.backend.Backend`) has
checked dtypes, ranks and shapes; it keeps the per-call Python work small (a tiny matmul costs a
few microseconds here on top of the C call).
"""

from __future__ import annotations

import ctypes

from alpha.core.checks import describe_matmul as _shapes
from alpha.tensor import build

_sgemm = None


def _kernel():
    """The ctypes function object for alpha_sgemm (declared once)."""
    global _sgemm
    if _sgemm is None:
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        f = build.lib().alpha_sgemm
        f.restype = None
        f.argtypes = [i64, i64, i64, i64,
                      ptr, i64, i64, i64,
                      ptr, i64, i64, i64,
                      ptr, i64, i64,
                      ctypes.c_float, ctypes.c_int]
        _sgemm = f
    return _sgemm


def kernel_info() -> dict:
    """Which micro-kernel the library was compiled with and its tile sizes (for the benchmark)."""
    L = build.lib()
    L.alpha_sgemm_kernel_name.restype = ctypes.c_char_p
    L.alpha_sgemm_tile.restype = ctypes.c_int
    L.alpha_sgemm_tile.argtypes = [ctypes.c_int]
    return {"kernel": L.alpha_sgemm_kernel_name().decode(),
            "mr": L.alpha_sgemm_tile(0), "nr": L.alpha_sgemm_tile(1),
            "kc": L.alpha_sgemm_tile(2), "mc": L.alpha_sgemm_tile(3)}


def _collapse(shape, strides):
    """(count, stride) walking the batch dims as one flat index, or None when they do not collapse
    into a single stride."""
    count, stride = 1, 0
    for n, s in zip(reversed(shape), reversed(strides)):
        if n == 1:
            continue
        if count == 1:
            stride = s
        elif s != stride * count:
            return None
        count *= n
    return count, stride


def _extent(t):
    """[first, last] element index that a CPU tensor touches in its storage (non-empty)."""
    lo = hi = t.offset
    for n, s in zip(t.shape, t.strides):
        if s >= 0:
            hi += (n - 1) * s
        else:
            lo += (n - 1) * s
    return lo, hi


def _overlaps(out, x) -> bool:
    if out.storage is not x.storage:
        return False
    lo, hi = _extent(out)
    xlo, xhi = _extent(x)
    return lo <= xhi and xlo <= hi


def matmul(out, a, b, trans_a: bool, trans_b: bool, accumulate: bool, alpha: float) -> None:
    """out = alpha * op(a) @ op(b) (+ out if accumulate); see `Backend.matmul`. The arguments
    are checked already (dtypes, ranks, shapes)."""
    ash, bsh, osh = a.shape, b.shape, out.shape
    nd = len(ash)
    ast, bst = a.strides, b.strides
    if trans_a:
        K, M, a_rs, a_cs = ash[-2], ash[-1], ast[-1], ast[-2]
    else:
        M, K, a_rs, a_cs = ash[-2], ash[-1], ast[-2], ast[-1]
    if trans_b:
        N, b_rs, b_cs = bsh[-2], bst[-1], bst[-2]
    else:
        N, b_rs, b_cs = bsh[-1], bst[-2], bst[-1]
    batch_shape = ash[:-2]
    if out.strides[-1] != 1 and N > 1:
        raise ValueError(f"matmul: out {osh} needs a unit stride in its last dim "
                         f"(strides {out.strides})")
    if M == 0 or N == 0:
        return
    batch = 1
    for n in batch_shape:
        batch *= n
    if batch == 0:
        return
    if _overlaps(out, a) or _overlaps(out, b):
        raise ValueError(f"matmul: out overlaps an input ({_shapes(out, a, b, trans_a, trans_b)})")

    fn = _sgemm or _kernel()
    a_ptr = a.storage.ptr + 4 * a.offset
    b_ptr = b.storage.ptr + 4 * b.offset
    c_ptr = out.storage.ptr + 4 * out.offset
    ldc = out.strides[-2]
    if nd == 2:
        fn(1, M, N, K, a_ptr, 0, a_rs, a_cs, b_ptr, 0, b_rs, b_cs, c_ptr, 0, ldc,
           alpha, bool(accumulate))
        return
    ca = _collapse(batch_shape, ast[:-2])
    cb = _collapse(batch_shape, bst[:-2]) if len(bsh) == nd else (batch, 0)
    co = _collapse(batch_shape, out.strides[:-2])
    if ca is not None and cb is not None and co is not None:
        fn(batch, M, N, K, a_ptr, ca[1], a_rs, a_cs, b_ptr, cb[1], b_rs, b_cs, c_ptr, co[1], ldc,
           alpha, bool(accumulate))
        return
    # batch dims that do not collapse (a permuted or sliced view): one call per entry
    b_batched = len(bsh) == nd
    for flat in range(batch):
        a_off = b_off = o_off = 0
        rest = flat
        for d in range(nd - 3, -1, -1):
            i = rest % batch_shape[d]
            rest //= batch_shape[d]
            a_off += i * ast[d]
            o_off += i * out.strides[d]
            if b_batched:
                b_off += i * bst[d]
        fn(1, M, N, K, a_ptr + 4 * a_off, 0, a_rs, a_cs, b_ptr + 4 * b_off, 0, b_rs, b_cs,
           c_ptr + 4 * o_off, 0, ldc, alpha, bool(accumulate))
