"""Which GPU a rank takes: the local rank's device among the best kind the machine has.

helios picks its device from ALPHA_VK_DEVICE (an index in Vulkan's enumeration order). A rank
sets it, when the user has not, to the (local rank mod count)-th device of the best type present
(discrete GPUs before integrated ones before lavapipe), so on a 4-GPU host ranks 0..3 take GPUs
0..3, and a software device listed after them is never chosen while a GPU is there. Counting
needs a bare Vulkan instance, made and destroyed here before the backend makes its own.
"""

from __future__ import annotations

import ctypes
import os
from ctypes import addressof, byref

TYPE_RANK = {2: 0, 1: 1, 3: 2, 4: 3, 0: 4}  # VkPhysicalDeviceType: discrete first (as helios)


def best_devices() -> list[int]:
    """Enumeration indices of the Vulkan devices of the best type present ([] when none)."""
    from alpha.helios import vk

    gipa, create, _ = vk.loader()
    app = vk.ApplicationInfo(sType=vk.ST_APPLICATION_INFO, apiVersion=vk.API_1_2)
    info = vk.InstanceCreateInfo(sType=vk.ST_INSTANCE_CREATE_INFO,
                                 pApplicationInfo=addressof(app))
    inst = ctypes.c_void_p()
    if create(byref(info), None, byref(inst)) < 0:
        return []
    fn = ctypes.CFUNCTYPE
    enum = fn(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)(
        gipa(inst, b"vkEnumeratePhysicalDevices"))
    props = fn(None, ctypes.c_void_p, ctypes.c_void_p)(gipa(inst, b"vkGetPhysicalDeviceProperties"))
    destroy = fn(None, ctypes.c_void_p, ctypes.c_void_p)(gipa(inst, b"vkDestroyInstance"))
    try:
        n = ctypes.c_uint32()
        enum(inst, byref(n), None)
        handles = (ctypes.c_void_p * n.value)()
        enum(inst, byref(n), handles)
        kinds = []
        for h in handles:
            p = vk.PhysicalDeviceProperties()
            props(h, byref(p))
            kinds.append(TYPE_RANK.get(p.deviceType, 9))
    finally:
        destroy(inst, None)
    if not kinds:
        return []
    best = min(kinds)
    return [i for i, k in enumerate(kinds) if k == best]


def choose_device(local_rank: int) -> str | None:
    """Set ALPHA_VK_DEVICE for this rank (unless the user did); the value set, or None."""
    if os.environ.get("ALPHA_VK_DEVICE", "").strip():
        return None
    try:
        devices = best_devices()
    except Exception:  # noqa: BLE001 - no Vulkan here: helios will say so when it starts
        return None
    if not devices:
        return None
    value = str(devices[local_rank % len(devices)])
    os.environ["ALPHA_VK_DEVICE"] = value
    return value
