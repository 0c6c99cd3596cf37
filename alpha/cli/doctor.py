"""`python -m alpha doctor`: what this machine offers Alpha (compiler, threads, SIMD, GPUs)."""

from __future__ import annotations

import os
import platform


def register(sub):
    p = sub.add_parser("doctor", help="check the C compiler, kernels, threads and GPU devices")
    p.add_argument("--build-only", action="store_true", help="only compile the C kernels")
    p.set_defaults(func=run)


def run(args) -> int:
    from alpha.tensor import build

    path = build.build(verbose=True)
    if args.build_only:
        print(f"C kernels: {path}")
        return 0
    print(f"python      {platform.python_version()} ({platform.machine()})")
    print(f"compiler    {build.compiler()}")
    print(f"kernels     {path}")
    print(f"threads     {build.num_threads()} (ALPHA_NUM_THREADS={os.environ.get('ALPHA_NUM_THREADS', 'unset')})")
    flags = _cpu_flags()
    print(f"cpu simd    {' '.join(f for f in ('avx2', 'fma', 'avx512f') if f in flags) or 'portable'}")
    try:
        from alpha.helios import doctor as helios_doctor
    except ImportError:
        print("gpu         helios backend not built yet")
    else:
        helios_doctor.report()
    return 0


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()
