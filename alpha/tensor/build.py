"""Builds the C kernels (`alpha/tensor/csrc/*.c`) into one shared library and loads it with ctypes.

The library is compiled on first use with the system compiler (`$CC`, else `cc`) and cached in
`$ALPHA_CACHE_DIR` (default `$XDG_CACHE_HOME/alpha` or `~/.cache/alpha`), under a name keyed by a
hash of the sources, the flags and the compiler's version, so an edited kernel or a new compiler
rebuilds and nothing stale is ever loaded. Two processes building at once take a file lock; the
library is written to a temporary name and renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from alpha.core.errors import CompilerNotFound

CSRC = Path(__file__).parent / "csrc"
# No -ffast-math: it changes results (NaN checks, GELU backward) — see STYLE.md.
BASE_FLAGS = ["-O3", "-fPIC", "-shared", "-pthread", "-std=gnu11", "-fno-math-errno"]
NATIVE_FLAGS = ["-march=native"]

_lib = None


def cache_dir() -> Path:
    root = os.environ.get("ALPHA_CACHE_DIR")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "alpha" if xdg else Path.home() / ".cache" / "alpha"


def compiler() -> str:
    cc = os.environ.get("CC", "cc")
    path = shutil.which(cc)
    if not path:
        raise CompilerNotFound(
            f"no C compiler found ({cc!r} is not on PATH): Alpha compiles its CPU kernels on first "
            "use; install one with `apt-get install gcc` (or set CC)"
        )
    return path


def compiler_version(cc: str) -> str:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
    except OSError as e:
        raise CompilerNotFound(f"cannot run the C compiler {cc}: {e}") from None
    return out.stdout.strip()


def sources() -> list[Path]:
    return sorted(CSRC.glob("*.c"))


def library_key(cc: str, flags: list[str]) -> str:
    h = hashlib.sha256()
    for p in sorted(CSRC.glob("*.[ch]")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    h.update(" ".join(flags).encode())
    h.update(compiler_version(cc).encode())
    h.update(sys.platform.encode())
    return h.hexdigest()[:20]


def _compile(cc: str, flags: list[str], dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    cmd = [cc, *flags, "-I", str(CSRC), *map(str, sources()), "-o", str(tmp), "-lm"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except OSError as e:
        raise CompilerNotFound(f"cannot run the C compiler {cc}: {e}") from None
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"compiling the C kernels failed:\n{' '.join(cmd)}\n{proc.stderr}")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, dest)


def build(verbose: bool = False) -> Path:
    """Return the path of the compiled library, building it if the cache lacks it."""
    cc = compiler()
    flags = BASE_FLAGS + NATIVE_FLAGS
    if not _flags_work(cc, flags):
        flags = list(BASE_FLAGS)  # a compiler without -march=native: portable code paths
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    dest = directory / f"libalpha-{library_key(cc, flags)}.so"
    if dest.exists():
        return dest
    with open(directory / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not dest.exists():  # another process may have built it while we waited
                if verbose:
                    print(f"compiling C kernels -> {dest}", file=sys.stderr)
                _compile(cc, flags, dest)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return dest


def _flags_work(cc: str, flags: list[str]) -> bool:
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "t.c"
        src.write_text("int f(void) { return 1; }\n")
        proc = subprocess.run([cc, *flags, str(src), "-o", str(Path(d) / "t.so")],
                              capture_output=True)
        return proc.returncode == 0


def lib() -> ctypes.CDLL:
    """The loaded kernel library (built on first call)."""
    global _lib
    if _lib is None:
        _lib = ctypes.CDLL(str(build()))
        _declare_core(_lib)
    return _lib


def _declare_core(L: ctypes.CDLL) -> None:
    L.alpha_num_threads.restype = ctypes.c_int
    L.alpha_num_threads.argtypes = []
    L.alpha_set_num_threads.restype = None
    L.alpha_set_num_threads.argtypes = [ctypes.c_int]


def num_threads() -> int:
    return lib().alpha_num_threads()


def set_num_threads(n: int) -> None:
    lib().alpha_set_num_threads(int(n))
