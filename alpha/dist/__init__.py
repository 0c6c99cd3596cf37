"""Data-parallel training on MPI: every rank holds the whole model, takes its shard of each global
batch, and the gradients are summed over the ranks before each optimizer step.

    mpirun -np 4 python -m alpha train --distributed ...      # or: srun -n 4 python -m alpha ...

    from alpha.dist import start, LOCAL
    world = start()          # MPI_Init on the MPI thread; LOCAL is the one-process stand-in
    world.rank, world.size, world.local_rank, world.is_main

Modules, one concern each: `mpi` (ctypes binding, Open MPI and MPICH), `comm` (the thread that
makes every MPI call, and the timeout on waiting for it), `grads` (bucketed, overlapped gradient
all-reduce), `world` (what the trainer asks: shard, mean, agree, check_params...), `follower`
(the run folder as non-zero ranks see it), `gpu` (the GPU of a local rank).

Environment: ALPHA_MPI_LIB (the library), ALPHA_DIST_TIMEOUT (seconds a rank waits for the others
before it gives up, default 300), ALPHA_DIST_BUCKET_MB (gradient bucket size, default 4 on the
CPU, 32 on GPUs), ALPHA_DIST_CHECK_EVERY (steps between parameter checks, default 100, 0 = never).
"""

from __future__ import annotations

import os

from alpha.dist.world import LOCAL, Local, World

__all__ = ["LOCAL", "Local", "World", "start"]


def start(backend: str = "cpu") -> World:
    """Join the MPI job (MPI_Init_thread on the MPI thread) and prepare this rank's machine share:
    ALPHA_NUM_THREADS = CPUs / ranks on this node, and for helios the GPU of the local rank (each
    only when the user has not set it). Call before any backend is made."""
    from alpha.dist.comm import Comm, timeout_from_env
    from alpha.dist.grads import bucket_bytes_from_env
    from alpha.dist.mpi import MPI
    from alpha.dist.world import check_every_from_env

    timeout = timeout_from_env()
    check_every = check_every_from_env()
    bucket_bytes = bucket_bytes_from_env()
    if backend == "cpu":
        # Open MPI's blocking calls spin while they wait for a peer, and on CPU ranks that spin
        # takes cores from the compute threads of this rank and its neighbours (measured on 2
        # cores: 10-20% more CPU per step); yielding while idle gives the cores back
        os.environ.setdefault("OMPI_MCA_mpi_yield_when_idle", "1")
    mpi = MPI()
    comm = Comm(timeout)
    comm.call("MPI_Init (are all ranks started?)", mpi.init)
    world = World(mpi, comm, check_every=check_every, bucket_bytes=bucket_bytes)
    if not os.environ.get("ALPHA_NUM_THREADS", "").strip():
        os.environ["ALPHA_NUM_THREADS"] = str(threads_per_rank(world.local_size))
    if backend == "helios":
        from alpha.dist.gpu import choose_device

        choose_device(world.local_rank)
    return world


def threads_per_rank(local_size: int) -> int:
    """Kernel threads for one of `local_size` ranks on this node. A launcher that bound the rank
    to some cores (mpirun's default binding, srun --cpus-per-task) already gave it its share: use
    those cores; an unbound rank takes its part of the machine."""
    total = os.cpu_count() or 1
    mine = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else total
    if mine < total:
        return mine
    return max(1, total // local_size)
