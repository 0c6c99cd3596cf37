"""`python -m alpha bench helios` (or `python -m alpha.bench.helios`): helios speed on this
machine's Vulkan device, timed with GPU timestamps after a warm-up.

- SGEMM fp32 at 4096^3 and 8192^3 (256^3 on a CPU device such as lavapipe), against PyTorch's
  cuBLAS fp32 (TF32 off) in the same run when torch with CUDA is importable; on a discrete GPU
  a few tile configurations are swept at 4096^3 and the best is reported;
- the tensor-core matmul (bf16 and fp16 inputs, fp32 accumulation; `helios_coop`): checked against
  float64, then timed at the same sizes against cuBLAS bf16/fp16, after a tile sweep at 4096^3;
- memory-bound kernels (binary add, GELU, axpy, layernorm, softmax, AdamW) in GB/s, against the
  device's measured copy bandwidth (vkCmdCopyBuffer, bytes read + written).
Targets: SGEMM >= 50% of cuBLAS fp32, memory-bound >= 70% of copy, bf16 8192^3 >= 50% of cuBLAS
bf16.
"""

from __future__ import annotations

import math
import sys
import time

from alpha.bench import helios_coop


def _say(msg: str) -> None:
    print(msg, flush=True)


def _fill(be, shape, seed=1):
    n = math.prod(shape)
    t = be.empty(shape)
    be.rng_uniform(t, (seed, 7), 0)
    be.binary_scalar(t, "sub", t, 0.5)
    return t if n else t


def _sgemm(be, n: int, cfg=None) -> float:
    a, b, out = _fill(be, (n, n), 1), _fill(be, (n, n), 2), be.empty((n, n))
    if cfg is not None:
        be._mm_config = lambda M, N, K, nb=1: cfg
    try:
        be.matmul(out, a, b)
        be.synchronize()
        reps = 1 if n <= 512 else (10 if n <= 4096 else 4)
        sec = be.dev.gpu_seconds(lambda: be.matmul(out, a, b), reps)
    finally:
        if cfg is not None:
            del be._mm_config
    return 2 * n ** 3 / sec / 1e12


def _copy_bandwidth(be, n: int) -> float:
    a, b = be.empty((n,)), be.empty((n,))
    dev = be.dev
    aa, ba = a.storage.alloc, b.storage.alloc

    def rec():
        dev.copy(aa.block.buffer, aa.offset, ba.block.buffer, ba.offset, n * 4)
    rec()
    dev.synchronize()
    sec = dev.gpu_seconds(rec, 10)
    return 2 * n * 4 / sec / 1e9


def _torch_copy_bandwidth(n: int):
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    a = torch.empty(n, device="cuda")
    b = torch.empty(n, device="cuda")
    for _ in range(3):
        b.copy_(a)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        b.copy_(a)
    end.record()
    torch.cuda.synchronize()
    sec = start.elapsed_time(end) / 1000 / 10
    del a, b
    torch.cuda.empty_cache()
    return 2 * n * 4 / sec / 1e9


def _kernel_copy_bandwidth(be, n: int) -> float:
    a, b = _fill(be, (n,), 8), be.empty((n,))
    be.copy(b, a)
    be.synchronize()
    sec = be.dev.gpu_seconds(lambda: be.copy(b, a), 10)
    return 2 * n * 4 / sec / 1e9


def _memory_bound(be, n: int, copy_gbs: float) -> list[tuple[str, float]]:
    dev = be.dev
    x, y, z = _fill(be, (n,), 3), _fill(be, (n,), 4), be.empty((n,))
    C = 1024
    R = n // C
    x2, o2 = x.view(R, C), z.view(R, C)
    w, bias = _fill(be, (C,), 5), _fill(be, (C,), 6)
    mean, rstd = be.empty((R,)), be.empty((R,))
    m, v = be.zeros((n,)), be.zeros((n,))
    cases = [
        ("binary add", 3, lambda: be.binary(z, "add", x, y)),
        ("gelu forward", 2, lambda: be.gelu_forward(z, x)),
        ("axpy", 3, lambda: be.axpy(z, x, 0.5)),
        ("layernorm forward", 2, lambda: be.layernorm_forward(o2, mean, rstd, x2, w, bias)),
        ("softmax forward", 2, lambda: be.softmax_forward(o2, x2)),
        ("adamw step", 7, lambda: be.adamw_step(z, x, m, v, lr=1e-3, beta1=0.9, beta2=0.95,
                                                 eps=1e-8, weight_decay=0.1, step=1)),
    ]
    out = []
    for name, passes, fn in cases:
        fn()
        dev.synchronize()
        sec = dev.gpu_seconds(fn, 5)
        gbs = passes * n * 4 / sec / 1e9
        out.append((name, gbs))
        _say(f"  {name:<20} {gbs:9.1f} GB/s  {100 * gbs / copy_gbs:5.1f}% of copy "
             f"({sec * 1e3:.3f} ms)")
    return out


