"""In-process locks held around a read-modify-write of shared data.

A ``threading.Lock`` (or ``RLock``, ``Semaphore``, ``Condition``; ``multiprocessing``'s, which
reach only the processes of one host; ``asyncio``'s; a ``filelock.FileLock`` on local disk)
that lives as long as the process (module level, a class attribute, a module-level object's, a
closure in the app factory) makes a check-then-act correct in one process only. Reported where
it is held (``with LOCK:``, ``LOCK.acquire()``) in request-reachable code when the code under
it reads and then writes:

- the database: a read (``query``, ``get``, ``first``, ``fetchone``, ``execute(select(...))``,
  ``execute("SELECT ...")``), then a write (``commit``, ``flush``, ``execute("UPDATE ...")``, or a
  change to a loaded row), directly or through the project's functions it calls;
- process state: a module-level container or ``global`` changed after (or with) a read of it
  (``X[k] = X[k] - n``, ``if t in USED: ...; USED.add(t)``, ``n += 1``);
- a ``multiprocessing.Value``'s ``.value`` (written with no lock too: one host's memory only).

Not reported, by design: a lock made inside the function that holds it (it guards nothing
another request sees); code under a lock that only reads, or only appends or inserts without
reading first (no lost update; the container itself is ``module-state``'s or ``live-updates``');
a fill-if-absent or lazy initialisation (``if key not in CACHE: CACHE[key] = load()``, ``if
_client is None: _client = make()``): each process wants its own; a read-modify-write of a
container whose name says cache or memo, or of live-update subscribers: per-process by nature,
and judged by ``process-cache`` / ``module-state`` / ``live-updates``; a lock around a single
statement the database makes atomic (``UPDATE ... SET n = n - 1 WHERE n > 0``), or rows it
locks (``with_for_update()``, ``SELECT ... FOR UPDATE``): the database keeps other instances out;
a lock around Redis or other network calls, or around a file's read and write (not followed;
``local-file-write`` reports the file).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass

from migrate.scan.model import Rule
from migrate.scan.project import (
    Candidate,
    FuncKey,
    ModuleCheck,
    ModuleSummary,
    Project,
    Resolved,
    resolve_candidate,
)
from migrate.scan.rules.base import FuncFrame, WalkerBase
from migrate.scan.rules.containers import LIVE_UPDATES, _own_nodes, words_of
from migrate.scan.rules.state import MUTATORS, mutable_kind
from migrate.scan.rules.syntax import changed_root, dotted, parts_of

RULES = (
    Rule("process-lock", "error", "In-process lock around a read-modify-write of shared data",
         "the lock only keeps out this process's threads: another instance runs the same "
         "read-modify-write at the same moment (stock oversold, updates lost)",
         "make it one atomic step in the shared store: a conditional UPDATE (SET stock = "
         "stock - :n WHERE id = :id AND stock >= :n, then check the row count), or a Redis "
         "Lua script or lock; nothing to move",
         "Reported where a process-wide lock (module level, a class attribute, a module-level "
         "object's, a closure of the app factory; threading, multiprocessing, asyncio, gevent "
         "or a FileLock) is taken in request-reachable code around a read then a write of the "
         "database (directly or through the project's functions) or of a global or "
         "module-level container; and a multiprocessing.Value written while serving requests. "
         "Not reported, by design: a lock made in the function that takes it; code under the "
         "lock that only reads, or only appends without reading first; a fill-if-absent or a "
         "lazy initialisation (each process wants its own); a read-modify-write of a cache "
         "(a name that says cache or memo) or of live-update subscribers (per-process by "
         "nature; module-state, process-cache and live-updates judge them); one UPDATE the "
         "database makes atomic, or rows it locks (with_for_update(), SELECT ... FOR UPDATE); "
         "Redis or other network calls, or a file's read and write, under the lock (not "
         "followed; local-file-write reports the file)."),
)
PROCESS_LOCK = RULES[0]

LOCK_CALLS = frozenset({
    f"{module}.{name}" for module in ("threading", "multiprocessing", "asyncio")
    for name in ("Lock", "RLock", "Semaphore", "BoundedSemaphore", "Condition")
} | {"gevent.lock.Semaphore", "gevent.lock.BoundedSemaphore", "gevent.lock.RLock",
     "filelock.FileLock", "filelock.SoftFileLock", "threading._RLock"})
VALUE_CALLS = frozenset({"multiprocessing.Value", "multiprocessing.Array",
                         "multiprocessing.RawValue", "multiprocessing.RawArray",
                         "multiprocessing.sharedctypes.Value",
                         "multiprocessing.sharedctypes.Array"})
DB_READS = frozenset({"query", "scalar", "scalars", "scalar_one", "scalar_one_or_none", "one",
                      "one_or_none", "first", "fetchone", "fetchall", "fetchmany", "filter_by",
                      "get_or_404", "first_or_404"})
DB_WRITES = frozenset({"commit", "flush"})
TAKES = frozenset({"pop", "popitem", "popleft"})
"""Mutators that read what they change (take an item)."""
PER_PROCESS_WORDS = frozenset({"cache", "cached", "caches", "memo", "memos", "lru"})
KINDS = {"module": "module-level", "class": "class attribute", "closure": "made by the "
         "enclosing function, shared by every request", "import": "module-level",
         "instance": "a long-lived object's"}


@dataclass(frozen=True)
class Changed:
    """Process state read, then written under a lock: its name, the line it is written on,
    the containers it may be, and whether the project must confirm one of them."""

    name: str
    line: int
    containers: tuple[tuple[str, str], ...]
    confirm: bool


@dataclass
class LockRegion:
    """Code held under a lock that may be process-wide (judged with the whole project)."""

    line: int
    col: int
    func: str
    lock: str
    kind: str
    target: tuple[str, str] | None
    target_kind: str
    changed: tuple[Changed, ...]
    """The process state it reads and then writes."""
    db_read: bool
    db_write: bool
    db_locked: bool
    row_write: bool
    calls: tuple[str, ...]


def sql_kind(node: ast.AST) -> str:
    """"read", "write" or "" for what an ``execute`` argument does."""
    text = node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else ""
    if isinstance(node, ast.Call):
        parts = parts_of(node.func) or [""]
        name = parts[-1].lower()
        if name == "text" and node.args:
            return sql_kind(node.args[0])
        if name == "select":
            return "read"
        if name in ("update", "insert", "delete"):
            return "write"
    first = text.lstrip().split(" ", 1)[0].upper() if text else ""
    return "read" if first in ("SELECT", "WITH") else \
        "write" if first in ("UPDATE", "INSERT", "DELETE", "REPLACE") else ""


def db_access(node: ast.Call) -> str:
    """"read", "write" or "" for one call (``Product.query.get``, ``db.session.commit``);
    "locked" for a read that locks its rows in the database (``with_for_update()``, ``SELECT
    ... FOR UPDATE``): then the database keeps other instances out, the lock is redundant."""
    fn = node.func
    if not isinstance(fn, ast.Attribute):
        return ""
    if fn.attr == "with_for_update":
        return "locked"
    if fn.attr in ("execute", "executemany") and node.args and any(
            isinstance(c, ast.Constant) and isinstance(c.value, str)
            and "FOR UPDATE" in c.value.upper() for c in ast.walk(node.args[0])):
        return "locked"
    if fn.attr in DB_READS:
        return "read"
    if fn.attr in DB_WRITES:
        return "write"
    if fn.attr in ("execute", "executemany") and node.args:
        return sql_kind(node.args[0])
    if fn.attr == "get":
        parts = parts_of(fn.value) or [""]
        return "read" if parts[-1] in ("session", "query") else ""
    return ""


class LockRules(WalkerBase):
    """Notes locks, what database access each function does, and the code under locks."""

    def _note_db(self, node: ast.Call) -> None:
        if self.func is not None:
            access = db_access(node)
            if access == "read":
                self.func.info.db_read = True
            elif access == "write":
                self.func.info.db_write = True
            elif access == "locked":
                self.func.info.db_locked = True

    def _note_class_locks(self, node: ast.ClassDef, qualname: str) -> None:
        """``LOCK = Lock()`` in a class body."""
        for stmt in node.body:
            if isinstance(stmt, ast.Assign) and self._is_lock(stmt.value):
                for target in stmt.targets:
                    if isinstance(target, ast.Name):
                        self.s.locks.add(f"{qualname}.{target.id}")

    def _note_instance_lock(self, attr: str, value: ast.AST | None) -> None:
        """``self._lock = Lock()`` in a method (``__init__`` comes first, most often)."""
        if self.cls is not None and self._is_lock(value):
            self.instance_locks.setdefault(self.cls.qualname, set()).add(attr)

    def _is_lock(self, value: ast.AST | None) -> bool:
        return isinstance(value, ast.Call) and (self.qual(value.func) or "") in LOCK_CALLS

    def _acquire(self, node: ast.Call, meth: str, recv: ast.AST) -> None:
        if self.func is not None:
            self.func.lock_uses = self.func.acquires = True

    def finish_locks(self) -> None:
        """Module-level locks and shared values, for other modules' uses of them."""
        for name, values in self.module_bound.items():
            if any(self._is_lock(v) for v in values):
                self.s.locks.add(name)
            if any(isinstance(v, ast.Call) and (self.qual(v.func) or "") in VALUE_CALLS
                   for v in values):
                self.s.shared_values.add(name)

    # the function's code under locks

    def _finish_locks(self, frame: FuncFrame, node: ast.AST) -> None:
        nonlocals: set[str] | None = None
        for held, body, where in _held_regions(node, frame.acquires):
            ref = self._lock_ref(held, frame)
            if ref is None:
                continue
            if nonlocals is None:
                nonlocals = {n for sub in _own_nodes(node) if isinstance(sub, ast.Nonlocal)
                             for n in sub.names}
            lock, kind, target, target_kind = ref
            changed, row_write = self._read_then_written(body, frame, nonlocals)
            access = {db_access(sub) for stmt in body for sub in ast.walk(stmt)
                      if isinstance(sub, ast.Call)}
            calls = tuple(dict.fromkeys(d for stmt in body for sub in ast.walk(stmt)
                                        if isinstance(sub, ast.Call)
                                        for d in (dotted(sub.func),) if d is not None))
            self.s.lock_regions.append(LockRegion(
                where.lineno, where.col_offset, frame.info.qualname, lock, kind, target,
                target_kind, changed, "read" in access, "write" in access, "locked" in access,
                row_write, calls))

    def _lock_ref(self, held: ast.AST, frame: FuncFrame
                  ) -> tuple[str, str, tuple[str, str] | None, str] | None:
        """What the held lock is: its name, kind, and the other module's name it must be."""
        parts = parts_of(held)
        if not parts or isinstance(held, ast.Call):
            return None
        name = ".".join(parts)
        head = parts[0]
        if len(parts) == 1:
            if head in frame.bound or head in frame.locals and head not in frame.globals:
                return None  # made (or passed) here: guards nothing another request sees
            for outer in reversed(self.frames[:-1]):
                if head in outer.bound:  # the enclosing factory's, unless that serves requests
                    return (name, "closure", ("", outer.info.qualname), "unreached") \
                        if any(self._is_lock(v) for v in outer.bound[head]) else None
            if any(self._is_lock(v) for v in self.module_bound.get(head, ())):
                return name, "module", None, ""
            imported = self.s.imports.get(head)
            if imported is not None and imported[1]:
                return name, "import", (imported[0], imported[1]), "locks"
            return None
        if len(parts) != 2:
            return None
        cls = frame.info.cls
        if head in ("self", "cls") and cls:
            if f"{cls}.{parts[1]}" in self.s.locks:
                return name, "class", None, ""
            if parts[1] in self.instance_locks.get(cls, ()):
                return name, "instance", ("", cls), "instance_classes"
            return None
        if f"{head}.{parts[1]}" in self.s.locks:
            return name, "class", None, ""
        imported = self.s.imports.get(head)
        if imported is not None:
            module = f"{imported[0]}.{imported[1]}" if imported[1] else imported[0]
            return name, "import", (module, parts[1]), "locks"
        return None

    def _state_of(self, root: list[str], frame: FuncFrame, nonlocals: set[str]
                  ) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...], bool] | None:
        """The process state a change's root names: (its key in this function, the
        containers it may be, whether the project must confirm one is a module-level
        container), or None for a local or an object that is not state (a client, ``db``)."""
        head, module = root[0], self.s.module
        if head in ("self", "cls"):
            if not frame.info.cls or len(root) < 2:
                return None
            # Confirmed: a class attribute, or an object that lives as long as the process.
            return (head, root[1]), ((module, f"{frame.info.cls}.{root[1]}"),), True
        if head in frame.globals or head in nonlocals or head in self.s.mutables:
            return (head,), ((module, head),), False
        if head in frame.locals:
            return None
        if any(mutable_kind(v) for outer in self.frames[:-1] for v in outer.bound.get(head, ())):
            return (head,), (), False  # the enclosing factory's container
        if any(isinstance(v, ast.Call) and (self.qual(v.func) or "") in VALUE_CALLS
               for v in self.module_bound.get(head, ())):
            return (head,), ((module, head),), False
        imported = self.s.imports.get(head)
        if imported is None:
            return None
        source, attr = imported
        keys = [(source, attr)] if attr else []
        if len(root) > 1:
            keys.append((f"{source}.{attr}" if attr else source, root[1]))
            return (head, root[1]), tuple(keys), True
        return (head,), tuple(keys), True

    def _read_then_written(self, body: list[ast.stmt], frame: FuncFrame, nonlocals: set[str]
                           ) -> tuple[tuple[Changed, ...], bool]:
        """The process state the code reads and then writes, and whether it changes an
        attribute of a local object (a loaded row)."""
        writes, own, row_write = _writes(body)
        reads: dict[str, list[tuple[int, int]]] = {}
        skipped = {id(n) for n in own} | _absence_tests(body)
        for stmt in body:
            for sub in ast.walk(stmt):
                if id(sub) in skipped:
                    continue
                key = _read_key(sub)
                if key is not None:
                    reads.setdefault(".".join(key), []).append((sub.lineno, sub.col_offset))
        found: dict[str, Changed] = {}
        for root, stmt, inherent in writes:
            state = self._state_of(root, frame, nonlocals)
            if state is None or words_of(state[0][-1]) & PER_PROCESS_WORDS:
                continue
            name, containers, confirm = state
            end = (stmt.end_lineno or stmt.lineno, stmt.end_col_offset or 0)
            text = ".".join(name)
            if inherent or any(pos <= end for key in {text, name[0]}
                               for pos in reads.get(key, ())):
                found.setdefault(text, Changed(text, stmt.lineno, containers, confirm))
        return tuple(found.values()), row_write

    def _finish_values(self, frame: FuncFrame, node: ast.AST) -> None:
        """``HITS.value += 1`` on a module-level ``multiprocessing.Value`` (one host only)."""
        if not frame.value_writes:
            return
        for sub in _own_nodes(node):
            targets = sub.targets if isinstance(sub, ast.Assign) else \
                [sub.target] if isinstance(sub, ast.AugAssign) else []
            for target in targets:
                if isinstance(target, ast.Attribute) and target.attr == "value" \
                        and isinstance(target.value, ast.Name) \
                        and target.value.id not in frame.locals:
                    name = target.value.id
                    imported = self.s.imports.get(name)
                    where = (imported[0], imported[1]) if imported and imported[1] \
                        else ("", name)
                    self.add(Candidate(
                        PROCESS_LOCK.id, sub.lineno, sub.col_offset,
                        f"`{name}.value` (a multiprocessing shared value: one host's memory) "
                        "is read and written here", frame.info.qualname, "reach", where,
                        target_kind="shared_values"))


