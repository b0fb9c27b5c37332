"""The runbook: the ordered migration steps, each with its state from the journal.

A step is pending until its command succeeds (or it is marked done by hand); a failed run shows
its error line and the exact command to retry. The next command is filled in with the user's own
earlier arguments where the journal knows them (secrets masked).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from migrate.errors import UsageError
from migrate.runbook import journal
from migrate.runbook.db import expand_revision


@dataclass(frozen=True)
class StepDef:
    """One step of the runbook and why it exists."""

    name: str
    title: str
    why: str
    manual: bool = False


STEPS: tuple[StepDef, ...] = (
    StepDef("scan", "Audit the code for state traps",
            "Lists every place the app keeps state in one process or on one disk, so nothing "
            "is forgotten before a second instance starts."),
    StepDef("preflight", "Probe the shared stores",
            "A real round trip to Redis, S3 and the database (switch-config --dry-run): a wrong "
            "URL or a missing credential is found now, not mid-migration."),
    StepDef("bridge-on", "Turn the bridge dual-write on (manual)",
            "Adds migrate.sessions.bridge to the running before-app: sessions changed during "
            "the window are written to Redis too, so no user is logged out by the export's timing.",
            manual=True),
    StepDef("export-sessions", "Export live sessions to Redis",
            "Logged-in users and their carts move to the shared Redis; idempotent, so a re-run "
            "only adds what is new."),
    StepDef("export-files", "Export upload files to object storage",
            "Files on one host's disk move to S3 so every instance serves them; resumable, "
            "the source is never modified."),
    StepDef("db-expand", "Expand the database schema (db upgrade --revision 0002)",
            "Adds object-key columns beside the local paths, filled with the keys export-files "
            "gave, and triggers that copy the before-app's writes across: before- and "
            "after-instances can share the database while they are rolled."),
    StepDef("switch-config", "Switch the configuration",
            "Rewrites .env for the stateless app after probing every store; a timestamped "
            "backup is kept and `--rollback` restores it."),
    StepDef("roll-instances", "Roll the instances one at a time (manual)",
            "Replace each before-instance with an after-instance, one at a time, so users are "
            "always served: stop it (in-flight requests finish), run export-files again on its "
            "upload folder (files uploaded since the export), start the after-app in its place. "
            "The bridge keeps sessions in step; the expand triggers keep the database in step.",
            manual=True),
    StepDef("verify", "Verify sessions and files",
            "Proves nothing was lost: every exported session is in Redis with its TTL, every "
            "file is in S3 with the same bytes."),
    StepDef("db-contract", "Contract the database schema (db upgrade)",
            "Once every instance runs the after-app and verify passed, drops the local-path "
            "columns and their triggers; the before-app cannot run on the database after this. "
            "Undo with `migrate db downgrade --revision 0002`."),
    StepDef("bridge-off", "Turn the bridge off (manual)",
            "Once every instance is stateless the dual-write is dead code: remove it.",
            manual=True),
)
VERIFY_COMMANDS = ("verify sessions", "verify files")
# The journal files every `db upgrade` run under one step; its --revision says which.
DB_UPGRADE = "db-upgrade"


def entry_steps(entry: journal.Entry) -> tuple[str, ...]:
    """The runbook steps a journal entry counts for.

    A `db upgrade` that left the schema expanded is the expand; one that contracted also did
    the expand when it succeeded (an offline migration is one command). A failed run to the
    head is the contract; a failed run to a named revision, the expand.
    """
    if entry.step != DB_UPGRADE:
        return (entry.step,)
    schema = entry.summary.get("schema")
    to_head = str(entry.params.get("revision", "head")) == "head"
    if entry.exit_code != 0:
        return ("db-contract",) if to_head else ("db-expand",)
    if schema == "expanded" or (schema is None and not to_head):
        return ("db-expand",)
    return ("db-expand", "db-contract")


@dataclass
class StepState:
    """One step as the runbook shows it."""

    number: int
    name: str
    title: str
    why: str
    manual: bool
    state: str = "pending"  # pending | done | failed | skipped
    did: str = ""  # what the last successful run did ("sessions written 1,204")
    error: str | None = None
    command: str = ""  # the command that runs (or retries) this step
    last_run: str | None = None


@dataclass
class Runbook:
    """Every step with its state, and the one command to run next."""

    project: str
    journal: str
    steps: list[StepState] = field(default_factory=list)
    next_step: str | None = None
    next_command: str | None = None

    @property
    def done(self) -> int:
        return sum(s.state == "done" for s in self.steps)


def _summary_text(summary: dict[str, Any]) -> str:
    """{"written": 1204, "skipped": 3} -> "written 1,204, skipped 3"."""
    parts = []
    for key, value in summary.items():
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
        parts.append(f"{key} {shown}")
    return ", ".join(parts)


def _known(entries: list[journal.Entry]) -> dict[str, Any]:
    """The user's own arguments, latest first wins: URLs, bucket, folders, env file."""
    known: dict[str, Any] = {}
    for entry in entries:
        p = entry.params
        name = entry.command.removeprefix("migrate ")
        for key in ("redis_url", "endpoint_url", "database_url", "bucket"):
            if p.get(key):
                known[key] = p[key]
        if p.get("sources") and name.startswith("export-sessions"):
            known["session_sources"] = p["sources"]
        if p.get("sources") and name.startswith("export-files"):
            known["file_sources"] = p["sources"]
        if p.get("target") and str(p["target"]).startswith("s3://"):
            known["s3_target"] = p["target"]
        if name.startswith("switch-config"):
            if p.get("env_file"):
                known["env_file"] = p["env_file"]
            if p.get("s3_url"):
                known["s3_url"] = p["s3_url"]
        if name.startswith("scan") and p.get("path"):
            known["app_dir"] = p["path"]
        if name.startswith("db upgrade") and "prefix" in p:
            known["db_prefix"] = p["prefix"]
    if "s3_target" not in known and known.get("bucket"):
        known["s3_target"] = f"s3://{known['bucket']}"
    if "bucket" not in known and known.get("s3_target"):
        known["bucket"] = str(known["s3_target"])[5:].split("/")[0]
    if "db_prefix" not in known and known.get("s3_target"):
        # The keys in the database must name the objects export-files wrote: same prefix.
        known["db_prefix"] = str(known["s3_target"])[5:].partition("/")[2].strip("/")
    return known


