"""`python -m alpha bench <what>`: benchmarks that print side-by-side ratios (alpha/bench).

  kernels   the CPU kernels: SGEMM vs numpy and the FMA peak, memory-bound ops vs copy bandwidth,
            Python overhead per call (alpha/bench/kernels.py)
  helios    the Vulkan backend (alpha/bench/helios.py)
"""

from __future__ import annotations

import sys


def register(sub):
    from alpha.bench import helios

    p = sub.add_parser("bench", help="benchmarks: CPU kernels (kernels), the GPU backend (helios)")
    what = p.add_subparsers(dest="bench_what", metavar="WHAT", parser_class=type(p))
    k = what.add_parser("kernels", help="CPU kernels: SGEMM vs numpy, ops vs copy bandwidth")
    k.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    k.add_argument("--quick", action="store_true", help="small sizes, one round (a smoke test)")
    k.add_argument("--threads", type=int, default=None,
                   help="thread count to compare with 1 (default: the pool's, ALPHA_NUM_THREADS)")
    h = what.add_parser("helios", help="the Vulkan backend: SGEMM and memory-bound kernels")
    helios.add_arguments(h)
    p.set_defaults(func=run)


def run(args) -> int:
    what = getattr(args, "bench_what", None)
    if what == "kernels":
        from alpha.bench import kernels

        return kernels.run(args)
    if what == "helios":
        from alpha.bench import helios

        return int(helios.run(args) or 0)
    print("usage: python -m alpha bench {kernels,helios} [--json]", file=sys.stderr)
    return 2
