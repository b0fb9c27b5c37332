"""The state-trap rules: one pass over each module's AST, then one pass over the project.

``analyze_module`` walks one parsed file once and returns a ``ModuleSummary``: its functions
(with the names they reference, whether they are views or request hooks), its module-level and
class-level mutable containers, and *candidate* findings, each tied to the function it sits in.
``resolve_project`` then joins the summaries: it follows calls across the project's modules from
every view, request hook and error handler to find the request-reachable functions, and keeps
the candidates that matter there. No code is imported or run.
"""

from __future__ import annotations

import ast
import re
from collections import deque
from dataclasses import dataclass, field

from .model import Rule

SHARED_SESSIONS = "keep sessions in Redis: SESSION_TYPE='redis'; move live ones with " \
    "`migrate export-sessions`"
SHARED_FILES = "keep files in object storage (S3: boto3 upload_fileobj, multipart uploads " \
    "for chunks); move existing ones with `migrate export-files`"

RULES: dict[str, Rule] = {r.id: r for r in (
    Rule("module-state", "error", "Module-level mutable state changed while serving requests",
         "each instance changes its own copy: two instances disagree and a restart loses it",
         "keep it in Redis (INCR/HINCRBY for counters, SET with EX for caches) or the "
         "database, one value for every instance; `migrate steps` shows where it goes"),
    Rule("global-rebind", "error", "`global` name rebound while serving requests",
         "the new value exists only in this process: other instances keep the old one",
         "keep the value in Redis or the database and read it per request; "
         "`migrate steps` shows where it goes"),
    Rule("local-file-write", "error", "File written to this host's disk while serving requests",
         "a file saved on one instance is missing on the others and gone with its host",
         SHARED_FILES),
    Rule("local-file-serve", "error", "Uploaded files served from a local folder",
         "only the instance that stored a file can send it: the others answer 404",
         "stream from object storage (get_object, or a presigned URL); move existing files "
         "with `migrate export-files`"),
    Rule("session-local", "error", "Server-side sessions kept per instance",
         "a user whose next request reaches another instance is logged out, cart and all",
         SHARED_SESSIONS),
    Rule("session-not-initialised", "warning", "Flask-Session configured but never initialised",
         "SESSION_* settings do nothing without Session(app): sessions silently stay in "
         "signed cookies",
         "call Session(app) after configuring it (SESSION_TYPE='redis'), or drop the "
         "SESSION_* settings; then move live sessions with `migrate export-sessions`"),
    Rule("secret-key-per-process", "error", "SECRET_KEY generated per process",
         "each instance signs cookies with its own key: a session signed by one is "
         "rejected by the other",
         "read one shared SECRET_KEY from the environment on every instance and refuse to "
         "start without it; `migrate steps` sets it"),
    Rule("secret-key-dev", "warning", "SECRET_KEY with a hard-coded development value",
         "an instance started without the real key signs with the default: its sessions "
         "fail on the others (and anyone can forge them)",
         "require SECRET_KEY from the environment (no default), the same on every instance; "
         "`migrate steps` sets it"),
    Rule("process-cache", "warning", "Cache kept in this process or on this host",
         "each instance caches on its own: users see different or stale data per instance",
         "CACHE_TYPE='RedisCache' with CACHE_REDIS_URL, one cache for every instance; "
         "nothing to move (a cache refills)"),
    Rule("function-cache", "warning", "Memoised function that reads request, session or "
                                      "database data",
         "the memo lives in one process: it serves stale rows after a write on another "
         "instance (or another user's data)",
         "drop the memo, or cache in Redis with a TTL (flask-caching RedisCache, "
         "@cache.memoize); nothing to move"),
    Rule("background-thread", "error", "Background thread, timer or scheduler in the web process",
         "work in flight dies with the instance, and a scheduler runs once per instance",
         "put the job on a queue in Redis (rq: Queue.enqueue) and run it in a separate "
         "worker process; `migrate steps` starts the worker"),
    Rule("sqlite-local", "error", "SQLite database on this host's disk",
         "each instance reads and writes its own file (or fights over the lock on a "
         "shared disk)",
         "point DATABASE_URL at a shared database server (PostgreSQL) and copy the data "
         "over once; `migrate steps` lists the copy"),
)}

# --- what the rules look for ----------------------------------------------------------------

ENTRY_DECORATORS = frozenset({
    "route", "get", "post", "put", "delete", "patch", "websocket",
    "before_request", "after_request", "teardown_request", "teardown_appcontext",
    "before_app_request", "after_app_request", "teardown_app_request",
    "before_first_request", "before_app_first_request",
    "errorhandler", "app_errorhandler",
    "context_processor", "app_context_processor",
    "url_value_preprocessor", "app_url_value_preprocessor", "url_defaults", "app_url_defaults",
    "template_filter", "app_template_filter", "template_global", "app_template_global",
    "template_test", "app_template_test", "endpoint",
})
HOOK_REGISTRARS = frozenset(ENTRY_DECORATORS - {"route", "get", "post", "put", "delete",
                                                "patch", "websocket", "endpoint"})
