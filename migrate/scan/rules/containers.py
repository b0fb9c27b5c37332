"""What a process-wide container holds: API tokens, or the subscribers of live updates.

``module-state`` finds a module-level (or class-level, or long-lived object's) container changed
while serving requests. Two kinds of such containers break more than a counter does, and have
their own cure, so the change takes a more precise rule when the evidence says what it holds:

- ``token-store``: the container's name says tokens or API keys (``TOKENS``, ``api_keys``,
  ``BLOCKLIST`` of revoked JWT ids), or it is keyed by one (a value from ``secrets.token_*``, the
  ``Authorization`` or an ``X-API-Key`` header, ``request.authorization``, a name that says
  token);
- ``live-updates``: it holds subscribers (an in-process ``queue.Queue`` / ``asyncio.Queue``, a
  WebSocket, a Socket.IO ``request.sid``), its name says so (``LISTENERS``, ``subscribers``,
  ``ws_clients``), or it is the message history (a ``deque`` named history, backlog, events,
  messages, ... or kept beside such subscribers). A module-level queue read by a streaming
  response (a generator, a WebSocket handler) is one too.

Evidence found anywhere in the project applies to every change of that container, so a store
defined in one module and filled in another is judged as one. A container only read while
serving requests (a registry or configuration filled at start-up) is never a finding, and a
container whose name says cache stays ``module-state``'s (a cache of tokens fetched from an
OAuth provider, or of checks already made, is not where tokens live).
"""

from __future__ import annotations

import ast

from migrate.scan.model import Rule
from migrate.scan.project import Candidate
from migrate.scan.rules.base import FuncFrame, WalkerBase
from migrate.scan.rules.syntax import WORD, parts_of

RULES = (
    Rule("token-store", "error", "API tokens or keys kept in this process",
         "a token issued by one instance is unknown to the others (the client gets 401 "
         "there) and every token is gone when the process restarts",
         "issue signed tokens (PyJWT: short-lived, key from config, `kid` for rotation) that "
         "any instance verifies without a lookup, and revoke through a Redis denylist; "
         "`migrate export-sessions` moves the live tokens (hashed) from the bridge",
         "Reported where a container that lives as long as the process (module level, a class "
         "attribute, a module-level object's, an attribute of the app) is changed while "
         "serving requests, when its name says token or API key (TOKENS, api_keys, a JWT "
         "blocklist or denylist, revoked) or it is keyed by a token (secrets.token_*, the "
         "Authorization or X-API-Key header, request.authorization), wherever in the project "
         "that is seen. Not reported: a token dict only read while serving requests (filled "
         "from configuration or at start-up), a dict local to the view, g.token, the app's "
         "extensions (the app's own objects)."),
    Rule("live-updates", "error", "Live-update subscribers or message history kept in this "
                                  "process",
         "an event raised on one instance reaches only the clients connected to that "
         "instance, and a client that reconnects elsewhere misses what happened meanwhile",
         "publish events through Redis (Streams: XADD, readers XREAD from their "
         "Last-Event-ID on any instance; or Pub/Sub plus a replay list; Flask-SocketIO: "
         "message_queue=REDIS_URL); nothing to move (clients reconnect and replay)",
         "Reported where a container that lives as long as the process is changed while "
         "serving requests, when it holds subscribers (queue.Queue, asyncio.Queue, a "
         "WebSocket, a Socket.IO request.sid), its name says so (listeners, subscribers, "
         "watchers, ws), or it is a message history (a deque a stream reads, or one named "
         "history, events, messages, backlog, ... beside subscribers); and where a streaming "
         "response (a generator, a WebSocket handler) waits on a module-level queue. Not "
         "reported: listeners registered at start-up, a queue whose reader is a worker thread "
         "(background-thread judges the thread), a deque no stream reads (module-state)."),
)
TOKEN_STORE, LIVE_UPDATES = RULES

TOKEN_WORDS = frozenset({"token", "tokens", "apikey", "apikeys", "bearer", "jti", "jtis",
                         "blocklist", "blacklist", "denylist", "revoked", "revocations"})
KEY_WORDS = frozenset({"key", "keys"})
KEY_OWNERS = frozenset({"api", "access", "auth"})
TOKEN_CALLS = frozenset({"secrets.token_hex", "secrets.token_urlsafe", "secrets.token_bytes"})
SUBSCRIBER_WORDS = frozenset({"subscriber", "subscribers", "subscription", "subscriptions",
                              "listener", "listeners", "watcher", "watchers", "observer",
                              "observers", "websocket", "websockets", "sockets", "ws", "sse",
                              "waiters"})
