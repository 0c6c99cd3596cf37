"""helios: Alpha's GPU backend on Vulkan, end to end ours — a ctypes binding to the system loader
(vk.py), device/memory/pipelines/command batching (device.py, memory.py, pipeline.py), compute
kernels written with our SPIR-V assembler (kernels/, alpha.spirv), the runtime the ops stand on
(runtime.py: allocate, copy in/out, launch), and the Backend protocol's hooks on top (backend.py +
ops_nn.py). `alpha.tensor.get_backend("helios")` returns it; without a Vulkan device
it raises BackendUnavailable with one line. Tools: doctor.py (its benches live in
alpha/bench: helios.py, helios_coop.py, helios_profile.py).

Environment: ALPHA_VK_DEVICE (index or name substring), ALPHA_VK_VALIDATE=1 (Khronos validation
layer), ALPHA_HELIOS_PROFILE=1 (GPU time per kernel), ALPHA_CACHE_DIR (pipeline cache folder).
"""
