"""The upload folders: every regular file under a source, and the object key it gets.

Names come from outside, so each is checked before it becomes a key: ``object_key`` refuses
``..`` and absolute paths, and a name that is not valid UTF-8 (S3 keys are UTF-8) is reported.
A name whose key is another spelling of it (``a\\b`` is ``a/b``, an NFD name its NFC form) is
remembered in ``Walk.names``: two different names that map to one key are a collision
(``collided``), never one file superseding the other.
Symlinks leaving the folder, sockets, fifos and devices are reported and skipped; a symlink to a
folder inside the source is not followed (its files are exported under their real path, and
following it could loop). A chunked upload in progress (``chunks/<32 hex>/upload.json``) is not
a set of files to copy: its folder is collected for ``carry``.

The folder may change between the walk and the read: every reader opens a file with
``open_regular``, which checks the descriptor it reads (a regular file still; never blocking on
a FIFO put in its place; for chunks, never through a symlink).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from migrate.keys import object_key

CHUNK_DIR = re.compile(r"^[0-9a-f]{32}$")

# Manifest and record statuses.
UPLOADED, SKIPPED, PLANNED, FAILED, EXCLUDED, DUPLICATE, SUPERSEDED = (
    "uploaded", "skipped", "planned", "failed", "excluded", "duplicate", "superseded")


@dataclass
class FileRecord:
    """One local file and what happened to it (one manifest line)."""

    path: str  # the local path (source folder joined with the relative path)
    key: str
    size: int
    sha256: str | None
    status: str  # uploaded | skipped | planned | failed | excluded | duplicate | superseded
    reason: str = ""


@dataclass(slots=True)
class Entry:
    """A regular file found under a source folder."""

    path: str  # the local path
    key: str
    size: int
    mtime_ns: int
    # Which file it is and when its inode last changed (no one can set ctime back, as mtime
    # can be): a state line is trusted only for the very same, unchanged file. 0: unknown.
    inode: int = 0
    ctime_ns: int = 0


# record(FileRecord, entry=None, etag=""): counts a record, writes its manifest and state lines.
RecordFn = Callable[..., None]
# on_progress(files done, files total, bytes done, bytes total)
ProgressFn = Callable[[int, int, int, int], None]


@dataclass
class Walk:
    """What the folders hold: files to export, problems to report, uploads in progress."""

    entries: list[Entry] = field(default_factory=list)
    problems: list[FileRecord] = field(default_factory=list)
    chunk_dirs: list[str] = field(default_factory=list)
    # path -> its name under the folder, for the entries whose key spells that name otherwise
    names: dict[str, str] = field(default_factory=dict)

    def problem(self, path: str, status: str, reason: str, size: int = 0) -> None:
        self.problems.append(FileRecord(shown(path), "", size, None, status, reason))


def shown(path: str) -> str:
    """``path`` as text that can be printed and written: an undecodable byte becomes ``\\xNN``."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def walk(roots: Iterable[str], prefix: str) -> Walk:
    """Every regular file under each of ``roots`` (absolute paths), keyed under ``prefix``."""
    found = Walk()
    for root in roots:
        _Walker(root, prefix, found).run()
    return found


