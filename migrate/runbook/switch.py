"""Switch a dotenv file from the before configuration to the after one, after real probes.

The file is read with python-dotenv's own parser (envfile) and only the bindings that change are
rewritten: comments, blank lines, order, ``export``, quoting and line endings stay. What changes
is the Flask ecosystem's own settings plus the user's mapping (settings); a setting that no
longer applies is commented out with a ``# migrate: was ...`` line so a reader sees what moved.
Nothing is written unless every target (Redis, S3, the database) answered a real round trip
(probes). Never prints; secrets are masked in every string it returns.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from migrate.errors import ConnectionFailure, UsageError
from migrate.runbook import envfile, settings
from migrate.runbook.envfile import quote
from migrate.runbook.probes import Probe, probe_database, probe_redis, probe_s3
from migrate.runbook.settings import KeyMapping, Targets

__all__ = ["KeyMapping", "Probe", "ProbesFailed", "RollbackResult", "SwitchResult", "backups",
           "parse_s3", "quote", "rollback", "switch_config"]

TARGETS = ("stateless",)
# What the after-app must not sign sessions with: guessable values, short or repetitive keys.
DEV_SECRETS = {"dev", "development", "secret", "changeme", "change-me", "secret-key",
               "secret_key", "your-secret-key", "super-secret", "supersecret"}
MIN_SECRET_LENGTH = 32
SECRET_HELP = "generate one with: python -c 'import secrets; print(secrets.token_hex(32))'"
_BACKUP_STAMP = "%Y%m%dT%H%M%SZ"


@dataclass
class SwitchResult:
    """What switch_config changed (or would change, on a dry run)."""

    path: str
    target: str
    changed: list[str] = field(default_factory=list)  # keys set, changed or added
    removed: list[str] = field(default_factory=list)  # keys commented out
    backup: str | None = None
    diff: str = ""  # unified diff, secrets masked
    probes: list[Probe] = field(default_factory=list)
    dry_run: bool = False
    written: bool = False
    written_to: str | None = None  # the real file (a symlink's target)
    notes: list[str] = field(default_factory=list)  # what was left as is, and why

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.probes)


@dataclass
class RollbackResult:
    """Which backup was restored over the file."""

    path: str
    backup: str
    backups_left: int


class ProbesFailed(ConnectionFailure):
    """One or more targets failed their round trip; ``result`` holds every probe."""

    def __init__(self, result: SwitchResult) -> None:
        self.result = result
        failed = [p for p in result.probes if not p.ok]
        self.lines = [f"{p.target} at {p.url}: {p.detail}" for p in failed]
        # The message is the compact form the journal and `migrate status` show.
        super().__init__("probe failed: " + ", ".join(
            f"{p.target} ({p.detail.split(':', 1)[0]})" for p in failed)
            + "; nothing was written")


def check_secret_key(value: str | None, where: str) -> None:
    """Refuse a missing or development SECRET_KEY: every instance must sign with one key."""
    if not value:
        raise UsageError(f"SECRET_KEY is not set in {where}: {SECRET_HELP}")
    if value.strip().lower() in DEV_SECRETS:
        raise UsageError(f"SECRET_KEY in {where} is a development value: {SECRET_HELP}")
    if len(value) < MIN_SECRET_LENGTH or len(set(value)) < 8:
        raise UsageError(f"SECRET_KEY in {where} is too short or too repetitive to be random "
                         f"(at least {MIN_SECRET_LENGTH} characters): {SECRET_HELP}")


def parse_s3(s3_url: str | None) -> tuple[str | None, str | None]:
    """``--s3`` as (endpoint, bucket): an http(s) endpoint (optionally /BUCKET) or s3://BUCKET."""
    target = settings.s3_target(s3_url)
    return target.endpoint, target.bucket


# --- backups ---------------------------------------------------------------------------------


def _backup_path(path: Path) -> Path:
    stamp = datetime.now(UTC).strftime(_BACKUP_STAMP)
    candidate = path.with_name(f"{path.name}.bak.{stamp}")
    n = 1
    while candidate.exists():  # two switches in one second: keep both backups
        candidate = path.with_name(f"{path.name}.bak.{stamp}-{n}")
        n += 1
    return candidate


def backups(path: str | os.PathLike[str]) -> list[Path]:
    """The file's backups, oldest first (the stamp sorts by time)."""
    path = Path(path)

    def order(p: Path) -> tuple[str, int]:
        stamp, _, n = p.name[len(path.name) + 5:].partition("-")
        return stamp, int(n) if n.isdigit() else 0

    return sorted(path.parent.glob(f"{glob_escape(path.name)}.bak.*"), key=order)


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


# --- the switch ------------------------------------------------------------------------------


