"""Programs that tests/test_dist.py runs under a real `mpirun` (one process per rank). Each prints
one JSON line per rank on stdout; the test reads them and checks.

    python tests/dist_worker.py collectives      allreduce at odd sizes (in chunks), bcast...
    python tests/dist_worker.py diverge ARGS     a training run where rank 1's parameters drift
"""

from __future__ import annotations

import ctypes
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from alpha.dist import mpi as mpi_module  # noqa: E402
from alpha.dist import start  # noqa: E402

SIZES = (1, 7, 1003, 20011)  # 20011 goes in five uneven chunks of MAX_COUNT below


def value(rank: int, i: int) -> float:
    """A float32-exact value per (rank, index), spread over magnitudes so the order of the sum
    matters in float32 and a float64 reference tells real errors from rounding."""
    x = ((rank + 1) * 2654435761 + i * 40503) % 1000003
    return struct.unpack("f", struct.pack("f", (x / 1000003.0 - 0.5) * 10.0 ** (i % 5)))[0]


def report(row: dict, name: str) -> None:
    """One JSON line on stdout, and the same row in `<name>-rank<N>.json` in the working folder:
    mpirun forwards every rank's stdout through one pipe, where lines of several ranks can be cut
    into each other, so the tests read the files."""
    print(json.dumps(row), flush=True)
    with open(f"{name}-rank{row['rank']}.json", "w", encoding="utf-8") as f:
        json.dump(row, f)


def collectives() -> None:
    mpi_module.MAX_COUNT = 4099  # a prime chunk size: every large buffer goes in uneven chunks
    world = start()
    out = {"rank": world.rank, "size": world.size, "local_rank": world.local_rank,
           "flavour": world.mpi.flavour, "threads": os.environ.get("ALPHA_NUM_THREADS"),
           "errors": {}}
    for n in SIZES:
        buf = (ctypes.c_float * n)(*[value(world.rank, i) for i in range(n)])
        world.comm.call("test", world.mpi.allreduce, ctypes.addressof(buf), n)
        worst = 0.0
        for i in range(n):
            ref = sum(value(r, i) for r in range(world.size))  # float64
            scale = sum(abs(value(r, i)) for r in range(world.size))
            worst = max(worst, abs(buf[i] - ref) / scale if scale else abs(buf[i]))
        out["errors"][str(n)] = worst
    text = ctypes.create_string_buffer(b"from rank 0" if world.rank == 0 else b"\0" * 11, 11)
    world.comm.call("test", world.mpi.bcast, ctypes.addressof(text), 11)
    out["bcast"] = text.raw.decode()
    world.comm.call("test", world.mpi.barrier)
    out["mean"] = world.mean(float(world.rank))
    out["agree_none"] = world.agree(False)
    out["agree_one"] = world.agree(world.rank == world.size - 1)
    report(out, "collectives")
    world.finish()


def diverge(argv: list[str]) -> None:
    """Train with the CLI's own config resolution; at step 3 rank 1 nudges one parameter."""
    from alpha.cli.main import build_parser
    from alpha.cli.train import resolve_run_config
    from alpha.core.errors import DistributedError
    from alpha.train.trainer import Trainer

    args = build_parser().parse_args(["train", *argv])
    config, _ = resolve_run_config(args)
    world = start()

    def nudge(trainer, step):
        if step == 3 and world.rank == 1:
            be = trainer.backend
            p = trainer.model.params
            values = be.to_array(p)
            values[0] += 1e-3
            be.copy(p, be.from_array(values, (p.numel,), "f32"))

    trainer = Trainer(config, out=None, dist=world, hooks={"after_backward": nudge})
    try:
        trainer.train()
        report({"rank": world.rank, "error": None}, "diverge")
    except DistributedError as e:
        report({"rank": world.rank, "error": str(e), "step": trainer.step}, "diverge")


if __name__ == "__main__":
    if sys.argv[1] == "collectives":
        collectives()
    elif sys.argv[1] == "diverge":
        diverge(sys.argv[2:])
