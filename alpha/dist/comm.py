"""One thread that makes every MPI call, and a timeout on every wait for it.

Why a thread of its own: ctypes releases the GIL while a foreign function runs, so a blocking
MPI_Allreduce on this thread proceeds while the main thread keeps running the backward pass's
kernels — that is the whole of the overlap on the CPU. Because only this thread ever calls MPI
(MPI_Init included), the library needs no more than MPI_THREAD_FUNNELED from the implementation.

Why a timeout: a rank that dies is usually reaped by the launcher (mpirun kills the job when a
rank exits abnormally), but a rank that hangs (deadlocked, stopped, a wedged GPU), or a launcher
that lets the others live, leaves the other ranks blocked inside a collective forever. Every wait
here gives up after ALPHA_DIST_TIMEOUT seconds with DistributedError; since the blocked MPI call
can never be taken back, the process is also made to exit a little later even if something on
the way out hangs (`_exit_later`).
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time

from alpha.core.errors import DistributedError

DEFAULT_TIMEOUT_S = 300.0
EXIT_GRACE_S = 30.0  # after a timeout, the process exits by itself this much later at the latest


def timeout_from_env() -> float:
    raw = os.environ.get("ALPHA_DIST_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise DistributedError(f"ALPHA_DIST_TIMEOUT={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise DistributedError(f"ALPHA_DIST_TIMEOUT={raw!r} must be > 0 seconds")
    return value


class Job:
    """One call queued for the MPI thread: `wait()` returns its result or raises its error."""

    __slots__ = ("fn", "args", "what", "done", "result", "error", "seconds", "comm")

    def __init__(self, comm: "Comm", what: str, fn, args):
        self.comm, self.what, self.fn, self.args = comm, what, fn, args
        self.done = threading.Event()
        self.result = self.error = None
        self.seconds = 0.0  # time the call took on the MPI thread

    def wait(self):
        self.comm.wait(self)
        return self.result


class Comm:
    """The MPI thread. `submit` queues a call and returns a Job at once; `call` waits for it."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.busy_s = 0.0  # seconds the MPI thread spent inside calls
        self.waited_s = 0.0  # seconds callers spent blocked in wait() (communication not hidden)
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="alpha-mpi", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            t0 = time.perf_counter()
            try:
                job.result = job.fn(*job.args)
            except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
                job.error = e
            job.seconds = time.perf_counter() - t0
            self.busy_s += job.seconds
            job.done.set()

    def submit(self, what: str, fn, *args) -> Job:
        job = Job(self, what, fn, args)
        self._queue.put(job)
        return job

    def call(self, what: str, fn, *args):
        return self.submit(what, fn, *args).wait()

    def wait(self, job: Job) -> None:
        t0 = time.perf_counter()
        finished = job.done.wait(self.timeout_s)
        self.waited_s += time.perf_counter() - t0
        if not finished:
            _exit_later(EXIT_GRACE_S)
            raise DistributedError(
                f"no answer from the other ranks for {self.timeout_s:g} s in {job.what}: a rank "
                "died or hangs (ALPHA_DIST_TIMEOUT sets the limit); resume from the last "
                "checkpoint"
            )
        if job.error is not None:
            raise job.error

    def close(self) -> None:
        """End the thread once the queue drains (after the last call)."""
        self._queue.put(None)
        self._thread.join(self.timeout_s)


def _exit_later(seconds: float) -> None:
    """Exit the process `seconds` from now, whatever the main thread is doing then: a rank stuck in
    a collective can hang the interpreter's shutdown too."""

    def bye():
        time.sleep(seconds)
        sys.stderr.flush()
        os._exit(3)

    threading.Thread(target=bye, name="alpha-mpi-exit", daemon=True).start()