def switch_config(
    path: str | os.PathLike[str], target: str = "stateless", *, redis_url: str | None = None,
    s3_url: str | None = None, endpoint_url: str | None = None, bucket: str | None = None,
    database_url: str | None = None, mapping: KeyMapping | None = None,
    set_keys: Mapping[str, str] | None = None, drop_keys: Iterable[str] = (),
    set_origin: str = "set_keys", drop_origin: str = "drop_keys",
    secret_key_from_env: bool = False, dry_run: bool = False, probe: bool = True,
) -> SwitchResult:
    """Rewrite ``path`` for ``target`` after probing every store (ProbesFailed if one fails).

    ``mapping`` is the project's ``[tool.migrate.switch]``; ``set_keys`` / ``drop_keys`` go on
    top of it (values may hold ``{redis}``, ``{s3}``, ``{bucket}``, ``{prefix}``,
    ``{database_url}``); ``set_origin`` / ``drop_origin`` name them in errors.
    """
    if target not in TARGETS:
        raise UsageError(f"--to {target}: the only target is 'stateless'")
    env = envfile.read(path)
    values = env.values
    if secret_key_from_env:
        check_secret_key(os.environ.get("SECRET_KEY"), "the environment")
    else:
        check_secret_key(values.get("SECRET_KEY"), str(env.path))
    keys = (mapping or KeyMapping()).merged(set_keys, drop_keys, set_origin, drop_origin)
    given = settings.s3_target(s3_url, endpoint_url, bucket)
    given.redis, given.database_url = redis_url, database_url
    targets = settings.resolve(values, keys, given)
    plan = settings.plan(values, keys, targets)
    if secret_key_from_env and "SECRET_KEY" in values:
        # The environment wins over .env in the apps: a stale file value only misleads.
        plan.comment_out["SECRET_KEY"] = "now set in the environment"
    new = envfile.rewrite(env, plan.updates, plan.comment_out)
    notes = plan.notes + [f"line {n}: python-dotenv cannot read it; left as is"
                          for n in env.unreadable]
    result = SwitchResult(str(env.path), target, new.changed, new.removed,
                          diff=_masked_diff(env, new.text), dry_run=dry_run, notes=notes)
    if env.real != env.path.absolute():
        result.written_to = str(env.real)
    if new.changed or new.removed:
        envfile.check_writable(env.path, env.real)  # before any probe: a refusal costs nothing
    if probe:
        result.probes = _probe(targets)
        if not result.ok:
            raise ProbesFailed(result)
    if dry_run or not (new.changed or new.removed):
        return result
    result.backup, result.written = str(_write(env, new.text)), True
    return result


def _masked_diff(env: envfile.EnvFile, new_text: str) -> str:
    """The change as a unified diff, every secret masked on both sides."""
    before = env.raw.decode("utf-8")[len(env.bom):]
    return "".join(difflib.unified_diff(
        envfile.masked(before).splitlines(True), envfile.masked(new_text).splitlines(True),
        fromfile=f"{env.path} (before)", tofile=f"{env.path} (after)"))


def _write(env: envfile.EnvFile, new_text: str) -> Path:
    """Back the file up beside ``env.path``, then replace its target atomically; the backup."""
    if envfile.read(env.path).raw != env.raw:  # edited while the stores were probed
        raise UsageError(f"{env.path} changed while switch-config ran: run it again")
    backup = _backup_path(env.path)
    like = env.real.stat()
    envfile.atomic_write(backup, env.raw, like)  # the backup first: a crash loses nothing
    envfile.atomic_write(env.real, (env.bom + new_text).encode("utf-8"), like)
    return backup


def _probe(targets: Targets) -> list[Probe]:
    """A round trip to each store the switched file points at (those known)."""
    probes = []
    if targets.redis:
        probes.append(probe_redis(targets.redis))
    if targets.bucket:
        probes.append(probe_s3(targets.endpoint, targets.bucket, targets.prefix))
    if targets.database_url:
        probes.append(probe_database(targets.database_url))
    return probes


def rollback(path: str | os.PathLike[str]) -> RollbackResult:
    """Restore the most recent backup over ``path`` (byte for byte; through a symlink, with the
    file's owner and mode kept)."""
    path = Path(path)
    found = backups(path)
    if not found:
        raise UsageError(f"{path}: no backup ({path.name}.bak.*) beside it to roll back to")
    latest = found[-1]
    real = Path(os.path.realpath(path))
    if path.exists():
        envfile.check_writable(path, real)
    like = (real if real.exists() else latest).stat()
    envfile.atomic_write(real, latest.read_bytes(), like)
    # The used backup is removed so a second rollback goes one switch further back.
    latest.unlink()
    return RollbackResult(str(path), str(latest), len(found) - 1)
