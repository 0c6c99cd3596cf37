"""Checks on files a user hands us, with errors that say what is wrong in one line."""

from __future__ import annotations

import os

from alpha.core.errors import DataError


def check_text_file(path: str, what: str = "data file") -> int:
    """The file's size; DataError when it is missing, not a file, or empty."""
    if not path:
        raise DataError(f"no {what} given")
    if not os.path.exists(path):
        raise DataError(f"{what} not found: {path}")
    if not os.path.isfile(path):
        raise DataError(f"{what} {path} is not a regular file")
    size = os.path.getsize(path)
    if size == 0:
        raise DataError(f"{what} {path} is empty (0 bytes)")
    return size
