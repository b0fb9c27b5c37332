"""Uploaded files: plain names, sizes, image types, and the headers a stored file is
sent with."""

from __future__ import annotations

import os
import unicodedata
from typing import IO

from flask import abort, current_app, request
from werkzeug.datastructures import Headers
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



def read_body() -> bytes:
    """The whole request body, read with a bound: a 413 when it is longer than
    MAX_CONTENT_LENGTH, never a body silently cut there."""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is not None:
        stream = request.stream  # werkzeug refused a longer Content-Length already
    elif "wsgi.input_terminated" in request.environ:
        # Transfer-Encoding: chunked, decoded by the server (gunicorn, werkzeug's). werkzeug's
        # stream stops at the limit without a word; read the server's own, one byte past it.
        stream = request.environ["wsgi.input"]
    elif "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        # This server hands the app no chunked body at all: never take it for an empty one.
        abort(411, "This server cannot read a chunked body: send it with a Content-Length.")
    else:
        return b""
    body = bytearray()
    while len(body) <= limit:
        data = stream.read(min(64 * 1024, limit + 1 - len(body)))
        if not data:
            return bytes(body)
        body += data
    abort(413)

# The image types an avatar may be, known by a file's first bytes, never by its name or the
# type the browser claims: any other file (HTML, SVG, ...) shown by this site could run
# script as this site.
IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
HEAD = 16  # bytes enough to tell the types apart


def image_type(head: bytes) -> str | None:
    """The image type a file's first bytes show (PNG, JPEG, GIF or WebP), or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in IMAGE_SIGNATURES if head.startswith(magic)), None)


def uploaded_image_type(stream: IO[bytes]) -> str:
    """An uploaded avatar's image type, leaving the stream at the start; a 400 if none."""
    kind = image_type(stream.read(HEAD))
    stream.seek(0)
    if kind is None:
        abort(400, "An avatar must be a PNG, JPEG, GIF or WebP image: this file is none of them.")
    return kind


def served_as(head: bytes, filename: str, image: bool) -> tuple[str, Headers]:
    """The type and headers to send a stored file with, given its first bytes: an avatar
    (``image``) only as the image those bytes show, inline; any other file as a download
    that the browser never renders. Either way the browser may not guess another type."""
    if image:
        mimetype = image_type(head)
        if mimetype is None:  # stored before avatars were checked, or copied in since
            abort(404, "Your avatar is not an image: upload a PNG, JPEG, GIF or WebP.")
        kind, filename = "inline", "avatar." + mimetype.removeprefix("image/")
    else:
        mimetype, kind = "application/octet-stream", "attachment"
    headers = Headers({"X-Content-Type-Options": "nosniff"})
    headers.set("Content-Disposition", kind, filename=filename)
    return mimetype, headers