def add_arguments(p) -> None:
    p.add_argument("--quick", action="store_true",
                   help="small sizes, no tile sweep (a smoke test; the default on a CPU device)")
    p.add_argument("--tensor-cores", action="store_true",
                   help="only the tensor-core matmul (check, tile sweep, products vs cuBLAS)")
    p.add_argument("--sizes", type=int, nargs="+", default=None, metavar="N",
                   help="SGEMM sizes N (N^3; default 4096 8192 on a GPU)")


def run(args=None) -> int:
    from alpha.tensor import get_backend
    from alpha.helios.kernels import matmul as kmm
    be = get_backend("helios")
    dev = be.dev
    cpu_device = dev.device_type == "cpu" or bool(getattr(args, "quick", False))
    _say(f"helios bench on {dev.name} ({dev.device_type})")
    t0 = time.time()
    sizes = getattr(args, "sizes", None) or ([256] if cpu_device else [4096, 8192])
    if getattr(args, "tensor_cores", False):
        helios_coop.run(be, _say, sizes)
        _say(f"pipelines created: {be.pipes.created}; bench took {time.time() - t0:.1f} s")
        return 0

    n_mem = (1 << 20) if cpu_device else (64 << 20)
    cmd = _copy_bandwidth(be, n_mem)
    kern = _kernel_copy_bandwidth(be, n_mem)
    ref = None if cpu_device else _torch_copy_bandwidth(n_mem)
    copy_gbs = max(v for v in (cmd, kern, ref) if v)
    _say(f"copy bandwidth, bytes read + written ({n_mem * 4 >> 20} MiB): vkCmdCopyBuffer "
         f"{cmd:.1f} GB/s, helios copy kernel {kern:.1f} GB/s, PyTorch copy_ "
         + (f"{ref:.1f} GB/s" if ref else "n/a") + f"; reference = best = {copy_gbs:.1f} GB/s")
    _say("memory-bound kernels (minimal bytes moved; target >= 70% of copy):")
    _memory_bound(be, n_mem, copy_gbs)

    best = None
    if not cpu_device:
        _say("SGEMM tile sweep at 4096^3:")
        configs = [kmm.DEFAULT, kmm.LARGE, kmm.MatmulConfig(128, 128, 16, 8, 8),
                   kmm.MatmulConfig(128, 64, 8, 8, 4), kmm.MatmulConfig(64, 128, 8, 4, 8)]
        for cfg in configs:
            try:
                tf = _sgemm(be, 4096, cfg)
            except Exception as e:  # a config the device cannot run: report and go on
                _say(f"  {cfg}: failed ({type(e).__name__}: {e})")
                continue
            _say(f"  BM={cfg.BM} BN={cfg.BN} BK={cfg.BK} TM={cfg.TM} TN={cfg.TN}: "
                 f"{tf:.2f} TFLOP/s")
            if best is None or tf > best[1]:
                best = (cfg, tf)
    _say("SGEMM fp32 (target >= 50% of cuBLAS fp32):")
    for n in sizes:
        tf = _sgemm(be, n, best[0] if best else None)
        ref = None if cpu_device else helios_coop.torch_matmul(n, "f32")
        ratio = f", cuBLAS fp32 {ref:.2f} TFLOP/s, {100 * tf / ref:.1f}%" if ref else \
            ", cuBLAS: torch with CUDA not importable"
        _say(f"  {n}^3: helios {tf:.3f} TFLOP/s{ratio}")
    if not cpu_device or be._coop_types():
        helios_coop.run(be, _say, sizes)
    _say(f"pipelines created: {be.pipes.created}; bench took {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, ".")
    sys.exit(run())
