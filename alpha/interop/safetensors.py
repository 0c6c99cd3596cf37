"""safetensors files on the standard library: a strict reader (memory-mapped) and an atomic writer.

The format (https://github.com/huggingface/safetensors):

    offset 0    N              u64 little-endian: bytes of the JSON header
    offset 8    header         N bytes of UTF-8 JSON: {name: {"dtype", "shape", "data_offsets":
                               [begin, end]}, ..., "__metadata__": {str: str}}, padded with spaces
    offset 8+N  data           the raw little-endian tensors; offsets are relative to here

The reader checks everything before it hands out a byte: the header's size (at most
MAX_HEADER_BYTES, inside the file), its JSON (an object, no repeated names), every entry's dtype,
shape and offsets (inside the data, `end - begin` equal to the shape's size), and that the tensors
tile the data exactly (no overlap, no gap, nothing after the last one). Every error is a
SafetensorsError that names the file and the tensor. Tensors of F32, F16 and BF16 load as float32
`array('f')`; F64 is narrowed to float32 too. Other dtypes are recognised (their sizes are checked)
but not loaded.

What this is not: a general tensor library. There is no slicing of tensors nor lazy views beyond
`raw()`, which hands out the bytes of one tensor straight from the map.
"""

from __future__ import annotations

import array
import json
import math
import mmap
import os
import struct
import sys

from alpha.core.atomic import atomic_open
from alpha.core.errors import InteropError

MAX_HEADER_BYTES = 100_000_000  # as the reference implementation: a header this big is an attack
ALIGN = 8  # the header is padded with spaces so the data starts 8-byte aligned

# dtype -> bytes per element (every dtype the format defines; sizes are checked for all of them)
ITEMSIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")  # what `get` converts to float32
_CHUNK = 1 << 20  # elements converted per step (F16, F64): bounds the temporary Python objects


class SafetensorsError(InteropError):
    """A safetensors file is missing, corrupt or holds something we cannot load."""


class TensorInfo:
    __slots__ = ("name", "dtype", "shape", "begin", "end")

    def __init__(self, name: str, dtype: str, shape: tuple[int, ...], begin: int, end: int):
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.begin = begin  # byte offsets into the data section
        self.end = end

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    def __repr__(self) -> str:
        return f"TensorInfo({self.name!r}, {self.dtype}, {self.shape})"


# ---- reading --------------------------------------------------------------------------------


