"""The migration journal: one JSON line per runbook command run or manual step marked.

Kept in the migrated project's folder (``DIR/.migrate/journal.jsonl``; DIR is
``$MIGRATE_PROJECT`` or the current directory) so the runbook can say what was done and what
comes next. Recording starts once the folder exists (``migrate steps`` creates it), so running
a command elsewhere leaves no files behind. Command lines are stored with secrets masked.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from migrate import redact

JOURNAL_DIR = ".migrate"
JOURNAL_FILE = "journal.jsonl"
# The command (by name, so commands other engineers add need nothing) -> its runbook step.
COMMAND_STEPS = {
    "scan": "scan",
    "preflight": "preflight",
    "export-sessions": "export-sessions",
    "export-files": "export-files",
    "db upgrade": "db-upgrade",
    "switch-config": "switch-config",
    "verify sessions": "verify",
    "verify files": "verify",
    "verify instances": "verify",
}
SUMMARY_KEY = "migrate.summary"  # ctx.meta key a command may fill with its counts
ERROR_KEY = "migrate.error"  # ctx.meta key for a failure line printed by the command itself


@dataclass
class Entry:
    """One journal line."""

    time: str
    step: str
    command: str  # masked
    exit_code: int
    kind: str = "command"  # command | manual | reset
    params: dict[str, Any] = field(default_factory=dict)  # masked option values
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def project_dir(project: str | os.PathLike[str] | None = None) -> Path:
    """The migrated project's folder: ``project``, else $MIGRATE_PROJECT, else the cwd."""
    return Path(project or os.environ.get("MIGRATE_PROJECT") or os.getcwd())


def journal_path(project: str | os.PathLike[str] | None = None) -> Path:
    return project_dir(project) / JOURNAL_DIR / JOURNAL_FILE


def start(project: str | os.PathLike[str] | None = None) -> Path:
    """Create the journal folder (recording starts); returns the journal's path."""
    path = journal_path(project)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def append(entry: Entry, project: str | os.PathLike[str] | None = None) -> Path:
    """Append one entry (one line, flushed: a killed run keeps every earlier line)."""
    path = start(project)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry.__dict__, default=str) + "\n")  # summary order kept
    return path


def read(project: str | os.PathLike[str] | None = None) -> list[Entry]:
    """Every entry, oldest first; a torn last line (a killed write) is skipped."""
    path = journal_path(project)
    if not path.is_file():
        return []
    entries: list[Entry] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(Entry(**json.loads(line)))
        except (ValueError, TypeError):
            continue
    return entries


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def command_step(group: Any, argv: list[str]) -> tuple[str, str, Any] | None:
    """(command name, step, click command) for a runbook command line, else None."""
    import click

    cmd: Any = group
    names: list[str] = []
    for arg in argv:
        if not isinstance(cmd, click.Group):
            break
        if arg.startswith("-") and cmd is group:  # the root's flags (--debug) take no value
            continue
        sub = cmd.commands.get(arg)
        if sub is None:
            break
        names.append(arg)
        cmd = sub
    name = " ".join(names)
    step = COMMAND_STEPS.get(name)
    if step is None:
        return None
    return name, step, cmd


def record_command(group: Any, argv: list[str], exit_code: int | None, error: str | None,
                   meta: dict[str, Any]) -> Path | None:
    """The CLI hook: journal a finished runbook command; None when there is nothing to record.

    Help and dry runs change nothing, so they are not recorded, except a switch-config dry run:
    it probes every store for real, which is the preflight step.
    """
    if exit_code is None or not argv or any(a in ("--help", "-h") for a in argv):
        return None
    if not journal_path().parent.is_dir():
        return None  # no runbook started here (`migrate steps` starts one)
    found = command_step(group, argv)
    if found is None:
        return None
    name, step, cmd = found
    if "--dry-run" in argv:
        if name != "switch-config":
            return None
        step = "preflight"
    if name == "switch-config" and "--rollback" in argv:
        if exit_code:
            return None  # nothing was restored: the step's state stands
        meta = {**meta, SUMMARY_KEY: {"rolled back": 1}}
    params: dict[str, Any] = {}
    try:  # parse the line again (no callbacks run) to remember the user's own arguments
        sub_ctx = cmd.make_context(name, list(argv[len(name.split()):]), resilient_parsing=True)
        params = redact.params(sub_ctx.params)
    except Exception:  # an unparseable line still gets its journal entry
        params = {}
    error = meta.get(ERROR_KEY) or error
    if exit_code and not error:
        error = f"exited with code {exit_code}"
    entry = Entry(time=now(), step=step, command="migrate " + " ".join(redact.argv(argv)),
                  exit_code=int(exit_code), params=params,
                  summary=dict(meta.get(SUMMARY_KEY) or {}), error=error)
    if "rolled back" in entry.summary:
        entry.kind = "reset"
    return append(entry)
