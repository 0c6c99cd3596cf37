"""Compute pipelines: SPIR-V words -> shader module -> pipeline, behind one shared pipeline layout
(no descriptor sets: buffers are addresses in push constants). Programs are cached in memory by
the kernel's key, and the driver's VkPipelineCache is kept on disk under
~/.cache/alpha/helios-<pipelineCacheUUID>.bin (ALPHA_CACHE_DIR overrides the directory).
"""

from __future__ import annotations

import atexit
import ctypes
import os
from array import array
from ctypes import addressof, byref

from alpha.helios import vk


class Program:
    __slots__ = ("name", "pipeline", "layout", "push_format", "push_size", "local", "words")

    def __init__(self, name, pipeline, layout, push_format, push_size, local, words):
        self.name, self.pipeline, self.layout = name, pipeline, layout
        self.push_format, self.push_size, self.local = push_format, push_size, local
        self.words = words


class Pipelines:
    def __init__(self, dev):
        self.dev = dev
        f = dev.f
        self.push_limit = min(256, dev.limits.maxPushConstantsSize)
        self._range = vk.PushConstantRange(stageFlags=vk.SHADER_STAGE_COMPUTE, offset=0,
                                           size=self.push_limit)
        linfo = vk.PipelineLayoutCreateInfo(sType=vk.ST_PIPELINE_LAYOUT_CREATE_INFO,
                                            pushConstantRangeCount=1,
                                            pPushConstantRanges=addressof(self._range))
        layout = vk.NH()
        vk.check(f.CreatePipelineLayout(dev.device, byref(linfo), None, byref(layout)),
                 "vkCreatePipelineLayout")
        self.layout = layout.value
        self.programs: dict = {}
        self.cache_path = None
        data = b""
        uuid = bytes(dev.props.pipelineCacheUUID).hex()
        cache_dir = os.environ.get("ALPHA_CACHE_DIR") or os.path.join(
            os.path.expanduser("~"), ".cache", "alpha")
        self.cache_path = os.path.join(cache_dir, f"helios-{uuid}.bin")
        try:
            with open(self.cache_path, "rb") as fh:
                data = fh.read()
        except OSError:
            pass
        self._initial = ctypes.create_string_buffer(data, len(data)) if data else None
        cinfo = vk.PipelineCacheCreateInfo(sType=vk.ST_PIPELINE_CACHE_CREATE_INFO,
                                           initialDataSize=len(data),
                                           pInitialData=addressof(self._initial) if data else None)
        cache = vk.NH()
        if f.CreatePipelineCache(dev.device, byref(cinfo), None, byref(cache)) < 0:
            cinfo.initialDataSize, cinfo.pInitialData = 0, None
            vk.check(f.CreatePipelineCache(dev.device, byref(cinfo), None, byref(cache)),
                     "vkCreatePipelineCache")
        self.cache = cache.value
        self.created = 0
        atexit.register(self.save)

    def get(self, key, build):
        """The program for `key`; `build()` returns a finished `alpha.spirv.dsl.Kernel`-like
        object (with .finish(), .push_format, .push_size, .local, .name) on first use."""
        prog = self.programs.get(key)
        if prog is None:
            kernel = build()
            words = kernel.finish()
            if kernel.push_size > self.push_limit:
                raise ValueError(f"kernel {kernel.name}: {kernel.push_size} bytes of push "
                                 f"constants > device limit {self.push_limit}")
            prog = self.create(kernel.name, words, kernel.push_format, kernel.push_size,
                               kernel.local)
            self.programs[key] = prog
        return prog

    def create(self, name, words, push_format, push_size, local) -> Program:
        f, dev = self.dev.f, self.dev
        code = array("I", words)
        minfo = vk.ShaderModuleCreateInfo(sType=vk.ST_SHADER_MODULE_CREATE_INFO,
                                          codeSize=len(code) * 4,
                                          pCode=code.buffer_info()[0])
        module = vk.NH()
        vk.check(f.CreateShaderModule(dev.device, byref(minfo), None, byref(module)),
                 f"vkCreateShaderModule({name})")
        entry = ctypes.c_char_p(b"main")
        stage = vk.PipelineShaderStageCreateInfo(
            sType=vk.ST_PIPELINE_SHADER_STAGE_CREATE_INFO, stage=vk.SHADER_STAGE_COMPUTE,
            module=module.value, pName=ctypes.cast(entry, ctypes.c_void_p).value)
        pinfo = vk.ComputePipelineCreateInfo(sType=vk.ST_COMPUTE_PIPELINE_CREATE_INFO,
                                             stage=stage, layout=self.layout,
                                             basePipelineIndex=-1)
        pipe = vk.NH()
        res = f.CreateComputePipelines(dev.device, self.cache, 1, byref(pinfo), None, byref(pipe))
        f.DestroyShaderModule(dev.device, module.value, None)
        vk.check(res, f"vkCreateComputePipelines({name})")
        self.created += 1
        return Program(name, pipe.value, self.layout, push_format, push_size, local, words)

    def save(self) -> None:
        try:
            f, dev = self.dev.f, self.dev
            n = ctypes.c_size_t()
            if f.GetPipelineCacheData(dev.device, self.cache, byref(n), None) < 0 or not n.value:
                return
            buf = ctypes.create_string_buffer(n.value)
            if f.GetPipelineCacheData(dev.device, self.cache, byref(n), buf) < 0:
                return
            os.makedirs(os.path.dirname(self.cache_path), exist_ok=True)
            tmp = self.cache_path + f".{os.getpid()}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(buf.raw[:n.value])
            os.replace(tmp, self.cache_path)
        except Exception:  # a cache is an optimisation: never fail because of it
            pass