class SafetensorsFile:
    """An open, validated safetensors file; the data is memory-mapped, read only when asked.

        with SafetensorsFile("model.safetensors") as st:
            for name in st.names():
                values = st.get(name)  # array('f'), row-major
    """

    def __init__(self, path: str):
        self.path = path
        if not os.path.exists(path):
            raise SafetensorsError(f"safetensors file not found: {path}")
        if not os.path.isfile(path):
            raise SafetensorsError(f"{path} is not a regular file")
        self._file = open(path, "rb")
        try:
            self.size = os.fstat(self._file.fileno()).st_size
            self.metadata, self.tensors, self._data_at = _parse_header(path, self._file, self.size)
            self._map = (mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
                         if self.size else None)
        except BaseException:
            self._file.close()
            raise

    # the tensors, in the order of their data
    def names(self) -> list[str]:
        return list(self.tensors)

    def info(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise SafetensorsError(f"{self.path} has no tensor {name!r}") from None

    def raw(self, name: str) -> memoryview:
        """The tensor's bytes, little-endian, straight from the map (no copy). Release the view
        before closing the file."""
        t = self.info(name)
        return memoryview(self._map)[self._data_at + t.begin: self._data_at + t.end]

    def get(self, name: str) -> array.array:
        """The tensor as float32 values (`array('f')`, row-major), converted from F16/BF16/F64."""
        t = self.info(name)
        with self.raw(name) as raw:
            return to_f32(raw, t.dtype, f"{self.path}: tensor {name!r}")

    def close(self) -> None:
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:
                # a view of it is still alive (e.g. held by the traceback of the error being
                # raised through our __exit__): the map is freed with that view; hiding the
                # real error behind this one would be worse (qa)
                pass
            self._map = None
        self._file.close()

    def __enter__(self) -> "SafetensorsFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _no_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise SafetensorsError(f"the header names {key!r} twice")
        out[key] = value
    return out


def _parse_header(path: str, f, size: int) -> tuple[dict, dict[str, TensorInfo], int]:
    """(metadata, {name: TensorInfo} in data order, offset of the data section)."""
    if size < 8:
        raise SafetensorsError(f"{path} is not a safetensors file: {size} bytes, too short to "
                               "hold the header length")
    (n,) = struct.unpack("<Q", f.read(8))
    if n > MAX_HEADER_BYTES:
        raise SafetensorsError(f"{path}: the header claims {n} bytes, more than the "
                               f"{MAX_HEADER_BYTES} allowed (not a safetensors file?)")
    if 8 + n > size:
        raise SafetensorsError(f"{path} is truncated: the header needs {n} bytes, the file has "
                               f"{size - 8} after the length")
    head = f.read(n)
    if not head.startswith(b"{"):
        raise SafetensorsError(f"{path}: the header is not a JSON object")
    try:
        raw = json.loads(head.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError:
        raise SafetensorsError(f"{path}: the header is not UTF-8") from None
    except json.JSONDecodeError as e:
        raise SafetensorsError(f"{path}: the header is not valid JSON ({e.msg} at byte "
                               f"{e.pos})") from None
    except SafetensorsError as e:
        raise SafetensorsError(f"{path}: {e}") from None
    if not isinstance(raw, dict):
        raise SafetensorsError(f"{path}: the header is not a JSON object")

    metadata = raw.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise SafetensorsError(f"{path}: __metadata__ must map strings to strings")

    data_size = size - 8 - n
    tensors = [_entry(path, name, entry, data_size) for name, entry in raw.items()]
    # The tensors must tile the data section: sorted by offset, each starts where the last ended.
    tensors.sort(key=lambda t: (t.begin, t.end))
    at, last = 0, None
    for t in tensors:
        if t.begin < at:
            raise SafetensorsError(
                f"{path}: tensor {t.name!r} (bytes {t.begin}..{t.end}) overlaps tensor "
                f"{last.name!r} (bytes {last.begin}..{last.end})")
        if t.begin > at:
            raise SafetensorsError(f"{path}: {t.begin - at} bytes of the data before tensor "
                                   f"{t.name!r} belong to no tensor")
        at, last = t.end, t
    if at != data_size:
        raise SafetensorsError(f"{path}: the tensors cover {at} bytes of data but the file holds "
                               f"{data_size} (truncated, or bytes appended)")
    return metadata, {t.name: t for t in tensors}, 8 + n


def _entry(path: str, name: str, entry, data_size: int) -> TensorInfo:
    where = f"{path}: tensor {name!r}"
    if not isinstance(entry, dict):
        raise SafetensorsError(f"{where}: its header entry is not an object")
    unknown = set(entry) - {"dtype", "shape", "data_offsets"}
    if unknown:
        raise SafetensorsError(f"{where}: unknown fields {sorted(unknown)} in its header entry")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in ITEMSIZE:
        raise SafetensorsError(f"{where} has an unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_is_uint(d) for d in shape):
        raise SafetensorsError(f"{where}: shape {shape!r} is not a list of sizes >= 0")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_is_uint, offsets))
            or offsets[0] > offsets[1]):
        raise SafetensorsError(f"{where}: data_offsets {offsets!r} is not [begin, end] with "
                               "0 <= begin <= end")
    begin, end = offsets
    if end > data_size:
        raise SafetensorsError(f"{where}: data_offsets [{begin}, {end}] run past the end of the "
                               f"data ({data_size} bytes; truncated file?)")
    want = math.prod(shape) * ITEMSIZE[dtype]
    if end - begin != want:
        raise SafetensorsError(f"{where}: shape {shape} of {dtype} needs {want} bytes but its "
                               f"data_offsets span {end - begin}")
    return TensorInfo(name, dtype, tuple(shape), begin, end)


