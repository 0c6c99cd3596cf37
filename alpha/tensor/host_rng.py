"""Normal random numbers on the host, fast: the C twin (`csrc/rng.c`) of `alpha.core.rng`'s normals,
bit-identical to it, for a backend whose device lacks float64 log/cos (helios uploads the result).

Only the shared C library is used (`alpha.tensor.build`), not the CPU backend. Without a C compiler
`alpha.core.rng` computes the same numbers in pure Python (slowly).
"""

from __future__ import annotations

import ctypes
from array import array

from alpha.core import rng as _rng
from alpha.core.errors import CompilerNotFound
from alpha.tensor import build

_fn = None


def normals(key: tuple[int, int], position: int, n: int, mean: float, std: float) -> array:
    """array('f') of mean + std * the n normals of stream `key` from word `position`."""
    global _fn
    try:
        if _fn is None:
            f = build.lib().rng_normal
            f.restype = None
            f.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint32, ctypes.c_uint32,
                          ctypes.c_uint64, ctypes.c_double, ctypes.c_double]
            _fn = f
    except CompilerNotFound:
        zs = _rng.normals_from_words(_rng.words(tuple(key), position, 2 * ((n + 1) // 2)), n)
        return array("f", [mean + std * z for z in zs])
    out = array("f", bytes(4 * n))
    if n:
        _fn(out.buffer_info()[0], n, key[0], key[1], position, mean, std)
    return out