def _held_regions(node: ast.AST, acquires: bool
                  ) -> Iterator[tuple[ast.AST, list[ast.stmt], ast.AST]]:
    """(lock expression, the statements held under it, where it is taken) in a function:
    ``with LOCK:``, and (``acquires``) ``LOCK.acquire()`` up to its ``release()``."""
    for sub in (node, *_own_nodes(node)):
        if isinstance(sub, ast.With | ast.AsyncWith):
            for item in sub.items:
                yield item.context_expr, sub.body, sub
        if not acquires:
            continue
        if isinstance(sub, ast.If) and _acquired(sub.test) is not None:
            yield _acquired(sub.test), sub.body, sub  # type: ignore[misc]
        for field in ("body", "orelse", "finalbody"):
            stmts = getattr(sub, field, None)
            if not isinstance(stmts, list):
                continue
            for index, stmt in enumerate(stmts):
                held = _acquired(stmt.value) if isinstance(stmt, ast.Expr) else None
                if held is None:
                    continue
                rest = stmts[index + 1:]
                text = ast.dump(held)
                end = next((i for i, s in enumerate(rest) if isinstance(s, ast.Expr)
                            and _released(s.value) == text), len(rest))
                yield held, rest[:end], stmt


def _acquired(node: ast.AST) -> ast.AST | None:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
            and node.func.attr == "acquire":
        return node.func.value
    return None


