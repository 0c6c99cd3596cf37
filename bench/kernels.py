"""CPU kernel benchmark: the same as `python -m alpha bench kernels` (see alpha/bench/kernels.py).

    python bench/kernels.py [--json] [--quick] [--threads N]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from alpha.bench import kernels  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    sys.exit(kernels.run(parser.parse_args()))
