"""The state-trap rules, one module per family, and ``RULES``, the registry of them all.

Each family module defines its ``RULES`` (what the trap is, why it breaks two instances, the
fix), a mixin of the module walker that notes what it looks for, and, where a trap can only be
judged with the whole project in view, a project-wide check. ``walker.analyze_module`` runs
every family over a module in one pass; ``migrate.scan.project.resolve_project`` joins the
modules with ``RULES`` and ``PROJECT_CHECKS``.
"""

from __future__ import annotations

from migrate.scan.model import Rule
from migrate.scan.project import ProjectCheck
from migrate.scan.rules import (
    caches,
    containers,
    files,
    limiter,
    locks,
    secret_key,
    sessions,
    sqlite,
    state,
    threads,
)
from migrate.scan.rules.walker import analyze_module

FAMILIES = (state, files, sessions, secret_key, caches, threads, sqlite, containers, locks,
            limiter)
"""In report order: the order of RULES, of SARIF's rule list and of ``--format json``."""

RULES: dict[str, Rule] = {rule.id: rule for family in FAMILIES for rule in family.RULES}

PROJECT_CHECKS: tuple[ProjectCheck, ...] = (caches.cached_functions, sessions.session_types,
                                             secret_key.generated_keys, locks.locked_sections,
                                             limiter.limiter_storage)
"""Run on every module after its own candidates, in this order."""

__all__ = ["FAMILIES", "PROJECT_CHECKS", "RULES", "analyze_module"]