VIEW_BASES = frozenset({"MethodView", "View"})
VIEW_METHODS = frozenset({"get", "post", "put", "delete", "patch", "head", "options",
                          "dispatch_request"})
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
FS_WRITE_CALLS = {
    # qualified name -> index of the destination argument
    "os.makedirs": 0, "os.mkdir": 0, "os.rename": 1, "os.replace": 1, "os.renames": 1,
    "os.link": 1, "os.symlink": 1, "shutil.copy": 1, "shutil.copy2": 1,
    "shutil.copyfile": 1, "shutil.copytree": 1, "shutil.move": 1,
}
FS_REMOVE_CALLS = frozenset({"os.remove", "os.unlink", "os.rmdir", "os.removedirs",
                             "shutil.rmtree"})
PATH_WRITE_METHODS = frozenset({"write_text", "write_bytes", "touch"})
OPEN_CALLS = frozenset({"open", "io.open", "builtins.open", "codecs.open"})
THREAD_MODULES = ("threading.", "multiprocessing.", "apscheduler.", "flask_apscheduler.",
                  "concurrent.futures.", "flask_executor.")
THREAD_CLASSES = frozenset({"Thread", "Timer", "Process", "BackgroundScheduler",
                            "AsyncIOScheduler", "GeventScheduler", "TornadoScheduler",
                            "TwistedScheduler", "QtScheduler", "APScheduler"})
EXECUTOR_CLASSES = frozenset({"ThreadPoolExecutor", "ProcessPoolExecutor", "Executor"})
SPAWN_CALLS = frozenset({"_thread.start_new_thread", "thread.start_new_thread", "gevent.spawn",
                         "gevent.spawn_later", "eventlet.spawn", "eventlet.spawn_n"})
CACHE_DECORATORS = frozenset({"functools.lru_cache", "functools.cache", "lru_cache", "cache",
                              "cachetools.cached", "cachetools.func.ttl_cache",
                              "cachetools.func.lru_cache"})
RANDOM_CALLS = frozenset({"os.urandom", "secrets.token_bytes", "secrets.token_hex",
                          "secrets.token_urlsafe", "secrets.randbits", "secrets.choice",
                          "uuid.uuid4", "uuid.uuid1", "random.random", "random.getrandbits",
                          "random.choice", "random.choices", "random.randbytes"})
DEV_WORDS = ("dev", "secret", "change", "test", "default", "example", "insecure", "replace",
             "your", "sample", "demo", "password", "key")
LOCAL_CACHE_TYPES = frozenset({"simple", "simplecache", "filesystem", "filesystemcache"})
REQUEST_NAMES = frozenset({"request", "session", "g", "current_user"})
DB_ATTRS = frozenset({"query", "execute", "scalars", "scalar", "fetchone", "fetchall",
                      "fetchmany", "filter_by", "get_db", "get_or_404", "first_or_404"})
SQLITE_URL = re.compile(r"sqlite(\+\w+)?://")
CONFIG_KEYS = frozenset({"SECRET_KEY", "SESSION_TYPE", "SESSION_CACHELIB", "CACHE_TYPE"})


# --- the per-module summary -----------------------------------------------------------------


@dataclass
class Candidate:
    """A finding before the project is known: kept, dropped or downgraded by reachability.

    ``reach``: "always" (kept as is), "reach" (kept only in request-reachable code),
    "reach-or-warn" (a warning outside request-reachable code). ``target`` names a mutable
    in another module, ``(module, name)``, checked once every module is known.
    """

    rule: str
    line: int
    col: int
    message: str
    func: str = ""
    reach: str = "always"
    target: tuple[str, str] | None = None
    severity: str = ""


@dataclass
class FuncInfo:
    qualname: str
    line: int
    parent: str
    cls: str
    entry: bool = False
    names: set[str] = field(default_factory=set)
    attrs: set[tuple[str, str]] = field(default_factory=set)
    decorators: list[str] = field(default_factory=list)
    reads_request: bool = False
    cached: tuple[int, int, str] | None = None


@dataclass
class ModuleSummary:
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
    lines: int = 0


# --- helpers --------------------------------------------------------------------------------


def _parts(node: ast.AST) -> list[str] | None:
    """``a.b.c`` -> ["a", "b", "c"]; a call in the chain is looked through; else None."""
    out: list[str] = []
    while True:
        if isinstance(node, ast.Attribute):
            out.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Name):
            out.append(node.id)
            out.reverse()
            return out
        elif isinstance(node, ast.Call):
            node = node.func
        else:
            return None


def _root(node: ast.AST) -> list[str] | None:
    """The container a subscript or method call changes: ``X[k][j]`` -> ["X"],
    ``self.cache[k]`` -> ["self", "cache"]."""
    while isinstance(node, ast.Subscript):
        node = node.value
    out: list[str] = []
    while isinstance(node, ast.Attribute):
        out.append(node.attr)
        node = node.value
        while isinstance(node, ast.Subscript):
            node = node.value
    if isinstance(node, ast.Name):
        out.append(node.id)
        out.reverse()
        return out
    return None


def _names_in(node: ast.AST | None) -> set[str]:
    if node is None:
        return set()
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _mutable_kind(value: ast.AST | None) -> str | None:
    """'dict', 'list', ... when ``value`` builds a mutable container, else None."""
    if isinstance(value, ast.Dict | ast.DictComp):
        return "dict"
    if isinstance(value, ast.List | ast.ListComp):
        return "list"
    if isinstance(value, ast.Set | ast.SetComp):
        return "set"
    if isinstance(value, ast.Call):
        parts = _parts(value.func)
        if parts and parts[-1] in MUTABLE_CALLS:
            return parts[-1]
    return None


