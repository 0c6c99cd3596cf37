"""What the trainer asks of data-parallel training, in two versions: `Local` (one process: every
answer is the trivial one) and `World` (MPI ranks).

    dist.is_main                   rank 0: the one rank that writes the run folder, the database,
                                   samples and remote reports
    dist.shard(x, y)               this rank's rows of a global batch
    dist.rng(seed)                 the run's Rng; dropout masks are drawn for the global batch
    dist.open_folder(fn)           rank 0 opens the run folder; the others get its path
    dist.begin_grad_sync(model)    before the last backward of a step: reduce buckets as they fill
    dist.end_grad_sync(model)      after it: every rank holds the sum of all ranks' gradients
    dist.mean(x), dist.agree(b)    a scalar averaged over ranks; "did any rank say yes"
    dist.check_params(model, s)    every ALPHA_DIST_CHECK_EVERY steps: parameters bitwise equal?

Why the global batch is sharded rather than each rank drawing its own: every rank draws the SAME
global batch from the seeded sampler and keeps rows [rank*B/N, (rank+1)*B/N). So the batch
sequence, the sampler's state in a checkpoint, and the loss curve (up to float rounding) do not
depend on N, and a checkpoint resumes on any number of ranks that divides the batch. Dropout
follows the same rule: rank r's mask is the slice of the global batch's mask (ShardedStream).
"""

from __future__ import annotations

import ctypes
import hashlib
import os

from alpha.core.errors import ConfigError, DistributedError
from alpha.core.rng import Rng, Stream

DEFAULT_CHECK_EVERY = 100
FINALIZE_WAIT_S = 30.0  # past this, a rank exits without MPI_Finalize (the launcher copes)
SHARDED_STREAMS = ("dropout",)  # streams drawn per activation element, so per batch row


def check_every_from_env() -> int:
    raw = os.environ.get("ALPHA_DIST_CHECK_EVERY", "").strip()
    try:
        value = int(raw) if raw else DEFAULT_CHECK_EVERY
    except ValueError:
        raise DistributedError(f"ALPHA_DIST_CHECK_EVERY={raw!r} is not a whole number") from None
    if value < 0:
        raise DistributedError(f"ALPHA_DIST_CHECK_EVERY={raw!r} must be >= 0 (0: never)")
    return value


class ShardedStream(Stream):
    """A stream whose every `take(n)` is this rank's n words out of the size*n the global batch
    uses: rank r gets words [pos + r*n, pos + (r+1)*n) and the position moves by size*n, exactly as
    one process drawing for the whole batch would. Positions saved in checkpoints stay global."""

    def __init__(self, key, rank: int, size: int, position: int = 0):
        super().__init__(key, position)
        self.rank, self.size = rank, size

    def take(self, n: int) -> int:
        start = self.position + self.rank * n
        self.position += self.size * n
        return start


class ShardedRng(Rng):
    def __init__(self, seed: int, rank: int, size: int):
        super().__init__(seed)
        self.rank, self.size = rank, size

    def stream(self, name: str) -> Stream:
        if name in SHARDED_STREAMS and name not in self._streams:
            plain = super().stream(name)
            self._streams[name] = ShardedStream(plain.key, self.rank, self.size, plain.position)
        return super().stream(name)


class Local:
    """One process: no communication at all."""

    rank, size, local_rank, local_size = 0, 1, 0, 1
    is_main = True
    distributed = False

    def check_config(self, config) -> None: ...

    def shard(self, x, y):
        return x, y

    def rng(self, seed: int) -> Rng:
        return Rng(seed)

    def open_folder(self, fn):
        return fn()

    def begin_grad_sync(self, model) -> None: ...
    def end_grad_sync(self, model) -> None: ...

    def mean(self, value: float) -> float:
        return value

    def agree(self, flag: bool) -> bool:
        return flag

    def check_params(self, model, step: int, force: bool = False) -> None: ...
    def finish(self, completed: bool = True) -> None: ...


LOCAL = Local()


