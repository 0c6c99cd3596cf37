"""MPI through ctypes: the dozen calls data-parallel training needs, for Open MPI and MPICH.

No mpi4py and no compiler: the library is loaded with ctypes (RTLD_GLOBAL, because Open MPI's
plugins resolve their symbols against libmpi) and the two implementations' handle conventions are
hidden here:

- Open MPI: a handle (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM...) is the ADDRESS of a global object
  exported by libmpi (`ompi_mpi_comm_world`...), and MPI_IN_PLACE is (void *) 1.
- MPICH (and its ABI family: Intel MPI, MVAPICH, Cray MPICH): a handle is a 32-bit integer fixed
  by mpi.h, and MPI_IN_PLACE is (void *) -1.

Which one we have is told by the symbols the library exports. Found through ALPHA_MPI_LIB (a
path or a name), else the usual names (libmpi.so.40 is Open MPI 3-5, libmpi.so.12 MPICH).

What this is not: a general binding. Every call here is blocking and collective over
MPI_COMM_WORLD; `alpha.dist.comm` runs them on one thread of their own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

from alpha.core.errors import DistributedError, MPIUnavailable

LIBRARY_NAMES = ("libmpi.so.40", "libmpi.so.12", "libmpich.so.12", "libmpi.so", "libmpich.so")
MPI_SUCCESS = 0
THREAD_SERIALIZED = 2  # the same value in every implementation
MAX_COUNT = 1 << 30  # elements per MPI call: counts are C ints, and big buffers go in chunks

# MPICH's handles, from its mpi.h (fixed by its ABI)
_MPICH = {
    "comm_world": 0x44000000, "info_null": 0x1C000000, "comm_type_shared": 1,
    "float": 0x4C00040A, "double": 0x4C00080B, "byte": 0x4C00010D,
    "sum": 0x58000003, "max": 0x58000001, "in_place": ctypes.c_void_p(-1 & (2**64 - 1)).value,
}
# Open MPI's handles are the addresses of these exported objects
_OMPI = {
    "comm_world": "ompi_mpi_comm_world", "info_null": "ompi_mpi_info_null",
    "float": "ompi_mpi_float", "double": "ompi_mpi_double", "byte": "ompi_mpi_byte",
    "sum": "ompi_mpi_op_sum", "max": "ompi_mpi_op_max",
}


def find_library() -> str:
    """The MPI library to load: ALPHA_MPI_LIB, else the first of the usual names that loads."""
    given = os.environ.get("ALPHA_MPI_LIB", "").strip()
    if given:
        return given
    candidates = list(LIBRARY_NAMES)
    found = ctypes.util.find_library("mpi")
    if found:
        candidates.insert(0, found)
    for name in candidates:
        try:
            ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
            return name
        except OSError:
            continue
    raise MPIUnavailable(
        "--distributed needs an MPI library and none is installed (apt-get install openmpi-bin, "
        "or set ALPHA_MPI_LIB=/path/to/libmpi.so)"
    )


class MPI:
    """One loaded MPI library. Construct, then `init()` on the thread that will make every call."""

    def __init__(self, path: str | None = None):
        path = path or find_library()
        try:
            self.lib = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError as e:
            raise MPIUnavailable(f"cannot load the MPI library {path} ({e}); set ALPHA_MPI_LIB "
                                 "to a working libmpi.so") from None
        self.path = path
        lib = self.lib
        if not hasattr(lib, "MPI_Init_thread"):
            raise MPIUnavailable(f"{path} is not an MPI library (no MPI_Init_thread); set "
                                 "ALPHA_MPI_LIB to a libmpi.so")
        if hasattr(lib, "ompi_mpi_comm_world"):
            self.flavour = "Open MPI"
            handle = ctypes.c_void_p  # a pointer to a predefined object
            h = {k: ctypes.addressof(ctypes.c_char.in_dll(lib, sym)) for k, sym in _OMPI.items()}
            h["comm_type_shared"] = 0
            h["in_place"] = 1
        else:
            self.flavour = "MPICH"
            handle = ctypes.c_int
            h = dict(_MPICH)
        self.h = h
        self.handle = handle
        self._int_handle = handle is ctypes.c_int
        p, i, pi = ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)
        sig = {
            "MPI_Init_thread": ([p, p, i, pi], i),
            "MPI_Initialized": ([pi], i),
            "MPI_Finalized": ([pi], i),
            "MPI_Finalize": ([], i),
            "MPI_Comm_rank": ([handle, pi], i),
            "MPI_Comm_size": ([handle, pi], i),
            "MPI_Comm_split_type": ([handle, i, i, handle, p], i),
            "MPI_Comm_free": ([p], i),
            "MPI_Allreduce": ([p, p, i, handle, handle, handle], i),
            "MPI_Bcast": ([p, i, handle, i, handle], i),
            "MPI_Barrier": ([handle], i),
            "MPI_Abort": ([handle, i], i),
        }
        for name, (args, res) in sig.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, res
        self.thread_level = 0
        self.rank = 0
        self.size = 1
        self.local_rank = 0
        self.local_size = 1

    def _check(self, what: str, code: int) -> None:
        if code != MPI_SUCCESS:
            raise DistributedError(f"MPI_{what} failed with error code {code}")

    # ---- life ----------------------------------------------------------------------------
    def init(self) -> None:
        provided = ctypes.c_int(0)
        self._check("Init_thread", self.lib.MPI_Init_thread(None, None, THREAD_SERIALIZED,
                                                            ctypes.byref(provided)))
        self.thread_level = provided.value
        world = self.h["comm_world"]
        out = ctypes.c_int()
        self._check("Comm_rank", self.lib.MPI_Comm_rank(world, ctypes.byref(out)))
        self.rank = out.value
        self._check("Comm_size", self.lib.MPI_Comm_size(world, ctypes.byref(out)))
        self.size = out.value
        # the ranks that share this node: the local rank picks the GPU and the thread count
        node = self.handle()
        self._check("Comm_split_type", self.lib.MPI_Comm_split_type(
            world, self.h["comm_type_shared"], self.rank, self.h["info_null"],
            ctypes.byref(node)))
        self._check("Comm_rank", self.lib.MPI_Comm_rank(node, ctypes.byref(out)))
        self.local_rank = out.value
        self._check("Comm_size", self.lib.MPI_Comm_size(node, ctypes.byref(out)))
        self.local_size = out.value
        self.lib.MPI_Comm_free(ctypes.byref(node))

    def initialized(self) -> bool:
        out = ctypes.c_int(0)
        self.lib.MPI_Initialized(ctypes.byref(out))
        return bool(out.value)

    def finalized(self) -> bool:
        out = ctypes.c_int(0)
        self.lib.MPI_Finalized(ctypes.byref(out))
        return bool(out.value)

    def finalize(self) -> None:
        if self.initialized() and not self.finalized():
            self._check("Finalize", self.lib.MPI_Finalize())

    def abort(self, code: int) -> None:
        """Stop every rank of the job (the launcher kills what does not stop by itself)."""
        self.lib.MPI_Abort(self.h["comm_world"], int(code))

    # ---- collectives ---------------------------------------------------------------------
    def allreduce(self, ptr: int, count: int, dtype: str = "float", op: str = "sum") -> None:
        """Reduce `count` elements at address `ptr` over all ranks, in place, in chunks of
        MAX_COUNT (MPI counts are C ints)."""
        size = 8 if dtype == "double" else 4
        h = self.h
        done = 0
        while done < count:
            n = min(MAX_COUNT, count - done)
            self._check("Allreduce", self.lib.MPI_Allreduce(
                h["in_place"], ptr + done * size, n, h[dtype], h[op], h["comm_world"]))
            done += n

    def bcast(self, ptr: int, nbytes: int, root: int = 0) -> None:
        h = self.h
        done = 0
        while done < nbytes:
            n = min(MAX_COUNT, nbytes - done)
            self._check("Bcast", self.lib.MPI_Bcast(ptr + done, n, h["byte"], root,
                                                    h["comm_world"]))
            done += n

    def barrier(self) -> None:
        self._check("Barrier", self.lib.MPI_Barrier(self.h["comm_world"]))