def _open_writes(node: ast.Call) -> bool:
    mode: ast.AST | None = node.args[1] if len(node.args) > 1 else None
    for kw in node.keywords:
        if kw.arg == "mode":
            mode = kw.value
    if isinstance(mode, ast.Constant) and isinstance(mode.value, str):
        return any(c in mode.value for c in "wax+")
    return False


def _value_strings(node: ast.AST) -> list[str]:
    """The literal strings a value may end up as (``a or "dev"``, ``get(k, "dev")``), not keys."""
    if isinstance(node, ast.Constant):
        return [node.value] if isinstance(node.value, str) else []
    if isinstance(node, ast.BoolOp):
        return [s for v in node.values for s in _value_strings(v)]
    if isinstance(node, ast.IfExp):
        return _value_strings(node.body) + _value_strings(node.orelse)
    if isinstance(node, ast.Call):
        parts = _parts(node.func) or [""]
        if parts[-1] in ("get", "getenv", "pop", "setdefault", "str"):
            rest = node.args[1:] if parts[-1] != "str" else node.args
            return [s for v in (*rest, *(k.value for k in node.keywords if k.arg == "default"))
                    for s in _value_strings(v)]
    return []


def _is_dev_secret(value: str) -> bool:
    low = value.strip().lower()
    if not low:
        return True
    return len(low) <= 40 and any(word in low for word in DEV_WORDS)


def _short(node: ast.AST, limit: int = 60) -> str:
    try:
        text = ast.unparse(node)
    except Exception:  # pragma: no cover - unparse handles every parsed node
        return "?"
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Func:
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


class _Class:
    __slots__ = ("name", "qualname", "session_iface", "self_mutations", "instance_mutables",
                 "instance_attrs", "line")

    def __init__(self, name: str, qualname: str, session_iface: bool, line: int) -> None:
        self.name = name
        self.qualname = qualname
        self.session_iface = session_iface
        self.line = line
        self.self_mutations: list[tuple[str, int, int, str]] = []
        self.instance_mutables: set[str] = set()
        self.instance_attrs: set[str] = set()


# --- the module walker ----------------------------------------------------------------------


