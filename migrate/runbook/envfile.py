"""A dotenv file read with python-dotenv's own parser and rewritten binding by binding.

python-dotenv decides where every binding (and its value) ends, so multi-line quoted values,
``export``, comments, CRLF line endings and lines it cannot read all survive byte for byte:
only the bindings that change are rewritten, in their original quoting style where the new value
allows it. Reading is bounded; writing is atomic, through a symlink, with owner and mode kept.

This is the one adapter over ``dotenv.parser`` (``parse_stream``, ``Reader``, ``parse_value``);
tests/test_switch_envfile.py fails loudly if python-dotenv changes what they return.
"""

from __future__ import annotations

import io
import os
import re
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from dotenv.parser import Reader, parse_stream, parse_value

from migrate import redact
from migrate.errors import UsageError

MAX_BYTES = 1 << 20  # a dotenv file is small; a bigger one is not one
BOM = "\ufeff"
# Where a binding's value starts (python-dotenv's own grammar: whitespace, export, key, "=").
_HEAD = re.compile(r"(?P<lead>\s*)(?:export[^\S\r\n]+)?(?P<key>'[^']+'|[^=#\s]+)"
                   r"[^\S\r\n]*(?P<eq>=[^\S\r\n]*)?")
_EOL = re.compile(r"(\r\n|\n|\r)\Z")
_COMMENTED_KEY = re.compile(r"^(\s*#\s*(?:export\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_.]*)\s*=)")
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_./:@+,%=-]*$")


@dataclass
class Entry:
    """One binding as python-dotenv parsed it: ``original`` is its exact text."""

    key: str | None
    value: str | None
    original: str
    line: int
    error: bool = False


@dataclass
class EnvFile:
    """A dotenv file as read: its real path (a symlink resolved) and its bindings in order."""

    path: Path  # as given
    real: Path  # the file written (the symlink's target)
    raw: bytes
    entries: list[Entry]
    bom: str = ""
    newline: str = "\n"

    @property
    def values(self) -> dict[str, str]:
        """The values an app reads (last definition wins; no interpolation)."""
        return {e.key: e.value for e in self.entries if e.key and e.value is not None}

    @property
    def unreadable(self) -> list[int]:
        """Line numbers python-dotenv could not read (kept as they are)."""
        return [e.line for e in self.entries if e.error]


@dataclass
class Parts:
    """A binding split where its value starts and ends: ``head + token + tail == original``."""

    lead: str  # whitespace (blank lines) before the binding
    head: str
    token: str  # the value as written, quotes included
    tail: str  # an inline comment and the line ending

    @property
    def style(self) -> str:
        return self.token[:1] if self.token[:1] in ("'", '"') else ""

    @property
    def eol(self) -> str:
        match = _EOL.search(self.tail)
        return match.group(1) if match else ""


@dataclass
class Rewrite:
    """The rewritten text and which keys it set (or added) and commented out."""

    text: str
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


_BREAK = re.compile(r"\r\n|\n|\r")


def parse(text: str) -> list[Entry]:
    """``text`` as python-dotenv's bindings; joined back, they are ``text`` exactly.

    ``line`` is where the binding's first character is (a CRLF counted once).
    """
    entries: list[Entry] = []
    offset = 0
    for b in parse_stream(io.StringIO(text, newline="")):
        original = b.original.string
        start = offset + len(original) - len(original.lstrip())
        line = len(_BREAK.findall(text, 0, start)) + 1
        entries.append(Entry(b.key, b.value, original, line, b.error))
        offset += len(original)
    if "".join(e.original for e in entries) != text:
        raise UsageError("python-dotenv's parser did not return the file whole: not rewriting "
                         "it (pin python-dotenv to a tested version)")
    return entries


def read(path: str | os.PathLike[str]) -> EnvFile:
    """Read ``path`` (at most MAX_BYTES, UTF-8) and parse it; UsageError with one line if not."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file; give the before-app's .env file")
    real = Path(os.path.realpath(path))
    try:
        with real.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise UsageError(f"{path} is over {MAX_BYTES} bytes: not a dotenv file (give the "
                         "app's .env)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not UTF-8 (byte {exc.start}): save it as UTF-8") from None
    bom = BOM if text.startswith(BOM) else ""
    text = text[len(bom):]
    eol = re.search(r"\r\n|\n|\r", text)
    return EnvFile(path, real, raw, parse(text), bom, eol.group(0) if eol else "\n")


def split(entry: Entry) -> Parts:
    """Split a binding at its value, as python-dotenv's ``parse_value`` reads it."""
    match = _HEAD.match(entry.original)
    if entry.key is None or entry.error or not match:
        raise ValueError(f"not a binding: line {entry.line}")
    head, rest = entry.original[: match.end()], entry.original[match.end():]
    eq = match["eq"] or ""
    if entry.value is None or (len(eq) > 1 and rest.startswith("#")):
        token = ""
    elif rest[:1] in ("'", '"'):
        reader = Reader(io.StringIO(rest, newline=""))
        value = parse_value(reader)
        token = rest[: reader.position.chars]
        if value != entry.value:
            raise ValueError(f"line {entry.line}: the value did not parse back")
    else:
        token = rest[: len(parse_value(Reader(io.StringIO(rest, newline=""))))]
    return Parts(match["lead"], head, token, rest[len(token):])


