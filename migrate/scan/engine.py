"""Run the rules over a tree: find the files, parse each once (in parallel when it pays), join."""

from __future__ import annotations

import ast
import fnmatch
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from migrate.errors import UsageError
from migrate.scan.model import Finding, ParseFailure, ScanResult
from migrate.scan.project import ModuleSummary, Resolved, resolve_project
from migrate.scan.rules import PROJECT_CHECKS, RULES, analyze_module

SKIP_DIRS = frozenset({"__pycache__", "node_modules", "venv", "env", ".venv", "build", "dist",
                       "__pypackages__"})
TEST_DIRS = frozenset({"tests", "test", "testing"})
IGNORE = re.compile(rb"#\s*migrate:\s*ignore(?:\[([^\]]*)\])?")
PARALLEL_BYTES = 4 * 1024 * 1024
"""Below this much source, one process is faster than starting a pool."""


@dataclass
class _FileResult:
    path: str
    lines: int
    summary: ModuleSummary | None = None
    failure: ParseFailure | None = None
    snippets: dict[int, str] = field(default_factory=dict)
    ignores: dict[int, set[str]] = field(default_factory=dict)


def _is_test_file(rel: str) -> bool:
    parts = rel.split("/")
    name = parts[-1]
    return (any(p in TEST_DIRS for p in parts[:-1]) or name.startswith("test_")
            or name.endswith("_test.py") or name == "conftest.py")


def find_files(root: Path, include_tests: bool = False,
               exclude: tuple[str, ...] = ()) -> list[tuple[Path, str]]:
    """The Python files under ``root`` as (path, path relative to root), sorted."""
    if root.is_file():
        return [(root, root.name)]
    out: list[tuple[Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS
                             and not (Path(dirpath, d) / "pyvenv.cfg").exists())
        for name in filenames:
            if not name.endswith(".py"):
                continue
            full = Path(dirpath, name)
            rel = full.relative_to(root).as_posix()
            if not include_tests and _is_test_file(rel):
                continue
            if any(fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(name, pat) for pat in exclude):
                continue
            out.append((full, rel))
    out.sort(key=lambda item: item[1])
    return out


def module_name(path: Path, cache: dict[Path, bool] | None = None) -> tuple[str, bool]:
    """The dotted module name of a file (walking up through packages) and is-it-a-package."""
    cache = {} if cache is None else cache

    def is_package(folder: Path) -> bool:
        if folder not in cache:
            cache[folder] = (folder / "__init__.py").is_file()
        return cache[folder]

    parts = [] if path.name == "__init__.py" else [path.stem]
    folder = path.parent
    while is_package(folder) and folder.parent != folder:
        parts.append(folder.name)
        folder = folder.parent
    parts.reverse()
    return ".".join(parts) or path.stem, path.name == "__init__.py"


def _analyze(job: tuple[str, str, str, bool]) -> _FileResult:
    """Read and parse one file, run the rules over it, keep the lines findings may need."""
    path, rel, module, is_package = job
    try:
        source = Path(path).read_bytes()
    except OSError as exc:
        return _FileResult(rel, 0, failure=ParseFailure(rel, 0, f"cannot read: {exc}"))
    lines = source.count(b"\n") + (1 if source and not source.endswith(b"\n") else 0)
    try:
        tree = ast.parse(source, filename=rel)
    except SyntaxError as exc:
        return _FileResult(rel, lines, failure=ParseFailure(
            rel, exc.lineno or 0, f"does not parse: {exc.msg}"))
    except (ValueError, RecursionError, MemoryError) as exc:
        return _FileResult(rel, lines, failure=ParseFailure(rel, 0, f"does not parse: {exc}"))
    try:
        summary = analyze_module(tree, module, rel, is_package)
    except RecursionError:
        return _FileResult(rel, lines, failure=ParseFailure(
            rel, 0, "nested too deeply to analyse"))
    result = _FileResult(rel, lines, summary=summary)
    wanted = summary.finding_lines()
    if wanted or b"migrate:" in source:
        text = source.decode("utf-8", "replace").splitlines()
        result.snippets = {n: text[n - 1].strip()[:200] for n in wanted if 0 < n <= len(text)}
        if b"migrate:" in source:
            result.ignores = _ignores(source)
    return result


def _ignores(source: bytes) -> dict[int, set[str]]:
    """``# migrate: ignore[rule, ...]`` comments: line -> the rules silenced ("*": all)."""
    out: dict[int, set[str]] = {}
    for number, raw in enumerate(source.splitlines(), 1):
        match = IGNORE.search(raw)
        if match:
            rules = match.group(1)
            out[number] = ({r.strip() for r in rules.decode("utf-8", "replace").split(",")}
                           if rules else {"*"})
    return out


def _analyze_chunk(jobs: list[tuple[str, str, str, bool]]) -> list[_FileResult]:
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 5000))
    return [_analyze(job) for job in jobs]