class _Analyzer:
    """Walks one module's AST once and fills a ModuleSummary."""

    def __init__(self, summary: ModuleSummary, is_package: bool) -> None:
        self.s = summary
        self.package = summary.module if is_package else summary.module.rpartition(".")[0]
        self.func: _Func | None = None
        self.cls: _Class | None = None
        self.scope = ""  # qualname of the innermost function or class ("" = module)
        self.in_main = False
        self.consumed: set[int] = set()
        self.module_thread_vars: dict[str, str] = {}
        self.handlers = {
            ast.FunctionDef: self._function, ast.AsyncFunctionDef: self._function,
            ast.ClassDef: self._class, ast.Assign: self._assign, ast.AnnAssign: self._assign,
            ast.AugAssign: self._augassign, ast.Delete: self._delete, ast.Global: self._global,
            ast.Call: self._call, ast.Dict: self._dict, ast.Constant: self._constant,
            ast.BinOp: self._binop, ast.JoinedStr: self._joinedstr, ast.Name: self._name,
            ast.Attribute: self._attribute, ast.If: self._if, ast.With: self._with,
            ast.AsyncWith: self._with, ast.Expr: self._expr, ast.For: self._for,
            ast.AsyncFor: self._for, ast.Import: self._import, ast.ImportFrom: self._importfrom,
        }

    # walking

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
        cand = Candidate(rule, node.lineno, node.col_offset, message,
                         self.func.info.qualname if self.func else "", reach, target)
        return cand

    def add(self, cand: Candidate) -> None:
        self.s.candidates.append(cand)

    def qual(self, node: ast.AST) -> str | None:
        """The qualified name a called expression refers to, through this module's imports."""
        parts = _parts(node)
        if not parts:
            return None
        head = self.s.imports.get(parts[0])
        if head is not None and not (self.func and parts[0] in self.func.locals):
            module, attr = head
            base = f"{module}.{attr}" if attr else module
            return ".".join([base, *parts[1:]])
        return ".".join(parts)

    # imports

    def _absolute(self, module: str | None, level: int) -> str:
        if not level:
            return module or ""
        base = self.package.split(".") if self.package else []
        if level > 1:
            base = base[: len(base) - (level - 1)]
        return ".".join([*base, module] if module else base)

    def _import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                self.s.imports[alias.asname] = (alias.name, None)
            else:
                head = alias.name.partition(".")[0]
                self.s.imports[head] = (head, None)

    def _importfrom(self, node: ast.ImportFrom) -> None:
        module = self._absolute(node.module, node.level)
        for alias in node.names:
            if alias.name != "*":
                self.s.imports[alias.asname or alias.name] = (module, alias.name)

    # scopes

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for dec in node.decorator_list:
            self.visit(dec)
        for default in (*node.args.defaults, *node.args.kw_defaults):
            if default is not None:
                self.visit(default)
        qualname = f"{self.scope}.{node.name}" if self.scope else node.name
        self.s.children.setdefault(self.scope, {})[node.name] = qualname
        if self.func is not None:
            self.func.locals.add(node.name)
        info = FuncInfo(qualname, node.lineno, self.scope, self.cls.qualname if self.cls else "")
        self.s.functions[qualname] = info
        for dec in node.decorator_list:
            parts = _parts(dec)
            if not parts:
                continue
            info.decorators.append(".".join(parts))
            if len(parts) >= 2 and parts[-1] in ENTRY_DECORATORS:
                info.entry = True
            qual = self.qual(dec.func if isinstance(dec, ast.Call) else dec)
            if qual in CACHE_DECORATORS:
                info.cached = (dec.lineno, dec.col_offset, qual.rpartition(".")[2])
        cls = self.cls
        if cls is not None and self.scope == cls.qualname and cls.qualname in self.s.view_classes \
                and node.name in VIEW_METHODS:
            info.entry = True
        outer_func, outer_scope, outer_main = self.func, self.scope, self.in_main
        self.func = frame = _Func(info)
        self.scope = qualname
        self.in_main = False
        args = node.args
        for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
            if arg is not None:
                frame.locals.add(arg.arg)
                ann = arg.annotation
                if ann is not None and (
                        (_parts(ann) or [""])[-1] == "FileStorage"
                        or isinstance(ann, ast.Constant) and "FileStorage" in str(ann.value)):
                    frame.files.add(arg.arg)
        for stmt in node.body:
            self.visit(stmt)
        self._finish_function(frame)
        self.func, self.scope, self.in_main = outer_func, outer_scope, outer_main

    def _finish_function(self, frame: _Func) -> None:
        info = frame.info
        local = frame.locals - frame.globals
        for root, line, col, how in frame.mutations:
            name = root[0]
            if len(root) == 1:
                if name in local:
                    continue
                if name in self.s.mutables:
                    kind = self.s.mutables[name][1]
                    defined = self.s.mutables[name][0]
                    cand = Candidate("module-state", line, col,
                                     f"`{name}` (module-level {kind}, line {defined}) is "
                                     f"changed here ({how})", info.qualname, "reach")
                    self.add(cand)
                elif name in self.s.imports and self.s.imports[name][1]:
                    module, attr = self.s.imports[name]
                    self.add(Candidate("module-state", line, col,
                                       f"`{name}` (module-level, from {module}) is changed "
                                       f"here ({how})", info.qualname, "reach",
                                       (module, attr)))
                continue
            attr = root[1]
            if name in ("self", "cls") and info.cls:
                key = f"{info.cls}.{attr}"
                cls = self.cls
                if cls is not None and cls.qualname == info.cls and name == "self":
                    cls.self_mutations.append((attr, line, col, how))
                    if attr in cls.instance_attrs:
                        continue
                if key in self.s.mutables:
                    kind = self.s.mutables[key][1]
                    self.add(Candidate("module-state", line, col,
                                       f"class attribute `{key}` ({kind}, shared by the "
                                       f"process) is changed here ({how})", info.qualname,
                                       "reach"))
                continue
            if name in local:
                continue
            key = f"{name}.{attr}"
            if key in self.s.mutables:
                self.add(Candidate("module-state", line, col,
                                   f"class attribute `{key}` ({self.s.mutables[key][1]}, "
                                   f"shared by the process) is changed here ({how})",
                                   info.qualname, "reach"))
            elif name in self.s.imports:
                module, sub = self.s.imports[name]
                module = f"{module}.{sub}" if sub else module
                self.add(Candidate("module-state", line, col,
                                   f"`{name}.{attr}` (module-level, in {module}) is changed "
                                   f"here ({how})", info.qualname, "reach", (module, attr)))
        for name in sorted(frame.globals & set(frame.stores)):
            line, col = frame.stores[name]
            self.add(Candidate("global-rebind", line, col,
                               f"`global {name}` is rebound here", info.qualname, "reach"))
        gone = frame.removed | frame.temps
        for cand, names in frame.writes:
            if not names & gone:
                self.add(cand)
        for cand, var in frame.threads:
            if var is None or var not in frame.joined:
                self.add(cand)

    def _class(self, node: ast.ClassDef) -> None:
        for dec in node.decorator_list:
            self.visit(dec)
        for base in node.bases:
            self.visit(base)
        qualname = f"{self.scope}.{node.name}" if self.scope else node.name
        self.s.children.setdefault(self.scope, {})[node.name] = qualname
        base_names = {p[-1] for p in map(_parts, node.bases) if p}
        if base_names & VIEW_BASES or any(b.endswith("MethodView") for b in base_names):
            self.s.view_classes.append(qualname)
        session_iface = any(b.endswith("SessionInterface") for b in base_names)
        outer_cls, outer_scope, outer_func = self.cls, self.scope, self.func
        self.cls = frame = _Class(node.name, qualname, session_iface, node.lineno)
        self.scope = qualname
        self.func = None
        for stmt in node.body:
            if isinstance(stmt, ast.Assign | ast.AnnAssign):
                kind = _mutable_kind(stmt.value)
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                if kind:
                    for target in targets:
                        if isinstance(target, ast.Name):
                            self.s.mutables[f"{qualname}.{target.id}"] = (stmt.lineno, kind)
            self.visit(stmt)
        self.cls, self.scope, self.func = outer_cls, outer_scope, outer_func
        if session_iface:
            self._finish_session_interface(frame)

    def _finish_session_interface(self, frame: _Class) -> None:
        """A custom SessionInterface that stores sessions in a dict of its own."""
        for attr, line, _col, how in frame.self_mutations:
            key = f"{frame.qualname}.{attr}"
            if attr in frame.instance_mutables or key in self.s.mutables:
                self.add(Candidate("session-local", frame.line, 0,
                                   f"session interface `{frame.name}` keeps sessions in "
                                   f"`self.{attr}` (process memory; changed on line {line}, "
                                   f"{how})"))
                return

    # statements

    def _store_target(self, target: ast.AST, value: ast.AST | None) -> None:
        if isinstance(target, ast.Subscript):
            root = _root(target)
            if root and self.func is not None:
                self.func.mutations.append((root, target.lineno, target.col_offset,
                                            "item assignment"))
            key = target.slice
            if isinstance(key, ast.Constant) and key.value in CONFIG_KEYS and value is not None:
                self._config(key.value, value, target)
        elif isinstance(target, ast.Name):
            if target.id in CONFIG_KEYS and value is not None:
                self._config(target.id, value, target)
        elif isinstance(target, ast.Attribute):
            if target.attr == "secret_key" and value is not None:
                self._config("SECRET_KEY", value, target)
            elif target.attr == "session_interface":
                self.s.session_init = True
            elif (self.cls is not None and self.func is not None
                  and isinstance(target.value, ast.Name) and target.value.id == "self"):
                self.cls.instance_attrs.add(target.attr)
                if _mutable_kind(value):
                    self.cls.instance_mutables.add(target.attr)
        elif isinstance(target, ast.Tuple | ast.List):
            for elt in target.elts:
                self._store_target(elt, None)

    def _assign(self, node: ast.Assign | ast.AnnAssign) -> None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        value = node.value
        func = self.func
        if func is None and self.cls is None:
            kind = _mutable_kind(value)
            if kind:
                for target in targets:
                    if isinstance(target, ast.Name):
                        self.s.mutables[target.id] = (node.lineno, kind)
        for target in targets:
            self._store_target(target, value)
        if isinstance(value, ast.Call):
            qual = self.qual(value.func) or ""
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            kind = self._thread_kind(qual)
            if kind and names:
                (func.thread_vars if func else self.module_thread_vars).update(
                    dict.fromkeys(names, kind))
            if func is not None and qual.startswith("tempfile."):
                for target in targets:
                    func.temps |= _names_in(target)
        if func is not None and value is not None and self._mentions_files(value):
            for target in targets:
                func.files |= _names_in(target)
        for target in targets:
            self.visit(target)
        if isinstance(node, ast.AnnAssign):
            pass  # annotations are not evaluated for state
        if value is not None:
            self.visit(value)

    def _augassign(self, node: ast.AugAssign) -> None:
        target = node.target
        if isinstance(target, ast.Subscript):
            root = _root(target)
            if root and self.func is not None:
                self.func.mutations.append((root, node.lineno, node.col_offset,
                                            "augmented assignment"))
        elif isinstance(target, ast.Name) and self.func is not None \
                and target.id in self.func.globals:
            self.func.stores.setdefault(target.id, (node.lineno, node.col_offset))
        self.visit(target)
        self.visit(node.value)

    def _delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            if isinstance(target, ast.Subscript) and self.func is not None:
                root = _root(target)
                if root:
                    self.func.mutations.append((root, node.lineno, node.col_offset, "del"))
            self.visit(target)

    def _global(self, node: ast.Global) -> None:
        if self.func is not None:
            self.func.globals.update(node.names)

    def _if(self, node: ast.If) -> None:
        test = node.test
        is_main = (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
                   and test.left.id == "__name__")
        self.visit(test)
        outer = self.in_main
        self.in_main = outer or is_main
        for stmt in node.body:
            self.visit(stmt)
        self.in_main = outer
        for stmt in node.orelse:
            self.visit(stmt)

    def _with(self, node: ast.With | ast.AsyncWith) -> None:
        func = self.func
        for item in node.items:
            ctx = item.context_expr
            if func is not None and item.optional_vars is not None and isinstance(ctx, ast.Call):
                qual = self.qual(ctx.func) or ""
                if qual.startswith("tempfile."):
                    func.temps |= _names_in(item.optional_vars)
            self.visit(ctx)
            if item.optional_vars is not None:
                self.visit(item.optional_vars)
        for stmt in node.body:
            self.visit(stmt)

    def _for(self, node: ast.For | ast.AsyncFor) -> None:
        if self.func is not None and self._mentions_files(node.iter):
            self.func.files |= _names_in(node.target)
        self.generic(node)

    def _expr(self, node: ast.Expr) -> None:
        if isinstance(node.value, ast.Constant):
            return  # a docstring or a bare string: not code
        self.visit(node.value)

    # expressions

    def _name(self, node: ast.Name) -> None:
        func = self.func
        if func is None:
            return
        if isinstance(node.ctx, ast.Load):
            func.info.names.add(node.id)
            if node.id in REQUEST_NAMES:
                func.info.reads_request = True
        else:
            func.locals.add(node.id)
            if node.id in func.globals:
                func.stores.setdefault(node.id, (node.lineno, node.col_offset))

    def _attribute(self, node: ast.Attribute) -> None:
        func = self.func
        value = node.value
        if func is not None:
            if isinstance(value, ast.Name):
                func.info.attrs.add((value.id, node.attr))
            if node.attr in DB_ATTRS:
                func.info.reads_request = True
        self.visit(value)

    def _mentions_files(self, node: ast.AST) -> bool:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Attribute) and sub.attr == "files" \
                    and isinstance(sub.value, ast.Name) and sub.value.id == "request":
                return True
        return False

    def _thread_kind(self, qual: str) -> str | None:
        if not qual.startswith(THREAD_MODULES):
            return None
        last = qual.rpartition(".")[2]
        if last in THREAD_CLASSES:
            return last
        if last in EXECUTOR_CLASSES:
            return "executor"
        return None

    def _write(self, node: ast.Call, what: str, dest: ast.AST | None) -> None:
        func = self.func
        if func is None:
            return
        names = _names_in(dest)
        where = f" `{_short(dest, 50)}`" if dest is not None else ""
        cand = self.candidate("local-file-write", node, f"{what} writes{where} to this "
                              "host's disk", reach="reach")
        func.writes.append((cand, names))

    def _thread(self, node: ast.Call, what: str, var: str | None) -> None:
        if self.in_main:
            return
        cand = self.candidate("background-thread", node, f"{what} runs in the web process",
                              reach="reach-or-warn")
        if self.func is not None:
            self.func.threads.append((cand, var))
        else:
            self.add(cand)

    def _call(self, node: ast.Call) -> None:
        fn = node.func
        func = self.func
        qual = self.qual(fn) or ""
        if isinstance(fn, ast.Attribute):
            self._method_call(node, fn, qual)
        if qual in OPEN_CALLS:
            if node.args and _open_writes(node):
                self._write(node, "open() for writing", node.args[0])
        elif qual in FS_WRITE_CALLS:
            index = FS_WRITE_CALLS[qual]
            dest = node.args[index] if len(node.args) > index else None
            self._write(node, f"{qual}()", dest)
        elif qual in FS_REMOVE_CALLS:
            if func is not None and node.args:
                func.removed |= _names_in(node.args[0])
        elif qual.endswith("send_from_directory") or qual.endswith("send_file"):
            self._serve(node, qual)
        elif qual in ("sqlite3.connect", "sqlite3.dbapi2.connect"):
            arg = node.args[0] if node.args else None
            if not (isinstance(arg, ast.Constant) and arg.value == ":memory:"):
                self.add(self.candidate("sqlite-local", node,
                                        "sqlite3.connect() opens a database file on this "
                                        "host's disk"))
        elif qual in SPAWN_CALLS:
            self._thread(node, f"{qual}()", None)
        elif qual.rpartition(".")[2] in ("SimpleCache", "FileSystemCache") and (
                qual.startswith(("cachelib", "flask_caching", "werkzeug"))):
            if id(node) not in self.consumed:
                self.add(self.candidate("process-cache", node,
                                        f"{qual.rpartition('.')[2]}() keeps cached data in "
                                        "this process" if "Simple" in qual else
                                        "FileSystemCache() keeps cached data on this "
                                        "host's disk"))
        elif qual.startswith("flask_session.") and qual.endswith(".Session") \
                or qual == "flask_session.Session":
            self.s.session_init = True
        elif qual == "dict" or qual.endswith((".update", ".from_mapping")):
            for kw in node.keywords:
                if kw.arg in CONFIG_KEYS:
                    self._config(kw.arg, kw.value, kw.value)
        self.generic(node)

    def _method_call(self, node: ast.Call, fn: ast.Attribute, qual: str) -> None:
        meth = fn.attr
        func = self.func
        recv = fn.value
        if meth in MUTATORS and func is not None:
            root = _root(recv)
            if root:
                func.mutations.append((root, node.lineno, node.col_offset, f".{meth}()"))
        if meth == "start":
            if isinstance(recv, ast.Call):
                kind = self._thread_kind(self.qual(recv.func) or "")
                if kind and kind != "executor":
                    self._thread(node, f"{kind}(...).start()", None)
            elif isinstance(recv, ast.Name):
                kind = (func.thread_vars.get(recv.id) if func else None) \
                    or self.module_thread_vars.get(recv.id)
                if kind and kind != "executor":
                    self._thread(node, f"{kind} `{recv.id}`.start()", recv.id)
        elif meth in ("join", "shutdown") and isinstance(recv, ast.Name) and func is not None:
            func.joined.add(recv.id)
        elif meth in ("submit", "apply_async") and isinstance(recv, ast.Name):
            kind = (func.thread_vars.get(recv.id) if func else None) \
                or self.module_thread_vars.get(recv.id)
            if kind == "executor":
                self._thread(node, f"`{recv.id}.{meth}()` on an executor", recv.id)
        elif meth == "save":
            if isinstance(recv, ast.Name) and func is not None and recv.id in func.files \
                    or (isinstance(recv, ast.Attribute) and recv.attr == "data"
                        and "form" in _short(recv, 200)) or self._mentions_files(recv):
                dest = node.args[0] if node.args else None
                for kw in node.keywords:
                    if kw.arg == "dst":
                        dest = kw.value
                self._write(node, "FileStorage.save()", dest)
        elif meth in PATH_WRITE_METHODS:
            self._write(node, f"Path.{meth}()", recv)
        elif meth == "mkdir" and not node.args:
            self._write(node, "Path.mkdir()", recv)
        elif meth in ("unlink", "rmdir") and func is not None:
            func.removed |= _names_in(recv)
        elif meth in ("startswith", "endswith"):
            for arg in ast.walk(node.args[0]) if node.args else ():
                self.consumed.add(id(arg))  # a URL's scheme tested, not a URL
        elif meth == "add_url_rule":
            view = node.args[2] if len(node.args) > 2 else None
            for kw in node.keywords:
                if kw.arg == "view_func":
                    view = kw.value
            self._entry_ref(view)
        elif meth == "register_error_handler" and len(node.args) > 1:
            self._entry_ref(node.args[1])
        elif meth in HOOK_REGISTRARS and node.args and not node.keywords \
                and isinstance(node.args[0], ast.Name | ast.Attribute):
            self._entry_ref(node.args[0])
        elif meth in ("get", "getenv") and len(node.args) > 1:
            key = node.args[0]
            if isinstance(key, ast.Constant) and key.value in CONFIG_KEYS:
                self._config(key.value, node.args[1], node.args[1])

    def _entry_ref(self, view: ast.AST | None) -> None:
        if isinstance(view, ast.Call) and isinstance(view.func, ast.Attribute) \
                and view.func.attr == "as_view":
            parts = _parts(view.func.value)
            if parts:
                self.s.entry_refs.append((self.scope, ".".join(parts), "view-class"))
            return
        parts = _parts(view) if view is not None else None
        if parts and not isinstance(view, ast.Call):
            self.s.entry_refs.append((self.scope, ".".join(parts), None))

    def _serve(self, node: ast.Call, qual: str) -> None:
        if not node.args:
            return
        text = _short(node.args[0], 200)
        low = text.lower()
        if "static" in low and "upload" not in low:
            return
        if qual.endswith("send_file") and not any(w in low for w in ("upload", "media")):
            return
        if qual.endswith("send_from_directory") or any(w in low for w in ("upload", "media")):
            if self.func is None:
                return
            cand = self.candidate("local-file-serve", node,
                                  f"{qual.rpartition('.')[2]}() sends files from "
                                  f"`{_short(node.args[0], 50)}` on this host's disk",
                                  reach="reach")
            self.func.writes.append((cand, set()))

    def _config(self, key: str, value: ast.AST, where: ast.AST) -> None:
        line, col = where.lineno, where.col_offset
        if key == "SECRET_KEY":
            for sub in ast.walk(value):
                if isinstance(sub, ast.Call):
                    qual = self.qual(sub.func) or ""
                    if qual in RANDOM_CALLS:
                        self.add(Candidate("secret-key-per-process", line, col,
                                           f"SECRET_KEY comes from {qual}(): a new key in "
                                           "every process"))
                        return
            for text in _value_strings(value):
                if _is_dev_secret(text):
                    self.add(Candidate("secret-key-dev", line, col,
                                       f"SECRET_KEY defaults to the development value "
                                       f"{text!r}"))
                    return
        elif key == "SESSION_TYPE":
            for text in _value_strings(value):
                self.s.session_types.append((text, line, col))
        elif key == "SESSION_CACHELIB":
            local = None
            for sub in ast.walk(value):
                if isinstance(sub, ast.Call):
                    name = (self.qual(sub.func) or "").rpartition(".")[2]
                    if name in ("SimpleCache", "FileSystemCache"):
                        local = name
                        self.consumed.add(id(sub))
            if local:
                where_ = "process memory" if local == "SimpleCache" else "this host's disk"
                self.add(Candidate("session-local", line, col,
                                   f"SESSION_CACHELIB is a {local}: sessions live in "
                                   f"{where_}"))
                self.s.session_cachelib = "local"
            elif self.s.session_cachelib != "local":
                self.s.session_cachelib = "shared"
        elif key == "CACHE_TYPE":
            for text in _value_strings(value):
                if text.rpartition(".")[2].lower() in LOCAL_CACHE_TYPES:
                    self.add(Candidate("process-cache", line, col,
                                       f"CACHE_TYPE {text!r} caches in this process "
                                       "or on this host's disk"))
                    return

    def _dict(self, node: ast.Dict) -> None:
        for key, value in zip(node.keys, node.values, strict=True):
            if isinstance(key, ast.Constant) and key.value in CONFIG_KEYS:
                self._config(key.value, value, key)
        self.generic(node)

    def _sqlite(self, node: ast.Constant, whole: ast.AST) -> None:
        self.consumed.add(id(node))
        text = node.value
        if not SQLITE_URL.match(text):
            return
        memory = text.rstrip("/").endswith(":") or ":memory:" in text
        instance = "instance" in _short(whole, 400)
        if memory and whole is node:
            what = "an in-memory SQLite database, one per process"
        elif instance:
            what = "a SQLite file in the instance folder, on this host's disk"
        else:
            what = "a SQLite file on this host's disk"
        shown = f"{text!r}" if whole is node else f"{text!r} + …"
        self.add(Candidate("sqlite-local", node.lineno, node.col_offset,
                           f"database URL {shown} is {what}"))

    def _constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, str) and value.startswith("sqlite") and id(node) not in \
                self.consumed:
            self._sqlite(node, node)

    def _binop(self, node: ast.BinOp) -> None:
        left = node.left
        while isinstance(left, ast.BinOp):
            left = left.left
        if isinstance(left, ast.Constant) and isinstance(left.value, str) \
                and left.value.startswith("sqlite") and id(left) not in self.consumed:
            self._sqlite(left, node)
        self.generic(node)

    def _joinedstr(self, node: ast.JoinedStr) -> None:
        first = node.values[0] if node.values else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str) \
                and first.value.startswith("sqlite") and id(first) not in self.consumed:
            self._sqlite(first, node)
        self.generic(node)


