"""The project pass: join every module's summary, find what runs while serving requests.

The rules (``migrate.scan.rules``) walk one module at a time and leave a ``ModuleSummary``: its
functions (the names they reference, whether they are views or request hooks), its module- and
class-level mutable containers, and *candidate* findings, each tied to the function it sits in.
``resolve_project`` joins the summaries: it follows calls across the project's modules from
every view, request hook and error handler to find the request-reachable functions, and keeps
the candidates that matter there. Nothing here knows a particular rule: the rules and their
project-wide checks are passed in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from migrate.scan.model import Rule

VIEW_METHODS = frozenset({"get", "post", "put", "delete", "patch", "head", "options",
                          "dispatch_request"})
"""The methods of a class-based view (MethodView, View) that serve requests."""

FuncKey = tuple[str, str]
"""A project function: (module, qualname)."""
MAX_HOPS = 6
"""How many objects, factories and base classes deep a method is looked for."""


@dataclass
class Candidate:
    """A finding before the project is known: kept, dropped or downgraded by reachability.

    ``reach``: "always" (kept as is), "reach" (kept only in request-reachable code),
    "reach-or-warn" (a warning outside request-reachable code). ``target`` names a mutable
    in another module, ``(module, name)`` ("" for this module), checked once every module is
    known. ``origin``: the line the trap's value is made on when that is not ``line`` (an
    ignore comment there silences it too).
    """

    rule: str
    line: int
    col: int
    message: str
    func: str = ""
    reach: str = "always"
    target: tuple[str, str] | None = None
    origin: int = 0
    target_kind: str = "mutables"
    """Which of the other module's names ``target`` must be in: "mutables", "upload_sets";
    "instance_classes": ``target`` is a class that must have a module-level object;
    "unreached": ``target`` is a function of this module that must not serve requests (an
    app factory, whose containers live as long as the app)."""
    severity: str = ""
    """Set when this place makes it less severe than the rule (a development config)."""
    container: tuple[str, str] | None = None
    """The container a change is made to, ``(module, name)`` (``Cls.attr`` for an object's
    own): when the project's evidence names a more precise rule for that container (an API
    token store, a subscriber list), the candidate takes that rule instead."""


@dataclass
class FuncInfo:
    """One function of a module: where it sits and what it refers to."""

    qualname: str
    parent: str
    cls: str
    entry: bool = False
    names: set[str] = field(default_factory=set)
    attrs: set[tuple[str, str]] = field(default_factory=set)
    decorators: list[str] = field(default_factory=list)
    reads_request: bool = False
    cached: tuple[int, int, str] | None = None
    key_random: str = ""
    """The random call (``os.urandom``, ...) a value it returns is made from."""
    returns: tuple[str, ...] = ()
    """The dotted names of the calls whose results it may return (helpers, classes)."""
    writes_disk: bool = False
    call_attrs: tuple[tuple[str, str], ...] = ()
    """Methods called on what a call returns: ``make().save()``, ``x = make(); x.save()``
    -> ("make", "save")."""
    db_read: bool = False
    db_write: bool = False
    db_locked: bool = False
    """It reads (``query``, ``fetchone``, ...) / writes (``commit``, ``UPDATE``) the database /
    locks the rows it reads there (``with_for_update()``, ``SELECT ... FOR UPDATE``)."""


@dataclass
class ModuleSummary:
    """What one pass over a module found (see the module docstring)."""

    module: str
    path: str
    functions: dict[str, FuncInfo] = field(default_factory=dict)
    children: dict[str, dict[str, str]] = field(default_factory=dict)
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    mutables: dict[str, tuple[int, str]] = field(default_factory=dict)
    entry_refs: list[tuple[str, str, str | None]] = field(default_factory=list)
    view_classes: list[str] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    session_types: list[tuple[str, int, int]] = field(default_factory=list)
    session_cachelib: str = ""
    session_init: bool = False
    secret_refs: list[tuple[str, tuple[str, ...], int, int]] = field(default_factory=list)
    """SECRET_KEY values made by calls: (scope, the calls' dotted names, line, col)."""
    instances: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Module-level names bound to what calls return (``uploader = Uploader()``)."""
    bases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """A class's bases, dotted as written."""
    upload_sets: set[str] = field(default_factory=set)
    """Module-level Flask-Uploads ``UploadSet`` objects (their ``save`` writes local files)."""
    container_rules: dict[tuple[str, str], str] = field(default_factory=dict)
    """Evidence about a container (see ``Candidate.container``) -> the rule it calls for."""
    rules_if_marked: dict[str, set[str]] = field(default_factory=dict)
    marks: set[tuple[str, str, str]] = field(default_factory=set)
    """A rule -> this module's containers that take it when some module marks them with it
    (``marks``: (module, name, rule)): a deque a stream reads is a message history."""
    locks: set[str] = field(default_factory=set)
    """Module-level (``NAME``) and class-level (``Cls.NAME``) in-process locks."""
    queues: set[str] = field(default_factory=set)
    """Module-level in-process queues (``queue.Queue()``, ``asyncio.Queue()``)."""
    shared_values: set[str] = field(default_factory=set)
    """Module-level ``multiprocessing.Value`` / ``Array`` objects."""
    lock_regions: list = field(default_factory=list)
    """Code held under an in-process lock (``rules.locks.LockRegion``), judged project-wide."""
    limiters: list[tuple[int, int, str, str]] = field(default_factory=list)
    """Flask-Limiter objects made without ``storage_uri``: (line, col, scope, context)."""
    ratelimit_storage: bool = False
    """RATELIMIT_STORAGE_URI (or _URL) is set here (outside a testing configuration)."""

    def finding_lines(self) -> set[int]:
        """Every line a finding may end up on (their source text is kept as the snippet)."""
        lines = {c.line for c in self.candidates} | {t[1] for t in self.session_types}
        lines |= {ref[2] for ref in self.secret_refs}
        lines |= {r.line for r in self.lock_regions} | {t[0] for t in self.limiters}
        return lines | {f.cached[0] for f in self.functions.values() if f.cached}


@dataclass
class Resolved:
    """A candidate that survived the project pass, with its final severity and message."""

    path: str
    rule: str
    severity: str
    line: int
    col: int
    message: str
    origin: int = 0


class Project:
    """Every module's summary, and the calls between their functions."""

    def __init__(self, summaries: list[ModuleSummary]) -> None:
        self.summaries = summaries
        self.modules = {s.module: s for s in summaries}
        self._instance_classes: dict[FuncKey, str] | None = None
        self._reachable: dict[FuncKey, FuncKey] | None = None
        self.container_rules: dict[tuple[str, str], str] = {}
        for summary in summaries:
            for key, rule in summary.container_rules.items():
                self.container_rules.setdefault(key, rule)
        for summary in summaries:
            for module, name, rule in summary.marks:
                other = self.modules.get(module)
                if other is not None and name in other.rules_if_marked.get(rule, ()):
                    self.container_rules.setdefault((module, name), rule)

    @property
    def instance_classes(self) -> dict[FuncKey, str]:
        """Project classes with a module-level object -> that object (``module.name``)."""
        if self._instance_classes is None:
            found: dict[FuncKey, str] = {}
            for summary in self.summaries:
                for name, made in summary.instances.items():
                    for call in made:
                        for cls in self.types_of(summary.module, "", call):
                            found.setdefault(cls, f"{summary.module}.{name}")
            self._instance_classes = found
        return self._instance_classes

    def resolve_name(self, module: str, scope: str, name: str,
                     depth: int = 0) -> FuncKey | None:
        """The project function (module, qualname) ``name`` refers to in ``scope``."""
        summary = self.modules.get(module)
        if summary is None:
            return None
        while True:
            found = summary.children.get(scope, {}).get(name)
            if found is not None:
                return (module, found)
            if not scope:
                break
            parent = summary.functions.get(scope)
            scope = parent.parent if parent is not None else scope.rpartition(".")[0]
        imported = summary.imports.get(name)
        if imported is None or depth > 3:
            return None
        target, attr = imported
        if attr is None:
            return None
        if target in self.modules:
            return self.resolve_name(target, "", attr, depth + 1)
        return None

    def module_of(self, module: str, name: str) -> str | None:
        """The project module a name is bound to (``import x`` / ``from . import x``)."""
        summary = self.modules.get(module)
        if summary is None:
            return None
        imported = summary.imports.get(name)
        if imported is None:
            return None
        target, attr = imported
        full = f"{target}.{attr}" if attr else target
        return full if full in self.modules else None

    def resolve_dotted(self, module: str, scope: str, dotted: str,
                       hops: int = 0) -> FuncKey | None:
        """The project function ``a.b`` refers to: a module's function, a class's method or
        a module-level object's method. ``hops``: objects and classes looked through so far."""
        head, _, rest = dotted.partition(".")
        if not rest:
            return self.resolve_name(module, scope, head)
        other = self.module_of(module, head)
        if other is not None:
            return self.resolve_name(other, "", rest.partition(".")[0]) if "." not in rest \
                else self.resolve_dotted(other, "", rest)
        summary = self.modules[module]
        info = summary.functions.get(scope)
        if head in ("self", "cls") and info is not None and info.cls:
            return self.method_of((module, info.cls), rest, hops)
        cls = self.resolve_name(module, scope, head)
        if cls is not None:
            return self.method_of(cls, rest, hops)
        if "." in rest or hops >= MAX_HOPS:
            return None
        instance = self.instance(module, head)
        if instance is not None:
            for made in instance[1]:
                for cls in self.types_of(instance[0], "", made, hops + 1):
                    found = self.method_of(cls, rest, hops + 1)
                    if found is not None:
                        return found
        return None

    def instance(self, module: str, name: str) -> tuple[str, tuple[str, ...]] | None:
        """A module-level object ``name`` refers to here (or imported): its module and the
        calls that made it."""
        summary = self.modules[module]
        if name in summary.instances:
            return module, summary.instances[name]
        imported = summary.imports.get(name)
        if imported is not None and imported[1] is not None and imported[0] in self.modules:
            other = self.modules[imported[0]]
            if imported[1] in other.instances:
                return imported[0], other.instances[imported[1]]
        return None

    def method_of(self, cls: FuncKey, name: str, hops: int = 0) -> FuncKey | None:
        """The method ``name`` of a project class, its own or inherited from a project base."""
        module, qual = cls
        summary = self.modules[module]
        method = f"{qual}.{name}"
        if method in summary.functions:
            return (module, method)
        if hops >= MAX_HOPS:
            return None
        scope = qual.rpartition(".")[0]
        for base in summary.bases.get(qual, ()):
            found = self.resolve_dotted(module, scope, base, hops + 1)
            if found is not None and found[1] not in self.modules[found[0]].functions:
                inherited = self.method_of(found, name, hops + 1)
                if inherited is not None:
                    return inherited
        return None

    def types_of(self, module: str, scope: str, made: str, hops: int = 0) -> list[FuncKey]:
        """The project classes a call of ``made`` may return: the class itself, or the
        classes a project function returns (through other functions)."""
        found = self.resolve_dotted(module, scope, made, hops)
        if found is None:
            return []
        info = self.modules[found[0]].functions.get(found[1])
        if info is None:
            return [found]
        if hops >= MAX_HOPS:
            return []
        return [cls for returned in info.returns
                for cls in self.types_of(found[0], found[1], returned, hops + 1)]

    def entry_points(self) -> list[FuncKey]:
        """Views, request hooks and error handlers: decorated, registered or class-based."""
        start: list[FuncKey] = []
        for module, summary in self.modules.items():
            for qual, info in summary.functions.items():
                if info.entry:
                    start.append((module, qual))
            for scope, dotted, kind in summary.entry_refs:
                target = self.resolve_dotted(module, scope, dotted)
                if target is None:
                    continue
                if kind == "view-class":
                    owner = self.modules[target[0]]
                    start += [(target[0], q) for q, i in owner.functions.items()
                              if i.parent == target[1] and q.rpartition(".")[2] in VIEW_METHODS]
                else:
                    start.append(target)
        return start

    def callees(self, key: FuncKey, is_start: bool) -> list[FuncKey]:
        """The project functions ``key`` refers to (and, for an entry point, its decorators')."""
        module, qual = key
        info = self.modules[module].functions[qual]
        targets: list[FuncKey] = []
        for name in info.names:
            found = self.resolve_name(module, qual, name)
            if found is not None:
                targets.append(found)
                if found[1] not in self.modules[found[0]].functions:  # a class: its __init__
                    init = self.method_of(found, "__init__")
                    if init is not None:
                        targets.append(init)
        for base, attr in info.attrs:
            found = self.resolve_dotted(module, qual, f"{base}.{attr}")
            if found is not None:
                targets.append(found)
        for made, attr in info.call_attrs:
            for cls in self.types_of(module, qual, made):
                found = self.method_of(cls, attr)
                if found is not None:
                    targets.append(found)
        if info.entry or is_start:
            # A decorator the project defines wraps the view: its inner functions run too.
            for dec in info.decorators:
                found = self.resolve_dotted(module, info.parent, dec)
                if found is not None:
                    owner = self.modules[found[0]]
                    targets += [(found[0], q) for q, i in owner.functions.items()
                                if i.parent == found[1]]
        return targets

    def reachable(self) -> dict[FuncKey, FuncKey]:
        """Every request-reachable function -> the entry point (view or hook) it is reached from
        (computed once)."""
        if self._reachable is None:
            self._reachable = self._walk_reachable()
        return self._reachable

    def _walk_reachable(self) -> dict[FuncKey, FuncKey]:
        start = self.entry_points()
        origin: dict[FuncKey, FuncKey] = {key: key for key in start}
        queue = deque(start)
        while queue:
            key = queue.popleft()
            # Functions nested in a reachable function are reachable when referenced; a method
            # when it is called (on self, a class, a module-level object or what a call
            # returns); a class's __init__ when the class is named (made, most often).
            for target in self.callees(key, origin[key] == key):
                if target not in origin and target[1] in self.modules[target[0]].functions:
                    origin[target] = origin[key]
                    queue.append(target)
        return origin

    def reads_request(self, key: FuncKey, seen: set[FuncKey]) -> bool:
        """True when the function, or one it calls, reads request, session or database data."""
        module, qual = key
        info = self.modules[module].functions.get(qual)
        if info is None or key in seen:
            return False
        if info.reads_request:
            return True
        seen.add(key)
        for name in info.names:
            found = self.resolve_name(module, qual, name)
            if found is not None and self.reads_request(found, seen):
                return True
        return False


ModuleCheck = Callable[[ModuleSummary], Iterable[Resolved]]
ProjectCheck = Callable[[Project], ModuleCheck]
"""A rule family's project-wide check: given the project, what to report for each module."""


def resolve_project(summaries: list[ModuleSummary], rules: Mapping[str, Rule],
                    checks: Sequence[ProjectCheck] = ()) -> list[Resolved]:
    """Join the modules: keep the candidates that matter in request-reachable code.

    ``rules``: every rule a candidate may name; ``checks``: the rule families' project-wide
    checks, each run on every module after its candidates.
    """
    project = Project(summaries)
    origin = project.reachable()
    per_module = [check(project) for check in checks]
    out: list[Resolved] = []
    for summary in summaries:
        for cand in summary.candidates:
            if cand.container is not None and cand.container in project.container_rules:
                cand.rule = project.container_rules[cand.container]
            found = resolve_candidate(project, origin, summary, cand, rules[cand.rule])
            if found is not None:
                out.append(found)
        for check in per_module:
            out += check(summary)
    return out


def resolve_candidate(project: Project, origin: dict[FuncKey, FuncKey],
                      summary: ModuleSummary, cand: Candidate, rule: Rule) -> Resolved | None:
    """One candidate's final form, or None when it does not matter where it sits."""
    severity = cand.severity or rule.severity
    message = cand.message
    key = (summary.module, cand.func)
    if cand.target_kind == "instance_classes" and cand.target is not None:
        owner = project.instance_classes.get((summary.module, cand.target[1]))
        if owner is None:
            return None
        message = message.replace("{owner}", f" (the module-level `{owner}`, which lives "
                                             "as long as the process)")
    elif cand.target_kind == "unreached" and cand.target is not None:
        if (summary.module, cand.target[1]) in origin:  # made per request: not shared
            return None
    elif cand.target is not None:
        other = project.modules.get(cand.target[0]) if cand.target[0] else summary
        if other is None or cand.target[1] not in getattr(other, cand.target_kind):
            return None
    if cand.reach != "always":
        if key in origin:
            entry = origin[key]
            message = (f"{message} in the view or request hook `{cand.func}`"
                       if entry == key else
                       f"{message} in `{cand.func}`, called while serving `{entry[1]}`")
        elif cand.reach == "reach-or-warn":
            severity = "warning"
            message = f"{message} (in `{cand.func or 'module level'}`)"
        else:
            return None
    return Resolved(summary.path, cand.rule, severity, cand.line, cand.col,
                    f"{message}: {rule.why}", cand.origin)