def _q(value: Any) -> str:
    import shlex

    return shlex.quote(str(value))


def suggested(step: str, known: dict[str, Any], verify_left: tuple[str, ...] = VERIFY_COMMANDS
              ) -> str:
    """The command for ``step``, filled in from ``known`` (placeholders in capitals)."""
    redis = _q(known.get("redis_url", "redis://HOST:6379/0"))
    env = _q(known.get("env_file", ".env"))
    bucket = f" --bucket {_q(known['bucket'])}" if known.get("bucket") else ""
    db = f" --database-url {_q(known['database_url'])}" if known.get("database_url") else ""
    endpoint = (f" --endpoint-url {_q(known['endpoint_url'])}" if known.get("endpoint_url")
                else "")
    db_args = (db or " --database-url URL") + (
        f" --prefix {_q(known['db_prefix'])}" if known.get("db_prefix") else "")
    froms = " ".join(f"--from {_q(s)}" for s in known.get("session_sources",
                                                          ["http://HOST:PORT"]))
    files = " ".join(_q(s) for s in known.get("file_sources", ["UPLOAD_FOLDER"]))
    target = _q(known.get("s3_target", "s3://BUCKET"))
    if known.get("s3_url"):  # the form the user gave switch-config before
        s3 = f" --s3 {_q(known['s3_url'])}{bucket}"
    elif known.get("s3_target"):  # where export-files put the files, and its endpoint
        s3 = f" --s3 {target}{endpoint}"
    else:
        s3 = " --s3 s3://BUCKET --endpoint-url URL"
    switch = f"migrate switch-config {env} --to stateless --redis {redis}{s3}{db}"
    commands = {
        "scan": f"migrate scan {_q(known.get('app_dir', 'APP_DIR'))}",
        "preflight": switch + " --dry-run",
        "export-sessions": f"migrate export-sessions {froms} --redis {redis}",
        "export-files": f"migrate export-files {files} --to {target}{endpoint}",
        "db-expand": f"migrate db upgrade --revision {_q(expand_revision() or 'EXPAND')}"
                     + db_args,
        "db-contract": "migrate db upgrade" + db_args,
        "switch-config": switch,
        "verify sessions": f"migrate verify sessions {froms} --redis {redis}",
        "verify files": f"migrate verify files {files} --to {target}{endpoint}",
    }
    if step == "verify":
        return " && ".join(commands[c] for c in verify_left)
    if step in commands:
        return commands[step]
    return f"migrate steps done {step}"


