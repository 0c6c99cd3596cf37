"""GPU memory: big VkDeviceMemory blocks, each with one VkBuffer over it, carved by a first-fit
free-list sub-allocator. A tensor's storage is an `Allocation`: (block, offset, size) with its
64-bit device address, which is how kernels reach it (buffer device address in push constants).

Freed GPU ranges are reused at once: every command runs in queue order behind a full barrier, so
a later writer cannot overtake an earlier reader. Host writes are different — `HeliosStorage`
only writes through a mapping when no work is pending (see backend.upload). While a step is
being recorded for replay (`Device.capture`, alpha/helios/capture.py), what it allocates is the
capture's: a range it frees goes to the capture's own free list, never back to a block.
"""

from __future__ import annotations

import bisect
import ctypes
from ctypes import byref

from alpha.core.backend import MemoryMeter
from alpha.helios import vk

ALIGN = 256
BLOCK_SIZE = 256 << 20
# Emptied dedicated blocks (tensors above BLOCK_SIZE: logits, their gradients, attention scores)
# kept for the next request of a similar size: a training step frees and asks for the same ones
# every time, and vkAllocateMemory + vkFreeMemory of gigabytes cost ~145 ms a step on an H200.
# GPT-2 small at batch 16 has about ten alive at once in the attention backward: with 4 spares
# two blocks were still made and destroyed every step (131 ms of a 323 ms step, cProfile on an
# H200). When the device runs out of memory the spares are given back first (Pool.alloc).
SPARE_BLOCKS = 16


class Block:
    def __init__(self, dev, size: int, type_index: int, host_visible: bool):
        self.dev = dev
        f = dev.f
        self.size = size
        info = vk.BufferCreateInfo(sType=vk.ST_BUFFER_CREATE_INFO, size=size,
                                   usage=vk.BUF_TRANSFER_SRC | vk.BUF_TRANSFER_DST
                                   | vk.BUF_STORAGE | vk.BUF_DEVICE_ADDRESS)
        buf = vk.NH()
        vk.check(f.CreateBuffer(dev.device, byref(info), None, byref(buf)), "vkCreateBuffer")
        self.buffer = buf.value
        req = vk.MemoryRequirements()
        f.GetBufferMemoryRequirements(dev.device, self.buffer, byref(req))
        flags = vk.MemoryAllocateFlagsInfo(sType=vk.ST_MEMORY_ALLOCATE_FLAGS_INFO,
                                           flags=vk.MEMORY_ALLOCATE_DEVICE_ADDRESS)
        ainfo = vk.MemoryAllocateInfo(sType=vk.ST_MEMORY_ALLOCATE_INFO,
                                      pNext=ctypes.addressof(flags),
                                      allocationSize=req.size, memoryTypeIndex=type_index)
        mem = vk.NH()
        res = f.AllocateMemory(dev.device, byref(ainfo), None, byref(mem))
        if res < 0:
            f.DestroyBuffer(dev.device, self.buffer, None)
            vk.check(res, f"vkAllocateMemory({size >> 20} MiB)")
        self.memory = mem.value
        vk.check(f.BindBufferMemory(dev.device, self.buffer, self.memory, 0), "vkBindBufferMemory")
        ainfo2 = vk.BufferDeviceAddressInfo(sType=vk.ST_BUFFER_DEVICE_ADDRESS_INFO,
                                            buffer=self.buffer)
        self.address = f.GetBufferDeviceAddress(dev.device, byref(ainfo2))
        self.mapped = 0
        if host_visible:
            p = ctypes.c_void_p()
            vk.check(f.MapMemory(dev.device, self.memory, 0, vk.WHOLE_SIZE, 0, byref(p)),
                     "vkMapMemory")
            self.mapped = p.value
        self.free_list = [(0, size)]  # sorted (offset, size)
        self.used = 0

    def alloc(self, size: int) -> int | None:
        for i, (off, n) in enumerate(self.free_list):
            if n >= size:
                if n == size:
                    del self.free_list[i]
                else:
                    self.free_list[i] = (off + size, n - size)
                self.used += size
                return off
        return None

    def release(self, off: int, size: int) -> None:
        self.used -= size
        fl = self.free_list
        i = bisect.bisect_left(fl, (off, 0))
        if i < len(fl) and off + size == fl[i][0]:  # merge with the next range
            size += fl[i][1]
            del fl[i]
        if i > 0 and fl[i - 1][0] + fl[i - 1][1] == off:  # merge with the previous one
            off, size = fl[i - 1][0], fl[i - 1][1] + size
            del fl[i - 1]
            i -= 1
        fl.insert(i, (off, size))

    def destroy(self) -> None:
        f = self.dev.f
        if self.mapped:
            f.UnmapMemory(self.dev.device, self.memory)
        f.DestroyBuffer(self.dev.device, self.buffer, None)
        f.FreeMemory(self.dev.device, self.memory, None)


