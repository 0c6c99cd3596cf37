"""Checks on files a user hands us, with errors that say what is wrong in one line.

Every file Alpha reads on a user's word (text, config JSON, tokenizer JSON, checkpoints) goes
through `check_file` first: missing, a folder, a pipe or a device in its place are refused before
anything opens it (opening a FIFO would wait forever). `read_text` and `read_json` add the
encoding and JSON checks; the caller picks the error type (DataError, ConfigError...), so the
message reads in its own terms.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat

from alpha.core.errors import DataError


def check_file(path: str, what: str = "data file", error: type = DataError) -> int:
    """The size of a regular file; `error` when it is missing, a folder, a pipe or a device."""
    if not path:
        raise error(f"no {what} given")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{what} {path} is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        kind = "a pipe" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(
            st.st_mode) else "a device"
        raise error(f"{what} {path} is {kind}, not a regular file")
    return st.st_size


def check_text_file(path: str, what: str = "data file") -> int:
    """The file's size; DataError when it is missing, not a regular file, or empty."""
    size = check_file(path, what)
    if size == 0:
        raise DataError(f"{what} {path} is empty (0 bytes)")
    return size


def read_text(path: str, what: str = "data file", error: type = DataError,
              allow_empty: bool = False) -> str:
    """The whole file as UTF-8 text (small files only: configs, artifacts, eval text)."""
    size = check_file(path, what, error)
    if size == 0 and not allow_empty:
        raise error(f"{what} {path} is empty (0 bytes)")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror or e}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{what} {path} is not UTF-8 text (bad byte at offset {e.start})") from None


def read_json(path: str, what: str = "JSON file", error: type = DataError):
    """The parsed JSON of a file; `error` naming the line and column when it is not JSON."""
    text = read_text(path, what, error)
    return parse_json(text, f"{what} {path}", error)


def parse_json(text: str, where: str, error: type = DataError):
    """json.loads with a one-line error. NaN/Infinity are refused (they are not JSON)."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise error(f"{where} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") \
            from None
    except ValueError as e:  # a NaN/Infinity constant, or a number too long to convert
        raise error(f"{where} is not valid JSON: {e}") from None
    except RecursionError:
        raise error(f"{where} is not valid JSON: nested too deeply") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON value")


def file_sha256(path: str) -> bytes:
    """The sha256 of a whole file, read in 1 MiB blocks (token-cache sources, uploads)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.digest()