def build(project: str | os.PathLike[str] | None = None) -> Runbook:
    """The runbook for ``project`` (default: $MIGRATE_PROJECT or the cwd) from its journal."""
    entries = journal.read(project)
    known = _known([e for e in entries if e.kind == "command"])
    book = Runbook(str(journal.project_dir(project)), str(journal.journal_path(project)))
    for number, d in enumerate(STEPS, 1):
        state = StepState(number, d.name, d.title, d.why, d.manual)
        mine = [e for e in entries if d.name in entry_steps(e)]
        if mine:
            last = mine[-1]
            state.last_run = last.time
            if last.kind == "reset":
                pass
            elif last.exit_code == 0 or (d.name == "scan" and last.exit_code == 1
                                         and last.summary):
                # A scan that finds traps did its job: its findings are the to-do list.
                state.state = "done"
                state.did = _summary_text(last.summary) or ("marked done" if last.kind ==
                                                              "manual" else "ok")
            else:
                state.state, state.error = "failed", last.error
                state.command = last.command  # retry exactly what failed
        verify_left = VERIFY_COMMANDS
        if d.name == "verify" and state.state != "failed":
            latest: dict[str, journal.Entry] = {}
            since_reset = mine[max((i for i, e in enumerate(mine) if e.kind == "reset"),
                                   default=-1) + 1:]
            for e in since_reset:
                name = e.command.removeprefix("migrate ")
                for c in VERIFY_COMMANDS:
                    if name.startswith(c):
                        latest[c] = e
            verify_left = tuple(c for c in VERIFY_COMMANDS
                                if c not in latest or latest[c].exit_code != 0)
            manual = any(e.kind == "manual" for e in since_reset)
            if verify_left and not manual:
                state.state = "pending"
                state.did = ", ".join(f"{c}: {_summary_text(latest[c].summary) or 'ok'}"
                                      for c in latest if latest[c].exit_code == 0)
        if not state.command:
            state.command = suggested(d.name, known, verify_left)
        book.steps.append(state)
    # An earlier step left pending while later ones ran was skipped: the user moved on.
    last_run = max((s.number for s in book.steps if s.state in ("done", "failed")), default=0)
    for state in book.steps:
        if state.state == "pending" and state.number < last_run:
            state.state = "skipped"
    for state in book.steps:
        if state.state in ("pending", "failed"):
            book.next_step, book.next_command = state.name, state.command
            break
    return book


def mark(step: str, done: bool, project: str | os.PathLike[str] | None = None) -> journal.Entry:
    """Mark a step done by hand (``migrate steps done``) or reset it to pending."""
    names = [s.name for s in STEPS]
    if step not in names:
        raise UsageError(f"unknown step {step!r}: one of {', '.join(names)}")
    entry = journal.Entry(time=journal.now(), step=step, exit_code=0,
                          command=f"migrate steps {'done' if done else 'reset'} {step}",
                          kind="manual" if done else "reset")
    journal.append(entry, project)
    return entry
