"""A capture: a stretch of the command stream (a whole training step) recorded once, run as it
is recorded, and replayed later by one vkQueueSubmit of the same command buffers.

Why: recording a dispatch from Python costs ~75-90 us on the H200 (a GPT-2 small step records
~870 of them: ~75 ms of host time, as long as the GPU's own work); a replay costs one submit.

What a capture owns, so that a replay finds everything where it was recorded:
- its command buffers (recorded without ONE_TIME_SUBMIT, each starting with a barrier: a replay
  is ordered after the work submitted before it, and each buffer after the one before);
- every GPU range allocated while it records, temporaries too: a range freed inside the step
  goes to the capture's own free list (`reuse` hands it out again inside the step, so the step
  needs no more memory than op by op), and a range still alive at the end is held. Nothing
  outside the step can be given one of them between replays. `release` gives them all back.

What a replay cannot see: values the host reads back or decides on while the step records
(a read-back marks the capture `why_not`, and it is never replayed), and host values baked
into push constants. The caller keeps everything that changes per step in GPU buffers
(alpha/helios/train_step.py) and keys the capture by what the recording depends on.
"""

from __future__ import annotations

import ctypes
import weakref
from ctypes import addressof, byref

from alpha.helios import vk
from alpha.helios.memory import Allocation

HOST_FACTS = ("host", "bounds")  # write-record keys of ids' host copies and their min/max


class Capture:
    def __init__(self, dev):
        self.dev = dev
        self.cbs: list[tuple[int, int]] = []  # (command buffer, fence), submission order
        self.why_not: str | None = None  # set when something makes a replay wrong
        self._made: dict[int, weakref.ref] = {}  # id(allocation) -> ref, made while recording
        self._freed: list = []  # (pool, block, offset, size): freed inside the step, owned
        self._kept: list = []  # allocations alive when recording ended, held
        self._submit = None
        self.recording = False
        # (key, position, u32 tensor (2,)): while recording, draws of the stream with `key` are
        # recorded relative to `position`, their base read from the tensor at each replay
        self.rng = None

    # ---- recording (Device and Pool call these while `dev.capture is self`) ------------------
    def start(self) -> None:
        dev = self.dev
        if dev.capture is not None:
            raise RuntimeError("a capture is already recording")
        if dev.profiling:
            self.why_not = "ALPHA_HELIOS_PROFILE=1 (timestamps are per recorded batch)"
        dev.submit()  # what came before is not part of the capture
        # no GPU value or fact derived before the step decides what it records (a packing, "all
        # zero"): when it is replayed they may be stale. The host's copies of uploaded ids stay:
        # they only answer range checks (a replay's ids are checked where they are uploaded)
        dev.derived.keep_only(lambda key: key[0] in HOST_FACTS)
        dev.capture = self
        self.recording = True

    def stop(self) -> None:
        dev = self.dev
        dev.submit()  # the last command buffer (and a held-back fill) into the capture
        dev.capture = None
        self.recording = False
        self._kept = [a for a in (r() for r in self._made.values()) if a is not None]
        self._made.clear()
        if not self.cbs:
            self.why_not = self.why_not or "nothing was recorded"

    def track(self, alloc) -> None:
        self._made[id(alloc)] = weakref.ref(alloc)

    def reuse(self, pool, size: int):
        """A range freed earlier in the step, of at least `size` bytes (the rest stays owned).
        Never a staging range: its bytes were stored when recorded, and its copy replays."""
        if pool is not self.dev.device_pool:
            return None
        for i, (p, block, off, n) in enumerate(self._freed):
            if p is pool and n >= size:
                if n == size:
                    del self._freed[i]
                else:
                    self._freed[i] = (p, block, off + size, n - size)
                a = Allocation(pool, block, off, size)
                self.track(a)
                return a
        return None

    def freed(self, alloc) -> bool:
        """Keep `alloc`'s range when it was made inside the step (True), else let it go."""
        ref = self._made.pop(id(alloc), None)
        if ref is None:
            return False
        self._freed.append((alloc.pool, alloc.block, alloc.offset, alloc.size))
        return True

    def submitted(self, cb: int, fence: int) -> None:
        self.cbs.append((cb, fence))

    # ---- replay --------------------------------------------------------------------------
    def replay(self) -> None:
        """Submit the recorded step after what the stream holds (no wait)."""
        dev = self.dev
        fence = self.cbs[-1][1]
        mine = {cb for cb, _ in self.cbs}
        if fence in dev.replays_in_flight or any(cb in mine for cb, _ in dev.in_flight):
            dev.synchronize()  # a command buffer is resubmitted only once it has finished
        if self._submit is None:
            arr = (ctypes.c_void_p * len(self.cbs))(*[cb for cb, _ in self.cbs])
            self._submit = (arr, vk.SubmitInfo(sType=vk.ST_SUBMIT_INFO,
                                               commandBufferCount=len(self.cbs),
                                               pCommandBuffers=addressof(arr)))
        dev.submit()
        # the step writes memory the record does not follow; it writes no uploaded ids
        dev.derived.keep_only(lambda key: key[0] in HOST_FACTS)
        vk.check(dev.f.QueueSubmit(dev.queue, 1, byref(self._submit[1]), fence),
                 "vkQueueSubmit")
        dev.replays_in_flight.append(fence)

    def release(self) -> None:
        """Give the command buffers and the memory back (waits for the GPU first)."""
        dev = self.dev
        if self.recording:
            dev.capture = None
            self.recording = False
        dev.synchronize()
        for cb, fence in self.cbs:
            dev.kept_cbs.discard(cb)
            vk.check(dev.f.ResetCommandBuffer(cb, 0), "vkResetCommandBuffer")
            dev.free_cmds.append((cb, fence))
        self.cbs = []
        self._submit = None
        for pool, block, off, size in self._freed:
            pool.give_back(block, off, size)
        self._freed = []
        self._kept = []
        self._made.clear()
