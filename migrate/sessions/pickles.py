"""Reading a session pickle without trusting it: ``restricted_loads``.

A pickle may come from a folder, a dump or a stream anyone could have written to. It is read
within bounds, and anything past them raises ``PickleRefused`` (or ``DisallowedClass``) with a
reason that quotes none of its bytes:

- size: at most ``MAX_BYTES``;
- classes: ``ALLOWED_CLASSES`` only (builtin values, datetime, Decimal, UUID, Markup). What a
  pickle may call checks its arguments and charges what it builds to a budget of ``MAX_BUILT``:
  ``bytes(10**12)``, ``tuple(x)``, ``str()`` of a list, a codec other than latin-1, or
  ``set(x)`` a thousand times over one long list are refused;
- tuples: hashing a tuple (a dict key, a set member) walks all of it in C, with no recursion
  check and nothing that can interrupt it. Tuples nested deeper than ``MAX_DEPTH``, or holding
  more than ``MAX_NODES`` values once shared references are expanded, are refused before the
  pickle is loaded. Most session pickles hold no tuple and pass a regular expression; the others
  are scanned opcode by opcode. Integers over 255 bytes are refused as well (no serializer
  stores them, and hashing one again and again costs);
- the value read, walked as a serializer walks it (a shared value counts each time it is
  reached): at most ``MAX_DEPTH`` levels, at most ``MAX_NODES`` values, nothing that contains
  itself.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import datetime
import decimal
import gc
import io
import itertools
import pickle
import re
import threading
import uuid
from typing import Any

MAX_BYTES = 4 << 20  # a session pickle; cachelib writes a few KiB
MAX_DEPTH = 100  # levels of nested containers
MAX_NODES = 1_000_000  # values, shared references counted each time they are reached
MAX_BUILT = MAX_BYTES  # elements and bytes that the calls in one pickle may build


class DisallowedClass(pickle.UnpicklingError):
    """A pickle names a class outside the allowlist."""


class PickleRefused(pickle.UnpicklingError):
    """A pickle past one of the bounds; the message names the bound, never the contents."""


ALLOWED_CLASSES = {
    ("builtins", name)
    for name in ("dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray",
                 "int", "float", "bool", "complex", "NoneType")
} | {
    ("datetime", name) for name in ("datetime", "date", "time", "timedelta", "timezone")
} | {("decimal", "Decimal"), ("uuid", "UUID"), ("uuid", "SafeUUID"),
     ("copyreg", "_reconstructor"), ("builtins", "object"), ("_codecs", "encode"),
     ("markupsafe", "Markup")}
# copyreg._reconstructor + object: how protocol 0/1 pickles rebuild plain objects, and
# _codecs.encode: how protocols 0-2 spell bytes. Markup (a str) is read so the report can say
# the real problem: Flask-Session's serializer cannot store it.


def pickle_failure(exc: BaseException) -> str:
    """A reason for an unreadable pickle that quotes none of its bytes."""
    if isinstance(exc, (DisallowedClass, PickleRefused)):
        return str(exc)
    if isinstance(exc, EOFError) or "truncated" in str(exc):
        return "truncated pickle"
    if isinstance(exc, RecursionError):
        return f"session nested deeper than {MAX_DEPTH} levels"
    return f"corrupt pickle ({type(exc).__name__})"


# --- what a pickle may call ----------------------------------------------------------------------

_budget = threading.local()  # elements and bytes the calls of the pickle being read may still make
_SCALARS = {str, bytes, bytearray, int, float, bool, complex, type(None)}
_SIZED = {str, bytes, bytearray, list, tuple, set, frozenset, dict}
_ITERABLES = {list, tuple, set, frozenset, dict}


def _charge(args: tuple) -> None:
    left = getattr(_budget, "left", 0) - sum(len(a) if type(a) in _SIZED else 1 for a in args)
    if left < 0:
        raise PickleRefused(f"pickle builds more than {MAX_BUILT:,} values or bytes by calls")
    _budget.left = left


def _checked(kind: Any, name: str, *, iterable: bool = False, sizes: bool = True) -> Any:
    """``kind(*args)`` for scalar arguments (and one list, tuple, set or dict where
    ``iterable``), charged by their size; ``sizes=False`` refuses an int (``bytes(10**12)``)."""

    def make(*args: Any, **kwargs: Any) -> Any:
        if not sizes and args and type(args[0]) is int:
            raise PickleRefused(f"{name}(<size>) is not allowed")
        for arg in (*args, *kwargs.values()):
            if not (type(arg) in _SCALARS or (iterable and type(arg) in _ITERABLES)):
                raise PickleRefused(f"{name}(<{type(arg).__name__}>) is not allowed")
        _charge((*args, *kwargs.values()))
        return kind(*args, **kwargs)

    return make


def _refused(name: str) -> Any:
    def make(*args: Any, **kwargs: Any) -> Any:
        if args or kwargs:  # no pickle of an allowed value calls it: tuples are opcodes
            raise PickleRefused(f"{name}(...) is not allowed")
        return ()

    return make


class _UUID:
    """``uuid.UUID`` as pickles make it: an empty UUID (NEWOBJ), then its state (BUILD)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:
            return _checked(uuid.UUID, "uuid.UUID")(*args, **kwargs)
        return object.__new__(uuid.UUID)


