"""alpha.interop.safetensors on its own: round trips, dtype conversion, and every kind of corrupt
file refused with an error naming the file and tensor. (Files written and read by the real
`safetensors` library: tests/test_interop_hf.py.)"""

from __future__ import annotations

import json
import math
import struct
from array import array

import pytest

from alpha.core.errors import AlphaError, InteropError
from alpha.interop import safetensors as st


def _file(path, header: dict, data: bytes, pad: bool = True) -> str:
    head = json.dumps(header).encode()
    if pad:
        head += b" " * ((-(8 + len(head))) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head + data)
    return str(path)


def test_round_trip_f32_with_metadata(tmp_path):
    a = array("f", [0.5 * i - 3 for i in range(12)])
    b = array("f", [1.0, -2.0, float("inf")])
    path = str(tmp_path / "m.safetensors")
    size = st.write(path, {"w": (a, (3, 4), "F32"), "b": (b, (3,), "F32")},
                    metadata={"format": "pt"})
    raw = open(path, "rb").read()
    assert size == len(raw)
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0  # the data starts aligned
    with st.SafetensorsFile(path) as f:
        assert f.names() == ["w", "b"]
        assert f.metadata == {"format": "pt"}
        assert f.info("w").shape == (3, 4) and f.info("w").dtype == "F32"
        assert f.get("w") == a and f.get("b") == b
        with f.raw("b") as view:
            assert bytes(view) == b.tobytes()
    tensors, meta = st.read(path)
    assert tensors["w"] == a and meta == {"format": "pt"}


def test_f16_and_bf16_load_as_f32(tmp_path):
    values = [0.0, 1.0, -2.5, 0.333251953125, 65504.0, -1e-3, 3.0e38, float("inf")]
    f16 = values[:6]
    path = str(tmp_path / "h.safetensors")
    st.write(path, {"h": (f16, (6,), "F16"), "b": (values, (8,), "BF16")})
    with st.SafetensorsFile(path) as f:
        assert f.info("h").dtype == "F16" and f.info("b").dtype == "BF16"
        got_h = f.get("h")
        got_b = f.get("b")
    assert got_h.typecode == "f" and got_b.typecode == "f"
    for want, got in zip(f16, got_h):
        assert got == pytest.approx(want, rel=1e-3, abs=1e-7)
    for want, got in zip(values, got_b):  # bfloat16 keeps 8 bits of mantissa
        assert got == pytest.approx(want, rel=2 ** -8)
    # bf16 round-to-nearest-even, bit-exact: 1 + 2^-8 is a tie and goes to 1 (even)
    assert st.from_f32([1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8], "BF16") == struct.pack("<2H", 0x3F80,
                                                                                   0x3F82)


def test_f64_loads_and_other_dtypes_are_named(tmp_path):
    d = struct.pack("<3d", 1.5, -2.0, 1e-300)
    i = struct.pack("<2q", 7, 8)
    path = _file(tmp_path / "x.safetensors",
                 {"d": {"dtype": "F64", "shape": [3], "data_offsets": [0, 24]},
                  "ids": {"dtype": "I64", "shape": [2], "data_offsets": [24, 40]}}, d + i)
    with st.SafetensorsFile(path) as f:
        assert list(f.get("d")) == [1.5, -2.0, 0.0]
        with pytest.raises(InteropError, match="'ids' has dtype I64"):
            f.get("ids")
        with pytest.raises(InteropError, match="no tensor 'nope'"):
            f.get("nope")


def test_empty_tensor_and_empty_file_header(tmp_path):
    path = str(tmp_path / "e.safetensors")
    st.write(path, {"z": (b"", (0, 5), "F32")})
    with st.SafetensorsFile(path) as f:
        assert f.get("z") == array("f")
    path2 = _file(tmp_path / "n.safetensors", {}, b"")
    with st.SafetensorsFile(path2) as f:
        assert f.names() == []


GOOD = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}


@pytest.mark.parametrize("header, data, message", [
    # a header that lies about sizes: shape (3,) of F32 is 12 bytes, offsets span 8
    ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]},
      "b": GOOD["b"]}, bytes(12), r"tensor 'a': shape \[3\] of F32 needs 12 bytes but its "
                                  r"data_offsets span 8"),
    # overlapping offsets
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12),
     r"tensor 'b' \(bytes 4..12\) overlaps tensor 'a'"),
    # offsets past the end of the data (a truncated file)
    (GOOD, bytes(10), r"tensor 'b': data_offsets \[8, 12\] run past the end"),
    # a gap that belongs to no tensor
    ({"a": GOOD["a"], "b": {"dtype": "F32", "shape": [1], "data_offsets": [12, 16]}}, bytes(16),
     r"4 bytes of the data before tensor 'b' belong to no tensor"),
    # bytes after the last tensor
    (GOOD, bytes(16), r"cover 12 bytes of data but the file holds 16"),
    ({"a": {"dtype": "F17", "shape": [2], "data_offsets": [0, 8]}}, bytes(8),
     r"tensor 'a' has an unknown dtype 'F17'"),
    ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, bytes(8),
     r"tensor 'a': shape \[-2\] is not a list of sizes"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, bytes(8),
     r"tensor 'a': data_offsets \[8, 0\] is not \[begin, end\]"),
    ({"a": {"dtype": "F32", "shape": [2]}}, bytes(8), r"tensor 'a': data_offsets None"),
    ({"a": [1, 2]}, bytes(8), r"tensor 'a': its header entry is not an object"),
    ({"__metadata__": {"format": 1}, **GOOD}, bytes(12), r"__metadata__ must map strings"),
])
def test_corrupt_headers_are_refused_naming_the_tensor(tmp_path, header, data, message):
    path = _file(tmp_path / "bad.safetensors", header, data)
    with pytest.raises(InteropError, match=message) as e:
        st.SafetensorsFile(path)
    assert path in str(e.value)  # every message names the file
    assert isinstance(e.value, AlphaError)  # the CLI prints it in one line, exit 2


