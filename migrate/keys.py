"""The one mapping from a local upload path to an object key.

``export-files`` uses it to name objects and the after-app's alembic revision 0002 uses it to
rewrite the paths stored in the database, so the two always agree. The mapping: the path
relative to the upload folder, as POSIX, Unicode NFC, under ``prefix``; ``..`` and absolute paths
are refused, so a key can never point outside the prefix. The prefix itself is checked too
(``clean_prefix``): no ``.`` or ``..`` segment, no empty one, no control character.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from pathlib import PurePosixPath, PureWindowsPath

# A plain relative POSIX path: ASCII names that do not start with a dot (so no "." or ".."),
# one slash between them. Such a path is its own key; export-files meets thousands of them.
_PLAIN = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]*(?:/[A-Za-z0-9_\-][A-Za-z0-9_.\-]*)*")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@lru_cache(maxsize=64)
def clean_prefix(prefix: str) -> str:
    """``/shop/media/`` -> ``shop/media`` (NFC); ValueError for a prefix that leaves itself.

    Refused: a ``.`` or ``..`` segment (``s3://bucket/../x`` would put keys outside the
    prefix; a backslash separates segments here too, as in a relative path), an empty one
    (``a//b``) and a control character.
    """
    clean = unicodedata.normalize("NFC", prefix).strip("/")
    if clean and (_CONTROL.search(clean) or "" in clean.split("/") or any(
            part in (".", "..") for part in re.split(r"[/\\]", clean))):
        raise ValueError(f"prefix {prefix!r} has an empty, '.' or '..' segment or a control "
                         "character: give a plain path such as shop/media")
    return clean


def object_key(relative_path: str, prefix: str = "") -> str:
    """``avatars/1/me.png`` under ``prefix`` -> ``prefix/avatars/1/me.png`` (NFC, POSIX)."""
    if _PLAIN.fullmatch(relative_path):
        prefix = clean_prefix(prefix) if prefix else ""
        return f"{prefix}/{relative_path}" if prefix else relative_path
    text = unicodedata.normalize("NFC", relative_path)
    posix = PureWindowsPath(text).as_posix() if "\\" in text else text
    path = PurePosixPath(posix)
    if path.is_absolute():
        raise ValueError(f"{relative_path!r} is absolute: give the path relative to the folder")
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ValueError(f"{relative_path!r} does not name a file inside the folder")
    prefix = clean_prefix(prefix)
    return "/".join([prefix, *parts]) if prefix else "/".join(parts)


def relative_path(key: str, prefix: str = "") -> str:
    """The inverse of ``object_key``: the path under the folder that ``key`` came from.

    Only a key ``object_key`` gives has one: any other (``..``, ``a//b``, an NFD spelling) is a
    ValueError, so the path returned always maps back to ``key`` and never leaves the folder.
    """
    prefix = clean_prefix(prefix)
    path = key
    if prefix:
        if not key.startswith(prefix + "/"):
            raise ValueError(f"{key!r} is not under the prefix {prefix!r}")
        path = key[len(prefix) + 1 :]
    if not _PLAIN.fullmatch(path) and object_key(path) != path:
        raise ValueError(f"{key!r} is not a key object_key gives (an empty, '.' or '..' "
                         "segment, a backslash or another Unicode spelling): no path maps to it")
    return path