class _Markup:
    """``markupsafe.Markup`` of a str (NEWOBJ in protocols 2-5)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        from markupsafe import Markup

        return _checked(Markup, "markupsafe.Markup")(*args, **kwargs)


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` for the two allowed classes protocols 0 and 1 rebuild so."""
    if cls is _UUID and base is object and state is None:
        return object.__new__(uuid.UUID)
    if cls is _Markup and base is _CALLABLES[("builtins", "str")] and type(state) is str:
        return _Markup(state)
    raise PickleRefused("copyreg._reconstructor(...) is not allowed for these classes")


def _encode(text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    """``_codecs.encode`` as protocols 0-2 spell bytes: latin-1 text only."""
    if type(text) is not str or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise PickleRefused("_codecs.encode(...) is not allowed but for latin-1 text")
    _charge((text,))
    return codecs.encode(text, "latin-1")


_CALLABLES: dict[tuple[str, str], Any] = {
    **{("builtins", k.__name__): _checked(k, f"builtins.{k.__name__}", iterable=True)
       for k in (dict, list, set, frozenset)},
    **{("builtins", k.__name__): _checked(k, f"builtins.{k.__name__}")
       for k in (str, int, float, bool, complex, type(None))},
    **{("builtins", k.__name__): _checked(k, f"builtins.{k.__name__}", iterable=True, sizes=False)
       for k in (bytes, bytearray)},
    ("builtins", "tuple"): _refused("builtins.tuple"),
    ("builtins", "object"): object,
    **{("datetime", k.__name__): k for k in (datetime.datetime, datetime.date, datetime.time,
                                            datetime.timedelta, datetime.timezone)},
    ("decimal", "Decimal"): _checked(decimal.Decimal, "decimal.Decimal"),
    ("uuid", "UUID"): _UUID,
    ("uuid", "SafeUUID"): uuid.SafeUUID,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("_codecs", "encode"): _encode,
    ("markupsafe", "Markup"): _Markup,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        # Protocol 0-2 pickles name Python 2 modules (__builtin__, copy_reg): compare the
        # Python 3 names pickle itself would resolve them to (the standard library's table).
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        found = _CALLABLES.get((module, name))
        if found is None:
            raise DisallowedClass(f"disallowed pickle class {module}.{name}")
        return found


def restricted_loads(data: bytes) -> Any:
    """Unpickle builtin, datetime, Decimal, UUID and Markup values within the bounds (see the
    module's docs); anything else raises an ``UnpicklingError``."""
    if len(data) > MAX_BYTES:
        raise PickleRefused(f"pickle too large ({len(data):,} bytes; the limit is "
                            f"{MAX_BYTES >> 20} MiB)")
    if not _plain(data):
        _scan_tuples(data)
    _budget.left = MAX_BUILT
    try:
        value = _RestrictedUnpickler(io.BytesIO(data)).load()
    finally:
        _budget.left = 0
    check_shape(value)
    return value


# --- tuples, before C hashes them ----------------------------------------------------------------


def _short_data() -> bytes:
    """A regex for a length byte, then that many bytes (16 groups of 16: few tries each)."""
    groups = []
    for high in range(0, 256, 16):
        alternatives = b"|".join(re.escape(bytes([n])) + (b".{%d}" % n if n else b"")
                                 for n in range(high, high + 16))
        groups.append(b"(?=[" + re.escape(bytes([high])) + b"-" + re.escape(bytes([high + 15]))
                      + b"])(?:" + alternatives + b")")
    return b"(?>" + b"|".join(groups) + b")"


# Opcodes that make no tuple, call nothing and read no text: strings, bytes, numbers (LONG1: at
# most 255 bytes), None, booleans, lists, dicts, sets, frozensets, the memo (LONG_BINPUT below
# 65536: the C unpickler sizes its memo by the index it is given), marks, frames.
_PLAIN_RUN = re.compile(
    b"(?>\x8c" + _short_data() + b"\x94?|[" + re.escape(b"\x94\x88\x89N}](uesa012)\x8f\x90\x91dl.")
    + b"]|[CU\x8a]" + _short_data() + b"|[Khq\x80].|M.{2}|[Jj].{4}|r..\x00\x00|[G\x95].{8})*+",
    re.DOTALL)
_LONG_DATA = {ord("X"): 4, ord("B"): 4, ord("T"): 4, 0x8D: 8, 0x8E: 8, 0x96: 8}


def _plain(data: bytes) -> bool:
    """Whether the pickle is made only of opcodes that build no tuple and call nothing (the
    common session pickle), so that hashing while it loads is cheap."""
    at, end, run = 0, len(data), _PLAIN_RUN.match
    while True:
        at = run(data, at).end()  # type: ignore[union-attr]  # *+ always matches
        if at >= end:
            return True
        width = _LONG_DATA.get(data[at])
        if width is None:
            return False
        at += 1 + width + int.from_bytes(data[at + 1:at + 1 + width], "little")
        if at > end:  # C would first allocate what the length says
            raise pickle.UnpicklingError("pickle data was truncated")


_ONE = (1, 0)  # (values, tuple depth) of anything but a tuple
_FIXED, _LENGTH, _LINES = range(3)  # how an opcode's argument is spelled
_PUSH, _GENERIC, _MARK, _TUPLE, _PUT, _MEMOIZE, _GET, _DUP, _POP, _STOP, _LONG = range(11)
_ACTIONS = {"MARK": _MARK, "TUPLE": _TUPLE, "TUPLE1": _TUPLE, "TUPLE2": _TUPLE,
            "TUPLE3": _TUPLE, "PUT": _PUT, "BINPUT": _PUT, "LONG_BINPUT": _PUT,
            "MEMOIZE": _MEMOIZE, "GET": _GET, "BINGET": _GET, "LONG_BINGET": _GET, "DUP": _DUP,
            "POP": _POP, "STOP": _STOP, "LONG": _LONG, "LONG4": _LONG}


def _opcode_table() -> list[tuple[int, int, int, int, int, int] | None]:
    """Per opcode byte: (argument form, its size, action, the mark's place in what it takes
    (-1: none), how many items it takes, how many it leaves), from pickletools' own table."""
    import pickletools as pt

    widths = {pt.TAKEN_FROM_ARGUMENT1: 1, pt.TAKEN_FROM_ARGUMENT4: 4,
              pt.TAKEN_FROM_ARGUMENT4U: 4, pt.TAKEN_FROM_ARGUMENT8U: 8}
    table: list[tuple[int, int, int, int, int, int] | None] = [None] * 256
    for op in pt.opcodes:
        arg = op.arg
        if arg is None or arg.n >= 0:
            form, size = _FIXED, (arg.n if arg else 0)
        elif arg.n == pt.UP_TO_NEWLINE:
            form, size = _LINES, (2 if arg.name == "stringnl_noescape_pair" else 1)
        else:
            form, size = _LENGTH, widths[arg.n]
        before = op.stack_before
        mark = before.index(pt.markobject) if pt.markobject in before else -1
        action = _ACTIONS.get(op.name, _GENERIC)
        if action == _GENERIC and not before and len(op.stack_after) == 1:
            action = _PUSH  # a value: the most common opcode
        table[ord(op.code)] = (form, size, action, mark, len(before), len(op.stack_after))
    return table


_OPCODES = _opcode_table()


def _scan_tuples(data: bytes) -> None:
    """Follow the pickle's stack and memo, tracking the size and depth of every tuple, and
    refuse one past the bounds before the C unpickler builds (and hashes) it."""
    stack: list[tuple[int, int]] = []
    marks: list[int] = []
    memo: dict[int, tuple[int, int]] = {}
    consumed = 0  # values of the tuples taken off the stack: what hashing them could cost
    at, end, table, push = 0, len(data), _OPCODES, stack.append
    try:
        while True:
            spec = table[data[at]]
            if spec is None:
                raise PickleRefused("corrupt pickle (unknown opcode)")
            form, size, action, mark, takes, leaves = spec
            start = at = at + 1
            if form == _FIXED:
                at += size
            elif form == _LENGTH:
                length = int.from_bytes(data[at:at + size], "little", signed=size == 4)
                if length < 0:
                    raise PickleRefused("corrupt pickle (negative length)")
                at += size + length
            else:
                for _ in range(size):
                    at = data.index(b"\n", at) + 1
            if at > end:
                raise EOFError
            if action == _PUSH:
                push(_ONE)
                continue
            if action == _MEMOIZE:
                memo[len(memo)] = stack[-1]
                continue
            if action == _TUPLE:
                first = marks.pop() if mark == 0 else len(stack) - takes
                consumed += _tuple(stack, first)
            elif action == _MARK:
                marks.append(len(stack))
            elif action == _PUT:
                index = _index(data, start, at, form)
                if index > end:  # the C unpickler would allocate (and zero) a memo that long
                    raise PickleRefused("memo index out of range (a corrupt pickle)")
                memo[index] = stack[-1]
            elif action == _GET:
                push(memo.get(_index(data, start, at, form), _ONE))
            elif action == _DUP:
                push(stack[-1])
            elif action == _STOP:
                return
            elif action == _POP and marks and marks[-1] == len(stack):
                marks.pop()
            else:
                if action == _LONG and at - start > (700 if form == _LINES else 4 + 255):
                    raise PickleRefused("integer too large (over 255 bytes)")
                first = marks.pop() - mark if mark >= 0 else len(stack) - takes
                if first < 0:
                    raise PickleRefused("corrupt pickle (stack underflow)")
                consumed += sum(v for v, d in stack[first:] if d)
                del stack[first:]
                stack.extend([_ONE] * leaves)
            if consumed > MAX_NODES:
                raise PickleRefused(f"tuples of more than {MAX_NODES:,} values (shared "
                                    "references counted each time)")
    except (IndexError, EOFError):
        raise pickle.UnpicklingError("pickle data was truncated") from None
    except ValueError:  # a text opcode without its newline, or not a number
        raise PickleRefused("corrupt pickle (unreadable opcode)") from None


def _index(data: bytes, start: int, stop: int, form: int) -> int:
    """The memo index a PUT or GET opcode names."""
    if form == _LINES:
        return int(data[start:stop - 1])
    return int.from_bytes(data[start:stop], "little")


def _tuple(stack: list[tuple[int, int]], first: int) -> int:
    """Replace the items from ``first`` on by the tuple they make; the values it took."""
    if first < 0:
        raise PickleRefused("corrupt pickle (stack underflow)")
    items = stack[first:]
    del stack[first:]
    values = 1 + sum(v for v, _ in items)
    depth = 1 + max((d for _, d in items), default=0)
    if values > MAX_NODES:
        raise PickleRefused(f"tuples of more than {MAX_NODES:,} values (shared references "
                            "counted each time)")
    if depth > MAX_DEPTH:
        raise PickleRefused(f"tuples nested deeper than {MAX_DEPTH} levels")
    stack.append((values, depth))
    return values - 1


# --- the value, as a serializer walks it ---------------------------------------------------------

_CONTAINERS = {dict, list, tuple, set, frozenset}


def _children(value: Any) -> Any:
    return itertools.chain(value, value.values()) if type(value) is dict else iter(value)


def check_shape(value: Any) -> None:
    """Refuse a value that contains itself, nests deeper than ``MAX_DEPTH`` or holds more than
    ``MAX_NODES`` values once shared references are expanded."""
    if type(value) not in _CONTAINERS:
        return
    # A level at a time, the children listed in C: a few microseconds for a session, and at
    # most MAX_DEPTH levels or MAX_NODES values for anything else.
    level, values = [value], 1
    for _ in range(MAX_DEPTH):
        children = gc.get_referents(*level)
        values += len(children)
        if values > MAX_NODES:
            break
        level = [child for child in children if type(child) in _CONTAINERS]
        if not level:
            return
    _walk(value)  # says which bound it is
    raise PickleRefused(f"session nested deeper than {MAX_DEPTH} levels")


def _walk(value: Any) -> None:
    """``check_shape`` one container at a time, each looked at once: the exact reason."""
    done: dict[int, tuple[int, int]] = {}  # id -> (values, levels) of each container walked
    path = {id(value)}
    frames = [(value, _children(value), [1, 1])]  # container, its children, [values, levels]
    while frames:
        node, children, counts = frames[-1]
        for child in children:
            if type(child) not in _CONTAINERS:
                counts[0] += 1
                continue
            known = done.get(id(child))
            if known is None:
                if id(child) in path:
                    raise PickleRefused("session refers to itself (a value contains itself)")
                if len(frames) >= MAX_DEPTH:
                    raise PickleRefused(f"session nested deeper than {MAX_DEPTH} levels")
                path.add(id(child))
                frames.append((child, _children(child), [1, 1]))
                break
            counts[0] += known[0]
            counts[1] = max(counts[1], known[1] + 1)
            _check_counts(counts, len(frames) - 1)
        else:
            frames.pop()
            path.discard(id(node))
            _check_counts(counts, len(frames))
            done[id(node)] = (counts[0], counts[1])
            if frames:
                parent = frames[-1][2]
                parent[0] += counts[0]
                parent[1] = max(parent[1], counts[1] + 1)


def _check_counts(counts: list[int], above: int) -> None:
    if counts[0] > MAX_NODES:
        raise PickleRefused(f"session holds more than {MAX_NODES:,} values (shared "
                            "references counted each time)")
    if counts[1] + above > MAX_DEPTH:
        raise PickleRefused(f"session nested deeper than {MAX_DEPTH} levels")
