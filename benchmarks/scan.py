"""How fast `migrate scan` reads a large real tree, beside the linters a user would otherwise run.

One run, one tree: the Flask stack as installed in this project's own venv (flask, werkzeug,
jinja2, click, itsdangerous, markupsafe, blinker, flask_session, cachelib, alembic, redis, rq,
rich: about 210,000 lines), copied into a temporary folder so every tool sees exactly the same
files (ruff skips folders named site-packages by default). Each tool runs as its own process
and the wall time includes start-up:

  - ``migrate scan TREE --include-tests --format json --fail-on never`` (every rule,
    request reachability across modules); default --jobs, then --jobs 1;
  - ``ruff check --select PLW0603`` (the `global` statement only; Rust, all cores, no cache);
  - ``pylint --disable=all --enable=W0603`` (the same check; astroid, one process).

``migrate scan`` runs are the best of three; the linters run once (pylint takes about a minute).
Usage: .venv/bin/python benchmarks/scan.py [--packages a,b,c] [--skip-pylint]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

PACKAGES = ("flask", "werkzeug", "jinja2", "click", "itsdangerous", "markupsafe", "blinker",
            "flask_session", "cachelib", "alembic", "redis", "rq", "rich")
BIN = Path(sys.executable).parent


def count_lines(tree: Path) -> tuple[int, int]:
    files = list(tree.rglob("*.py"))
    return len(files), sum(p.read_bytes().count(b"\n") for p in files)


def timed(command: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    return time.perf_counter() - started, proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", default=",".join(PACKAGES),
                        help="comma-separated top-level packages of this venv to scan")
    parser.add_argument("--skip-pylint", action="store_true", help="pylint takes a minute")
    args = parser.parse_args()
    site = Path(sysconfig.get_paths()["purelib"])
    with tempfile.TemporaryDirectory(prefix="bench-scan-") as tmp:
        tree = Path(tmp) / "tree"
        tree.mkdir()
        for name in args.packages.split(","):
            source = site / name
            if not source.is_dir():
                sys.exit(f"{name}: not installed in {site}")
            shutil.copytree(source, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
        files, lines = count_lines(tree)
        print(f"tree: {files:,} Python files, {lines:,} lines ({args.packages})")
        rows: list[tuple[str, float, str]] = []

        scan = [str(BIN / "migrate"), "scan", str(tree), "--include-tests", "--format", "json",
                "--fail-on", "never"]
        for label, extra in (("migrate scan (all rules)", []),
                             ("migrate scan --jobs 1", ["--jobs", "1"])):
            best, data = None, {}
            for _ in range(3):
                seconds, proc = timed(scan + extra, Path(tmp))
                if proc.returncode != 0:
                    sys.exit(f"migrate scan failed: {proc.stderr[-2000:]}")
                if best is None or seconds < best:
                    best, data = seconds, json.loads(proc.stdout)
            summary = data["summary"]
            assert summary["lines"] == lines, (summary["lines"], lines)
            rows.append((label, best, f"{len(data['findings'])} findings, "
                         f"{summary['parse_errors']} unparsed; in-process "
                         f"{summary['lines_per_second']:,} lines/s"))

        seconds, proc = timed([str(BIN / "ruff"), "check", "--isolated", "--no-cache",
                               "--select", "PLW0603", "--exit-zero", "--output-format",
                               "concise", str(tree)], Path(tmp))
        found = sum(1 for line in proc.stdout.splitlines() if "PLW0603" in line)
        rows.append(("ruff check --select PLW0603", seconds, f"{found} findings"))

        if not args.skip_pylint:
            seconds, proc = timed([str(BIN / "pylint"), "--disable=all", "--enable=W0603",
                                   "--exit-zero", "--recursive=y", "-j", "1",
                                   "--score=n", str(tree)], Path(tmp))
            found = sum(1 for line in proc.stdout.splitlines() if "W0603" in line)
            rows.append(("pylint --enable=W0603", seconds, f"{found} findings"))

    print(f"{'tool':<30} {'seconds':>8} {'lines/s':>11}  notes")
    for label, seconds, note in rows:
        print(f"{label:<30} {seconds:>8.2f} {lines / seconds:>11,.0f}  {note}")


if __name__ == "__main__":
    main()
