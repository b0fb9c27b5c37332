"""``migrate db upgrade|downgrade|status``: the app's own alembic environment, run on the
database the before-app left.

The environment is the user's: a script folder (``--script-location``) or an ``alembic.ini``
(``--alembic-ini``), else ``script_location`` / ``alembic_ini`` under ``[tool.migrate]`` in the
project's pyproject.toml. The database URL reaches its env.py as alembic's templates read it:
``sqlalchemy.url`` (and ``config.attributes["url"]``); ``--prefix P`` is ``-x prefix=P``.

A database the before-app made (``create_all``: tables, no ``alembic_version``) is stamped at the
baseline revision (``--baseline``, or ``baseline`` in ``[tool.migrate]``), the one that describes
the schema it has, then upgraded. A history written with ``migrate.runbook.ops`` is an
expand/contract pair, so before- and after-instances can share the database while they roll:
upgrade to the expand first, to the head (contract) once every instance is rolled.

The functions are alembic-style commands over a ``DbConfig``; they return dataclasses, never print.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from migrate import redact
from migrate.errors import ConnectionFailure, UsageError
from migrate.runbook.dbplan import KeyMoves, find_moves


@dataclass
class DbConfig:
    """Which database, and which alembic environment migrates it."""

    database_url: str | None
    script_location: str | os.PathLike[str] | None = None  # a script folder ("pkg:dir" too)
    alembic_ini: str | os.PathLike[str] | None = None  # an alembic.ini (location, options)
    baseline: str | None = None  # the revision a database without alembic_version is stamped at
    x: list[str] = field(default_factory=list)  # ``-x KEY=VALUE``, as alembic passes them
    prefix: str | None = None  # the export prefix: ``-x prefix=...`` for migrate's ops
    # Put first on sys.path so env.py can import the app, as alembic.ini's prepend_sys_path
    # (default: the current folder; an alembic.ini keeps its own setting).
    prepend_sys_path: str | os.PathLike[str] | None = None

    @classmethod
    def from_project(cls, database_url: str | None, *, script_location: str | None = None,
                     alembic_ini: str | None = None, baseline: str | None = None,
                     x: list[str] | tuple[str, ...] = (), prefix: str | None = None,
                     project: str | Path | None = None) -> DbConfig:
        """The options given, the environment from ``[tool.migrate]`` when none is.

        ``project`` holds the pyproject.toml (default: the current folder). The table's
        ``baseline`` comes with its environment (it is not applied to one given here), and its
        folder is where env.py's imports start.
        """
        from migrate.config import load

        root = None
        if script_location and alembic_ini:
            raise UsageError("give --script-location or --alembic-ini, not both")
        if not (script_location or alembic_ini):
            tool = load(project)
            found = {k: tool.path(k) for k in ("script_location", "alembic_ini")}
            if found["script_location"] and found["alembic_ini"]:
                raise UsageError(f"the tool.migrate table of {tool.source} sets both "
                                 "script_location and alembic_ini: keep one")
            if not any(found.values()):
                # No brackets in the line: the CLI prints it as rich markup.
                raise UsageError("no alembic environment: pass --script-location DIR or "
                                 "--alembic-ini FILE, or set script_location = \"DIR\" in the "
                                 f"tool.migrate table of {tool.source or 'pyproject.toml'}")
            script_location = str(found["script_location"] or "") or None
            alembic_ini = str(found["alembic_ini"] or "") or None
            if baseline is None and tool.get("baseline") is not None:
                baseline = str(tool.get("baseline"))
            root = str(tool.root)
        return cls(database_url, script_location, alembic_ini, baseline, list(x), prefix, root)


@dataclass
class DbUpgradeResult:
    """What an upgrade or downgrade did (or, dry, would do)."""

    database: str  # the URL with its password hidden
    before: str | None  # the revision before (None: no alembic_version)
    after: str | None  # the revision now (a dry run: still ``before``)
    stamped: bool  # tables without alembic_version were stamped at the baseline (or would be)
    baseline: str | None = None  # the revision stamped at (when ``stamped``)
    dry_run: bool = False
    seconds: float = 0.0
    target: str | None = None  # the revision asked for, resolved ("head" -> its id)
    state: str = ""  # what the database's revision means for the apps on it
    revisions: list[str] = field(default_factory=list)  # run (or to run), in order
    rows: dict[str, int] = field(default_factory=dict)  # per path->key move: rows with one
    script_location: str = ""


@dataclass
class DbStatus:
    """Where the database is in its alembic history."""

    database: str
    script_location: str
    current: str | None  # None: no alembic_version
    head: str | None
    pending: list[str]  # what `db upgrade` would run, in order
    unversioned: bool  # tables but no alembic_version (made by create_all): needs a baseline
    baseline: str | None
    tables: int
    state: str
    rows: dict[str, int] = field(default_factory=dict)


# --- the commands --------------------------------------------------------------------------------


def upgrade(config: DbConfig | str | None, revision: str = "head", *,
            prefix: str | None = None, dry_run: bool = False) -> DbUpgradeResult:
    """Stamp the baseline where tables exist without alembic, then upgrade to ``revision``.

    ``config`` may be a bare URL: the environment then comes from ``[tool.migrate]``.
    ``prefix`` (like ``config.prefix``) is the export's, the same for expand and contract.
    """
    started = time.monotonic()
    with _Env.open(config, prefix) as env:
        result = _upgrade(env, revision, dry_run)
    result.seconds = time.monotonic() - started
    return result


def _upgrade(env: _Env, revision: str, dry_run: bool) -> DbUpgradeResult:
    from alembic import command

    db = env.inspect()
    start = env.start(db)
    target = env.resolve(revision, start)
    if start != target and target in env.ancestors(start):
        raise UsageError(f"{env.shown} is at {start}, past {target}: nothing to upgrade (to "
                         f"go back, use `migrate db downgrade --revision {target}`)")
    if start is not None and start not in env.ancestors(target):
        raise UsageError(f"{env.shown} is at {start}, which is not below {target}: pick a "
                         "--revision on its branch")
    result = DbUpgradeResult(env.shown, db.current, db.current, db.unversioned,
                             env.baseline if db.unversioned else None, dry_run=dry_run,
                             target=target, state=env.state(db.current, db),
                             revisions=env.between(target, start), rows=db.rows,
                             script_location=env.location)
    if not dry_run:
        with env.failing("upgrade"):
            if db.unversioned:
                command.stamp(env.alembic, env.baseline)
            if target is not None:
                command.upgrade(env.alembic, target)
        _done(env, result)
    return result


def downgrade(config: DbConfig | str | None, revision: str, *, prefix: str | None = None,
              dry_run: bool = False) -> DbUpgradeResult:
    """Undo down to ``revision`` (an id, ``base``, or ``-N`` steps); migrate's ops bring the
    paths back from the keys with the same prefix as the upgrade."""
    started = time.monotonic()
    with _Env.open(config, prefix) as env:
        result = _downgrade(env, revision, dry_run)
    result.seconds = time.monotonic() - started
    return result


def _downgrade(env: _Env, revision: str, dry_run: bool) -> DbUpgradeResult:
    from alembic import command

    db = env.inspect()
    if db.current is None:
        raise UsageError(f"{env.shown} has no alembic revision: nothing to downgrade")
    target = env.resolve(revision, db.current)
    if target not in env.ancestors(db.current):
        raise UsageError(f"{env.shown} is at {db.current}, not above {target}: to go there, "
                         f"use `migrate db upgrade --revision {target}`")
    result = DbUpgradeResult(env.shown, db.current, db.current, False, dry_run=dry_run,
                             target=target, state=env.state(db.current, db),
                             revisions=env.between(db.current, target)[::-1], rows=db.rows,
                             script_location=env.location)
    if not dry_run:
        with env.failing("downgrade", hint="; pass the --prefix used for upgrade"):
            command.downgrade(env.alembic, target or "base")
        _done(env, result)
    return result


def status(config: DbConfig | str | None, *, prefix: str | None = None) -> DbStatus:
    """The database's revision, the head, what an upgrade would run; nothing is changed."""
    with _Env.open(config, prefix) as env:
        db = env.inspect()
        head = env.resolve("head", None)
        start = db.current if not db.unversioned else env.baseline
        pending = (env.between(head, start) if start is None or start in env.ancestors(head)
                   else [])
        return DbStatus(env.shown, env.location, db.current, head, pending, db.unversioned,
                        env.baseline, db.tables, env.state(db.current, db), db.rows)


