"""Host memory for the CPU backend: one zeroed, 64-byte-aligned ctypes block per storage.

Why ctypes memory rather than array.array: the address is stable (an array can move when it
grows) and aligned for AVX loads; `view()` still exposes it as a typed memoryview, copy-free.
"""

from __future__ import annotations

import ctypes

from alpha.core.backend import DTYPES, MemoryMeter

ALIGN = 64
METER = MemoryMeter()  # bytes held by every live CPUStorage of the process (memory_stats)


class CPUStorage:
    __slots__ = ("raw", "ptr", "nbytes")

    def __init__(self, nbytes: int):
        self.nbytes = nbytes
        self.raw = (ctypes.c_char * (nbytes + ALIGN))()  # zero-filled by ctypes
        base = ctypes.addressof(self.raw)
        self.ptr = (base + ALIGN - 1) // ALIGN * ALIGN  # address of element 0
        METER.add(nbytes)

    def __del__(self):
        try:
            METER.sub(self.nbytes)
        except Exception:  # interpreter shutdown: the module may be gone
            pass

    def view(self, dtype: str, offset: int = 0, count: int | None = None) -> memoryview:
        """A typed memoryview over `count` elements starting at element `offset`."""
        code, size = DTYPES[dtype]
        if count is None:
            count = self.nbytes // size - offset
        start = self.ptr - ctypes.addressof(self.raw) + offset * size
        block = (ctypes.c_char * (count * size)).from_buffer(self.raw, start)  # keeps raw alive
        return memoryview(block).cast("B").cast(code)


def data_ptr(t) -> int:
    """Address of a CPU tensor's first element (its offset applied)."""
    return t.storage.ptr + t.offset * DTYPES[t.dtype][1]
