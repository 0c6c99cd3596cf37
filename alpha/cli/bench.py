"""`python -m alpha bench <what>`: benchmarks that print side-by-side ratios (alpha/bench).

  kernels   the CPU kernels: SGEMM vs numpy and the FMA peak, memory-bound ops vs copy bandwidth,
            Python overhead per call (alpha/bench/kernels.py)
  helios    the Vulkan backend (alpha/bench/helios.py)
  profile   runs an alpha command on helios with per-kernel GPU timestamps, then prints where
            the GPU time went (alpha/bench/helios_profile.py)
"""

from __future__ import annotations

import argparse
import os
import sys
import time


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
    pr = what.add_parser("profile", help="GPU time per helios kernel while an alpha command runs")
    pr.add_argument("alpha_command", nargs=argparse.REMAINDER,
                    help="the command and its arguments, e.g. train --backend helios --iters 20")
    p.set_defaults(func=run)


def run(args) -> int:
    what = getattr(args, "bench_what", None)
    if what == "kernels":
        from alpha.bench import kernels

        return kernels.run(args)
    if what == "helios":
        from alpha.bench import helios

        return int(helios.run(args) or 0)
    if what == "profile":
        return _profile(args.alpha_command)
    print("usage: python -m alpha bench {kernels,helios,profile} ...", file=sys.stderr)
    return 2


def _profile(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m alpha bench profile <alpha command and args>", file=sys.stderr)
        return 2
    os.environ["ALPHA_HELIOS_PROFILE"] = "1"  # read when the helios device is made
    from alpha.bench import helios_profile
    from alpha.cli.main import main

    t0 = time.time()
    rc = main(argv)
    print(helios_profile.report(rc, time.time() - t0))
    return rc