def expand_revision(project: str | Path | None = None) -> str | None:
    """The revision a rolling cut-over upgrades to first: the last expand of a path -> key move
    in the project's alembic history (``[tool.migrate]``); None when there is none to find."""
    from migrate.errors import MigrateError

    try:
        # No database is opened: the URL only completes the config.
        config = DbConfig.from_project("sqlite://", project=project)
        with _Env.open(config, None) as env:
            expands = [m.expand for m in env.moves.moves if m.expand]
    except MigrateError:
        return None
    return expands[-1] if expands else None


def _done(env: _Env, result: DbUpgradeResult) -> None:
    db = env.inspect()
    result.after, result.rows = db.current, db.rows
    result.state = env.state(db.current, db)


# --- the environment -----------------------------------------------------------------------------


@dataclass
class _Database:
    tables: int  # tables other than alembic_version
    current: str | None
    unversioned: bool
    rows: dict[str, int]


class _Env:
    """A DbConfig made concrete: alembic's Config and ScriptDirectory, the URL, the moves."""

    def __init__(self, config: DbConfig) -> None:
        from alembic.config import Config
        from alembic.script import ScriptDirectory
        from alembic.util import CommandError

        ini = _ini_path(config.alembic_ini) if config.alembic_ini else None
        self.alembic = Config(str(ini) if ini else None, cmd_opts=argparse.Namespace(
            x=_x_args(config.x, config.prefix)))
        url = config.database_url or (
            self.alembic.get_main_option("sqlalchemy.url") if ini else None)
        if not url or url.startswith("driver://"):
            raise UsageError("no database given: pass --database-url or set DATABASE_URL")
        self.url, self.shown = url, redact.url(url)
        if not (config.script_location or ini):
            raise UsageError("no alembic environment: pass --script-location DIR or "
                             "--alembic-ini FILE")
        location = str(config.script_location or _ini_location(self.alembic, ini))
        self.alembic.set_main_option("script_location", location.replace("%", "%%"))
        if ini is None:  # one path (os.pathsep splits, not spaces), as alembic >= 1.16 wants
            self.alembic.set_main_option("path_separator", "os")
            self.alembic.set_main_option(
                "prepend_sys_path",
                str(Path(config.prepend_sys_path or ".").resolve()).replace("%", "%%"))
        self.alembic.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
        self.alembic.attributes["url"] = url
        self.location = location
        try:
            self.script = ScriptDirectory.from_config(self.alembic)
            self.moves: KeyMoves = find_moves(self.script)
            bases = self.script.get_bases()
        except CommandError as exc:
            raise UsageError(f"no alembic environment at {location}: {_line(exc)}") from None
        if not (Path(self.script.dir) / "env.py").is_file():
            raise UsageError(f"{location} has no env.py: not an alembic environment (alembic "
                             "init makes one)")
        if not bases:
            raise UsageError(f"{location} has no revisions")
        self.baseline = None
        if config.baseline:
            try:
                self.baseline = self.resolve(config.baseline, None)
            except UsageError as exc:
                raise UsageError(f"baseline: {exc}") from None

    @classmethod
    @contextmanager
    def open(cls, config: DbConfig | str | None, prefix: str | None) -> Iterator[_Env]:
        """The environment, for one command; sys.path as it was afterwards (alembic prepends
        the app's folder each time it reads the config)."""
        if not isinstance(config, DbConfig):
            config = DbConfig.from_project(config)
        saved = list(sys.path)
        try:
            yield cls(replace(config, prefix=prefix) if prefix else config)
        finally:
            sys.path[:] = saved

    # -- revisions

    def resolve(self, revision: str, current: str | None) -> str | None:
        """``revision`` as an id: ``head``, ``base`` (None), a (partial) id, ``+N``/``-N``
        relative to ``current``; anything else is a UsageError."""
        from alembic.util import CommandError

        if revision == "base":
            return None
        relative = re.fullmatch(r"([+-])(\d+)", revision)
        if relative:
            return self._step(current, int(relative.group(2)) * (1 if relative.group(1) == "+"
                                                                 else -1), revision)
        try:
            found = self.script.get_revision(revision)
        except CommandError as exc:
            raise UsageError(f"unknown revision {revision!r} in {self.location} ({_line(exc)}); "
                             f"its head is {self._head_text()}") from None
        if found is None:
            raise UsageError(f"unknown revision {revision!r} in {self.location}")
        return str(found.revision)

    def _step(self, current: str | None, steps: int, asked: str) -> str | None:
        if steps < 0:
            chain = self.ancestors(current)  # current, its parent, ... (base last: None)
        else:
            chain = [current, *self.between(self.resolve("head", None), current)]
        if abs(steps) >= len(chain):
            raise UsageError(f"{asked}: {self.shown} is only {len(chain) - 1} revision(s) "
                             f"from the {'base' if steps < 0 else 'head'}")
        return chain[abs(steps)]

    def ancestors(self, revision: str | None) -> list[str | None]:
        """``revision`` and every revision below it, down to the base (None) last."""
        if revision is None:
            return [None]
        return [s.revision for s in self.script.iterate_revisions(revision, "base")] + [None]

    def between(self, upper: str | None, lower: str | None) -> list[str]:
        """The revisions above ``lower`` up to ``upper``, in upgrade order."""
        if upper is None or upper == lower:
            return []
        return [s.revision for s in self.script.iterate_revisions(upper, lower or "base")
                if s.revision != lower][::-1]

    def start(self, db: _Database) -> str | None:
        """Where an upgrade starts: the current revision, or the baseline it is stamped at."""
        if not db.unversioned:
            return db.current
        if self.baseline is None:
            raise UsageError(f"{self.shown} has {db.tables} tables but no alembic_version (the "
                             "before-app made them): pass --baseline REV, the revision that "
                             "describes that schema, or set baseline in the tool.migrate table")
        return self.baseline

    def _head_text(self) -> str:
        heads = self.script.get_heads()
        return ", ".join(heads) if heads else "none"

    def state(self, revision: str | None, db: _Database) -> str:
        """What being at ``revision`` means for the apps on the database."""
        if revision is None:
            return ("tables made without alembic (create_all)" if db.unversioned
                    else "no tables yet")
        return self.moves.describe(set(self.ancestors(revision))) or (
            self.script.get_revision(revision).doc.strip())

    # -- the database

    def inspect(self) -> _Database:
        """Tables, revision and per-move row counts; one clear line when unreachable."""
        from alembic.runtime.migration import MigrationContext
        from sqlalchemy import create_engine, inspect
        from sqlalchemy.exc import ArgumentError, OperationalError, ProgrammingError
        from sqlalchemy.pool import NullPool

        try:
            args = {"timeout": 15} if self.url.startswith("sqlite") else {}
            engine = create_engine(self.url, poolclass=NullPool, connect_args=args)
        except (ArgumentError, ImportError) as exc:
            raise UsageError(f"--database-url {self.shown!r} is not a usable database URL "
                             f"({redact.text(_line(exc))}): use e.g. sqlite:///app.db or "
                             "postgresql+psycopg://HOST/DB") from None
        try:
            with engine.connect() as conn:
                tables = set(inspect(conn).get_table_names())
                heads = MigrationContext.configure(conn).get_current_heads()
                rows = self.moves.count(conn, tables)
        except OperationalError as exc:
            raise ConnectionFailure(f"cannot open the database {self.shown}: "
                                    f"{_reason(exc)}; check --database-url") from None
        except ProgrammingError as exc:
            raise ConnectionFailure(f"cannot read the database {self.shown}: "
                                    f"{_reason(exc)}") from None
        finally:
            engine.dispose()
        if len(heads) > 1:
            raise UsageError(f"{self.shown} is at several revisions ({', '.join(heads)}): "
                             "merge the branches with alembic first")
        current = heads[0] if heads else None
        if current is not None:
            self._known(current)
        others = tables - {"alembic_version"}
        return _Database(len(others), current, current is None and bool(others)
                         and "alembic_version" not in tables, rows)

    def _known(self, revision: str) -> None:
        from alembic.util import CommandError

        try:
            self.script.get_revision(revision)
        except CommandError:
            raise UsageError(f"{self.shown} is at revision {revision}, which {self.location} "
                             "does not have: is that the app's alembic environment?") from None

    @contextmanager
    def failing(self, verb: str, hint: str = "") -> Iterator[None]:
        """A failure inside the user's migrations as one line (the cause kept for --debug)."""
        from alembic.util import CommandError
        from sqlalchemy.exc import SQLAlchemyError

        try:
            yield
        except (CommandError, ValueError, SQLAlchemyError) as exc:
            reason = _reason(exc) if isinstance(exc, SQLAlchemyError) else _line(exc)
            hint = hint if isinstance(exc, ValueError) else ""
            raise UsageError(f"cannot {verb} {self.shown}: {redact.text(reason)}{hint}") from exc


