"""Render a ScanResult: text for people (rich), JSON for scripts, SARIF 2.1.0 for code scanning.

JSON (``--format json``), version 1; keys are sorted and never removed within a version::

    {"version": 1, "root": str,
     "summary": {"files", "lines", "seconds", "error", "warning", "note", "suppressed",
                 "parse_errors", "lines_per_second"},
     "findings": [{"rule", "severity", "path", "line", "col", "message", "fix", "snippet"}],
     "parse_errors": [{"path", "line", "message"}],
     "rules": {id: {"severity", "title", "why", "fix", "notes"}}}

``path`` is relative to ``root`` with forward slashes; ``line`` and ``col`` count from 1.
Findings are sorted by path, line, column and rule.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from importlib import metadata
from itertools import groupby
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.text import Text

from migrate.scan.model import Finding, Rule, ScanResult
from migrate.scan.rules import RULES

JSON_VERSION = 1
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
STYLE = {"error": "bold red", "warning": "yellow", "note": "cyan"}


def _version() -> str:
    try:
        return metadata.version("migrate")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a plain checkout
        return "0"


def json_data(result: ScanResult) -> dict[str, Any]:
    """The documented JSON structure (see the module docstring)."""
    summary = {
        "files": result.files, "lines": result.lines, "seconds": round(result.seconds, 3),
        "suppressed": result.suppressed, "parse_errors": len(result.parse_errors),
        "lines_per_second": round(result.lines_per_second),
        **result.counts,
    }
    return {
        "version": JSON_VERSION,
        "root": result.root,
        "summary": summary,
        "findings": [dataclasses.asdict(f) for f in result.findings],
        "parse_errors": [dataclasses.asdict(p) for p in result.parse_errors],
        "rules": {r.id: {"severity": r.severity, "title": r.title, "why": r.why, "fix": r.fix,
                         "notes": r.notes}
                  for r in RULES.values()},
    }


def json_report(result: ScanResult) -> str:
    return json.dumps(json_data(result), indent=2, sort_keys=True, ensure_ascii=False)


def sarif_data(result: ScanResult) -> dict[str, Any]:
    """SARIF 2.1.0, as GitHub code scanning reads it (paths relative to %SRCROOT%)."""
    rule_ids = list(RULES)
    notifications = [{
        "level": "error",
        "message": {"text": f"{p.path}: {p.message}"},
        "locations": [{"physicalLocation": {
            "artifactLocation": {"uri": p.path, "uriBaseId": "%SRCROOT%"},
            **({"region": {"startLine": p.line}} if p.line > 0 else {}),
        }}],
    } for p in result.parse_errors]
    root = Path(result.root).resolve()
    base = root if root.is_dir() else root.parent
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "migrate-scan", "semanticVersion": _version(),
                                "rules": [_sarif_rule(r) for r in RULES.values()]}},
            "originalUriBaseIds": {"%SRCROOT%": {"uri": base.as_uri() + "/"}},
            "invocations": [{"executionSuccessful": True,
                             "toolExecutionNotifications": notifications}],
            "results": [_sarif_result(f, rule_ids.index(f.rule)) for f in result.findings],
        }],
    }


def _sarif_rule(r: Rule) -> dict[str, Any]:
    return {
        "id": r.id,
        "name": "".join(w.capitalize() for w in r.id.split("-")),
        "shortDescription": {"text": r.title},
        "fullDescription": {"text": f"{r.title}: {r.why}."},
        "help": {"text": f"Fix: {r.fix}." + (f" {r.notes}" if r.notes else ""),
                 "markdown": f"**Why:** {r.why}.\n\n**Fix:** {r.fix}."
                 + (f"\n\n**Where it is judged differently:** {r.notes}" if r.notes else "")},
        "defaultConfiguration": {"level": r.severity},
        "properties": {"tags": ["stateless", "scalability"]},
    }


def _sarif_result(f: Finding, rule_index: int) -> dict[str, Any]:
    digest = hashlib.sha256(f"{f.rule}:{f.path}:{f.snippet}".encode()).hexdigest()[:32]
    region: dict[str, Any] = {"startLine": f.line, "startColumn": f.col}
    if f.snippet:
        region["snippet"] = {"text": f.snippet}
    return {
        "ruleId": f.rule,
        "ruleIndex": rule_index,
        "level": f.severity,
        "message": {"text": f"{f.message}. Fix: {f.fix}."},
        "locations": [{"physicalLocation": {
            "artifactLocation": {"uri": f.path, "uriBaseId": "%SRCROOT%"},
            "region": region,
        }}],
        "partialFingerprints": {"migrateScan/v1": digest},
    }


def sarif_report(result: ScanResult) -> str:
    return json.dumps(sarif_data(result), indent=2, ensure_ascii=False)


def text_report(result: ScanResult) -> RenderableType:
    """Findings grouped by file, each with what breaks and the fix; then a summary line."""
    parts: list[RenderableType] = []
    for path, group in groupby(result.findings, key=lambda f: f.path):
        parts.append(Text(path, style="bold underline"))
        for f in group:
            line = Text.from_markup(
                f"  [dim]{f.line}:{f.col}[/] [{STYLE[f.severity]}]{f.severity}[/] "
                f"[magenta]{f.rule}[/] {escape(f.message)}")
            parts.append(line)
            if f.snippet:
                parts.append(Text(f"      {f.snippet}", style="dim"))
            parts.append(Text.from_markup(f"      [green]fix:[/] {escape(f.fix)}"))
        parts.append(Text(""))
    for p in result.parse_errors:
        parts.append(Text.from_markup(
            f"[red]not scanned:[/] {escape(p.path)}:{p.line} {escape(p.message)}"))
    counts = result.counts
    found = ", ".join(f"{n} {s}{'s' if n != 1 else ''}" for s, n in counts.items() if n)
    extra = f", {result.suppressed} suppressed" if result.suppressed else ""
    extra += f", {len(result.parse_errors)} not parsed" if result.parse_errors else ""
    rate = f"{result.lines_per_second:,.0f} lines/s"
    if result.findings:
        head = f"[bold red]{len(result.findings)} state traps[/] ({found})"
    else:
        head = "[bold green]no state traps found[/]"
    parts.append(Text.from_markup(
        f"{head} in {result.files:,} file{'s' if result.files != 1 else ''}, "
        f"{result.lines:,} lines{extra} "
        f"({result.seconds:.2f} s, {rate})"))
    return Group(*parts)
