"""The Vulkan device helios runs on: instance, physical-device choice, features, one compute queue,
memory pools, and the command stream (dispatches recorded into batches, submitted together).

Device choice: ALPHA_VK_DEVICE=<index>|<name substring>, else discrete > integrated > virtual >
cpu (lavapipe). ALPHA_VK_VALIDATE=1 enables the Khronos validation layer (development aid).
No Vulkan loader or device raises BackendUnavailable with one line saying what to install.
ALPHA_HELIOS_PROFILE=1 puts a GPU timestamp after every command; `Device.profile` then sums GPU
time per kernel name (read it with `profile_table()`). While `capture` is set (capture.py), the
batches recorded are kept for replay instead of being reset after their wait.
"""

from __future__ import annotations

import ctypes
import os
import time
from ctypes import addressof, byref

from alpha.core.errors import BackendUnavailable
from alpha.helios import vk
from alpha.helios.derived import WriteRecord
from alpha.helios.memory import Pool

TYPE_RANK = {2: 0, 1: 1, 3: 2, 4: 3, 0: 4}  # discrete first
BATCH_LIMIT = 512  # dispatches per command buffer before it is submitted (without waiting)
# On a GPU a batch is submitted after fewer dispatches, so the GPU starts on the first ops of a
# step while Python is still recording the rest (a submit costs ~7 us; waiting for 512 recorded
# dispatches left the GPU idle for the whole recording of a forward pass).
GPU_BATCH_LIMIT = 64
# ...or as soon as the GPU has run out of work: every FEED_CHECK dispatches the fence of the last
# batch submitted is asked (~1 us). Recording costs ~75 us a dispatch in Python (H200 machine,
# GPT-2 small), so a GPU that catches up with the host (after a read-back, or over a run of small
# kernels) used to wait for 64 dispatches, ~5 ms, every time: ~20 ms of a 120 ms step.
FEED_CHECK = 4
REPLAY_POLL_S = 0.002  # a replayed decode step's fence is polled this long before blocking


def _cstrings(names):
    arr = (ctypes.c_char_p * max(1, len(names)))(*[n.encode() for n in names])
    return arr


