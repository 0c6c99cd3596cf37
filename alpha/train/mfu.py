"""Model FLOPs utilisation: the model's arithmetic per second over the machine's measured peak.

FLOPs per token follow nanoGPT's `estimate_mfu` (after the PaLM paper, appendix B):

    6 N + 12 L C T        N: parameters less the position table wpe (a lookup, no matmul);
                          L layers, C = n_embd, T = block_size (attention scores and values,
                          counted for the full T x T square as nanoGPT does, forward + backward)

A step's FLOPs are that times the tokens of the step (batch_size * block_size * accum_steps);
`mfu` in a metrics line is step FLOPs / step seconds / peak.

The peak is measured, not looked up in a table:
  cpu     alpha_fma_peak (alpha/tensor/csrc/peak.c, the FMA probe of `alpha bench kernels`) on
          the kernels' thread count: independent vector FMAs, the arithmetic ceiling of the
          cores.
  helios  the device's own fp32 (or the run's bf16) matmul at 4096^3 (256^3 on a CPU device
          such as lavapipe) timed with GPU timestamps: Alpha has no FMA probe in SPIR-V, so
          helios' MFU is against the best matmul it runs (an upper bound on the true MFU).
A measurement costs well under a second and is cached by machine in `peak.json` in the kernel
build cache (`alpha.tensor.build.cache_dir()`), so later runs read it. On a loaded machine the
measured peak is low and the MFU high: measure on a quiet one (delete peak.json to remeasure).
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import platform
import time

from alpha.core.atomic import atomic_write
from alpha.core.config import ModelConfig
from alpha.core.errors import AlphaError

CACHE_NAME = "peak.json"


def flops_per_token(cfg: ModelConfig, table: list[tuple[str, tuple[int, ...]]]) -> float:
    """Training FLOPs per token (forward + backward), nanoGPT's estimate."""
    n = sum(math.prod(shape) for name, shape in table if name != "wpe")
    return 6.0 * n + 12.0 * cfg.n_layer * cfg.n_embd * cfg.block_size


def peak_flops(backend) -> float:
    """The backend's measured peak in FLOP/s (cached by machine; see the module docstring)."""
    key = _machine_key(backend)
    path = _cache_path()
    cached = _read_cache(path)
    value = cached.get(key)
    if isinstance(value, (int, float)) and value > 0:
        return float(value)
    value = _measure(backend)
    cached[key] = value
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, json.dumps(cached, indent=1, sort_keys=True) + "\n")
    except (OSError, AlphaError):
        pass  # a read-only cache only costs a measurement next time
    return value


# --------------------------------------------------------------------------------------------


def _cache_path() -> str:
    from alpha.tensor import build

    return os.path.join(str(build.cache_dir()), CACHE_NAME)


def _read_cache(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _machine_key(backend) -> str:
    if backend.name == "cpu":
        from alpha.tensor import build

        return f"cpu|{_cpu_model()}|threads={build.num_threads()}"
    dev = getattr(backend, "dev", None)
    dtype = getattr(backend, "matmul_dtype", "f32")
    return f"{backend.name}|{getattr(dev, 'name', '?')}|matmul={dtype}"


def _measure(backend) -> float:
    if backend.name == "cpu":
        return _cpu_fma_peak()
    return _matmul_peak(backend)


def _cpu_fma_peak() -> float:
    """FLOP/s of alpha_fma_peak on the kernels' threads (best of 5)."""
    from alpha.tensor import build

    lib = build.lib()
    lib.alpha_fma_peak.restype = ctypes.c_double
    lib.alpha_fma_peak.argtypes = [ctypes.c_int64, ctypes.c_int64, ctypes.c_int]
    threads = build.num_threads()
    tasks = 1 if threads == 1 else 4 * threads
    iters = 1 << 21  # as `alpha bench kernels`: long enough to keep both FMA ports busy
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        flops = lib.alpha_fma_peak(tasks, iters, threads > 1)
        best = max(best, flops / (time.perf_counter() - t))
    return best


def _matmul_peak(be) -> float:
    """FLOP/s of the backend's square matmul, timed on the device (best of 3 repetitions)."""
    dev = be.dev
    n = 256 if getattr(dev, "device_type", "") == "cpu" else 4096
    a, b, out = be.empty((n, n)), be.empty((n, n)), be.empty((n, n))
    be.fill(a, 0.5)
    be.fill(b, 0.25)
    be.matmul(out, a, b)  # warm-up: pipelines built, clocks up
    be.synchronize()
    reps = 2 if n <= 512 else 10
    sec = min(dev.gpu_seconds(lambda: be.matmul(out, a, b), reps) for _ in range(3))
    return 2.0 * n ** 3 / sec
