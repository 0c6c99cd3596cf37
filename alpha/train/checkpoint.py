"""Checkpoint files: one binary file per checkpoint, written atomically and verified on load.

Layout (all integers little-endian):

    offset 0    magic          8 bytes  b"ALPHACKP"
    offset 8    version        u32      FORMAT_VERSION
    offset 12   header_len     u64      bytes of the JSON header
    offset 20   header         JSON (utf-8): configs, tokenizer, step, RNG state, data-loader state,
                               optimizer step, and the tensor index `tensors`: a list of
                               {name, dtype, shape, offset, nbytes}, offsets relative to the body
    ...         padding        zeros up to a multiple of 64 bytes (so the body is aligned)
    ...         body           the raw tensors, little-endian, in index order
    end - 32    checksum       sha256 of everything before it (magic through body)

The header also carries `body_size`, so a truncated file is told apart from a corrupt one before
the checksum is even computed. Writing goes to a temporary file in the same folder, is fsynced and
renamed into place: a crash leaves the previous checkpoint, never half a new one.
"""

from __future__ import annotations

import array
import hashlib
import json
import math
import mmap
import os
import struct
import sys
from dataclasses import dataclass

from alpha.core.atomic import atomic_open
from alpha.core.backend import DTYPES
from alpha.core.errors import CheckpointError
from alpha.core.files import check_file
from alpha.model.params import param_offsets

MAGIC = b"ALPHACKP"
FORMAT_VERSION = 1
ALIGN = 64
_PREFIX = struct.Struct("<8sIQ")  # magic, version, header_len
_DIGEST = 32
TMP_PREFIX = ".tmp-ckpt-"  # a checkpoint being written (removed at the next start if left over)


def file_name(step: int) -> str:
    """`step-<N>.ckpt`: the one place this name is spelled."""
    return f"step-{step}.ckpt"


def step_of(name: str) -> int | None:
    """N of a file named `step-<N>.ckpt`, else None (temporary files, other files)."""
    base = os.path.basename(name)
    if not (base.startswith("step-") and base.endswith(".ckpt")):
        return None
    digits = base[5:-5]
    return int(digits) if digits.isdigit() and digits.isascii() else None


