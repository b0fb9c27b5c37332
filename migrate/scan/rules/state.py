"""Module-level state: containers changed and `global` names rebound while serving requests."""

from __future__ import annotations

import ast

from migrate.scan.model import Rule
from migrate.scan.project import Candidate, FuncInfo
from migrate.scan.rules.base import FuncFrame, WalkerBase
from migrate.scan.rules.syntax import changed_root, parts_of

RULES = (
    Rule("module-state", "error", "Module-level mutable state changed while serving requests",
         "each instance changes its own copy: two instances disagree and a restart loses it",
         "keep it in Redis (INCR/HINCRBY for counters, SET with EX for caches) or the "
         "database, one value for every instance; `migrate steps` shows where it goes"),
    Rule("global-rebind", "error", "`global` name rebound while serving requests",
         "the new value exists only in this process: other instances keep the old one",
         "keep the value in Redis or the database and read it per request; "
         "`migrate steps` shows where it goes"),
)

MUTABLE_CALLS = frozenset({
    "dict", "list", "set", "bytearray", "defaultdict", "Counter", "deque", "OrderedDict",
    "ChainMap", "WeakValueDictionary", "WeakKeyDictionary", "WeakSet",
    "TTLCache", "LRUCache", "LFUCache", "TLRUCache", "RRCache", "FIFOCache", "MRUCache",
})
MUTATORS = frozenset({
    "append", "extend", "insert", "pop", "popitem", "remove", "clear", "update", "setdefault",
    "add", "discard", "appendleft", "extendleft", "popleft", "rotate", "sort", "reverse",
    "difference_update", "intersection_update", "symmetric_difference_update", "subtract",
    "__setitem__", "__delitem__",
})


def mutable_kind(value: ast.AST | None) -> str | None:
    """'dict', 'list', ... when ``value`` builds a mutable container, else None."""
    if isinstance(value, ast.Dict | ast.DictComp):
        return "dict"
    if isinstance(value, ast.List | ast.ListComp):
        return "list"
    if isinstance(value, ast.Set | ast.SetComp):
        return "set"
    if isinstance(value, ast.Call):
        parts = parts_of(value.func)
        if parts and parts[-1] in MUTABLE_CALLS:
            return parts[-1]
    return None