def test_truncated_and_garbage_files(tmp_path):
    good = str(tmp_path / "good.safetensors")
    st.write(good, {"a": (array("f", range(100)), (10, 10), "F32")})
    raw = open(good, "rb").read()
    cases = {
        "short": (raw[:5], "too short"),
        "cut-header": (raw[:20], "truncated: the header needs"),
        "cut-data": (raw[:-4], "run past the end"),
        "huge-header": (struct.pack("<Q", 2 ** 40) + raw[8:], "more than the 100000000 allowed"),
        "not-json": (struct.pack("<Q", 8) + b"{nonsens", "not valid JSON"),
        "not-object": (struct.pack("<Q", 8) + b"[1,2,3] ", "not a JSON object"),
        "not-utf8": (struct.pack("<Q", 4) + b"{\xff\xfe}", "not UTF-8"),
        "dup": (struct.pack("<Q", 16) + b'{"a":{},"a":{}} ', "names 'a' twice"),
    }
    for name, (blob, message) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(blob)
        with pytest.raises(InteropError, match=message):
            st.SafetensorsFile(str(path))
    with pytest.raises(InteropError, match="not found"):
        st.SafetensorsFile(str(tmp_path / "missing.safetensors"))
    with pytest.raises(InteropError, match="not a regular file"):
        st.SafetensorsFile(str(tmp_path))


def test_writer_checks_sizes_and_names(tmp_path):
    path = str(tmp_path / "w.safetensors")
    with pytest.raises(InteropError, match=r"tensor 'x': 8 bytes for shape \[3\]"):
        st.write(path, {"x": (bytes(8), (3,), "F32")})
    with pytest.raises(InteropError, match="__metadata__"):
        st.write(path, {"__metadata__": (bytes(4), (1,), "F32")})
    with pytest.raises(InteropError, match="unknown dtype"):
        st.write(path, {"x": (bytes(4), (1,), "F33")})
    import os
    assert not os.path.exists(path)  # nothing half-written


def test_large_tensor_is_mapped_not_read(tmp_path):
    n = 1 << 20
    big = array("f", [0.0]) * n
    big[n - 1] = 7.0
    path = str(tmp_path / "big.safetensors")
    st.write(path, {"big": (big, (1024, 1024), "F32"), "small": ([1.0], (1,), "F32")})
    with st.SafetensorsFile(path) as f:
        assert f.get("small") == array("f", [1.0])
        with f.raw("big") as view:
            assert len(view) == 4 * n
            assert struct.unpack_from("<f", view, 4 * (n - 1))[0] == 7.0
        assert math.isclose(sum(f.get("big")), 7.0)


def test_fuzzed_files_load_or_fail_in_one_line(tmp_path):
    """Mutated headers and bytes: every tensor readable, or an AlphaError of one line."""
    import random

    from test_fuzz import expect_typed, mutate_bytes, mutate_json

    good = str(tmp_path / "good.safetensors")
    st.write(good, {"w": (array("f", range(12)), (3, 4), "F32"), "h": ([1.0, 2.0], (2,), "F16"),
                    "b": ([3.0], (1,), "BF16")}, metadata={"format": "pt"})
    raw = open(good, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header, data = json.loads(raw[8:8 + n]), raw[8 + n:]
    rng = random.Random(11)

    def read_all(path):
        with st.SafetensorsFile(path) as f:
            return {name: f.get(name) for name in f.names() if f.info(name).dtype in
                    st.FLOAT_DTYPES}

    path = str(tmp_path / "fuzz.safetensors")
    loaded = 0
    for i in range(300):
        if i % 2:
            blob = mutate_bytes(raw, rng)
        else:
            head = json.dumps(mutate_json(header, rng)).encode()
            blob = struct.pack("<Q", len(head)) + head + data
        with open(path, "wb") as f:
            f.write(blob)
        if expect_typed(read_all, path) is not None:
            loaded += 1
    assert loaded > 0  # most edits break this strict format; some (metadata, spaces) do not
