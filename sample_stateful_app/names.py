"""Upload file names: refuse paths, keep plain names."""

from __future__ import annotations

import os
import unicodedata
from typing import IO

from flask import abort
from werkzeug.utils import secure_filename


def clean_filename(name: str) -> str:
    """A safe plain file name, or a 400 that says why (never a silently rewritten path)."""
    if "/" in name or "\\" in name or name.startswith("..") or ".." in name.split("."):
        abort(400, f"Invalid file name {name!r}: send a plain name without folders or '..'.")
    cleaned = secure_filename(unicodedata.normalize("NFC", name))
    if not cleaned:
        abort(400, f"Invalid file name {name!r}: use letters, digits, dots or dashes.")
    return cleaned


def stream_size(stream: IO[bytes]) -> int:
    """Bytes in an uploaded file's (seekable) stream, leaving it at the start."""
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    return size
