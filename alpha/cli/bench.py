"""`python -m alpha bench <what>`: benchmarks that print side-by-side ratios.

  kernels   the CPU kernels: SGEMM vs numpy and the FMA peak, memory-bound ops vs copy bandwidth,
            Python overhead per call (alpha/bench_kernels.py)
  helios    the Vulkan backend (alpha/helios/bench.py), when that module is present
"""

from __future__ import annotations

import importlib
import sys


def register(sub):
    p = sub.add_parser("bench", help="benchmarks: CPU kernels (kernels), the GPU backend (helios)")
    what = p.add_subparsers(dest="bench_what", metavar="WHAT", parser_class=type(p))
    k = what.add_parser("kernels", help="CPU kernels: SGEMM vs numpy, ops vs copy bandwidth")
    k.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    k.add_argument("--quick", action="store_true", help="small sizes, one round (a smoke test)")
    k.add_argument("--threads", type=int, default=None,
                   help="thread count to compare with 1 (default: the pool's, ALPHA_NUM_THREADS)")
    h = what.add_parser("helios", help="the Vulkan backend: SGEMM and memory-bound kernels")
    helios = _helios_bench()
    if helios is not None and hasattr(helios, "add_arguments"):
        helios.add_arguments(h)
    p.set_defaults(func=run)


def _helios_bench():
    try:
        return importlib.import_module("alpha.helios.bench")
    except ModuleNotFoundError as e:
        if e.name in ("alpha.helios", "alpha.helios.bench"):
            return None
        raise


def run(args) -> int:
    what = getattr(args, "bench_what", None)
    if what == "kernels":
        from alpha import bench_kernels

        return bench_kernels.run(args)
    if what == "helios":
        helios = _helios_bench()
        if helios is None:
            print("bench helios: the helios backend is not in this build (alpha/helios/bench.py)",
                  file=sys.stderr)
            return 2
        return int(helios.run(args) or 0)
    print("usage: python -m alpha bench {kernels,helios} [--json]", file=sys.stderr)
    return 2