def _released(node: ast.AST) -> str:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
            and node.func.attr == "release":
        return ast.dump(node.func.value)
    return ""


def _writes(body: list[ast.stmt]) -> tuple[list[tuple[list[str], ast.AST, bool]], list[ast.AST],
                                           bool]:
    """The changes the code makes: (root, statement, reads-as-it-writes), the nodes naming
    what is changed (not reads), and whether an attribute of a plain name is set."""
    out: list[tuple[list[str], ast.AST, bool]] = []
    own: list[ast.AST] = []
    row_write = False
    for stmt in body:
        for sub in ast.walk(stmt):
            targets: list[ast.AST] = []
            inherent = False
            if isinstance(sub, ast.Assign):
                targets = sub.targets
            elif isinstance(sub, ast.AnnAssign | ast.AugAssign):
                targets, inherent = [sub.target], isinstance(sub, ast.AugAssign)
            elif isinstance(sub, ast.Delete):
                targets = sub.targets
            elif isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) \
                    and sub.func.attr in MUTATORS:
                targets, inherent = [sub.func.value], sub.func.attr in TAKES
            for target in targets:
                root = [target.id] if isinstance(target, ast.Name) else changed_root(target)
                if not root:
                    continue
                if isinstance(target, ast.Attribute) and len(root) == 2 \
                        and root[0] not in ("self", "cls"):
                    row_write = True
                out.append((root, sub, inherent))
                own += [n for n in ast.walk(target)
                        if isinstance(n, ast.Name | ast.Attribute)]
    return out, own, row_write