def list_steps(folder: str) -> dict[int, str]:
    """{step: path} of the checkpoint files in `folder` by name (none when it is missing)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return {}
    out = {}
    for name in names:
        step = step_of(name)
        if step is not None:
            out[step] = os.path.join(folder, name)
    return out


def find(run_or_path: str, outputs: str = "outputs") -> str:
    """A checkpoint path from a checkpoint file, a run folder (its latest checkpoint) or a run id
    under `outputs`."""
    if os.path.isfile(run_or_path):
        return run_or_path
    folder = run_or_path
    if not os.path.isdir(folder) and os.path.isdir(os.path.join(outputs, run_or_path)):
        folder = os.path.join(outputs, run_or_path)
    if not os.path.isdir(folder):
        raise CheckpointError(f"no run folder or checkpoint at {run_or_path}")
    steps = list_steps(os.path.join(folder, "checkpoints"))
    if not steps:
        raise CheckpointError(f"run {folder} has no checkpoints yet")
    return steps[max(steps)]


@dataclass
class Checkpoint:
    path: str
    header: dict
    tensors: dict  # name -> array.array (host, native byte order); memoryviews if mapped
    size: int  # bytes on disk
    checksum: str  # hex sha256

    @property
    def step(self) -> int:
        return int(self.header["step"])


def _as_bytes(data, dtype: str) -> bytes | memoryview:
    code, size = DTYPES[dtype]
    if isinstance(data, array.array):
        if data.typecode != code:
            data = array.array(code, data)
        if sys.byteorder != "little":
            data = array.array(code, data)
            data.byteswap()
        return memoryview(data).cast("B")
    mv = memoryview(data).cast("B")
    if sys.byteorder != "little":
        swapped = array.array(code, mv.tobytes())
        swapped.byteswap()
        return memoryview(swapped).cast("B")
    return mv


def save(path: str, header: dict, tensors: dict) -> tuple[int, str]:
    """Write a checkpoint atomically. `tensors` maps name -> (data, shape, dtype) where data is an
    array.array or any buffer of that dtype, or a list of them written one after the other (a
    tensor gathered from pieces, e.g. straight from another file's memory map, without a copy).
    Returns (size in bytes, hex sha256 checksum)."""
    index = []
    blobs = []
    offset = 0
    for name, (data, shape, dtype) in tensors.items():
        parts = [_as_bytes(d, dtype) for d in (data if isinstance(data, list) else [data])]
        nbytes = sum(b.nbytes for b in parts)
        count = 1
        for n in shape:
            count *= n
        if nbytes != count * DTYPES[dtype][1]:
            raise ValueError(
                f"tensor {name}: {nbytes} bytes do not match shape {shape} {dtype}")
        index.append({"name": name, "dtype": dtype, "shape": list(shape), "offset": offset,
                      "nbytes": nbytes})
        blobs.extend(parts)
        offset += nbytes
    header = {**header, "tensors": index, "body_size": offset}
    head = json.dumps(header, separators=(",", ":"), allow_nan=True).encode("utf-8")
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(head))
    pad = (-(len(prefix) + len(head))) % ALIGN

    digest = hashlib.sha256()
    size = 0
    total = len(prefix) + len(head) + pad + offset + _DIGEST
    with atomic_open(path, prefix=TMP_PREFIX, size_hint=total) as f:
        for chunk in (prefix, head, b"\0" * pad, *blobs):
            digest.update(chunk)
            f.write(chunk)
            size += len(chunk) if isinstance(chunk, bytes) else chunk.nbytes
        f.write(digest.digest())
        size += _DIGEST
    return size, digest.hexdigest()


def _read_prefix(path: str, f, file_size: int) -> tuple[dict, int]:
    """Parse magic, version and header; return (header, offset of the body)."""
    raw = f.read(_PREFIX.size)
    if raw[:len(MAGIC)] != MAGIC[:len(raw)]:  # a short file that is not one of ours
        raise CheckpointError(f"{path} is not an Alpha checkpoint (bad magic bytes)")
    if len(raw) < _PREFIX.size:
        raise CheckpointError(f"checkpoint {path} is truncated ({file_size} bytes): no header")
    magic, version, head_len = _PREFIX.unpack(raw)
    if magic != MAGIC:
        raise CheckpointError(f"{path} is not an Alpha checkpoint (bad magic bytes)")
    if version > FORMAT_VERSION or version < 1:
        raise CheckpointError(
            f"checkpoint {path} has format version {version}; this Alpha reads version "
            f"{FORMAT_VERSION} (upgrade Alpha to load it)"
        )
    if _PREFIX.size + head_len > file_size:
        raise CheckpointError(
            f"checkpoint {path} is truncated: the header needs {head_len} bytes, the file has "
            f"{file_size}"
        )
    head = f.read(head_len)
    try:
        header = json.loads(head.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(
            f"checkpoint {path} is corrupt: its header is not valid JSON") from None
    if not isinstance(header, dict) or "tensors" not in header or "body_size" not in header:
        raise CheckpointError(f"checkpoint {path} is corrupt: its header lacks the tensor index")
    _check_index(path, header)
    body_at = _PREFIX.size + head_len
    body_at += (-body_at) % ALIGN
    return header, body_at


def _is_count(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _check_index(path: str, header: dict) -> None:
    """The header's step and tensor index are well-formed: every tensor lies inside the body and
    its size matches its dtype and shape (a header from another tool, or edited by hand, is
    refused here rather than misread)."""
    def bad(what):
        return CheckpointError(f"checkpoint {path} is corrupt: {what}")

    if not _is_count(header.get("step")):
        raise bad(f"step {header.get('step')!r} is not a step number")
    body_size = header["body_size"]
    if not _is_count(body_size):
        raise bad(f"body_size {body_size!r} is not a byte count")
    if not isinstance(header["tensors"], list):
        raise bad("the tensor index is not a list")
    for entry in header["tensors"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise bad(f"tensor index entry {entry!r} has no name")
        name = entry["name"]
        if not isinstance(entry.get("dtype"), str) or entry["dtype"] not in DTYPES:
            raise bad(f"tensor {name} has unknown dtype {entry.get('dtype')!r}")
        shape, offset, nbytes = entry.get("shape"), entry.get("offset"), entry.get("nbytes")
        if not isinstance(shape, list) or not all(_is_count(n) for n in shape):
            raise bad(f"tensor {name} has a bad shape {shape!r}")
        if not (_is_count(offset) and _is_count(nbytes)) or offset + nbytes > body_size:
            raise bad(f"tensor {name} lies outside the body (offset {offset!r}, "
                      f"{nbytes!r} bytes, body {body_size})")
        count = 1
        for n in shape:
            count *= n
        if nbytes != count * DTYPES[entry["dtype"]][1]:
            raise bad(f"tensor {name}: {nbytes} bytes do not match shape {shape} "
                      f"{entry['dtype']}")


def read_header(path: str) -> dict:
    """The JSON header alone (no checksum verification): for listings and retention."""
    file_size = _file_size(path)
    with open(path, "rb") as f:
        header, _ = _read_prefix(path, f, file_size)
    return header


def _file_size(path: str) -> int:
    return check_file(path, "checkpoint", CheckpointError)


def load(path: str, mapped: bool = False) -> Checkpoint:
    """Read and verify a checkpoint. Raises CheckpointError naming what is wrong.

    `mapped`: memory-map the file instead of reading it, and hand out each tensor as a read-only
    memoryview of the map (typed, e.g. format "f") rather than a copied array.array: for readers
    that only pass the bytes on (export), on little-endian machines."""
    file_size = _file_size(path)
    with open(path, "rb") as f:
        header, body_at = _read_prefix(path, f, file_size)
        expected = body_at + int(header["body_size"]) + _DIGEST
        if file_size < expected:
            raise CheckpointError(
                f"checkpoint {path} is truncated: expected {expected} bytes, found {file_size} "
                "(was it copied while being written?)"
            )
        if file_size > expected:
            raise CheckpointError(
                f"checkpoint {path} is corrupt: {file_size - expected} unexpected bytes at the end"
            )
        f.seek(0)
        mapped = mapped and sys.byteorder == "little"
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if mapped else f.read()
    digest = hashlib.sha256(memoryview(data)[: file_size - _DIGEST]).digest()
    if digest != data[file_size - _DIGEST:]:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: its sha256 checksum does not match its contents"
        )
    body = memoryview(data)[body_at: body_at + int(header["body_size"])]
    tensors = {}
    for entry in header["tensors"]:  # checked by _check_index
        code, _ = DTYPES[entry["dtype"]]
        if mapped:
            tensors[entry["name"]] = body[entry["offset"]: entry["offset"] + entry["nbytes"]] \
                .cast(code)
            continue
        arr = array.array(code)
        arr.frombytes(body[entry["offset"]: entry["offset"] + entry["nbytes"]])
        if sys.byteorder != "little":
            arr.byteswap()
        tensors[entry["name"]] = arr
    return Checkpoint(path=path, header=header, tensors=tensors, size=file_size,
                      checksum=digest.hex())


def param_layout(cfg) -> list[dict]:
    """The checkpoint's record of the flat layout: name, shape, offset and size of each."""
    return [{"name": name, "shape": list(shape), "offset": off, "numel": math.prod(shape)}
            for name, (off, shape) in param_offsets(cfg).items()]


def val_losses(folder: str) -> dict:
    """step -> val_loss of the checkpoints already in a folder (a resumed run prunes them too)."""
    out = {}
    for step, path in list_steps(folder).items():
        try:
            header = read_header(path)
        except CheckpointError:
            continue
        val = header.get("val_loss")
        out[step] = val if isinstance(val, (int, float)) else None
    return out


def prune(checkpoints: dict, keep_n: int, path_of) -> list[str]:
    """Retention: keep the newest `keep_n` checkpoints and the best-val one (keep_n <= 0 keeps
    them all). `checkpoints` (step -> val_loss) loses the pruned steps; `path_of(step)` names a
    step's file. Returns the paths removed."""
    if keep_n <= 0:
        return []
    steps = sorted(checkpoints)
    keep = set(steps[-keep_n:])
    with_val = [(v, s) for s, v in checkpoints.items() if v is not None and math.isfinite(v)]
    if with_val:
        keep.add(min(with_val)[1])
    removed = []
    for s in steps:
        if s not in keep:
            path = path_of(s)
            try:
                os.unlink(path)
                removed.append(path)
            except OSError:
                pass
            del checkpoints[s]
    return removed
