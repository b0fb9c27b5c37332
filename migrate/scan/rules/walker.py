"""One pass over a module's AST for every rule family: ``analyze_module``.

``ModuleWalker`` follows scopes (functions, classes, ``if __name__ == "__main__"``), imports
and the ways a function becomes a view or a request hook, and routes each node to the rule
family that judges it: calls by the name they resolve to, method calls by the method's name,
settings (``SECRET_KEY``, ``SESSION_TYPE``, ...) by their key. The families add what they find
to the module's summary; the project pass (``migrate.scan.project``) decides what is a trap.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

from migrate.scan.project import VIEW_METHODS, FuncInfo, ModuleSummary
from migrate.scan.rules.base import ClassFrame, FuncFrame
from migrate.scan.rules.caches import (
    CACHE_DECORATORS,
    DB_ATTRS,
    REQUEST_NAMES,
    CacheRules,
    is_local_cache_class,
)
from migrate.scan.rules.containers import ContainerRules
from migrate.scan.rules.files import (
    FS_REMOVE_CALLS,
    FS_WRITE_CALLS,
    OPEN_CALLS,
    PATH_WRITE_METHODS,
    SERVE_CALLS,
    FileRules,
    is_file_storage,
    is_upload_set,
)
from migrate.scan.rules.limiter import SETTINGS as LIMITER_SETTINGS
from migrate.scan.rules.limiter import LimiterRules, is_limiter
from migrate.scan.rules.locks import LockRules
from migrate.scan.rules.secret_key import RANDOM_CALLS, SecretKeyRules
from migrate.scan.rules.sessions import SessionRules, starts_flask_session
from migrate.scan.rules.sqlite import SQLITE_CONNECT, SqliteRules
from migrate.scan.rules.state import MUTATORS, StateRules, mutable_kind
from migrate.scan.rules.syntax import dotted, is_true, names_in, parts_of
from migrate.scan.rules.threads import SPAWN_CALLS, ThreadRules

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
    "on", "event",  # Flask-SocketIO: @socketio.on("message"), @socketio.event
})
HOOK_REGISTRARS = frozenset(ENTRY_DECORATORS - {"route", "get", "post", "put", "delete",
                                                "patch", "websocket", "endpoint"})
VIEW_BASES = frozenset({"MethodView", "View"})

MethodHandler = Callable[[ast.Call, str, ast.AST], None]


class ModuleWalker(StateRules, FileRules, SessionRules, SecretKeyRules, CacheRules,
                   ThreadRules, SqliteRules, ContainerRules, LockRules, LimiterRules):
    """Walks one module's AST once and fills a ModuleSummary."""

    def __init__(self, summary: ModuleSummary, is_package: bool) -> None:
        super().__init__(summary, is_package)
        self.handlers = {
            ast.FunctionDef: self._function, ast.AsyncFunctionDef: self._function,
            ast.ClassDef: self._class, ast.Assign: self._assign, ast.AnnAssign: self._assign,
            ast.AugAssign: self._augassign, ast.Delete: self._delete, ast.Global: self._global,
            ast.Call: self._call, ast.Dict: self._dict, ast.Constant: self._constant,
            ast.BinOp: self._binop, ast.JoinedStr: self._joinedstr, ast.Name: self._name,
            ast.Attribute: self._attribute, ast.If: self._if, ast.With: self._with,
            ast.AsyncWith: self._with, ast.Expr: self._expr, ast.For: self._for,
            ast.AsyncFor: self._for, ast.Import: self._import, ast.ImportFrom: self._importfrom,
            ast.Return: self._return, ast.Subscript: self._subscript,
            ast.Yield: self._yield, ast.YieldFrom: self._yield,
        }
        self.method_handlers: dict[str, MethodHandler] = {
            "start": self._start, "join": self._join, "shutdown": self._join,
            "submit": self._submit, "apply_async": self._submit,
            "start_background_task": self._background_task,
            "save": self._save, "mkdir": self._path_mkdir, "open": self._path_open,
            "unlink": self._path_remove, "rmdir": self._path_remove,
            **dict.fromkeys(PATH_WRITE_METHODS, self._path_write),
            "startswith": self._scheme_test, "endswith": self._scheme_test,
            "add_url_rule": self._add_url_rule,
            "register_error_handler": self._register_error_handler,
            **dict.fromkeys(HOOK_REGISTRARS, self._hook_registrar),
            "get": self._get, "getenv": self._setting_default,
            "get_nowait": self._queue_get, "acquire": self._acquire,
        }
        self.settings: dict[str, Callable[[ast.AST, int, int], None]] = {
            "storage_uri": self._storage_uri,
            "SECRET_KEY": self._secret_key, "SESSION_TYPE": self._session_type,
            "SESSION_CACHELIB": self._session_cachelib, "CACHE_TYPE": self._cache_type,
            **dict.fromkeys(LIMITER_SETTINGS, self._ratelimit_storage),
        }

    def finish_module(self) -> None:
        """Module-level objects made by calls (``uploader = Uploader()``), for their methods."""
        instances = self.s.instances
        for name, values in self.module_bound.items():
            made = tuple(d for v in values if isinstance(v, ast.Call)
                         for d in (dotted(v.func),) if d is not None)
            if made:
                instances[name] = made
                if any(is_upload_set(self.qual(v.func) or "") for v in values
                       if isinstance(v, ast.Call)):
                    self.s.upload_sets.add(name)
        self.finish_containers()
        self.finish_locks()

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
        info = self._function_info(node)
        outer_func, outer_scope, outer_main = self.func, self.scope, self.in_main
        self.func = frame = FuncFrame(info)
        self.frames.append(frame)
        self.scope = info.qualname
        self.in_main = False
        self.contexts.append(("name", node.name))
        args = node.args
        for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
            if arg is not None:
                frame.locals.add(arg.arg)
                if arg.annotation is not None and is_file_storage(arg.annotation):
                    frame.files.add(arg.arg)
        for stmt in node.body:
            self.visit(stmt)
        self._finish_state(frame)
        self._finish_files(frame)
        self._finish_threads(frame)
        if frame.queue_gets or frame.yields:
            self._finish_streams(frame, node)
        if frame.lock_uses:
            self._finish_locks(frame, node)
        self._finish_values(frame, node)
        if frame.returns:
            self._finish_secret(frame)
        if frame.bound or frame.call_attrs:
            self._finish_calls(frame)
        self.func, self.scope, self.in_main = outer_func, outer_scope, outer_main
        self.frames.pop()
        self.contexts.pop()

    def _finish_calls(self, frame: FuncFrame) -> None:
        """Methods called on what calls return, directly or through a local name
        (``x = make(); x.save()``): the project pass follows them to the class's method."""
        pairs = frame.call_attrs
        bound = frame.bound
        for base, attr in frame.info.attrs:
            for value in bound.get(base, ()):
                if isinstance(value, ast.Call):
                    made = dotted(value.func)
                    if made is not None:
                        pairs.append((made, attr))
        frame.info.call_attrs = tuple(dict.fromkeys(pairs))

    def _function_info(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> FuncInfo:
        """The function's place in the module, and what its decorators make of it."""
        qualname = f"{self.scope}.{node.name}" if self.scope else node.name
        self.s.children.setdefault(self.scope, {})[node.name] = qualname
        if self.func is not None:
            self.func.locals.add(node.name)
        info = FuncInfo(qualname, self.scope, self.cls.qualname if self.cls else "")
        self.s.functions[qualname] = info
        for dec in node.decorator_list:
            parts = parts_of(dec)
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
        return info

    def _class(self, node: ast.ClassDef) -> None:
        for dec in node.decorator_list:
            self.visit(dec)
        for base in node.bases:
            self.visit(base)
        qualname = f"{self.scope}.{node.name}" if self.scope else node.name
        self.s.children.setdefault(self.scope, {})[node.name] = qualname
        base_names = {p[-1] for p in map(parts_of, node.bases) if p}
        project_bases = tuple(d for d in map(dotted, node.bases) if d and d != "object")
        if project_bases:
            self.s.bases[qualname] = project_bases
        if base_names & VIEW_BASES or any(b.endswith("MethodView") for b in base_names):
            self.s.view_classes.append(qualname)
        self._note_class_locks(node, qualname)
        outer_cls, outer_scope, outer_func = self.cls, self.scope, self.func
        self.cls = frame = ClassFrame(node.name, qualname, node.lineno, base_names)
        self.scope = qualname
        self.func = None
        self.contexts.append(("class", node))
        for stmt in node.body:
            if isinstance(stmt, ast.Assign | ast.AnnAssign):
                self._note_mutables(stmt, f"{qualname}.")
            self.visit(stmt)
        self.cls, self.scope, self.func = outer_cls, outer_scope, outer_func
        self.contexts.pop()
        if any(b.endswith("SessionInterface") for b in base_names):
            self._finish_session_interface(frame)

    def _if(self, node: ast.If) -> None:
        test = node.test
        is_main = (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
                   and test.left.id == "__name__")
        self.visit(test)
        outer = self.in_main
        self.in_main = outer or is_main
        self.contexts.append(("body", test))  # judged only when a trap needs it
        for stmt in node.body:
            self.visit(stmt)
        self.in_main = outer
        self.contexts[-1] = ("else", test)
        for stmt in node.orelse:
            self.visit(stmt)
        self.contexts.pop()

    # statements

    def _store_target(self, target: ast.AST, value: ast.AST | None) -> None:
        if isinstance(target, ast.Subscript):
            self._mutated(target, target.lineno, target.col_offset, "item assignment",
                          (value,))
            key = target.slice
            if isinstance(key, ast.Constant) and key.value in self.settings \
                    and value is not None:
                self._setting(key.value, value, target)
        elif isinstance(target, ast.Name):
            if target.id in self.settings and value is not None:
                self._setting(target.id, value, target)
        elif isinstance(target, ast.Attribute):
            if target.attr == "secret_key" and value is not None and not self._other_self(target):
                self._setting("SECRET_KEY", value, target)
            elif target.attr == "session_interface":
                self.s.session_init = True
            elif (self.cls is not None and self.func is not None
                  and isinstance(target.value, ast.Name) and target.value.id == "self"):
                self.cls.instance_attrs.add(target.attr)
                self._note_instance_lock(target.attr, value)
                if mutable_kind(value):
                    self.cls.instance_mutables.add(target.attr)
        elif isinstance(target, ast.Tuple | ast.List):
            for elt in target.elts:
                self._store_target(elt, None)

    def _other_self(self, target: ast.Attribute) -> bool:
        """``self.x`` in a class that is not a Flask app (an S3 server's ``secret_key``)."""
        cls = self.cls
        return (isinstance(target.value, ast.Name) and target.value.id == "self"
                and cls is not None and not any(b.endswith("Flask") for b in cls.bases))

    def _assign(self, node: ast.Assign | ast.AnnAssign) -> None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        value = node.value
        func = self.func
        if func is None and self.cls is None:
            self._note_mutables(node, "")
        for target in targets:
            self._store_target(target, value)
        if self.cls is None or func is not None:
            self.bind(targets, value)
        if isinstance(value, ast.Call):
            qual = self.qual(value.func) or ""
            self._note_thread_vars([t.id for t in targets if isinstance(t, ast.Name)], qual)
            self._note_temps(targets, qual)
        for target in targets:
            self.visit(target)
        if value is not None:  # an annotation is not evaluated for state
            seen = self.files_seen
            self.visit(value)
            if func is not None and self.files_seen != seen:  # x = request.files[...]
                for target in targets:
                    func.files |= names_in(target)

    def _with(self, node: ast.With | ast.AsyncWith) -> None:
        if self.func is not None and any(isinstance(i.context_expr, ast.Name | ast.Attribute)
                                         for i in node.items):  # with LOCK: (not open(...))
            self.func.lock_uses = True
        for item in node.items:
            ctx = item.context_expr
            if item.optional_vars is not None and isinstance(ctx, ast.Call):
                self._note_temps([item.optional_vars], self.qual(ctx.func) or "")
            self.visit(ctx)
            if item.optional_vars is not None:
                self.visit(item.optional_vars)
        for stmt in node.body:
            self.visit(stmt)

    def _for(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.target)
        seen = self.files_seen
        self.visit(node.iter)
        if self.func is not None and self.files_seen != seen:  # for f in request.files...
            self.func.files |= names_in(node.target)
        for stmt in node.body:
            self.visit(stmt)
        for stmt in node.orelse:
            self.visit(stmt)

    def _return(self, node: ast.Return) -> None:
        if node.value is not None:
            if self.func is not None:
                self.func.returns.append(node.value)
            self.visit(node.value)

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
        if node.attr == "files" and isinstance(value, ast.Name) and value.id == "request":
            self.files_seen += 1
        if func is not None:
            if node.attr == "value" and isinstance(node.ctx, ast.Store):
                func.value_writes = True
            if isinstance(value, ast.Name):
                func.info.attrs.add((value.id, node.attr))
            elif isinstance(value, ast.Call):  # make().save(): a method of what make returns
                made = dotted(value.func)
                if made is not None:
                    func.call_attrs.append((made, node.attr))
            if node.attr in DB_ATTRS:
                func.info.reads_request = True
        self.visit(value)

    def _call(self, node: ast.Call) -> None:
        fn = node.func
        qual = self.qual(fn) or ""
        testing = False
        if qual in RANDOM_CALLS and self.func is not None:
            self.func.random_seen = True
        if isinstance(fn, ast.Attribute):
            self._method_call(node, fn)
        if qual in OPEN_CALLS:
            self._open(node)
        elif qual in FS_WRITE_CALLS:
            self._fs_write(node, qual)
        elif qual in FS_REMOVE_CALLS:
            self._fs_remove(node)
        elif qual.endswith(SERVE_CALLS):
            self._serve(node, qual)
        elif qual in SQLITE_CONNECT:
            self._sqlite_connect(node)
        elif qual in SPAWN_CALLS:
            self._spawn(node, qual)
        elif is_local_cache_class(qual):
            self._cache_class(node, qual)
        elif starts_flask_session(qual):
            self.s.session_init = True
        elif is_limiter(qual):
            self._limiter(node)
        elif qual == "dict" or qual.endswith((".update", ".from_mapping")):
            for kw in node.keywords:  # dict(SECRET_KEY=...), app.config.update(...)
                if kw.arg in self.settings:
                    self._setting(kw.arg, kw.value, kw.value)
                testing = testing or kw.arg == "TESTING" and is_true(kw.value)
            if testing:  # update(TESTING=True, SQLALCHEMY_DATABASE_URI="sqlite://")
                self.contexts.append(("testing", None))
        outer = self.call_now
        self.call_now = (node, qual)
        self.generic(node)
        self.call_now = outer
        if testing:
            self.contexts.pop()

    def _method_call(self, node: ast.Call, fn: ast.Attribute) -> None:
        meth = fn.attr
        self._note_db(node)
        if meth in MUTATORS:
            changed, exprs = fn.value, tuple(node.args)
            if isinstance(changed, ast.Call) and isinstance(changed.func, ast.Attribute) \
                    and changed.func.attr in ("setdefault", "get"):  # X.setdefault(k, []).add(v)
                changed, exprs = changed.func.value, exprs + tuple(changed.args)
            self._mutated(changed, node.lineno, node.col_offset, f".{meth}()", exprs)
        handler = self.method_handlers.get(meth)
        if handler is not None:
            handler(node, meth, fn.value)

    def _get(self, node: ast.Call, meth: str, recv: ast.AST) -> None:
        """``x.get(...)``: a setting's default, a queue read, a token looked up."""
        self._setting_default(node, meth, recv)
        if self.func is not None:
            if node.args:
                self._lookup_evidence(node)
            self._queue_get(node, meth, recv)  # kept only for a module-level queue

    def _yield(self, node: ast.Yield | ast.YieldFrom) -> None:
        if self.func is not None:
            self.func.yields = True
        self.generic(node)

    def _subscript(self, node: ast.Subscript) -> None:
        if self.func is not None and isinstance(node.ctx, ast.Load):
            self._lookup_evidence(node)
        self.generic(node)

    def _dict(self, node: ast.Dict) -> None:
        testing = False
        for key, value in zip(node.keys, node.values, strict=True):
            if isinstance(key, ast.Constant):
                if key.value in self.settings:
                    self._setting(key.value, value, key)
                testing = testing or key.value == "TESTING" and is_true(value)
        if testing:  # {"TESTING": True, "DATABASE": "sqlite://"}
            self.contexts.append(("testing", None))
            self.generic(node)
            self.contexts.pop()
        else:
            self.generic(node)

    # settings: SECRET_KEY, SESSION_TYPE, ... however they are given

    def _setting(self, key: str, value: ast.AST, where: ast.AST) -> None:
        self.settings[key](value, where.lineno, where.col_offset)

    def _setting_default(self, node: ast.Call, meth: str, recv: ast.AST) -> None:
        """``os.environ.get("SECRET_KEY", "dev")``: the default is a value of the setting."""
        if len(node.args) > 1:
            key = node.args[0]
            if isinstance(key, ast.Constant) and key.value in self.settings:
                self._setting(key.value, node.args[1], node.args[1])

    # views and request hooks registered by a call

    def _add_url_rule(self, node: ast.Call, meth: str, recv: ast.AST) -> None:
        view = node.args[2] if len(node.args) > 2 else None
        for kw in node.keywords:
            if kw.arg == "view_func":
                view = kw.value
        self._entry_ref(view)

    def _register_error_handler(self, node: ast.Call, meth: str, recv: ast.AST) -> None:
        if len(node.args) > 1:
            self._entry_ref(node.args[1])

    def _hook_registrar(self, node: ast.Call, meth: str, recv: ast.AST) -> None:
        """``app.before_request(fn)``: the decorator called as a function."""
        if node.args and not node.keywords \
                and isinstance(node.args[0], ast.Name | ast.Attribute):
            self._entry_ref(node.args[0])

    def _entry_ref(self, view: ast.AST | None) -> None:
        if isinstance(view, ast.Call) and isinstance(view.func, ast.Attribute) \
                and view.func.attr == "as_view":
            parts = parts_of(view.func.value)
            if parts:
                self.s.entry_refs.append((self.scope, ".".join(parts), "view-class"))
            return
        parts = parts_of(view) if view is not None else None
        if parts and not isinstance(view, ast.Call):
            self.s.entry_refs.append((self.scope, ".".join(parts), None))


def analyze_module(tree: ast.Module, module: str, path: str, is_package: bool) -> ModuleSummary:
    """One pass over a parsed module: its functions, state and candidate findings."""
    summary = ModuleSummary(module=module, path=path)
    walker = ModuleWalker(summary, is_package)
    for stmt in tree.body:
        walker.visit(stmt)
    walker.finish_module()
    return summary