def _x_args(x: list[str], prefix: str | None) -> list[str]:
    """``-x`` as alembic takes them, with ``prefix=P`` added (a different one is refused)."""
    args = list(x)
    if prefix:
        given = [a.partition("=")[2] for a in args if a.partition("=")[0] == "prefix"]
        if any(g != prefix for g in given):
            raise UsageError(f"--prefix {prefix!r} and -x prefix={given[0]} disagree: give one")
        if not given:
            args.append(f"prefix={prefix}")
    return args


def _ini_path(raw: str | os.PathLike[str]) -> Path:
    path = Path(raw)
    if not path.is_file():
        raise UsageError(f"--alembic-ini {raw}: no such file (alembic init makes one)")
    return path.resolve()


def _ini_location(config: Any, ini: Path) -> str:
    """The ini's script_location; a relative one is read from the ini's folder when it is not
    under the current one (alembic reads it from the current folder)."""
    location = config.get_main_option("script_location")
    if not location:
        raise UsageError(f"{ini} has no script_location in its alembic section")
    if ":" not in location and not Path(location).is_absolute() and not Path(location).exists():
        beside = ini.parent / location
        if beside.exists():
            return str(beside)
    return location


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _reason(exc: Any) -> str:
    orig = getattr(exc, "orig", None)
    return _line(orig) if orig is not None else _line(exc)