SUBSCRIBER_VALUE_WORDS = frozenset({"ws", "websocket", "socket", "subscriber", "listener",
                                    "sse"})
HISTORY_WORDS = frozenset({"history", "backlog", "events", "messages", "replay", "updates",
                           "notifications"})
QUEUE_CALLS = frozenset({
    *(f"{module}.{name}" for module in ("queue", "asyncio", "gevent.queue", "eventlet.queue")
      for name in ("Queue", "SimpleQueue", "LifoQueue", "PriorityQueue", "JoinableQueue")),
    "Queue.Queue", "multiprocessing.Queue", "multiprocessing.SimpleQueue", "janus.Queue"})
CACHE_WORDS = frozenset({"cache", "cached", "caches", "memo", "lru"})
TRACE_DEPTH = 3


def words_of(name: str) -> set[str]:
    """``API_KEYS`` -> {"api", "keys"}; ``wsClients`` -> {"ws", "clients"}."""
    return {w.lower() for w in WORD.findall(name)}


def tokenish_name(name: str) -> bool:
    """A name that says token or API key (``TOKENS``, ``api_keys``, ``_revoked``, ``jti``)."""
    words = words_of(name)
    return bool(words & TOKEN_WORDS or words & KEY_WORDS and words & KEY_OWNERS)