class _Walker:
    """One source folder, walked with an explicit stack (no recursion limit on deep trees)."""

    def __init__(self, source: str, prefix: str, found: Walk) -> None:
        self.source = source
        self.real_root = os.path.realpath(source)
        self.prefix = prefix
        clean = unicodedata.normalize("NFC", prefix).strip("/")
        self.key_prefix = f"{clean}/" if clean else ""  # what object_key puts before a name
        self.found = found
        self.stack = [""]

    def run(self) -> None:
        while self.stack:
            rel_dir = self.stack.pop()
            folder = os.path.join(self.source, rel_dir) if rel_dir else self.source
            try:
                entries = list(os.scandir(folder))
            except OSError as exc:
                self.found.problem(folder, FAILED, f"folder cannot be read: {exc.strerror}")
                continue
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                st = self._regular_file(entry, rel_dir, rel)
                if st is not None:
                    self._add(entry.path, rel, st)

    def _regular_file(self, entry: os.DirEntry, rel_dir: str, rel: str) -> os.stat_result | None:
        """The file's stat, or None: a folder (queued), a chunk folder or a problem (noted)."""
        try:
            if entry.is_symlink():
                st = self._followed(entry)
            elif entry.is_dir(follow_symlinks=False):
                if rel_dir == "chunks" and CHUNK_DIR.match(entry.name) and os.path.isfile(
                        os.path.join(entry.path, "upload.json")):
                    self.found.chunk_dirs.append(entry.path)
                else:
                    self.stack.append(rel)
                return None
            else:
                st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            self.found.problem(entry.path, FAILED, "vanished while the folder was read")
            return None
        except OSError as exc:
            self.found.problem(entry.path, FAILED, f"cannot be read: {exc.strerror}")
            return None
        if st is not None and not stat.S_ISREG(st.st_mode):
            self.found.problem(entry.path, EXCLUDED,
                               f"{file_kind(st.st_mode)}: not a regular file, skipped")
            return None
        return st

    def _followed(self, entry: os.DirEntry) -> os.stat_result | None:
        """A symlink's target when it is a file inside the folder; else None (noted)."""
        target = os.path.realpath(entry.path)
        if os.path.commonpath([self.real_root, target]) != self.real_root:
            self.found.problem(entry.path, EXCLUDED,
                               "symlink pointing outside the folder: not followed")
            return None
        if os.path.isdir(target):
            self.found.problem(entry.path, EXCLUDED, "symlink to a folder inside the source: "
                               "its files are exported under their real path")
            return None
        return os.stat(entry.path)

    def _add(self, path: str, rel: str, st: os.stat_result) -> None:
        try:
            key = object_key(rel, self.prefix)
            key.encode("utf-8")
        except UnicodeEncodeError:
            self.found.problem(path, FAILED, "the name is not valid UTF-8 (S3 keys are): "
                               "rename the file", st.st_size)
            return
        except ValueError as exc:
            self.found.problem(path, FAILED, str(exc), st.st_size)
            return
        if len(key) != len(self.key_prefix) + len(rel) or not key.endswith(rel):
            self.found.names[path] = rel  # the key spells it otherwise: it may collide
        self.found.entries.append(Entry(path, key, st.st_size, st.st_mtime_ns, st.st_ino,
                                        st.st_ctime_ns))


def collided(group: list[Entry], names: dict[str, str]) -> bool:
    """True when the entries of one key (``group``) have more than one name: a collision.

    One name in two folders (the same upload on two instances) is one file, not a collision.
    """
    return len({names.get(e.path) for e in group}) > 1


def collision(entry: Entry, group: list[Entry]) -> str:
    """The reason recorded for each file of a collision: the others named."""
    others = ", ".join(repr(e.path) for e in group if e is not entry)
    return (f"{len(group)} files map to the same key {entry.key!r} (also {others}): "
            "rename all but one; none is uploaded under it")


class Changed(Exception):
    """A file is no longer what the walk found: reported with this reason, never retried."""


def open_regular(path: str, size: int | None = None, *, follow: bool = True) -> int:
    """A read-only descriptor on ``path``, checked to be a regular file (else ``Changed``)
    of ``size`` bytes when given (else ``Changed``: it was hashed or walked at another size).

    Checked on the descriptor itself, so nothing swapped in after the walk is read: opened
    non-blocking (a FIFO in the file's place is refused, not waited on for a writer) and, with
    ``follow=False``, refusing a symlink. The caller closes it.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow:
            raise Changed("a symlink: not followed") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Changed(f"a {file_kind(st.st_mode)} now, not a regular file: not read")
        if size is not None and st.st_size != size:
            raise changed(size, f"now {st.st_size:,}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def changed(size: int, how: str) -> Changed:
    """The file is not the size it was found (or hashed) at; ``how``: "now 12 bytes"..."""
    return Changed(f"changed since the folder was read ({size:,} bytes, {how}): "
                   "run again to send it")


def file_kind(mode: int) -> str:
    """What a file that is not a regular file is, for a reason: symlink, socket, fifo..."""
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "special file"