def analyze_module(tree: ast.Module, module: str, path: str, is_package: bool) -> ModuleSummary:
    """One pass over a parsed module: its functions, state and candidate findings."""
    summary = ModuleSummary(module=module, path=path)
    analyzer = _Analyzer(summary, is_package)
    for stmt in tree.body:
        analyzer.visit(stmt)
    return summary


# --- the project pass -----------------------------------------------------------------------


@dataclass
class Resolved:
    """A candidate that survived the project pass, with its final severity and message."""

    path: str
    rule: str
    severity: str
    line: int
    col: int
    message: str


class _Project:
    def __init__(self, summaries: list[ModuleSummary]) -> None:
        self.modules = {s.module: s for s in summaries}

    def resolve_name(self, module: str, scope: str, name: str,
                     depth: int = 0) -> tuple[str, str] | None:
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

    def module_of(self, module: str, scope: str, name: str) -> str | None:
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

    def resolve_dotted(self, module: str, scope: str, dotted: str) -> tuple[str, str] | None:
        head, _, rest = dotted.partition(".")
        if not rest:
            return self.resolve_name(module, scope, head)
        other = self.module_of(module, scope, head)
        if other is not None:
            return self.resolve_name(other, "", rest.partition(".")[0]) if "." not in rest \
                else self.resolve_dotted(other, "", rest)
        summary = self.modules[module]
        info = summary.functions.get(scope)
        if head in ("self", "cls") and info is not None and info.cls:
            qual = f"{info.cls}.{rest}"
            return (module, qual) if qual in summary.functions else None
        cls = self.resolve_name(module, scope, head)
        if cls is not None:
            qual = f"{cls[1]}.{rest}"
            owner = self.modules[cls[0]]
            return (cls[0], qual) if qual in owner.functions else None
        return None

    def reachable(self) -> dict[tuple[str, str], tuple[str, str]]:
        """Every request-reachable function -> the entry point (view or hook) it is reached from."""
        start: list[tuple[str, str]] = []
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
        origin: dict[tuple[str, str], tuple[str, str]] = {key: key for key in start}
        queue = deque(start)
        while queue:
            key = queue.popleft()
            module, qual = key
            summary = self.modules[module]
            info = summary.functions[qual]
            targets: list[tuple[str, str]] = []
            for name in info.names:
                found = self.resolve_name(module, qual, name)
                if found is not None:
                    targets.append(found)
            for base, attr in info.attrs:
                found = self.resolve_dotted(module, qual, f"{base}.{attr}")
                if found is not None:
                    targets.append(found)
            if info.entry or origin[key] == key:
                # A decorator the project defines wraps the view: its inner functions run too.
                for dec in info.decorators:
                    found = self.resolve_dotted(module, info.parent, dec)
                    if found is not None:
                        owner = self.modules[found[0]]
                        targets += [(found[0], q) for q, i in owner.functions.items()
                                    if i.parent == found[1]]
            # Functions nested in a reachable function are reachable when referenced; classes:
            # a referenced class's methods are not followed (constructors rarely hold state).
            for target in targets:
                if target not in origin and target[1] in self.modules[target[0]].functions:
                    origin[target] = origin[key]
                    queue.append(target)
        return origin

    def reads_request(self, key: tuple[str, str], seen: set[tuple[str, str]]) -> bool:
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


