"""The resumable state file: what each exported local file hashed to, and its object's ETag.

One JSON line per object that completed, ``{"p": path, "s": size, "m": mtime_ns, "i": inode,
"c": ctime_ns, "h": sha256, "e": ETag(s)}``, appended and flushed as each object completes, so a
SIGKILL loses at most the lines in flight (and a torn last line is ignored on the next load). A
line is only a hint: it is trusted when the file is the same inode with its size, mtime and
ctime unchanged (a file swapped in by rename, or rewritten and its mtime set back, is not) *and*
the bucket's listing (one LIST per folder, no HEAD per object) shows an object under the key
being written with an ETag the line remembers; otherwise the file is hashed again. A line from
an older version (no inode) is not trusted: the file is hashed once and a full line written.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import NamedTuple

from migrate.files.transfer import Endpoint
from migrate.files.walk import Entry


class Known(NamedTuple):
    """What the state file remembers of one local file."""

    size: int
    mtime_ns: int
    sha256: str
    etags: str  # one ETag, or two separated by a space (md5-of-parts and whole-file MD5)
    inode: int = 0  # 0: not remembered (an older line): never matches a file
    ctime_ns: int = 0

    def matches(self, entry: Entry) -> bool:
        """The very file this line was written for, unchanged since."""
        return (self.inode != 0 and self.size == entry.size and self.mtime_ns == entry.mtime_ns
                and self.inode == entry.inode and self.ctime_ns == entry.ctime_ns)


def default_state_path(ep: Endpoint) -> Path:
    """Per endpoint and bucket, in the user's cache folder (never in the source).

    Not per prefix: a line says what a local file hashes to, and it is only trusted when the
    listed object under the key being written has the ETag the line remembers.
    """
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(f"{ep.url}|{ep.bucket}".encode()).hexdigest()[:16]
    return base / "migrate" / "export-files" / f"{digest}.ndjson"


def load_state(path: Path) -> dict[str, Known]:
    """path -> Known; a torn last line (SIGKILL) or a line of the wrong shape is ignored."""
    state: dict[str, Known] = {}
    loads = json.loads
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    row = loads(line)
                    name, size, mtime_ns, sha, etags = (row["p"], row["s"], row["m"], row["h"],
                                                        row["e"])
                except (ValueError, KeyError, TypeError):
                    continue
                inode, ctime_ns = row.get("i", 0), row.get("c", 0)
                if (type(size) is int and type(mtime_ns) is int and type(name) is str
                        and type(sha) is str and type(etags) is str and type(inode) is int
                        and type(ctime_ns) is int):
                    state[name] = Known(size, mtime_ns, sha, etags, inode, ctime_ns)
    except FileNotFoundError:
        pass
    return state


class StateLog:
    """The state file, open for appending while an export runs (not thread-safe: the caller
    holds its lock)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # backslashreplace: a path that is not UTF-8 is written as a JSON escape, read back as is.
        self._file = open(path, "a", encoding="utf-8", errors="backslashreplace")

    def remember(self, entry: Entry, sha256: str | None, etags: str) -> None:
        self._file.write(json.dumps({"p": entry.path, "s": entry.size, "m": entry.mtime_ns,
                                     "i": entry.inode, "c": entry.ctime_ns, "h": sha256,
                                     "e": etags}, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