class Allocation:
    __slots__ = ("pool", "block", "offset", "size", "address", "__weakref__")

    def __init__(self, pool, block: Block, offset: int, size: int):
        self.pool, self.block, self.offset, self.size = pool, block, offset, size
        self.address = block.address + offset

    @property
    def host_ptr(self) -> int:
        return self.block.mapped + self.offset if self.block.mapped else 0

    def __del__(self):
        try:
            self.pool.release(self)
        except Exception:  # interpreter shutdown
            pass


class Pool:
    """Blocks of one memory type; requests above BLOCK_SIZE get a block of their own."""

    def __init__(self, dev, type_index: int, host_visible: bool, block_size: int = BLOCK_SIZE):
        self.dev, self.type_index, self.host_visible = dev, type_index, host_visible
        self.block_size = block_size
        self.blocks: list[Block] = []
        self.spare: list[Block] = []  # emptied dedicated blocks, oldest first
        self.meter = MemoryMeter()  # bytes of live allocations (Backend.memory_stats)

    def alloc(self, nbytes: int) -> Allocation:
        size = max(ALIGN, (nbytes + ALIGN - 1) // ALIGN * ALIGN)
        capture = self.dev.capture  # a step being recorded owns what it allocates (capture.py)
        if capture is not None:
            a = capture.reuse(self, size)
            if a is None:
                a = self._alloc(size)
                capture.track(a)
            return a
        return self._alloc(size)

    def _alloc(self, size: int) -> Allocation:
        self.meter.add(size)
        if size > self.block_size:
            fits = [(b.size, i) for i, b in enumerate(self.spare) if size <= b.size <= 2 * size]
            if fits:  # the smallest that fits; reused in queue order, like any freed range
                b = self.spare.pop(min(fits)[1])
                self.blocks.append(b)
                return Allocation(self, b, b.alloc(size), size)
        for b in self.blocks:
            # full blocks (every dedicated one) are skipped without walking their free list:
            # GPT-2 small has ~40 blocks, and a step allocates ~400 times (7 ms of host time)
            if b.size - b.used >= size:
                off = b.alloc(size)
                if off is not None:
                    return Allocation(self, b, off, size)
        b = self._new_block(max(size, self.block_size))
        self.blocks.append(b)
        return Allocation(self, b, b.alloc(size), size)

    def _new_block(self, size: int) -> Block:
        """A new block; out of device memory, the spares are destroyed (once the GPU is done
        with them) and it is asked for once more."""
        try:
            return Block(self.dev, size, self.type_index, self.host_visible)
        except vk.VulkanError:
            if not self.spare:
                raise
        while self.spare:
            self.dev.retire_block(self.spare.pop())
        self.dev.synchronize()  # destroys the retired blocks
        return Block(self.dev, size, self.type_index, self.host_visible)

    def release(self, a: Allocation) -> None:
        capture = self.dev.capture
        if capture is not None and capture.freed(a):
            return  # made inside a step being recorded: the capture keeps the range
        self.give_back(a.block, a.offset, a.size)

    def give_back(self, block: Block, offset: int, size: int) -> None:
        """A range back to its block's free list."""
        self.meter.sub(size)
        block.release(offset, size)
        if block.used == 0 and block.size > self.block_size:
            self.blocks.remove(block)  # a dedicated block: keep a few, give the rest back
            self.spare.append(block)
            if len(self.spare) > SPARE_BLOCKS:
                self.dev.retire_block(self.spare.pop(0))  # destroyed once the GPU is idle

    def stats(self) -> tuple[int, int]:
        return sum(b.used for b in self.blocks), sum(b.size for b in self.blocks + self.spare)
