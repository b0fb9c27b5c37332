"""What every rule family's part of the module walker shares: the frames and the walk itself.

The walker (``walker.ModuleWalker``) is one class built from one mixin per rule family, so each
module's AST is walked once for all of them. The state they share lives here: the summary being
filled, the function and class being walked (a frame each), and the names already judged.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

from migrate.scan.project import Candidate, FuncInfo, ModuleSummary
from migrate.scan.rules.syntax import parts_of


class FuncFrame:
    """Per-function state while its body is walked."""

    __slots__ = ("info", "locals", "globals", "mutations", "writes", "threads", "joined",
                 "removed", "temps", "files", "thread_vars", "stores")

    def __init__(self, info: FuncInfo) -> None:
        self.info = info
        self.locals: set[str] = set()
        self.globals: set[str] = set()
        self.mutations: list[tuple[list[str], int, int, str]] = []
        self.writes: list[tuple[Candidate, set[str]]] = []
        self.threads: list[tuple[Candidate, str | None]] = []
        self.joined: set[str] = set()
        self.removed: set[str] = set()
        self.temps: set[str] = set()
        self.files: set[str] = set()
        self.thread_vars: dict[str, str] = {}
        self.stores: dict[str, tuple[int, int]] = {}


class ClassFrame:
    """Per-class state while its body is walked."""

    __slots__ = ("name", "qualname", "self_mutations", "instance_mutables", "instance_attrs",
                 "line")

    def __init__(self, name: str, qualname: str, line: int) -> None:
        self.name = name
        self.qualname = qualname
        self.line = line
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