def _read_key(node: ast.AST) -> tuple[str, ...] | None:
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
        return (node.id,)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
            and node.value.id in ("self", "cls") and isinstance(node.ctx, ast.Load):
        return (node.value.id, node.attr)
    return None


def _absence_tests(body: list[ast.stmt]) -> set[int]:
    """The nodes of ``if key not in X`` / ``if X is None`` / ``if not X`` tests: a fill of
    what is missing reads nothing it then overwrites."""
    out: set[int] = set()
    for stmt in body:
        for sub in ast.walk(stmt):
            if not isinstance(sub, ast.If):
                continue
            test = sub.test
            absent = isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not) or \
                isinstance(test, ast.Compare) and all(
                    isinstance(op, ast.NotIn) or isinstance(op, ast.Is | ast.Eq)
                    and isinstance(c, ast.Constant) and c.value is None
                    for op, c in zip(test.ops, test.comparators, strict=True))
            if absent:
                out |= {id(n) for n in ast.walk(test)}
    return out


def is_state(project: Project, changed: Changed) -> bool:
    """State another instance would race on: confirmed a module-level container or shared
    value where that is asked, and not live-update subscribers (per process by nature)."""
    if any(project.container_rules.get(c) == LIVE_UPDATES.id for c in changed.containers):
        return False
    if not changed.confirm:
        return True
    for module, name in changed.containers:
        other = project.modules.get(module)
        if other is not None and (name in other.mutables or name in other.shared_values):
            return True
        owner = name.rpartition(".")[0]
        if owner and (module, owner) in project.instance_classes:
            return True
    return False