class ContainerRules(WalkerBase):
    """Gathers what the project's containers hold (see the module docstring)."""

    def _container_evidence(self, cand: Candidate, exprs: tuple[ast.AST, ...]) -> None:
        """A change to a container was found: note what its name and its keys and values
        say it holds (the project pass gives every change of it the rule that calls for)."""
        container = cand.container
        if container is None:
            return
        name = container[1].rpartition(".")[2]
        kind = self.s.mutables.get(container[1], (0, ""))[1] \
            if container[0] == self.s.module else ""
        rule = ""
        if words_of(name) & CACHE_WORDS:
            return  # a cache of tokens fetched or checked (an OAuth client's): module-state's
        if tokenish_name(name) or any(self._tokenish(e, TRACE_DEPTH) for e in exprs):
            rule = TOKEN_STORE.id
        elif words_of(name) & SUBSCRIBER_WORDS \
                or any(self._subscriber(e, TRACE_DEPTH) for e in exprs) \
                or kind == "deque" and words_of(name) & HISTORY_WORDS:
            rule = LIVE_UPDATES.id
        if rule:
            self.s.container_rules.setdefault(container, rule)

    def _tokenish(self, node: ast.AST, depth: int) -> bool:
        """A key or value that is (or is made from) a token: ``secrets.token_urlsafe()``,
        ``request.headers["Authorization"]``, ``request.authorization``, ``token``."""
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call) and (self.qual(sub.func) or "") in TOKEN_CALLS:
                return True
            if isinstance(sub, ast.Attribute) and (sub.attr == "authorization"
                                                   or tokenish_name(sub.attr)):
                return True
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str) \
                    and len(sub.value) < 40 and (tokenish_name(sub.value)
                                                 or "authorization" in sub.value.lower()):
                return True
            if isinstance(sub, ast.Name):
                if tokenish_name(sub.id):
                    return True
                if depth and any(self._tokenish(v, depth - 1)
                                 for v in self._bound_values(sub.id) or ()):
                    return True
        return False

    def _subscriber(self, node: ast.AST, depth: int) -> bool:
        """A value that is a subscriber: an in-process queue, a WebSocket, a Socket.IO sid."""
        called: set[int] = set()  # Socket(...) makes a socket; rq's Queue(...) is no inbox
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call):
                if (self.qual(sub.func) or "") in QUEUE_CALLS:
                    return True
                called.add(id(sub.func))
            if isinstance(sub, ast.Attribute) and sub.attr == "sid" \
                    and isinstance(sub.value, ast.Name) and sub.value.id == "request":
                return True
            if isinstance(sub, ast.Constant) and sub.value == "wsgi.websocket":
                return True
            if isinstance(sub, ast.Name) and id(sub) not in called:
                if words_of(sub.id) & SUBSCRIBER_VALUE_WORDS:
                    return True
                if depth and any(self._subscriber(v, depth - 1)
                                 for v in self._bound_values(sub.id) or ()):
                    return True
        return False

    def _lookup_evidence(self, node: ast.AST) -> None:
        """``STORE.get(request.headers["Authorization"])``, ``STORE[token]``: a container
        looked up by a token is a token store, wherever it is filled."""
        func = self.func
        if func is None:
            return
        if isinstance(node, ast.Call):
            recv, keys = node.func.value, node.args[:1]  # type: ignore[attr-defined]
        elif isinstance(node, ast.Subscript):
            recv, keys = node.value, [node.slice]
        else:
            return
        if not keys or isinstance(recv, ast.Call):
            return
        parts = parts_of(recv)
        container = self._container_of(parts, func) if parts else None
        if container is not None and container not in self.s.container_rules \
                and not words_of(container[1]) & CACHE_WORDS \
                and self._tokenish(keys[0], TRACE_DEPTH):
            self.s.container_rules[container] = TOKEN_STORE.id

    def _container_of(self, parts: list[str], func: FuncFrame) -> tuple[str, str] | None:
        """The container a name refers to, keyed as ``Candidate.container`` is."""
        head = parts[0]
        if head in func.locals and head not in func.globals:
            return None
        if len(parts) == 1:
            if head in self.s.mutables:
                return (self.s.module, head)
            imported = self.s.imports.get(head)
            if imported is not None and imported[1]:
                return (imported[0], imported[1])
            return None
        if head in ("self", "cls") and func.info.cls:
            return (self.s.module, f"{func.info.cls}.{parts[1]}")
        imported = self.s.imports.get(head)
        if imported is not None and len(parts) == 2:
            module = f"{imported[0]}.{imported[1]}" if imported[1] else imported[0]
            return (module, parts[1])
        return None

    def finish_containers(self) -> None:
        """Queues made at module level; a message history (a ``deque``, or a name that says
        history, events, messages, ...) kept beside subscribers or a streamed queue."""
        for name, values in self.module_bound.items():
            if any(isinstance(v, ast.Call) and (self.qual(v.func) or "") in QUEUE_CALLS
                   for v in values):
                self.s.queues.add(name)
        own = self.s.module
        history = {name for name, (_line, kind) in self.s.mutables.items()
                   if kind == "deque" or words_of(name) & HISTORY_WORDS}
        self.s.rules_if_marked[LIVE_UPDATES.id] = history
        if any(key[0] == own and rule == LIVE_UPDATES.id
               for key, rule in self.s.container_rules.items()):
            for name in history:
                if words_of(name) & HISTORY_WORDS:
                    self.s.container_rules.setdefault((own, name), LIVE_UPDATES.id)

    def _queue_get(self, node: ast.Call, meth: str, recv: ast.AST) -> None:
        """``EVENTS.get()`` on a module-level queue: judged when the function is done (a
        streaming response waits on it; a worker thread's loop is ``background-thread``'s)."""
        func = self.func
        if func is None or isinstance(recv, ast.Call):
            return
        parts = parts_of(recv)
        if not parts or len(parts) > 2 or parts[0] in func.locals:
            return
        if len(parts) == 1:
            imported = self.s.imports.get(parts[0])
            target = (imported[0], imported[1]) if imported and imported[1] else ("", parts[0])
        else:
            imported = self.s.imports.get(parts[0])
            if imported is None:
                return
            module = f"{imported[0]}.{imported[1]}" if imported[1] else imported[0]
            target = (module, parts[1])
        func.queue_gets.append(Candidate(
            LIVE_UPDATES.id, node.lineno, node.col_offset,
            f"a stream waits on `{'.'.join(parts)}.{meth}()`, an in-process queue",
            func.info.qualname, "reach", target, target_kind="queues"))

    def _finish_streams(self, frame: FuncFrame, node: ast.AST) -> None:
        """A generator (a streaming response) or a WebSocket handler: the module-level queues
        it waits on are findings, and the deques it reads are a message history."""
        args = node.args  # type: ignore[attr-defined]
        if not frame.yields and not any(words_of(a.arg) & {"ws", "websocket"}
                                        for a in args.args):
            return
        for cand in frame.queue_gets:
            self.add(cand)
        for sub in _own_nodes(node):
            if isinstance(sub, ast.Name | ast.Attribute) and isinstance(sub.ctx, ast.Load):
                parts = parts_of(sub)
                container = self._container_of(parts, frame) if parts else None
                if container is not None:
                    self.s.marks.add((*container, LIVE_UPDATES.id))


def _own_nodes(node: ast.AST):
    """The nodes of a function's body, not those of the functions and classes inside it."""
    stack = list(ast.iter_child_nodes(node))
    while stack:
        sub = stack.pop()
        yield sub
        if not isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
                          | ast.Lambda):
            stack.extend(ast.iter_child_nodes(sub))
