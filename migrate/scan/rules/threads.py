"""Background threads, timers, executors and schedulers started in the web process."""

from __future__ import annotations

import ast

from migrate.scan.model import Rule
from migrate.scan.rules.base import FuncFrame, WalkerBase

RULES = (
    Rule("background-thread", "error", "Background thread, timer or scheduler in the web process",
         "work in flight dies with the instance, and a scheduler runs once per instance",
         "put the job on a queue in Redis (rq: Queue.enqueue) and run it in a separate "
         "worker process; `migrate steps` starts the worker"),
)

THREAD_MODULES = ("threading.", "multiprocessing.", "apscheduler.", "flask_apscheduler.",
                  "concurrent.futures.", "flask_executor.")
THREAD_CLASSES = frozenset({"Thread", "Timer", "Process", "BackgroundScheduler",
                            "AsyncIOScheduler", "GeventScheduler", "TornadoScheduler",
                            "TwistedScheduler", "QtScheduler", "APScheduler"})
EXECUTOR_CLASSES = frozenset({"ThreadPoolExecutor", "ProcessPoolExecutor", "Executor"})
SPAWN_CALLS = frozenset({"_thread.start_new_thread", "thread.start_new_thread", "gevent.spawn",
                         "gevent.spawn_later", "eventlet.spawn", "eventlet.spawn_n"})


def thread_kind(qual: str) -> str | None:
    """The thread-like class a call builds ("Thread", "Timer", ..., "executor"), else None."""
    if not qual.startswith(THREAD_MODULES):
        return None
    last = qual.rpartition(".")[2]
    if last in THREAD_CLASSES:
        return last
    if last in EXECUTOR_CLASSES:
        return "executor"
    return None


class ThreadRules(WalkerBase):
    """Notes thread-like objects and their start, join and submit calls; a thread joined in
    the function that started it, or started under ``if __name__ == "__main__"``, is fine."""

    def _thread(self, node: ast.Call, what: str, var: str | None) -> None:
        if self.in_main:
            return
        cand = self.candidate("background-thread", node, f"{what} runs in the web process",
                              reach="reach-or-warn")
        if self.func is not None:
            self.func.threads.append((cand, var))
        else:
            self.add(cand)

    def _spawn(self, node: ast.Call, qual: str) -> None:
        self._thread(node, f"{qual}()", None)

    def _note_thread_vars(self, names: list[str], qual: str) -> None:
        """``t = Thread(...)``: remember what ``t`` is for its ``start()`` and ``join()``."""
        kind = thread_kind(qual)
        if kind and names:
            (self.func.thread_vars if self.func else self.module_thread_vars).update(
                dict.fromkeys(names, kind))

    def _thread_var(self, name: str) -> str | None:
        func = self.func
        return (func.thread_vars.get(name) if func else None) \
            or self.module_thread_vars.get(name)

    # methods called on a thread or an executor (see ``walker.ModuleWalker._method_call``)

    def _start(self, node: ast.Call, meth: str, recv: ast.AST) -> None:
        if isinstance(recv, ast.Call):
            kind = thread_kind(self.qual(recv.func) or "")
            if kind and kind != "executor":
                self._thread(node, f"{kind}(...).start()", None)
        elif isinstance(recv, ast.Name):
            kind = self._thread_var(recv.id)
            if kind and kind != "executor":
                self._thread(node, f"{kind} `{recv.id}`.start()", recv.id)

    def _background_task(self, node: ast.Call, meth: str, recv: ast.AST) -> None:
        """Flask-SocketIO's ``socketio.start_background_task(fn)``: a thread or greenlet."""
        self._thread(node, f"`{meth}()`", None)

    def _join(self, node: ast.Call, meth: str, recv: ast.AST) -> None:
        if isinstance(recv, ast.Name) and self.func is not None:
            self.func.joined.add(recv.id)

    def _submit(self, node: ast.Call, meth: str, recv: ast.AST) -> None:
        if isinstance(recv, ast.Name) and self._thread_var(recv.id) == "executor":
            self._thread(node, f"`{recv.id}.{meth}()` on an executor", recv.id)

    def _finish_threads(self, frame: FuncFrame) -> None:
        """Keep the threads the function starts and does not join."""
        for cand, var in frame.threads:
            if var is None or var not in frame.joined:
                self.add(cand)
