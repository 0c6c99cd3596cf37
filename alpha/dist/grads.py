"""Gradient all-reduce in buckets, started while the backward pass is still running.

The model's gradients live in one flat buffer laid out by its parameter table. A bucket is a run
of whole parameters, consecutive in that buffer (so one MPI call covers it), of about
ALPHA_DIST_BUCKET_MB (default 4 on the CPU, 32 elsewhere). A bucket can be reduced once no
remaining backward closure will add into it.

When that is: the tape runs its closures in reverse recording order, and each closure captures
the Vars it reads and writes (`linear`'s backward holds x, w and b). So a parameter's gradient is
final right after the backward of the EARLIEST recorded op that captured its Var; a bucket is
ready after the earliest such op over its parameters. That plan is read from the tape before each
synced backward (it costs microseconds, and it follows the model if its graph changes), and the
tape's `after_op` hook hands each bucket to the MPI thread the moment it is ready. Parameters no
op captured (unused ones) are reduced with the last bucket, after the walk ends.

What overlaps with what (honestly):
- CPU backend: the MPI thread reduces the gradient buffer in place, straight from its memory,
  while the main thread runs the rest of the backward's kernels (ctypes drops the GIL in both).
  For a GPT the last layer's weights are ready first and the embeddings last, so all but the
  final bucket can hide behind compute.
- Other backends (helios): a ready bucket is copied into pinned host memory when the walk reaches
  it (alpha.dist.staging), which waits for the GPU work queued so far; the MPI thread reduces it
  there while the main thread queues (and the GPU runs) the rest of the backward; the reduced
  buckets are copied back, in the device's stream, after the walk. So the network time overlaps
  the GPU's compute; each bucket's download does not (one device wait per bucket, hence the
  bigger default buckets off the CPU).
- Gradient accumulation: only the last micro-batch's backward is synced; the earlier ones add
  into the buffer locally, as in a single process.

After `finish`, every rank holds the SUM of the ranks' gradients; the trainer divides by the
world size where it already divides by the accumulation steps (AdamW's grad_scale), so the
buffer is never rescaled.
"""

from __future__ import annotations

import os
import time

from alpha.autograd.tape import Var
from alpha.core.errors import DistributedError

# Bucket sizes: on the CPU a bucket costs one MPI call, so small buckets start early and overlap
# more; off the CPU each bucket also costs a wait for the GPU and a copy down: fewer, bigger ones.
DEFAULT_BUCKET_MB = {"cpu": 4.0}
DEFAULT_BUCKET_MB_STAGED = 32.0


def bucket_bytes_from_env() -> int | None:
    """ALPHA_DIST_BUCKET_MB in bytes, or None when unset (the backend's default then)."""
    raw = os.environ.get("ALPHA_DIST_BUCKET_MB", "").strip()
    if not raw:
        return None
    try:
        mb = float(raw)
    except ValueError:
        raise DistributedError(f"ALPHA_DIST_BUCKET_MB={raw!r} is not a number") from None
    if mb <= 0:
        raise DistributedError(f"ALPHA_DIST_BUCKET_MB={raw!r} must be > 0")
    return int(mb * (1 << 20))


def plan_buckets(entries: list[tuple[str, int, int]], bucket_bytes: int,
                 itemsize: int = 4) -> list[tuple[int, int, list[str]]]:
    """[(start, count, names)] covering `entries` ((name, offset, numel) in flat order) with runs
    of whole parameters of at most bucket_bytes (a bigger parameter is a bucket of its own)."""
    buckets: list[tuple[int, int, list[str]]] = []
    start, count, names = 0, 0, []
    for name, offset, numel in entries:
        if names and (count + numel) * itemsize > bucket_bytes:
            buckets.append((start, count, names))
            start, count, names = offset, 0, []
        if not names:
            start = offset
        names.append(name)
        count += numel
    if names:
        buckets.append((start, count, names))
    return buckets


def first_uses(ops, param_ids: dict[int, str]) -> dict[str, int]:
    """{parameter name: index of the earliest recorded op whose backward captured its Var}."""
    out: dict[str, int] = {}
    for i, (_, backward) in enumerate(ops):
        for cell in backward.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            for v in (value if isinstance(value, (list, tuple)) else (value,)):
                if isinstance(v, Var):
                    name = param_ids.get(id(v))
                    if name is not None and name not in out:
                        out[name] = i
    return out


class GradSync:
    """Sums a model's flat gradient buffer over the ranks, bucket by bucket, during backward."""

    def __init__(self, model, comm, mpi, bucket_bytes: int | None = None):
        gpt = model  # the trainer's GPT
        self.backend = model.backend
        if bucket_bytes is None:
            mb = DEFAULT_BUCKET_MB.get(self.backend.name, DEFAULT_BUCKET_MB_STAGED)
            bucket_bytes = int(mb * (1 << 20))
        self.grads = model.grads.view(-1)
        self.tape = gpt.tape
        self.comm = comm
        self.mpi = mpi
        self.param_ids = {id(var): name for name, var in gpt.vars.items()}
        entries, off = [], 0
        for name, var in gpt.vars.items():
            entries.append((name, off, var.data.numel))
            off += var.data.numel
        self.buckets = plan_buckets(entries, bucket_bytes, self.grads.itemsize)
        self.direct = self.backend.name == "cpu"  # reduce in place in host memory
        self.staging = None
        if not self.direct:
            from alpha.dist.staging import for_backend

            self.staging = for_backend(self.backend, self.grads, self.buckets)
        self._ready_after: dict[int, list[int]] = {}  # op index -> buckets ready after it
        self._late: list[int] = []  # buckets reduced after the walk
        self._jobs: list = []
        self._staged: list[int] = []  # buckets reduced in host staging (off the CPU)
        self.armed = False
        self.exposed_s = 0.0  # last step: the main thread's wait for reductions in finish()

    # ---- before the backward ----------------------------------------------------------------
    def arm(self) -> None:
        """Reduce buckets as the next backward completes them."""
        uses = first_uses(self.tape.recorded(), self.param_ids)
        ready_after: dict[int, list[int]] = {}
        late = []
        for b, (_, _, names) in enumerate(self.buckets):
            if all(n in uses for n in names):
                ready_after.setdefault(min(uses[n] for n in names), []).append(b)
            else:
                late.append(b)
        self._ready_after, self._late = ready_after, late
        self._jobs = []
        self.armed = True
        self.tape.after_op = self._after_op

    def _after_op(self, i: int) -> None:
        for b in self._ready_after.get(i, ()):
            self._start(b)

    def _start(self, b: int) -> None:
        start, count, _ = self.buckets[b]
        if self.direct:
            from alpha.tensor.cpu_storage import data_ptr

            ptr = data_ptr(self.grads) + start * self.grads.itemsize
        else:  # host staging: wait for this bucket's gradients and copy them down
            ptr = self.staging.download(b)
            self._staged.append(b)
        self._jobs.append(self.comm.submit("the gradient all-reduce", self.mpi.allreduce, ptr,
                                           count))

    # ---- after it ---------------------------------------------------------------------------
    def finish(self) -> None:
        """Wait until every bucket is summed over the ranks (and copied back, off the CPU)."""
        self.tape.after_op = None
        if not self.armed:
            raise RuntimeError("GradSync.finish without arm() before the backward")
        self.armed = False
        for b in self._late:
            self._start(b)
        t0 = time.perf_counter()
        for job in self._jobs:
            job.wait()
        self.exposed_s = time.perf_counter() - t0
        for b in self._staged:
            self.staging.upload(b)
        self._staged = []
        self._jobs = []

