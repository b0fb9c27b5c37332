"""What every rule family's part of the module walker shares: the frames and the walk itself.

The walker (``walker.ModuleWalker``) is one class built from one mixin per rule family, so each
module's AST is walked once for all of them. The state they share lives here: the summary being
filled, the function and class being walked (a frame each), and the names already judged.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable

from migrate.scan.project import Candidate, FuncInfo, ModuleSummary
from migrate.scan.rules.syntax import context_in, dotted, parts_of

CONFIG_CONTEXTS = (
    "Not reported in a testing configuration: a class or function whose name says test or "
    "testing (TestingConfig, UnitTestConfig, create_test_app), a class that sets TESTING = "
    "True, code under `if app.testing:` or `if app.config[\"TESTING\"]:` (or the branch of "
    "`if test_config is None:` that uses the test config), a config dict or update() with "
    "TESTING=True. A test run is one process that never serves two instances, and a {what} "
    "of its own is what it wants. Reported as a note in a development configuration (a "
    "class or function whose name says dev, development or debug, a class that sets DEBUG = "
    "True, code under `if app.debug:` or `if os.environ.get(\"FLASK_DEBUG\"):`): one "
    "developer's one process, but make sure production never loads it.")
"""The ``notes`` of a rule judged by ``WalkerBase.add_in_context``."""


@functools.cache
def last_parts(quals: frozenset[str]) -> frozenset[str]:
    """``os.urandom`` -> ``urandom``: a call whose name is not one of these is not in quals."""
    return frozenset(q.rpartition(".")[2] for q in quals)


class FuncFrame:
    """Per-function state while its body is walked."""

    __slots__ = ("info", "locals", "globals", "mutations", "writes", "threads", "joined",
                 "removed", "temps", "files", "thread_vars", "stores", "bound", "returns",
                 "call_attrs", "random_seen", "queue_gets", "lock_uses", "yields",
                 "value_writes", "acquires")

    def __init__(self, info: FuncInfo) -> None:
        self.info = info
        self.locals: set[str] = set()
        self.globals: set[str] = set()
        self.mutations: list[tuple[list[str], int, int, str, tuple[ast.AST, ...]]] = []
        self.writes: list[tuple[Candidate, set[str]]] = []
        self.threads: list[tuple[Candidate, str | None]] = []
        self.joined: set[str] = set()
        self.removed: set[str] = set()
        self.temps: set[str] = set()
        self.files: set[str] = set()
        self.thread_vars: dict[str, str] = {}
        self.stores: dict[str, tuple[int, int]] = {}
        self.bound: dict[str, list[ast.AST]] = {}
        self.returns: list[ast.AST] = []
        self.call_attrs: list[tuple[str, str]] = []
        self.random_seen = False
        self.queue_gets: list[Candidate] = []
        self.lock_uses = False
        self.yields = False
        self.value_writes = False
        self.acquires = False


class ClassFrame:
    """Per-class state while its body is walked."""

    __slots__ = ("name", "qualname", "self_mutations", "instance_mutables", "instance_attrs",
                 "line", "bases")

    def __init__(self, name: str, qualname: str, line: int, bases: set[str]) -> None:
        self.name = name
        self.qualname = qualname
        self.line = line
        self.bases = bases
        self.self_mutations: list[tuple[str, int, int, str]] = []
        self.instance_mutables: set[str] = set()
        self.instance_attrs: set[str] = set()


class WalkerBase:
    """The shared state and the walk; the rule families add handlers (see ``walker``)."""

    handlers: dict[type, Callable[[ast.AST], None]]

    def __init__(self, summary: ModuleSummary, is_package: bool) -> None:
        self.s = summary
        self.package = summary.module if is_package else summary.module.rpartition(".")[0]
        self.func: FuncFrame | None = None
        self.cls: ClassFrame | None = None
        self.scope = ""  # qualname of the innermost function or class ("" = module)
        self.in_main = False
        self.consumed: set[int] = set()
        self.module_thread_vars: dict[str, str] = {}
        self.module_bound: dict[str, list[ast.AST]] = {}
        self.call_now: tuple[ast.Call, str] | None = None
        """The call whose arguments are being walked, and the name it resolves to."""
        self.files_seen = 0
        """``request.files`` read so far (a value that raises it holds an upload)."""
        self.frames: list[FuncFrame] = []
        """The functions being walked, outermost first (a closure's names are in them)."""
        self.instance_locks: dict[str, set[str]] = {}
        """A class -> the attributes its methods set to a lock (``self._lock = Lock()``)."""
        self.contexts: list[tuple[str, object]] = []
        """What encloses the code being walked that may make it a testing or development
        configuration (see ``syntax.context_in``); judged only when a trap needs it."""

    def visit(self, node: ast.AST) -> None:
        handler = self.handlers.get(type(node))
        if handler is not None:
            handler(node)
        else:
            for child in ast.iter_child_nodes(node):
                self.visit(child)

    def generic(self, node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            self.visit(child)

    def candidate(self, rule: str, node: ast.AST, message: str, reach: str = "always",
                  target: tuple[str, str] | None = None) -> Candidate:
        """A candidate at ``node`` in the function being walked."""
        return Candidate(rule, node.lineno, node.col_offset, message,
                         self.func.info.qualname if self.func else "", reach, target)

    def add(self, cand: Candidate) -> None:
        self.s.candidates.append(cand)

    def _container_evidence(self, cand: Candidate, exprs: tuple[ast.AST, ...]) -> None:
        """What a changed container holds (``rules.containers``)."""
        raise NotImplementedError

    def add_in_context(self, cand: Candidate) -> None:
        """A trap that does not matter in a testing configuration (dropped) and is a note in
        a development one (see the rule's ``notes``)."""
        context = context_in(self.contexts) if self.contexts else ""
        if context == "testing":
            return
        if context == "development":
            cand.severity = "note"
            cand.message += " (in a development configuration: a note)"
        self.s.candidates.append(cand)

    def bind(self, targets: list[ast.AST], value: ast.AST | None) -> None:
        """``name = value`` in this scope: kept so a name can be traced to what made it."""
        if value is None:
            return
        bound = self.func.bound if self.func is not None else self.module_bound
        for target in targets:
            if isinstance(target, ast.Name):
                bound.setdefault(target.id, []).append(value)

    def trace(self, node: ast.AST, random: frozenset[str],
              deep: bool = True) -> tuple[str, int, list[str]]:
        """What a value is made from: the first call in ``random`` it comes from ("" if
        none) and its line, and the dotted names of the other calls whose results it may be.

        Followed: calls (their receiver and arguments), ``a or b``, ``x if c else y``,
        operators, f-strings, subscripts, comprehensions, containers and names bound in this
        scope (or at module level); ``deep=False``: not into arguments, comprehensions and
        containers (what a call returns, and the receivers of the calls returned, only).
        """
        calls: list[str] = []
        stack = [node]
        seen: set[int] = set()
        last_names = last_parts(random)
        while stack:
            sub = stack.pop()
            if isinstance(sub, ast.Call):
                fn = sub.func
                last = fn.id if isinstance(fn, ast.Name) else \
                    fn.attr if isinstance(fn, ast.Attribute) else ""
                if last in last_names:
                    qual = self.qual(fn) or ""
                    if qual in random:
                        return qual, sub.lineno, calls
                if isinstance(fn, ast.Name):
                    calls.append(fn.id)
                elif isinstance(fn, ast.Attribute):
                    name = dotted(fn)
                    if name is not None:
                        calls.append(name)
                    stack.append(fn.value)
                if deep:
                    stack += sub.args
                    stack += [kw.value for kw in sub.keywords]
            elif isinstance(sub, ast.Name):
                values = self._bound_values(sub.id)
                if values and id(values) not in seen:
                    seen.add(id(values))
                    stack += values
            elif isinstance(sub, ast.Attribute | ast.Subscript | ast.Starred | ast.Await
                            | ast.FormattedValue):
                stack.append(sub.value)
            elif isinstance(sub, ast.BoolOp | ast.JoinedStr):
                stack += sub.values
            elif isinstance(sub, ast.IfExp):
                stack += (sub.body, sub.orelse)
            elif isinstance(sub, ast.BinOp):
                stack += (sub.left, sub.right)
            elif deep and not isinstance(sub, ast.Constant | ast.Lambda):
                stack += ast.iter_child_nodes(sub)  # "".join(choice(...) for _ in ...), [...]
        return "", 0, calls

    def _bound_values(self, name: str) -> list[ast.AST] | None:
        func = self.func
        if func is not None:
            if name in func.bound:
                return func.bound[name]
            if name in func.locals and name not in func.globals:
                return None
        return self.module_bound.get(name)

    def qual(self, node: ast.AST) -> str | None:
        """The qualified name a called expression refers to, through this module's imports."""
        parts = parts_of(node)
        if not parts:
            return None
        head = self.s.imports.get(parts[0])
        if head is not None and not (self.func and parts[0] in self.func.locals):
            module, attr = head
            base = f"{module}.{attr}" if attr else module
            return ".".join([base, *parts[1:]])
        return ".".join(parts)
