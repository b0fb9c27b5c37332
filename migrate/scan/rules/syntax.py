"""Small readings of AST nodes that several rule families share."""

from __future__ import annotations

import ast
import re

TESTING_WORDS = frozenset({"test", "tests", "testing", "unittest"})
DEVELOPMENT_WORDS = frozenset({"dev", "development", "debug"})
WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")


def parts_of(node: ast.AST) -> list[str] | None:
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


def dotted(node: ast.AST) -> str | None:
    """``a.b.c`` -> "a.b.c" when the chain is only names and attributes (no calls), else None."""
    out: list[str] = []
    while isinstance(node, ast.Attribute):
        out.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    out.append(node.id)
    return ".".join(reversed(out))


def changed_root(node: ast.AST) -> list[str] | None:
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


def names_in(node: ast.AST | None) -> set[str]:
    """Every plain name used anywhere in ``node``."""
    if node is None:
        return set()
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def value_strings(node: ast.AST) -> list[str]:
    """The literal strings a value may end up as (``a or "dev"``, ``get(k, "dev")``), not keys."""
    if isinstance(node, ast.Constant):
        return [node.value] if isinstance(node.value, str) else []
    if isinstance(node, ast.BoolOp):
        return [s for v in node.values for s in value_strings(v)]
    if isinstance(node, ast.IfExp):
        return value_strings(node.body) + value_strings(node.orelse)
    if isinstance(node, ast.Call):
        parts = parts_of(node.func) or [""]
        if parts[-1] in ("get", "getenv", "pop", "setdefault", "str"):
            rest = node.args[1:] if parts[-1] != "str" else node.args
            return [s for v in (*rest, *(k.value for k in node.keywords if k.arg == "default"))
                    for s in value_strings(v)]
    return []


def short(node: ast.AST, limit: int = 60) -> str:
    """The node's source text, cut to ``limit`` characters (for messages)."""
    try:
        text = ast.unparse(node)
    except Exception:  # pragma: no cover - unparse handles every parsed node
        return "?"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def context_of(name: str) -> str:
    """"testing" or "development" for a name made of such words (``TestingConfig``,
    ``UnitTestConfig``, ``DevConfig``, ``FLASK_DEBUG``, ``configure_testing``), else ""."""
    words = {w.lower() for w in WORD.findall(name)}
    if words & TESTING_WORDS:
        return "testing"
    if words & DEVELOPMENT_WORDS:
        return "development"
    return ""


def guard_context(test: ast.AST) -> tuple[str, str]:
    """The context an ``if`` gives its body and its ``else``: ``if app.testing:``,
    ``if config["TESTING"]:``, ``if os.environ.get("FLASK_DEBUG"):``, ``if not app.debug:``
    (the ``else``), ``if test_config is None:`` (the ``else``). A test that mixes negations
    (``if not app.debug and not app.testing:``) gives none."""
    negated = False
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        test, negated = test.operand, True
    elif isinstance(test, ast.Compare) and len(test.ops) == 1 \
            and isinstance(test.ops[0], ast.Is | ast.Eq) \
            and isinstance(test.comparators[0], ast.Constant) \
            and test.comparators[0].value in (None, False):
        test, negated = test.left, True
    found = ""
    stack = [test]
    while stack:
        sub = stack.pop()
        if isinstance(sub, ast.Name):
            word = sub.id
        elif isinstance(sub, ast.Attribute):
            word = sub.attr
            stack.append(sub.value)
        elif isinstance(sub, ast.Constant):
            word = sub.value if isinstance(sub.value, str) else ""
        else:
            if isinstance(sub, ast.UnaryOp) or isinstance(sub, ast.Compare) and not all(
                    isinstance(op, ast.Eq | ast.In) for op in sub.ops):
                return "", ""
            if isinstance(sub, ast.Subscript | ast.Call | ast.BoolOp | ast.Compare):
                stack += ast.iter_child_nodes(sub)
            continue
        low = word.lower()
        if "test" in low or "dev" in low or "debug" in low:
            context = context_of(word)
            if context == "testing" or context and not found:
                found = context
    return ("", found) if negated else (found, "")


def is_true(node: ast.AST) -> bool:
    """``True`` or ``1`` written as is."""
    return isinstance(node, ast.Constant) and node.value in (True, 1)


def stronger(outer: str, inner: str) -> str:
    """The context code inside both is in: testing over development over none."""
    return "testing" if "testing" in (outer, inner) else outer or inner


def class_context(node: ast.ClassDef) -> str:
    """A config class for tests or development: by its name (``TestingConfig``,
    ``DevelopmentConfig``) or its ``TESTING = True`` / ``DEBUG = True``."""
    found = context_of(node.name)
    for stmt in node.body:
        if isinstance(stmt, ast.Assign) and is_true(stmt.value):
            for target in stmt.targets:
                if isinstance(target, ast.Name) and target.id in ("TESTING", "DEBUG"):
                    found = stronger(found, context_of(target.id))
    return found


def context_in(contexts: list[tuple[str, object]]) -> str:
    """The context the code being walked is in, from what encloses it (innermost last):
    ("name", a function's name), ("class", a ClassDef), ("body" or "else", an if-test),
    ("testing", None) (a config with TESTING=True)."""
    found = ""
    for kind, what in contexts:
        if kind == "testing":
            context = "testing"
        elif isinstance(what, str):
            context = context_of(what)
        elif isinstance(what, ast.ClassDef):
            context = class_context(what)
        elif isinstance(what, ast.AST):
            body, orelse = guard_context(what)
            context = body if kind == "body" else orelse
        else:
            context = ""
        found = stronger(found, context)
        if found == "testing":
            break
    return found
