"""Host memory for the CPU backend: one zeroed, 64-byte-aligned ctypes block per storage.

Why ctypes memory rather than array.array: the address is stable (an array can move when it
grows) and aligned for AVX loads; `view()` still exposes it as a typed memoryview, copy-free.

A `huge` block (the CPU backend's `zeros` of HUGE_MIN bytes or more: KV caches, packed weights,
gradients, optimizer moments, which live long) is its own anonymous mapping, 2 MiB-aligned and
advised onto transparent huge pages (where the kernel offers them, `madvise` mode included): a
batch-32 decode step streams ~50 MB of packed weights and ~15 MB of KV cache, ~16k 4-KB pages,
far more than the TLB holds, and on a VM every miss walks two page tables (guest and host). With
huge pages the step's weight products ran ~10% faster and its attention ~1-15% (C harness, one
thread). Not every big block (`empty` stays on plain pages): a fresh huge page may cost the
kernel a compaction first, which short-lived activations should not risk every step.
"""

from __future__ import annotations

import ctypes
import mmap

from alpha.core.backend import DTYPES, MemoryMeter

ALIGN = 64
HUGE = 2 << 20  # a huge page (x86-64)
HUGE_MIN = 4 << 20
_HUGE_OK = all(hasattr(mmap, n) for n in ("MAP_PRIVATE", "MAP_ANONYMOUS", "MADV_HUGEPAGE"))
METER = MemoryMeter()  # bytes held by every live CPUStorage of the process (memory_stats)


class CPUStorage:
    __slots__ = ("raw", "ptr", "nbytes")

    def __init__(self, nbytes: int, huge: bool = False):
        self.nbytes = nbytes
        if huge and nbytes >= HUGE_MIN and _HUGE_OK:
            # private: a shared anonymous mapping gets huge pages only from the shmem setting
            m = mmap.mmap(-1, nbytes + HUGE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # zeroed
            try:
                m.madvise(mmap.MADV_HUGEPAGE)
            except OSError:  # a kernel without transparent huge pages: plain pages
                pass
            self.raw = (ctypes.c_char * (nbytes + HUGE)).from_buffer(m)  # keeps m alive
            align = HUGE
        else:
            self.raw = (ctypes.c_char * (nbytes + ALIGN))()  # zero-filled by ctypes
            align = ALIGN
        base = ctypes.addressof(self.raw)
        self.ptr = (base + align - 1) // align * align  # address of element 0
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
