"""Small readings of AST nodes that several rule families share."""

from __future__ import annotations

import ast


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