# --- values ----------------------------------------------------------------------------------


def quote(value: str) -> str:
    """A dotenv value that python-dotenv reads back as ``value`` (no interpolation)."""
    if _SAFE_VALUE.match(value):
        return value
    if "'" not in value and "\n" not in value and "\\" not in value:
        return f"'{value}'"  # single quotes: no escapes to get wrong
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def render(value: str, style: str) -> str:
    """``value`` written in ``style`` (``''``, ``'`` or ``"``) when it can be, else quoted."""
    if style == "'" and "'" not in value and "\\" not in value:
        return f"'{value}'"
    if style == '"':
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return quote(value)


def rewrite(env: EnvFile, updates: dict[str, str], comment_out: dict[str, str]) -> Rewrite:
    """Set ``updates`` in place (appended when absent) and comment out ``comment_out`` keys."""
    out: list[str] = []
    result = Rewrite("")
    seen: set[str] = set()
    for entry in env.entries:
        key = entry.key
        if entry.error or key is None or (key not in updates and key not in comment_out):
            out.append(entry.original)
            continue
        parts = split(entry)
        if key in updates:
            seen.add(key)
            if entry.value == updates[key]:
                out.append(entry.original)
                continue
            eq = "" if entry.value is not None else "="
            out.append(parts.head + eq + render(updates[key], parts.style) + parts.tail)
            _note(result.changed, key)
        else:
            shown = redact.value(key, entry.value or "").replace("\r", "\\r").replace("\n", "\\n")
            out.append(f"{parts.lead}# migrate: was {key}={shown} ({comment_out[key]})"
                       f"{parts.eol or env.newline}")
            _note(result.removed, key)
    missing = [k for k in updates if k not in seen]
    if missing:
        if out and not out[-1].endswith(("\n", "\r")):
            out.append(env.newline)
        out.append(f"# migrate: added for the stateless app{env.newline}")
        for key in missing:
            out.append(f"{key}={quote(updates[key])}{env.newline}")
            _note(result.changed, key)
    result.text = "".join(out)
    return result


def _note(keys: list[str], key: str) -> None:
    if key not in keys:
        keys.append(key)


# --- masking ---------------------------------------------------------------------------------


def masked(text: str) -> str:
    """``text`` with every secret value (and URL password) masked, for a diff or a log."""
    out: list[str] = []
    for entry in parse(text):
        if entry.key and not entry.error and entry.value is not None \
                and redact.is_secret_key(entry.key):
            parts = split(entry)
            out.append(parts.head + redact.MASK + redact.text(parts.tail))
        elif entry.key is None and not entry.error:
            out.append("".join(_mask_comment(x) for x in entry.original.splitlines(True)))
        else:
            out.append(redact.text(entry.original))
    return "".join(out)


def _mask_comment(line: str) -> str:
    # A commented-out assignment shows up as diff context: its secret is masked too.
    match = _COMMENTED_KEY.match(line)
    if match and redact.is_secret_key(match["key"]):
        eol = _EOL.search(line)
        return match.group(1) + redact.MASK + (eol.group(1) if eol else "")
    return redact.text(line)


# --- writing ---------------------------------------------------------------------------------


def check_writable(path: Path, real: Path | None = None) -> None:
    """Refuse, before anything is probed, a file we could not replace with owner and mode kept
    (``real``: the symlink's target; the backup goes beside ``path``)."""
    real = real or Path(os.path.realpath(path))
    st = real.stat()
    mode = stat.S_IMODE(st.st_mode)
    shown = path if real == path.absolute() else f"{path} (-> {real})"
    if not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) or not os.access(real, os.W_OK):
        raise UsageError(f"{shown} is read-only (mode {mode:04o}): make it writable "
                         f"(chmod u+w {real}) or switch a writable copy")
    for folder in dict.fromkeys([real.parent, path.absolute().parent]):
        if not os.access(folder, os.W_OK | os.X_OK):
            raise UsageError(f"cannot create files in {folder} (the atomic write and the "
                             "backup need it): make the folder writable")
    if os.geteuid() != 0 and (st.st_uid != os.geteuid() or st.st_gid not in
                              {os.getegid(), *os.getgroups()}):
        raise UsageError(f"{shown} belongs to uid {st.st_uid} gid {st.st_gid}: a rewrite "
                         "could not keep that owner; run switch-config as its owner")


def atomic_write(path: Path, data: bytes, like: os.stat_result | None = None) -> None:
    """Write a temp file beside ``path``, fsync, give it ``like``'s owner and mode, rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if like is not None:
                os.fchmod(handle.fileno(), stat.S_IMODE(like.st_mode))
                if (like.st_uid, like.st_gid) != (os.geteuid(), os.getegid()):
                    os.fchown(handle.fileno(), like.st_uid, like.st_gid)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a crash
    finally:
        os.close(folder)
