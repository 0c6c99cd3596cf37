"""Host staging for gradients that live off the CPU: MPI reduces host memory, so a GPU's gradient
bucket goes down to the host, is summed there, and goes back up.

- `PinnedStaging` (helios): one host-visible, host-cached buffer per bucket from helios' host
  pool, allocated once. Down: a buffer copy recorded in the device's command stream, then a wait
  for the device (the bucket's gradients are final only once the queued backward work has run).
  MPI then reduces that mapped memory in place — no Python copy at all. Up: a copy recorded in
  the stream without waiting; the stream orders it before the optimizer's kernels.
- `CopyStaging` (any other backend): `to_array` down and `from_array` + `copy` up, through Python
  arrays (two extra host copies each way; correct everywhere, fast nowhere).

`for_backend` picks the first that fits; both answer `download(b) -> address` and `upload(b)`.
"""

from __future__ import annotations


class CopyStaging:
    def __init__(self, backend, grads, buckets):
        self.backend, self.grads, self.buckets = backend, grads, buckets
        self._host: dict[int, object] = {}

    def download(self, b: int) -> int:
        start, count, _ = self.buckets[b]
        host = self.backend.to_array(self.grads.narrow(0, start, count))
        self._host[b] = host
        return host.buffer_info()[0]

    def upload(self, b: int) -> None:
        start, count, _ = self.buckets[b]
        be = self.backend
        be.copy(self.grads.narrow(0, start, count), be.from_array(self._host.pop(b), (count,),
                                                                   "f32"))


class PinnedStaging:
    def __init__(self, backend, grads, buckets):
        self.dev = backend.dev
        self.grads, self.buckets = grads, buckets
        self.alloc = grads.storage.alloc
        self.base = grads.offset * grads.itemsize  # bytes into the allocation
        self.size = grads.itemsize
        self._staging = [self.dev.host_pool.alloc(count * self.size)
                         for _, count, _ in buckets]  # held for the model's life

    @staticmethod
    def fits(backend, grads) -> bool:
        dev = getattr(backend, "dev", None)
        alloc = getattr(grads.storage, "alloc", None)
        return (dev is not None and hasattr(dev, "host_pool") and hasattr(dev, "copy")
                and alloc is not None and hasattr(alloc, "block") and grads.is_contiguous
                and bool(getattr(dev, "host_coherent", False)))

    def download(self, b: int) -> int:
        start, count, _ = self.buckets[b]
        st = self._staging[b]
        self.dev.copy(self.alloc.block.buffer, self.alloc.offset + self.base + start * self.size,
                      st.block.buffer, st.offset, count * self.size)
        self.dev.synchronize()
        return st.host_ptr

    def upload(self, b: int) -> None:
        start, count, _ = self.buckets[b]
        st = self._staging[b]
        self.dev.copy(st.block.buffer, st.offset, self.alloc.block.buffer,
                      self.alloc.offset + self.base + start * self.size, count * self.size)


def for_backend(backend, grads, buckets):
    if PinnedStaging.fits(backend, grads):
        return PinnedStaging(backend, grads, buckets)
    return CopyStaging(backend, grads, buckets)