def locked_sections(project: Project) -> ModuleCheck:
    """The code under each lock, judged with the database access of the functions it calls."""
    origin = project.reachable()
    memo: dict[FuncKey, tuple[bool, bool, bool]] = {}

    def access(key: FuncKey, seen: set[FuncKey]) -> tuple[bool, bool, bool]:
        """(reads, writes, locks rows in) the database, itself or through its callees."""
        if key in memo:
            return memo[key]
        info = project.modules[key[0]].functions.get(key[1])
        if info is None or key in seen:
            return False, False, False
        seen.add(key)
        found = (info.db_read, info.db_write, info.db_locked)
        for callee in project.callees(key, False):
            found = tuple(a or b for a, b in zip(found, access(callee, seen), strict=True))
        memo[key] = found  # type: ignore[assignment]
        return found  # type: ignore[return-value]

    def check(summary: ModuleSummary) -> Iterator[Resolved]:
        for region in summary.lock_regions:
            if region.target_kind == "locks" and region.target is not None:
                other = project.modules.get(region.target[0])
                if other is None or region.target[1] not in other.locks:
                    continue
            read, write, locked = region.db_read, region.db_write, region.db_locked
            for name in region.calls:
                key = project.resolve_dotted(summary.module, region.func, name)
                if key is not None:
                    r, w, held = access(key, set())
                    read, write, locked = read or r, write or w, locked or held
            write = (write or region.row_write and read) and not locked
            what = ""
            changed = [c for c in region.changed if is_state(project, c)]
            if changed:
                what = ", ".join(f"`{c.name}` (written on line {c.line})" for c in changed)
            elif read and write:
                what = "the database (read, then written)"
            if not what:
                continue
            cand = Candidate(PROCESS_LOCK.id, region.line, region.col,
                             f"`{region.lock}` ({KINDS[region.kind]} lock) is held around a "
                             f"read-modify-write of {what}", region.func, "reach",
                             region.target if region.target_kind != "locks" else None,
                             target_kind=region.target_kind or "mutables")
            found = resolve_candidate(project, origin, summary, cand, PROCESS_LOCK)
            if found is not None:
                yield found

    return check