class World(Local):
    """This process as one of `size` MPI ranks (made by `alpha.dist.start`)."""

    distributed = True

    def __init__(self, mpi, comm, *, check_every: int, bucket_bytes: int | None):
        self.mpi, self.comm = mpi, comm
        self.rank, self.size = mpi.rank, mpi.size
        self.local_rank, self.local_size = mpi.local_rank, mpi.local_size
        self.is_main = self.rank == 0
        self.check_every = check_every
        self.bucket_bytes = bucket_bytes
        self._syncs: dict[int, object] = {}  # id(model) -> GradSync

    # ---- set-up -------------------------------------------------------------------------
    def check_config(self, config) -> None:
        tc = config.train
        if tc.batch_size % self.size:
            raise ConfigError(f"--batch {tc.batch_size} does not split evenly over {self.size} "
                              f"ranks: give a multiple of {self.size} (--batch is the global "
                              "batch, shared out among the ranks)")

    def rng(self, seed: int) -> Rng:
        return ShardedRng(seed, self.rank, self.size)

    def open_folder(self, fn):
        """Rank 0 runs fn() (create and lock the run folder) and tells the others its path, or
        why it failed, so no rank waits for a folder that will never come."""
        from alpha.dist.follower import FollowerFolder

        if self.is_main:
            try:
                folder = fn()
            except BaseException as e:
                self._bcast_text("error", f"{type(e).__name__}: {e}")
                raise
            self._bcast_text("ok", folder.path)
            return folder
        status, text = self._bcast_text()
        if status != "ok":
            raise DistributedError(f"rank 0 could not open the run folder ({text})")
        return FollowerFolder(text)

    def _bcast_text(self, status: str = "", text: str = "") -> tuple[str, str]:
        """(status, text) from rank 0 to every rank."""
        payload = f"{status}\n{text}".encode() if self.is_main else b""
        size = ctypes.c_int64(len(payload))
        self.comm.call("a broadcast from rank 0", self.mpi.bcast, ctypes.addressof(size), 8)
        buf = ctypes.create_string_buffer(payload, size.value) if self.is_main else \
            ctypes.create_string_buffer(size.value)
        self.comm.call("a broadcast from rank 0", self.mpi.bcast, ctypes.addressof(buf),
                       size.value)
        status, _, text = buf.raw.decode().partition("\n")
        return status, text

    # ---- a step --------------------------------------------------------------------------
    def shard(self, x, y):
        n = len(x) // self.size
        lo, hi = self.rank * n, (self.rank + 1) * n
        return x[lo:hi], y[lo:hi]

    def begin_grad_sync(self, model) -> None:
        sync = self._syncs.get(id(model))
        if sync is None:
            from alpha.dist.grads import GradSync

            sync = self._syncs[id(model)] = GradSync(model, self.comm, self.mpi,
                                                     self.bucket_bytes)
        sync.arm()

    def end_grad_sync(self, model) -> None:
        self._syncs[id(model)].finish()

    def grad_sync(self, model):
        """The GradSync of `model` (its buckets and last exposed wait), for benchmarks."""
        return self._syncs.get(id(model))

    def _allreduce_doubles(self, values: list[float], what: str) -> list[float]:
        buf = (ctypes.c_double * len(values))(*values)
        self.comm.call(what, self.mpi.allreduce, ctypes.addressof(buf), len(values), "double")
        return list(buf)

    def mean(self, value: float) -> float:
        return self._allreduce_doubles([value], "the loss all-reduce")[0] / self.size

    def agree(self, flag: bool) -> bool:
        return self._allreduce_doubles([1.0 if flag else 0.0], "the stop vote")[0] > 0

    # ---- the invariant -------------------------------------------------------------------
    def check_params(self, model, step: int, force: bool = False) -> None:
        """Every check_every steps (and when forced): rank 0's parameter digest against every
        rank's. A difference stops every rank with the same error."""
        if not force and not (self.check_every and step % self.check_every == 0):
            return
        be = model.backend
        digest = hashlib.sha256(memoryview(be.to_array(model.params)).cast("B")).digest()
        theirs = ctypes.create_string_buffer(digest, len(digest))
        self.comm.call("the parameter check", self.mpi.bcast, ctypes.addressof(theirs),
                       len(digest))
        differ = [0.0] * self.size
        differ[self.rank] = 0.0 if theirs.raw == digest else 1.0
        differ = self._allreduce_doubles(differ, "the parameter check")
        bad = [r for r, d in enumerate(differ) if d]
        if bad:
            raise DistributedError(
                f"parameters diverged across ranks at step {step}: rank(s) "
                f"{', '.join(map(str, bad))} differ from rank 0 (a nondeterministic kernel, "
                "different data or code on some node); resume from the last checkpoint"
            )

    # ---- the end -------------------------------------------------------------------------
    def finish(self, completed: bool = True) -> None:
        """Finalize MPI after a run that every rank completed. After a stop by a signal the
        launcher is already taking the job down and MPI_Finalize could wait on it forever, so
        the rank just leaves (as a failed rank does: finalizing would wait for ranks that will
        never come)."""
        if not completed:
            return
        job = self.comm.submit("MPI_Finalize", self.mpi.finalize)
        if job.done.wait(FINALIZE_WAIT_S) and job.error is None:
            self.comm.close()

