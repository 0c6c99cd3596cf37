"""Where helios spends GPU time: `python -m alpha.bench.helios_profile <alpha command and args>` runs a
CLI command (e.g. `train --backend helios ...`) with ALPHA_HELIOS_PROFILE=1 and prints GPU
milliseconds per kernel (a timestamp after every command), dispatch and pipeline counts."""

from __future__ import annotations

import os
import sys
import time


def main(argv: list[str]) -> int:
    os.environ["ALPHA_HELIOS_PROFILE"] = "1"
    from alpha.cli.main import main as cli_main
    from alpha.tensor import get_backend
    t0 = time.time()
    rc = cli_main(argv)
    be = get_backend("helios")
    print(f"exit {rc}; wall {time.time() - t0:.1f} s; dispatches {be.dev.dispatches}; "
          f"pipelines created {be.pipes.created}")
    print(be.dev.profile_table())
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