class StateRules(WalkerBase):
    """Notes mutable containers and the changes to them; judges each function's changes."""

    def _note_mutables(self, node: ast.Assign | ast.AnnAssign, prefix: str) -> None:
        """``X = {}`` at module level (prefix "") or in a class body (prefix "Cls.")."""
        kind = mutable_kind(node.value)
        if kind:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    self.s.mutables[f"{prefix}{target.id}"] = (node.lineno, kind)

    def _mutated(self, container: ast.AST, line: int, col: int, how: str,
                 exprs: tuple[ast.AST | None, ...] = ()) -> None:
        """``container`` (``X[k]``, ``self.x``, ...) is changed in place here; ``exprs``: the
        keys and values it is changed with (what they are tells what the container holds)."""
        if self.func is not None:
            root = changed_root(container)
            if root:
                keys = tuple(e for e in exprs if e is not None)
                while isinstance(container, ast.Subscript):
                    keys += (container.slice,)
                    container = container.value
                self.func.mutations.append((root, line, col, how, keys))

    def _augassign(self, node: ast.AugAssign) -> None:
        target = node.target
        if isinstance(target, ast.Subscript):
            self._mutated(target, node.lineno, node.col_offset, "augmented assignment",
                          (node.value,))
        elif isinstance(target, ast.Name) and self.func is not None \
                and target.id in self.func.globals:
            self.func.stores.setdefault(target.id, (node.lineno, node.col_offset))
        self.visit(target)
        self.visit(node.value)

    def _delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            if isinstance(target, ast.Subscript):
                self._mutated(target, node.lineno, node.col_offset, "del")
            self.visit(target)

    def _global(self, node: ast.Global) -> None:
        if self.func is not None:
            self.func.globals.update(node.names)

    def _finish_state(self, frame: FuncFrame) -> None:
        """The function's changes to module, class and imported state; its global rebinds."""
        info = frame.info
        local = frame.locals - frame.globals
        for root, line, col, how, exprs in frame.mutations:
            before = len(self.s.candidates)
            if len(root) == 1:
                if root[0] not in local:
                    self._changed_name(info, root[0], line, col, how)
            else:
                self._changed_attr(info, local, root[0], root[1], line, col, how)
            if len(self.s.candidates) > before:
                self._container_evidence(self.s.candidates[-1], exprs)
        for name in sorted(frame.globals & set(frame.stores)):
            line, col = frame.stores[name]
            self.add(Candidate("global-rebind", line, col,
                               f"`global {name}` is rebound here", info.qualname, "reach"))

    def _changed_name(self, info: FuncInfo, name: str, line: int, col: int, how: str) -> None:
        """``NAME[k] = v``: a container of the enclosing function (an app factory's), or a
        module-level one, here or imported from another module."""
        for outer in reversed(self.frames[:-1]):
            if name in outer.locals and name not in outer.globals:
                kind = next(filter(None, map(mutable_kind, outer.bound.get(name, ()))), None)
                if kind:  # kept only if the enclosing function does not run per request
                    owner = outer.info.qualname
                    self.add(Candidate("module-state", line, col,
                                       f"`{name}` ({kind} made by `{owner}`, shared by every "
                                       f"request it serves) is changed here ({how})",
                                       info.qualname, "reach", ("", owner),
                                       target_kind="unreached",
                                       container=(self.s.module, f"{owner}.{name}")))
                return
        if name in self.s.mutables:
            defined, kind = self.s.mutables[name]
            self.add(Candidate("module-state", line, col,
                               f"`{name}` (module-level {kind}, line {defined}) is "
                               f"changed here ({how})", info.qualname, "reach",
                               container=(self.s.module, name)))
        elif name in self.s.imports and self.s.imports[name][1]:
            module, attr = self.s.imports[name]
            self.add(Candidate("module-state", line, col,
                               f"`{name}` (module-level, from {module}) is changed "
                               f"here ({how})", info.qualname, "reach", (module, attr),
                               container=(module, attr)))

    def _is_app(self, name: str) -> bool:
        """``current_app``, or the app a module (or the enclosing factory) made."""
        if self.s.imports.get(name) == ("flask", "current_app"):
            return True
        for bound in (self.module_bound, *(f.bound for f in self.frames[:-1])):
            if any(isinstance(v, ast.Call) and (self.qual(v.func) or "") == "flask.Flask"
                   for v in bound.get(name, ())):
                return True
        return False

    def _changed_attr(self, info: FuncInfo, local: set[str], name: str, attr: str, line: int,
                      col: int, how: str) -> None:
        """``name.attr[k] = v``: a class attribute, an instance's own, or another module's."""
        if name in ("self", "cls") and info.cls:
            key = f"{info.cls}.{attr}"
            cls = self.cls
            if cls is not None and cls.qualname == info.cls and name == "self":
                cls.self_mutations.append((attr, line, col, how))
                if attr in cls.instance_attrs:
                    # A trap only in an object that lives as long as the process (a
                    # module-level one): the project pass knows which classes have one.
                    self.add(Candidate("module-state", line, col,
                                       f"`self.{attr}` of `{cls.name}`{{owner}} is changed "
                                       f"here ({how})",
                                       info.qualname, "reach", ("", info.cls),
                                       target_kind="instance_classes",
                                       container=(self.s.module, key)))
                    return
            if key in self.s.mutables:
                kind = self.s.mutables[key][1]
                self.add(Candidate("module-state", line, col,
                                   f"class attribute `{key}` ({kind}, shared by the "
                                   f"process) is changed here ({how})", info.qualname,
                                   "reach", container=(self.s.module, key)))
            return
        if name in local:
            return
        key = f"{name}.{attr}"
        if key in self.s.mutables:
            self.add(Candidate("module-state", line, col,
                               f"class attribute `{key}` ({self.s.mutables[key][1]}, "
                               f"shared by the process) is changed here ({how})",
                               info.qualname, "reach", container=(self.s.module, key)))
        elif attr != "extensions" and self._is_app(name):  # extensions: the app's own objects
            self.add(Candidate("module-state", line, col,
                               f"`{name}.{attr}` (kept on the Flask app, which lives as long "
                               f"as the process) is changed here ({how})", info.qualname,
                               "reach", container=("<app>", attr)))
        elif name in self.s.imports:
            module, sub = self.s.imports[name]
            module = f"{module}.{sub}" if sub else module
            self.add(Candidate("module-state", line, col,
                               f"`{name}.{attr}` (module-level, in {module}) is changed "
                               f"here ({how})", info.qualname, "reach", (module, attr),
                               container=(module, attr)))