class Device:
    def __init__(self):
        gipa, create_instance, enum_version = vk.loader()
        version = ctypes.c_uint32(vk.API_1_2)
        if enum_version is not None:
            enum_version(byref(version))
        self.instance_version = version.value
        api = vk.API_1_3 if version.value >= vk.API_1_3 else vk.API_1_2
        app = vk.ApplicationInfo(sType=vk.ST_APPLICATION_INFO, apiVersion=api)
        self._name = ctypes.c_char_p(b"alpha")
        app.pApplicationName = ctypes.cast(self._name, ctypes.c_void_p)
        layers = ["VK_LAYER_KHRONOS_validation"] if os.environ.get("ALPHA_VK_VALIDATE") == "1" \
            else []
        self._layers = _cstrings(layers)
        info = vk.InstanceCreateInfo(sType=vk.ST_INSTANCE_CREATE_INFO,
                                     pApplicationInfo=addressof(app),
                                     enabledLayerCount=len(layers),
                                     ppEnabledLayerNames=addressof(self._layers))
        inst = ctypes.c_void_p()
        res = create_instance(byref(info), None, byref(inst))
        if res < 0:
            raise BackendUnavailable(f"helios: no Vulkan instance (vkCreateInstance {res}); "
                                     "install a Vulkan driver (mesa-vulkan-drivers for lavapipe)")
        self.instance = inst.value
        self.fi = vk.Funcs(gipa, self.instance, vk.INSTANCE_FUNCS, vk.OPTIONAL_INSTANCE_FUNCS)
        self.physical = self._choose()
        self._query()
        self._create_device()
        self.capture = None  # the Capture recording now (alpha/helios/capture.py), if any
        self._setup_memory()
        self._setup_commands()

    # ---- physical device ---------------------------------------------------------------------
    def list_devices(self) -> list[tuple[int, str, str]]:
        n = ctypes.c_uint32()
        self.fi.EnumeratePhysicalDevices(self.instance, byref(n), None)
        handles = (ctypes.c_void_p * n.value)()
        self.fi.EnumeratePhysicalDevices(self.instance, byref(n), handles)
        out = []
        for h in handles:
            p = vk.PhysicalDeviceProperties()
            self.fi.GetPhysicalDeviceProperties(h, byref(p))
            out.append((h, p.deviceName.decode(), vk.DEVICE_TYPES.get(p.deviceType, "?"),
                        p.deviceType))
        return out

    def _choose(self):
        devs = self.list_devices()
        if not devs:
            raise BackendUnavailable("helios: no Vulkan device (the loader found no driver); "
                                     "install mesa-vulkan-drivers for lavapipe or a GPU driver")
        want = os.environ.get("ALPHA_VK_DEVICE", "").strip()
        if want:
            if want.isdigit():
                if int(want) >= len(devs):
                    raise BackendUnavailable(f"helios: ALPHA_VK_DEVICE={want} but only "
                                             f"{len(devs)} device(s)")
                return devs[int(want)][0]
            for h, name, _, _ in devs:
                if want.lower() in name.lower():
                    return h
            raise BackendUnavailable(f"helios: no Vulkan device named like {want!r} (have: "
                                     + ", ".join(d[1] for d in devs) + ")")
        return sorted(devs, key=lambda d: TYPE_RANK.get(d[3], 9))[0][0]

    def _query(self) -> None:
        fi, pd = self.fi, self.physical
        n = ctypes.c_uint32()
        fi.EnumerateDeviceExtensionProperties(pd, None, byref(n), None)
        exts = (vk.ExtensionProperties * n.value)()
        fi.EnumerateDeviceExtensionProperties(pd, None, byref(n), exts)
        self.extensions = {e.extensionName.decode() for e in exts}
        self.subgroup = vk.SubgroupProperties(sType=vk.ST_SUBGROUP_PROPERTIES)
        self.cm2_props = None
        if "VK_NV_cooperative_matrix2" in self.extensions:
            self.cm2_props = vk.CoopMat2Properties(sType=vk.ST_COOPMAT2_PROPERTIES_NV,
                                                   pNext=addressof(self.subgroup))
        props2 = vk.PhysicalDeviceProperties2(sType=vk.ST_PROPERTIES_2,
                                              pNext=addressof(self.cm2_props or self.subgroup))
        fi.GetPhysicalDeviceProperties2(pd, byref(props2))
        self.props = props2.properties
        self.limits = self.props.limits
        self.name = self.props.deviceName.decode()
        self.device_type = vk.DEVICE_TYPES.get(self.props.deviceType, "other")
        self.api_version = self.props.apiVersion
        self.mem_props = vk.PhysicalDeviceMemoryProperties()
        fi.GetPhysicalDeviceMemoryProperties(pd, byref(self.mem_props))
        # features: query everything, enable what is supported (minus robustness checks)
        self.f11 = vk.Vulkan11Features(sType=vk.ST_VULKAN_1_1_FEATURES)
        self.f12 = vk.Vulkan12Features(sType=vk.ST_VULKAN_1_2_FEATURES,
                                       pNext=addressof(self.f11))
        head = self.f12
        self.f13 = None
        if self.api_version >= vk.API_1_3:
            self.f13 = vk.Vulkan13Features(sType=vk.ST_VULKAN_1_3_FEATURES,
                                           pNext=addressof(self.f12))
            head = self.f13
        self.fcm = None
        if "VK_KHR_cooperative_matrix" in self.extensions:
            self.fcm = vk.CoopMatFeatures(sType=vk.ST_COOPMAT_FEATURES_KHR, pNext=addressof(head))
            head = self.fcm
        self.fbf16 = None
        if "VK_KHR_shader_bfloat16" in self.extensions:
            self.fbf16 = vk.Bfloat16Features(sType=vk.ST_BFLOAT16_FEATURES_KHR,
                                             pNext=addressof(head))
            head = self.fbf16
        self.fcm2 = None
        if "VK_NV_cooperative_matrix2" in self.extensions and self.fcm is not None:
            self.fcm2 = vk.CoopMat2Features(sType=vk.ST_COOPMAT2_FEATURES_NV,
                                            pNext=addressof(head))
            head = self.fcm2
        self.features = vk.PhysicalDeviceFeatures2(sType=vk.ST_FEATURES_2, pNext=addressof(head))
        fi.GetPhysicalDeviceFeatures2(pd, byref(self.features))
        if not self.f12.bufferDeviceAddress:
            raise BackendUnavailable(f"helios: {self.name} lacks bufferDeviceAddress")
        self.coopmat = self._coopmat_properties() if self.fcm and self.fcm.cooperativeMatrix \
            else []
        self.coopmat_flexible = self._coopmat_flexible() if self.fcm2 is not None and \
            self.fcm2.cooperativeMatrixWorkgroupScope and \
            self.fcm2.cooperativeMatrixFlexibleDimensions else []

    def coopmat_types(self) -> set[str]:
        """The 16-bit input types ("bf16", "f16") that the tensor-core matmul can use here: a
        16x16x16 subgroup shape with fp32 accumulation, 32-wide subgroups (what the kernels
        assume), and for bf16 the bfloat16 cooperative-matrix feature."""
        if self.subgroup.subgroupSize != 32:
            return set()
        out = set()
        for p in self.coopmat:
            if (p["M"], p["N"], p["K"], p["B"], p["C"], p["R"], p["scope"]) == \
                    (16, 16, 16, p["A"], "f32", "f32", 3) and p["A"] in ("bf16", "f16"):
                out.add(p["A"])
        if "bf16" in out and not (self.fbf16 is not None
                                  and self.fbf16.shaderBFloat16CooperativeMatrix):
            out.discard("bf16")
        return out

    def coopmat2_ok(self, dtype: str, threads: int, BM: int, BN: int, BK: int) -> bool:
        """Whether the workgroup-scope kernel (kernels/coopmat2.py) can run a BM x BN x BK tile
        of `dtype` inputs with fp32 accumulation on `threads` invocations here: workgroup scope,
        flexible dimensions and tensor addressing enabled, and a listed granularity that
        divides the tile for that many invocations."""
        f = self.fcm2
        if f is None or not (f.cooperativeMatrixWorkgroupScope and
                             f.cooperativeMatrixFlexibleDimensions and
                             f.cooperativeMatrixTensorAddressing):
            return False
        if dtype == "bf16" and not (self.fbf16 is not None
                                    and self.fbf16.shaderBFloat16CooperativeMatrix):
            return False
        if self.cm2_props is not None and \
                threads > self.cm2_props.workgroupScopeMaxWorkgroupSize:
            return False
        return any(p["A"] == p["B"] == dtype and p["C"] == p["R"] == "f32" and
                   p["scope"] == 2 and p["invocations"] == threads and BM % p["M"] == 0 and
                   BN % p["N"] == 0 and BK % p["K"] == 0 for p in self.coopmat_flexible)

    def _coopmat_flexible(self) -> list[dict]:
        fn = self.fi.GetPhysicalDeviceCooperativeMatrixFlexibleDimensionsPropertiesNV
        if fn is None:
            return []
        n = ctypes.c_uint32()
        fn(self.physical, byref(n), None)
        arr = (vk.CoopMatFlexibleProperties * n.value)()
        for p in arr:
            p.sType = vk.ST_COOPMAT_FLEXIBLE_NV
        fn(self.physical, byref(n), arr)
        ct = vk.COMPONENT_TYPES
        return [{"M": p.MGranularity, "N": p.NGranularity, "K": p.KGranularity,
                 "A": ct.get(p.AType, p.AType), "B": ct.get(p.BType, p.BType),
                 "C": ct.get(p.CType, p.CType), "R": ct.get(p.ResultType, p.ResultType),
                 "scope": p.scope, "invocations": p.workgroupInvocations} for p in arr]

    def _coopmat_properties(self) -> list[dict]:
        fn = self.fi.GetPhysicalDeviceCooperativeMatrixPropertiesKHR
        if fn is None:
            return []
        n = ctypes.c_uint32()
        fn(self.physical, byref(n), None)
        arr = (vk.CoopMatProperties * n.value)()
        for p in arr:
            p.sType = vk.ST_COOPMAT_PROPERTIES_KHR
        fn(self.physical, byref(n), arr)
        ct = vk.COMPONENT_TYPES
        return [{"M": p.MSize, "N": p.NSize, "K": p.KSize, "A": ct.get(p.AType, p.AType),
                 "B": ct.get(p.BType, p.BType), "C": ct.get(p.CType, p.CType),
                 "R": ct.get(p.ResultType, p.ResultType), "scope": p.scope} for p in arr]

    def _create_device(self) -> None:
        fi = self.fi
        n = ctypes.c_uint32()
        fi.GetPhysicalDeviceQueueFamilyProperties(self.physical, byref(n), None)
        fams = (vk.QueueFamilyProperties * n.value)()
        fi.GetPhysicalDeviceQueueFamilyProperties(self.physical, byref(n), fams)
        compute = [i for i, q in enumerate(fams) if q.queueFlags & vk.QUEUE_COMPUTE]
        if not compute:
            raise BackendUnavailable(f"helios: {self.name} has no compute queue")
        only = [i for i in compute if not fams[i].queueFlags & 0x1]  # compute without graphics
        self.queue_family = (only or compute)[0]
        self.timestamp_bits = fams[self.queue_family].timestampValidBits
        self._prio = (ctypes.c_float * 1)(1.0)
        qinfo = vk.DeviceQueueCreateInfo(sType=vk.ST_DEVICE_QUEUE_CREATE_INFO,
                                         queueFamilyIndex=self.queue_family, queueCount=1,
                                         pQueuePriorities=addressof(self._prio))
        self.features.robustBufferAccess = 0
        if self.f13 is not None:
            self.f13.robustImageAccess = 0
        if self.fcm is not None:
            self.fcm.cooperativeMatrixRobustBufferAccess = 0
        # every extension whose feature struct is chained is enabled (a chained struct of a
        # disabled extension is invalid usage)
        exts = (["VK_KHR_cooperative_matrix"] if self.fcm is not None else []) + \
            (["VK_KHR_shader_bfloat16"] if self.fbf16 is not None else []) + \
            (["VK_NV_cooperative_matrix2"] if self.fcm2 is not None else [])
        self._exts = _cstrings(exts)
        dinfo = vk.DeviceCreateInfo(sType=vk.ST_DEVICE_CREATE_INFO,
                                    pNext=addressof(self.features), queueCreateInfoCount=1,
                                    pQueueCreateInfos=addressof(qinfo),
                                    enabledExtensionCount=len(exts),
                                    ppEnabledExtensionNames=addressof(self._exts))
        dev = ctypes.c_void_p()
        vk.check(fi.CreateDevice(self.physical, byref(dinfo), None, byref(dev)), "vkCreateDevice")
        self.device = dev.value
        self.f = vk.Funcs(fi.GetDeviceProcAddr, self.device, vk.DEVICE_FUNCS)
        q = ctypes.c_void_p()
        self.f.GetDeviceQueue(self.device, self.queue_family, 0, byref(q))
        self.queue = q.value

    # ---- memory ------------------------------------------------------------------------------
    def _find_type(self, want: int, avoid: int = 0) -> int | None:
        mp = self.mem_props
        for i in range(mp.memoryTypeCount):
            flags = mp.memoryTypes[i].propertyFlags
            if flags & want == want and not flags & avoid:
                return i
        return None

    def _setup_memory(self) -> None:
        DL, HV, HC, CA = vk.MEM_DEVICE_LOCAL, vk.MEM_HOST_VISIBLE, vk.MEM_HOST_COHERENT, \
            vk.MEM_HOST_CACHED
        t = self._find_type(DL | HV | HC)
        self.direct_upload = t is not None
        if t is None:
            t = self._find_type(DL)
        if t is None:
            t = self._find_type(HV | HC)
        self.device_pool = Pool(self, t, self.direct_upload)
        rt = None
        for want in (HV | HC | CA, HV | CA, HV | HC):
            rt = self._find_type(want)
            if rt is not None:
                break
        self.host_coherent = bool(self.mem_props.memoryTypes[rt].propertyFlags & HC)
        self.host_pool = Pool(self, rt, True, block_size=64 << 20)
        self.retired_blocks = []

    def retire_block(self, block) -> None:
        self.retired_blocks.append(block)

    # ---- command stream ------------------------------------------------------------------------
    def _setup_commands(self) -> None:
        f = self.f
        pinfo = vk.CommandPoolCreateInfo(sType=vk.ST_COMMAND_POOL_CREATE_INFO,
                                         flags=vk.POOL_RESET_COMMAND_BUFFER,
                                         queueFamilyIndex=self.queue_family)
        pool = vk.NH()
        vk.check(f.CreateCommandPool(self.device, byref(pinfo), None, byref(pool)),
                 "vkCreateCommandPool")
        self.cmd_pool = pool.value
        self.free_cmds: list[tuple[int, int]] = []  # (command buffer, fence) ready for reuse
        self.in_flight: list[tuple[int, int]] = []
        self.replays_in_flight: list[int] = []  # fences of recorded command buffers (replay.py)
        self._submit_infos: dict[int, tuple] = {}  # their VkSubmitInfo, by command buffer
        self.cmd = None
        self.count = 0
        self.pending_host = []  # staging allocations to release after the next full wait
        self.last_pipeline = None
        self.barrier = vk.MemoryBarrier(
            sType=vk.ST_MEMORY_BARRIER,
            srcAccessMask=vk.ACCESS_SHADER_WRITE | vk.ACCESS_TRANSFER_WRITE,
            dstAccessMask=vk.ACCESS_SHADER_READ | vk.ACCESS_SHADER_WRITE
            | vk.ACCESS_TRANSFER_READ | vk.ACCESS_TRANSFER_WRITE)
        self._barrier_addr = addressof(self.barrier)
        self._stages = vk.STAGE_COMPUTE_SHADER | vk.STAGE_TRANSFER
        self._begin_info = vk.CommandBufferBeginInfo(sType=vk.ST_COMMAND_BUFFER_BEGIN_INFO,
                                                     flags=vk.CMD_ONE_TIME_SUBMIT)
        self._capture_begin = vk.CommandBufferBeginInfo(sType=vk.ST_COMMAND_BUFFER_BEGIN_INFO,
                                                        flags=0)  # submitted again
        self.kept_cbs: set[int] = set()  # command buffers a capture owns (never reset here)
        self._fence_ptr = vk.NH()
        self.dispatches = 0  # total dispatches recorded (for tests and stats)
        self.derived = WriteRecord()  # values derived from allocations, until they are written
        gpu = self.device_type in ("discrete", "integrated")
        self.batch_limit = GPU_BATCH_LIMIT if gpu else BATCH_LIMIT
        self.feed_check = FEED_CHECK if gpu else 0  # 0: batches of batch_limit only
        self._deferred = None  # (allocation, record) of a zero fill held back (`defer`)
        self.profiling = os.environ.get("ALPHA_HELIOS_PROFILE") == "1"
        self.profile: dict[str, list] = {}  # kernel name -> [count, GPU seconds]
        self._pools: dict[int, tuple[int, list]] = {}  # command buffer -> (query pool, names)

    def _new_cmd(self) -> tuple[int, int]:
        if self.free_cmds:
            return self.free_cmds.pop()
        f = self.f
        ainfo = vk.CommandBufferAllocateInfo(sType=vk.ST_COMMAND_BUFFER_ALLOCATE_INFO,
                                             commandPool=self.cmd_pool, level=0,
                                             commandBufferCount=1)
        cb = ctypes.c_void_p()
        vk.check(f.AllocateCommandBuffers(self.device, byref(ainfo), byref(cb)),
                 "vkAllocateCommandBuffers")
        finfo = vk.FenceCreateInfo(sType=vk.ST_FENCE_CREATE_INFO)
        fence = vk.NH()
        vk.check(f.CreateFence(self.device, byref(finfo), None, byref(fence)), "vkCreateFence")
        return cb.value, fence.value

    def begin(self) -> int:
        """The command buffer being recorded (started on demand)."""
        if self.cmd is None:
            self.cmd = self._new_cmd()
            captured = self.capture is not None
            vk.check(self.f.BeginCommandBuffer(
                self.cmd[0], byref(self._capture_begin if captured else self._begin_info)),
                "vkBeginCommandBuffer")
            self.count = 0
            self.last_pipeline = None
            # every batch starts with a barrier: the compute -> host one that ends the batch
            # before it orders no later dispatch, so without it a batch's first dispatch could
            # overlap the previous batch's last; a replayed capture also runs after whatever
            # was submitted before it
            self._barrier(self.cmd[0])
            if self.profiling:
                self._profile_begin(self.cmd[0])
        return self.cmd[0]

    def _profile_begin(self, cb: int) -> None:
        if cb not in self._pools:
            qinfo = vk.QueryPoolCreateInfo(sType=vk.ST_QUERY_POOL_CREATE_INFO,
                                           queryType=vk.QUERY_TIMESTAMP,
                                           queryCount=BATCH_LIMIT + 64)
            qp = vk.NH()
            vk.check(self.f.CreateQueryPool(self.device, byref(qinfo), None, byref(qp)),
                     "vkCreateQueryPool")
            self._pools[cb] = (qp.value, [])
        pool, names = self._pools[cb]
        names.clear()
        self.f.CmdResetQueryPool(cb, pool, 0, BATCH_LIMIT + 64)
        self.f.CmdWriteTimestamp(cb, vk.STAGE_BOTTOM, pool, 0)

    def _profile_mark(self, cb: int, name: str) -> None:
        pool, names = self._pools[cb]
        if len(names) < BATCH_LIMIT + 62:
            names.append(name)
            self.f.CmdWriteTimestamp(cb, vk.STAGE_BOTTOM, pool, len(names))

    def _profile_collect(self, cb: int) -> None:
        pool, names = self._pools[cb]
        if not names:
            return
        data = (ctypes.c_uint64 * (len(names) + 1))()
        vk.check(self.f.GetQueryPoolResults(self.device, pool, 0, len(names) + 1,
                                            ctypes.sizeof(data), data, 8,
                                            vk.QUERY_RESULT_64_WAIT), "vkGetQueryPoolResults")
        period = self.limits.timestampPeriod * 1e-9
        for i, name in enumerate(names):
            entry = self.profile.setdefault(name, [0, 0.0])
            entry[0] += 1
            entry[1] += (data[i + 1] - data[i]) * period
        names.clear()

    def profile_table(self) -> str:
        total = sum(v[1] for v in self.profile.values()) or 1.0
        lines = [f"{'kernel':<34} {'calls':>7} {'GPU ms':>10} {'share':>6}"]
        for name, (n, sec) in sorted(self.profile.items(), key=lambda kv: -kv[1][1]):
            lines.append(f"{name:<34} {n:>7} {sec * 1e3:>10.3f} {100 * sec / total:>5.1f}%")
        return "\n".join(lines)

    def _barrier(self, cb: int) -> None:
        self.f.CmdPipelineBarrier(cb, self._stages, self._stages, 0, 1, self._barrier_addr,
                                  0, None, 0, None)

    def defer(self, alloc, record) -> None:
        """A fill of all of `alloc` that `record()` records, held back until the next command:
        dropped when that command overwrites all of alloc (a fresh gradient written, not added
        into: the logits' is 3.3 GB in GPT-2 small), recorded before it otherwise."""
        self._flush_deferred()
        self.derived.wrote([alloc])
        self._deferred = (alloc, record)

    def _flush_deferred(self, overwrites=()) -> None:
        d = self._deferred
        if d is not None:
            self._deferred = None
            if all(a is not d[0] for a in overwrites):
                d[1]()

    def dispatch(self, program, push: bytes, groups, *, writes=None, overwrites=()) -> None:
        """Record a dispatch that writes the allocations `writes` (None: unknown), every byte
        of those in `overwrites`."""
        self._flush_deferred(overwrites)
        cb = self.begin()
        f = self.f
        if self.count:
            self._barrier(cb)
        if self.last_pipeline != program.pipeline:
            f.CmdBindPipeline(cb, vk.BIND_POINT_COMPUTE, program.pipeline)
            self.last_pipeline = program.pipeline
        if push:
            f.CmdPushConstants(cb, program.layout, vk.SHADER_STAGE_COMPUTE, 0, len(push), push)
        f.CmdDispatch(cb, groups[0], groups[1], groups[2])
        if self.profiling:
            self._profile_mark(cb, program.name)
        self.count += 1
        self.dispatches += 1
        self.derived.wrote(writes)
        if self.count >= self.batch_limit or (self.feed_check
                                               and self.count % self.feed_check == 0
                                               and self._gpu_idle()):
            self.submit()

    def copy(self, src_buffer: int, src_off: int, dst_buffer: int, dst_off: int,
             size: int, *, writes=None) -> None:
        self._flush_deferred()
        cb = self.begin()
        if self.count:
            self._barrier(cb)
        region = vk.BufferCopy(src_off, dst_off, size)
        self.f.CmdCopyBuffer(cb, src_buffer, dst_buffer, 1, byref(region))
        if self.profiling:
            self._profile_mark(cb, "vkCmdCopyBuffer")
        self.count += 1
        self.derived.wrote(writes)

    def fill_zero(self, buffer: int, offset: int, size: int, *, writes=None) -> None:
        self._flush_deferred()
        cb = self.begin()
        if self.count:
            self._barrier(cb)
        self.f.CmdFillBuffer(cb, buffer, offset, size, 0)
        self.count += 1
        self.derived.wrote(writes)

    def submit(self) -> None:
        """Submit the recorded batch without waiting."""
        self._flush_deferred()
        if self.cmd is None:
            return
        cb, fence = self.cmd
        self.cmd = None
        f = self.f
        # make shader/transfer writes visible to the host reads that follow a wait
        hb = vk.MemoryBarrier(sType=vk.ST_MEMORY_BARRIER,
                              srcAccessMask=vk.ACCESS_SHADER_WRITE | vk.ACCESS_TRANSFER_WRITE,
                              dstAccessMask=vk.ACCESS_HOST_READ)
        f.CmdPipelineBarrier(cb, self._stages, vk.STAGE_HOST, 0, 1, byref(hb), 0, None, 0, None)
        vk.check(f.EndCommandBuffer(cb), "vkEndCommandBuffer")
        cbs = (ctypes.c_void_p * 1)(cb)
        sinfo = vk.SubmitInfo(sType=vk.ST_SUBMIT_INFO, commandBufferCount=1,
                              pCommandBuffers=addressof(cbs))
        vk.check(f.QueueSubmit(self.queue, 1, byref(sinfo), fence), "vkQueueSubmit")
        self.in_flight.append((cb, fence))
        if self.capture is not None:
            self.capture.submitted(cb, fence)
            self.kept_cbs.add(cb)

    def submit_recorded(self, cb: int, fence: int) -> None:
        """Submit a command buffer recorded once and replayed (alpha/helios/replay.py) after
        what the stream has recorded so far; `synchronize` waits for it too, and leaves it
        recorded (only its fence is reset)."""
        self.submit()
        info = self._submit_infos.get(cb)
        if info is None:  # made once per command buffer: a token's host work stays small
            cbs = (ctypes.c_void_p * 1)(cb)
            info = self._submit_infos[cb] = (cbs, vk.SubmitInfo(
                sType=vk.ST_SUBMIT_INFO, commandBufferCount=1, pCommandBuffers=addressof(cbs)))
        vk.check(self.f.QueueSubmit(self.queue, 1, byref(info[1]), fence), "vkQueueSubmit")
        self.replays_in_flight.append(fence)

    def _wait(self, fence: int, poll: float = 0.0) -> None:
        """Wait for `fence` and reset it. With `poll` seconds, ask its status in a busy loop
        that long first: a blocking wait wakes ~25 us late, a quarter of a replayed decode
        step (vulkan-ctypes.md: submit + wait 44 us, polling 18 us)."""
        fp = vk.NH(fence)
        if poll:
            status, device = self.f.GetFenceStatus, self.device
            end = time.perf_counter() + poll
            while status(device, fence) == 1 and time.perf_counter() < end:  # VK_NOT_READY
                pass
        while True:
            res = self.f.WaitForFences(self.device, 1, byref(fp), 1, 10_000_000_000)
            if res != 2:  # VK_TIMEOUT: keep waiting
                break
        vk.check(res, "vkWaitForFences")
        vk.check(self.f.ResetFences(self.device, 1, byref(fp)), "vkResetFences")

    def synchronize(self) -> None:
        """Submit what is recorded and wait for everything in flight."""
        self.submit()
        f = self.f
        for fence in self.replays_in_flight:
            self._wait(fence, REPLAY_POLL_S)
        self.replays_in_flight.clear()
        for cb, fence in self.in_flight:
            self._wait(fence)
            if self.profiling:
                self._profile_collect(cb)
            if cb in self.kept_cbs:
                continue  # a capture's, replayed later
            vk.check(f.ResetCommandBuffer(cb, 0), "vkResetCommandBuffer")
            self.free_cmds.append((cb, fence))
        self.in_flight.clear()
        self.pending_host.clear()
        for b in self.retired_blocks:
            b.destroy()
        self.retired_blocks.clear()

    def _gpu_idle(self) -> bool:
        """Whether the GPU has finished every batch submitted (replays count as work)."""
        if self.replays_in_flight:
            return False
        if not self.in_flight:
            return True
        return self.f.GetFenceStatus(self.device, self.in_flight[-1][1]) == 0  # VK_SUCCESS

    @property
    def busy(self) -> bool:
        return self.cmd is not None or bool(self.in_flight) or bool(self.replays_in_flight) \
            or self._deferred is not None

    # ---- timestamps ----------------------------------------------------------------------------
    def gpu_seconds(self, record, repeat: int = 1) -> float:
        """Run `record()` (which records dispatches) `repeat` times between two timestamps and
        return the GPU seconds per repetition."""
        f = self.f
        qinfo = vk.QueryPoolCreateInfo(sType=vk.ST_QUERY_POOL_CREATE_INFO,
                                       queryType=vk.QUERY_TIMESTAMP, queryCount=2)
        qp = vk.NH()
        vk.check(f.CreateQueryPool(self.device, byref(qinfo), None, byref(qp)),
                 "vkCreateQueryPool")
        self.synchronize()
        cb = self.begin()
        f.CmdResetQueryPool(cb, qp.value, 0, 2)
        f.CmdWriteTimestamp(cb, vk.STAGE_TOP, qp.value, 0)
        for _ in range(repeat):
            record()
        cb = self.begin()
        self._barrier(cb)
        f.CmdWriteTimestamp(cb, vk.STAGE_BOTTOM, qp.value, 1)
        self.synchronize()
        data = (ctypes.c_uint64 * 2)()
        vk.check(f.GetQueryPoolResults(self.device, qp.value, 0, 2, 16, data, 8,
                                       vk.QUERY_RESULT_64_WAIT), "vkGetQueryPoolResults")
        f.DestroyQueryPool(self.device, qp.value, None)
        return (data[1] - data[0]) * self.limits.timestampPeriod * 1e-9 / repeat
