"""Checkpoint files: round trip, atomic writes, a clear CheckpointError for every kind of damage."""

from __future__ import annotations

import array
import os
import struct

import pytest

from alpha.core.errors import CheckpointError
from alpha.train import checkpoint as C


def write(tmp_path, name="step-1.ckpt"):
    path = str(tmp_path / name)
    params = array.array("f", [0.5, -1.25, 3.0, 1e-8])
    m = array.array("f", [0.0] * 4)
    ids = array.array("i", [1, 2, 3])
    size, checksum = C.save(path, {"step": 1, "config": {"x": 1}, "rng": {"seed": 3}},
                            {"params": (params, (2, 2), "f32"), "m": (m, (4,), "f32"),
                             "ids": (ids, (3,), "i32")})
    return path, size, checksum, params


def test_round_trip(tmp_path):
    path, size, checksum, params = write(tmp_path)
    ck = C.load(path)
    assert ck.step == 1 and ck.header["config"] == {"x": 1} and ck.header["rng"] == {"seed": 3}
    assert ck.tensors["params"] == params
    assert list(ck.tensors["ids"]) == [1, 2, 3]
    assert ck.size == size == os.path.getsize(path) and ck.checksum == checksum
    index = {t["name"]: t for t in ck.header["tensors"]}
    assert index["params"]["shape"] == [2, 2] and index["params"]["nbytes"] == 16
    assert C.read_header(path)["step"] == 1
    # the file starts with the magic and version; no temporary file is left behind
    with open(path, "rb") as f:
        assert f.read(8) == C.MAGIC
        assert struct.unpack("<I", f.read(4))[0] == C.FORMAT_VERSION
    assert os.listdir(tmp_path) == ["step-1.ckpt"]


def test_truncated(tmp_path):
    path, size, _, _ = write(tmp_path)
    for keep in (size - 1, size - 40, 30, 5):
        with open(path, "rb") as f:
            data = f.read()
        cut = str(tmp_path / f"cut-{keep}.ckpt")
        with open(cut, "wb") as f:
            f.write(data[:keep])
        with pytest.raises(CheckpointError, match="truncated"):
            C.load(cut)


def test_corrupt_body_fails_the_checksum(tmp_path):
    path, size, _, _ = write(tmp_path)
    with open(path, "r+b") as f:
        f.seek(size - 40)  # inside the tensor bytes
        b = f.read(1)
        f.seek(size - 40)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(CheckpointError, match="checksum"):
        C.load(path)


def test_bad_magic_version_header(tmp_path):
    path, _, _, _ = write(tmp_path)
    with open(path, "rb") as f:
        data = bytearray(f.read())
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"NOTALPHA" + data[8:])
    with pytest.raises(CheckpointError, match="not an Alpha checkpoint"):
        C.load(str(bad))
    newer = bytearray(data)
    newer[8:12] = struct.pack("<I", C.FORMAT_VERSION + 1)
    bad.write_bytes(bytes(newer))
    with pytest.raises(CheckpointError, match="version"):
        C.load(str(bad))
    garbled = bytearray(data)
    garbled[21] = ord("{") ^ 0x55  # inside the JSON header
    garbled[20] = 0xFF
    bad.write_bytes(bytes(garbled))
    with pytest.raises(CheckpointError, match="corrupt"):
        C.load(str(bad))
    with pytest.raises(CheckpointError, match="not found"):
        C.load(str(tmp_path / "missing.ckpt"))
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="truncated"):
        C.load(str(tmp_path / "empty.ckpt"))


def test_overwrite_is_atomic(tmp_path):
    path, _, _, _ = write(tmp_path)
    write(tmp_path)  # the same name again: replaced whole
    assert C.load(path).step == 1
    assert sorted(os.listdir(tmp_path)) == ["step-1.ckpt"]