def resolve_project(summaries: list[ModuleSummary]) -> list[Resolved]:
    """Join the modules: keep the candidates that matter in request-reachable code."""
    project = _Project(summaries)
    origin = project.reachable()
    out: list[Resolved] = []
    session_init = any(s.session_init for s in summaries)
    cachelib = {s.session_cachelib for s in summaries} - {""}
    for summary in summaries:
        module = summary.module
        for cand in summary.candidates:
            rule = RULES[cand.rule]
            severity = cand.severity or rule.severity
            message = cand.message
            key = (module, cand.func)
            if cand.target is not None:
                other = project.modules.get(cand.target[0])
                if other is None or cand.target[1] not in other.mutables:
                    continue
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
                    continue
            out.append(Resolved(summary.path, cand.rule, severity, cand.line, cand.col,
                                f"{message}: {rule.why}"))
        for key_name, info in summary.functions.items():
            if info.cached is not None and project.reads_request((module, key_name), set()):
                line, col, deco = info.cached
                rule = RULES["function-cache"]
                out.append(Resolved(summary.path, "function-cache", rule.severity, line, col,
                                    f"@{deco} on `{key_name}`, which reads request, session or "
                                    f"database data: {rule.why}"))
        for value, line, col in summary.session_types:
            low = value.lower()
            rule = RULES["session-local"]
            if low == "filesystem":
                out.append(Resolved(summary.path, "session-local", rule.severity, line, col,
                                    "SESSION_TYPE 'filesystem' keeps sessions in files on "
                                    f"this host's disk: {rule.why}"))
            elif low == "cachelib" and "shared" not in cachelib:
                what = ("SESSION_CACHELIB is a SimpleCache or FileSystemCache"
                        if "local" in cachelib else
                        "without SESSION_CACHELIB, Flask-Session uses a FileSystemCache")
                out.append(Resolved(summary.path, "session-local", rule.severity, line, col,
                                    f"SESSION_TYPE 'cachelib' keeps sessions per instance "
                                    f"({what}): {rule.why}"))
            if not session_init and low in ("filesystem", "cachelib", "redis", "memcached",
                                            "mongodb", "sqlalchemy", "dynamodb"):
                rule = RULES["session-not-initialised"]
                out.append(Resolved(summary.path, "session-not-initialised", rule.severity,
                                    line, col, f"SESSION_TYPE {value!r} is set but nothing "
                                    f"calls Session(app): {rule.why}"))
    return out