def _analyze_all(files: list[tuple[Path, str]], jobs: int | None) -> list[_FileResult]:
    """Every file's result, sorted by path; in ``jobs`` processes when there is enough work."""
    cache: dict[Path, bool] = {}
    work = []
    for full, rel in files:
        module, is_package = module_name(full.resolve(), cache)
        work.append((str(full), rel, module, is_package))
    if jobs is None:
        size = sum(os.path.getsize(w[0]) for w in work)
        jobs = min(4, os.cpu_count() or 1) if size > PARALLEL_BYTES else 1
    if jobs > 1 and len(work) > 1:
        chunks = [work[i::jobs * 8] for i in range(jobs * 8)]
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = [r for chunk in pool.map(_analyze_chunk, chunks) for r in chunk]
    else:
        results = _analyze_chunk(work)
    return sorted(results, key=lambda r: r.path)


def _findings(resolved: list[Resolved], by_path: dict[str, _FileResult],
              result: ScanResult) -> list[Finding]:
    """The resolved candidates as findings: ignore comments applied, one per line and rule."""
    findings: dict[tuple[str, int, str], Finding] = {}
    for found in resolved:
        item = by_path[found.path]
        if any(ignored and ("*" in ignored or found.rule in ignored)
               for ignored in (item.ignores.get(found.line), item.ignores.get(found.origin))):
            result.suppressed += 1
            continue
        key = (found.path, found.line, found.rule)
        if key in findings:
            continue
        findings[key] = Finding(
            rule=found.rule, severity=found.severity, path=found.path, line=found.line,
            col=found.col + 1, message=found.message, fix=RULES[found.rule].fix,
            snippet=item.snippets.get(found.line, ""),
        )
    return sorted(findings.values(), key=lambda f: (f.path, f.line, f.col, f.rule))


def scan_path(path: str | os.PathLike[str], *, include_tests: bool = False,
              exclude: tuple[str, ...] = (), jobs: int | None = None) -> ScanResult:
    """Scan a file or a tree for state traps; nothing is imported or run.

    ``jobs``: processes to parse with (default: one per CPU, at most 4, for trees over 4 MiB).
    """
    started = time.perf_counter()
    root = Path(path)
    if not root.exists():
        raise UsageError(f"{root}: no such file or directory (give the app's source folder)")
    results = _analyze_all(find_files(root, include_tests, exclude), jobs)
    result = ScanResult(root=str(root), files=len(results))
    summaries: list[ModuleSummary] = []
    seen_modules: set[str] = set()
    for item in results:
        result.lines += item.lines
        if item.failure is not None:
            result.parse_errors.append(item.failure)
        elif item.summary is not None:
            if item.summary.module in seen_modules:  # two trees with one name: keep both apart
                item.summary.module = f"{item.summary.module}@{item.path}"
            seen_modules.add(item.summary.module)
            summaries.append(item.summary)
    resolved = resolve_project(summaries, RULES, PROJECT_CHECKS)
    result.findings = _findings(resolved, {item.path: item for item in results}, result)
    result.seconds = time.perf_counter() - started
    return result