def _is_uint(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def to_f32(raw, dtype: str, where: str = "tensor") -> array.array:
    """Little-endian bytes of `dtype` -> array('f')."""
    out = array.array("f")
    if dtype == "F32":
        out.frombytes(raw)
        if sys.byteorder != "little":
            out.byteswap()
    elif dtype == "BF16":
        # bfloat16 is the top half of a float32: put its two bytes above two zero bytes.
        n = len(raw) // 2
        buf = bytearray(4 * n)
        src = raw if sys.byteorder == "little" else None
        if src is None:
            raise SafetensorsError(f"{where}: BF16 is read on little-endian machines only")
        buf[2::4] = src[0::2]
        buf[3::4] = src[1::2]
        out.frombytes(buf)
    elif dtype in ("F16", "F64"):
        code, size = ("e", 2) if dtype == "F16" else ("d", 8)
        n = len(raw) // size
        for start in range(0, n, _CHUNK):
            k = min(_CHUNK, n - start)
            out.extend(struct.unpack_from(f"<{k}{code}", raw, start * size))
    else:
        raise SafetensorsError(f"{where} has dtype {dtype}; Alpha loads F32, F16, BF16 and F64")
    return out


def read(path: str) -> tuple[dict[str, array.array], dict]:
    """Every tensor of a file as float32: ({name: array('f')}, metadata)."""
    with SafetensorsFile(path) as st:
        return {name: st.get(name) for name in st.names()}, dict(st.metadata)


# ---- writing --------------------------------------------------------------------------------


def from_f32(values, dtype: str) -> bytes | memoryview:
    """float32 values (array('f') or any sequence of floats) -> little-endian bytes of `dtype`
    (F32, F16 or BF16; BF16 rounds to nearest even, as PyTorch does)."""
    if dtype == "F32":
        arr = values if isinstance(values, array.array) and values.typecode == "f" else \
            array.array("f", values)
        if sys.byteorder != "little":
            arr = array.array("f", arr)
            arr.byteswap()
        return memoryview(arr).cast("B")
    if dtype == "F16":
        return struct.pack(f"<{len(values)}e", *values)
    if dtype == "BF16":
        bits = array.array("I", array.array("f", values).tobytes())
        out = array.array("H", bytes(2 * len(bits)))
        for i, b in enumerate(bits):
            if (b & 0x7F800000) == 0x7F800000 and b & 0x7FFFFF:  # NaN stays a (quiet) NaN
                out[i] = (b >> 16) | 0x40
            else:
                out[i] = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
        if sys.byteorder != "little":
            out.byteswap()
        return out.tobytes()
    raise SafetensorsError(f"cannot write dtype {dtype} (Alpha writes F32, F16 and BF16)")


def write(path: str, tensors: dict, metadata: dict | None = None) -> int:
    """Write a safetensors file atomically; returns its size in bytes.

    `tensors` maps name -> (data, shape, dtype): data is little-endian bytes of that dtype (any
    buffer), or, for F32/F16/BF16, an array('f') or sequence of floats to convert. Tensors are
    stored in the order given."""
    header: dict = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise SafetensorsError("safetensors __metadata__ must map strings to strings")
        header["__metadata__"] = dict(metadata)
    blobs = []
    at = 0
    for name, (data, shape, dtype) in tensors.items():
        if name == "__metadata__":
            raise SafetensorsError("a tensor cannot be named __metadata__")
        if not isinstance(dtype, str) or dtype not in ITEMSIZE:
            raise SafetensorsError(f"tensor {name!r}: unknown dtype {dtype!r}")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            data = from_f32(data, dtype)
        blob = memoryview(data).cast("B")
        want = math.prod(shape) * ITEMSIZE[dtype]
        if blob.nbytes != want:
            raise SafetensorsError(f"tensor {name!r}: {blob.nbytes} bytes for shape "
                                   f"{list(shape)} of {dtype} (needs {want})")
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [at, at + want]}
        blobs.append(blob)
        at += want
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("utf-8")
    head += b" " * ((-(8 + len(head))) % ALIGN)
    with atomic_open(path, prefix=".tmp-safetensors-") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for blob in blobs:
            f.write(blob)
    return 8 + len(head) + at
