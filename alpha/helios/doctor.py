"""`python -m alpha doctor`'s GPU section: what helios found (device, limits, features)."""

from __future__ import annotations

from alpha.core.errors import BackendUnavailable


def _version(v: int) -> str:
    return f"{v >> 22}.{(v >> 12) & 0x3FF}.{v & 0xFFF}"


def report() -> None:
    try:
        from alpha.helios.device import Device
        dev = Device()
    except BackendUnavailable as e:
        msg = str(e).removeprefix("helios: ")
        print(f"helios: no Vulkan device ({msg})")
        return
    except Exception as e:  # a broken driver must not break doctor
        print(f"helios: no Vulkan device ({type(e).__name__}: {e})")
        return
    lim = dev.limits
    print(f"gpu         {dev.name} ({dev.device_type}), Vulkan {_version(dev.api_version)}")
    for i, (_, name, kind, _) in enumerate(dev.list_devices()):
        print(f"  device {i}  {name} ({kind})")
    print(f"  queue     family {dev.queue_family}, timestamps {dev.timestamp_bits} bits, "
          f"period {lim.timestampPeriod:g} ns")
    print(f"  limits    shared {lim.maxComputeSharedMemorySize // 1024} KiB, "
          f"invocations {lim.maxComputeWorkGroupInvocations}, push constants "
          f"{lim.maxPushConstantsSize} B, storage range {lim.maxStorageBufferRange >> 20} MiB")
    ops = dev.subgroup.supportedOperations
    names = ["basic", "vote", "arithmetic", "ballot", "shuffle", "shuffle_relative",
             "clustered", "quad"]
    print(f"  subgroup  size {dev.subgroup.subgroupSize}, ops "
          + " ".join(n for i, n in enumerate(names) if ops >> i & 1))
    f, f11, f12 = dev.features, dev.f11, dev.f12
    feats = {"fp16": f12.shaderFloat16, "fp64": f.shaderFloat64, "int64": f.shaderInt64,
             "16bit-storage": f11.storageBuffer16BitAccess,
             "buffer-device-address": f12.bufferDeviceAddress,
             "timeline-semaphores": f12.timelineSemaphore,
             "vulkan-memory-model": f12.vulkanMemoryModel}
    print("  features  " + " ".join(k for k, v in feats.items() if v))
    heaps = dev.mem_props
    sizes = ", ".join(f"{heaps.memoryHeaps[i].size / 2**30:.1f} GiB"
                      for i in range(heaps.memoryHeapCount))
    print(f"  memory    heaps {sizes}; direct uploads {'yes' if dev.direct_upload else 'no'}")
    if dev.coopmat:
        shapes = sorted({f"{p['M']}x{p['N']}x{p['K']} {p['A']}->{p['R']}" for p in dev.coopmat})
        print(f"  coopmat   {len(shapes)} shapes: " + ", ".join(shapes))
        flex = sorted({f"{p['M']}x{p['N']}x{p['K']} {p['A']}->{p['R']} x{p['invocations']}"
                       for p in dev.coopmat_flexible if p["scope"] == 2})
        if flex:
            print("  coopmat2  workgroup scope, granularity: " + ", ".join(flex))
        if dev.fcm2 is not None:
            f2 = dev.fcm2
            names = ("WorkgroupScope", "FlexibleDimensions", "Reductions", "Conversions",
                     "PerElementOperations", "TensorAddressing", "BlockLoads")
            on = [n for n in names if getattr(f2, "cooperativeMatrix" + n)]
            p2 = dev.cm2_props
            print("  coopmat2  features " + (" ".join(on) or "none") +
                  (f"; max workgroup {p2.workgroupScopeMaxWorkgroupSize}, max dimension "
                   f"{p2.flexibleDimensionsMaxDimension}, reserved shared "
                   f"{p2.workgroupScopeReservedSharedMemory} B" if p2 is not None else ""))
        usable = sorted(dev.coopmat_types())
        print("  tensor-core matmul: " + (", ".join(usable) if usable else "none usable"))
    else:
        print("  coopmat   none")
