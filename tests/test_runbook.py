"""migrate steps / status: the runbook's states come from a journal the CLI hook writes."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from migrate import redact
from migrate.cli import cli
from migrate.harness.stores import free_port
from migrate.runbook import journal
from migrate.runbook import steps as runbook

STRONG = "b7f1c0d2e3a4958677aa1b2c3d4e5f60"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("MIGRATE_PROJECT", str(tmp_path))
    return tmp_path


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def states(project: Path) -> dict[str, str]:
    return {s.name: s.state for s in runbook.build(project).steps}


def test_nothing_recorded_until_the_runbook_is_started(project: Path):
    result = run("scan", str(ROOT / "sample_stateless_app"), "--fail-on", "never")
    assert result.exit_code == 0, result.output
    assert not (project / ".migrate").exists()
    book = runbook.build(project)
    assert all(s.state == "pending" for s in book.steps)
    assert book.next_command == "migrate scan APP_DIR"


def test_hook_records_a_scan_that_finds_traps_as_done(project: Path):
    assert run("steps").exit_code == 0
    assert (project / ".migrate").is_dir()
    app = str(ROOT / "sample_stateful_app")
    failed = run("scan", app)  # the before-app has error-level traps: exit 1
    assert failed.exit_code == 1
    [entry] = journal.read(project)
    assert (entry.step, entry.exit_code, entry.kind) == ("scan", 1, "command")
    assert entry.command == f"migrate scan {app}"
    book = runbook.build(project)
    scan = book.steps[0]
    # Traps found is the audit done: the findings are the migration's to-do list.
    assert scan.state == "done" and "errors" in scan.did and "files" in scan.did
    assert book.next_step == "preflight"

    status = run("status")
    assert "errors" in status.output and "retry: migrate scan" not in status.output

    assert run("scan", app, "--fail-on", "never").exit_code == 0
    book = runbook.build(project)
    assert book.steps[0].state == "done"
    assert book.next_step == "preflight"
    assert book.next_command.startswith("migrate switch-config .env --to stateless")
    assert book.next_command.endswith("--dry-run")
    # --help and non-runbook commands are not recorded.
    run("scan", "--help")
    run("steps")
    assert len(journal.read(project)) == 2


def test_switch_config_runs_drive_preflight_and_switch(project: Path, store_set, monkeypatch,
                                                       tmp_path: Path):
    s = store_set.stores
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s.s3_access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s.s3_secret_key)
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    env = tmp_path / ".env"
    db = tmp_path / "shop.db"
    db.touch()
    env.write_text(f"SECRET_KEY={STRONG}\nSESSION_TYPE=cachelib\nUPLOAD_FOLDER=/srv/up\n")
    run("steps")
    closed = free_port()
    bad = run("switch-config", str(env), "--to", "stateless",
              "--redis", f"redis://:pw-xyz-123@127.0.0.1:{closed}/0",
              "--s3", s.s3_endpoint_url, "--bucket", s.s3_bucket,
              "--database-url", f"sqlite:///{db}", "--dry-run")
    assert bad.exit_code == 2
    book = runbook.build(project)
    pre = book.steps[1]
    assert pre.state == "failed" and pre.error == (
        "probe failed: redis (ConnectionError); nothing was written")
    assert "error: redis at redis://:***@127.0.0.1" in bad.output
    assert book.next_command == pre.command and "pw-xyz-123" not in pre.command
    assert "pw-xyz-123" not in (project / ".migrate" / "journal.jsonl").read_text()

    args = ["switch-config", str(env), "--to", "stateless", "--redis", s.redis_url,
            "--s3", s.s3_endpoint_url, "--bucket", s.s3_bucket,
            "--database-url", f"sqlite:///{db}"]
    assert run(*args, "--dry-run").exit_code == 0
    book = runbook.build(project)
    assert book.steps[1].state == "done" and book.steps[1].did == (
        "keys changed 5, keys commented out 1, stores probed 3")
    assert book.next_step == "bridge-on"
    assert book.next_command == "migrate steps done bridge-on"
    switch = next(x for x in book.steps if x.name == "switch-config")
    # The user's own arguments, with the Redis password masked as the journal keeps it.
    shown = [shlex.quote(redact.url(a)) if a == s.redis_url else a for a in args]
    assert switch.command == "migrate " + " ".join(shown)
    assert ":***@" in switch.command or "@" not in s.redis_url
    assert run(*args).exit_code == 0
    assert states(project)["switch-config"] == "done"
    assert run("switch-config", str(env), "--rollback").exit_code == 0
    assert states(project)["switch-config"] == "pending"


def _write(project: Path, **fields) -> None:
    journal.append(journal.Entry(time=journal.now(), **fields), project)


def test_counts_next_commands_and_manual_steps(project: Path):
    journal.start(project)
    redis = "redis://:***@10.0.0.5:6379/0"
    _write(project, step="scan", command="migrate scan app", exit_code=0,
           params={"path": "app"})
    _write(project, step="preflight", exit_code=0,
           command=f"migrate switch-config prod.env --to stateless --redis {redis} --dry-run",
           params={"env_file": "prod.env", "redis_url": redis, "s3_url": "http://s3:9000",
                   "bucket": "shop", "dry_run": True})
    book = runbook.build(project)
    assert book.next_command == "migrate steps done bridge-on"
    assert run("steps", "done", "bridge-on").exit_code == 0
    book = runbook.build(project)
    assert book.next_command == (
        f"migrate export-sessions --from http://HOST:PORT --redis '{redis}'")
    _write(project, step="export-sessions", exit_code=0,
           command=f"migrate export-sessions --from http://a:8001 --redis {redis}",
           params={"sources": ["http://a:8001", "http://b:8002"], "redis_url": redis},
           summary={"sessions written": 1204, "failed": 0})
    _write(project, step="export-files", exit_code=1,
           command="migrate export-files /srv/up --to s3://shop --endpoint-url http://s3:9000",
           params={"sources": ["/srv/up"], "target": "s3://shop",
                   "endpoint_url": "http://s3:9000"},
           error="3 files could not be read")
    book = runbook.build(project)
    by = {s.name: s for s in book.steps}
    assert by["export-sessions"].did == "sessions written 1,204, failed 0"
    assert by["export-files"].state == "failed"
    assert by["export-files"].error == "3 files could not be read"
    assert book.next_command == (
        "migrate export-files /srv/up --to s3://shop --endpoint-url http://s3:9000")
    assert by["verify"].command == (
        f"migrate verify sessions --from http://a:8001 --from http://b:8002 --redis '{redis}'"
        " && migrate verify files /srv/up --to s3://shop --endpoint-url http://s3:9000")
    assert by["switch-config"].command == (
        f"migrate switch-config prod.env --to stateless --redis '{redis}' --s3 http://s3:9000"
        " --bucket shop")

    out = run("steps").output
    assert "Export live sessions to Redis" in out and "sessions written 1,204" in out
    assert "failed: 3 files could not be read" in out
    assert "retry: migrate export-files /srv/up" in out
    data = json.loads(run("status", "--json").output)
    assert data["next_step"] == "export-files" and data["done"] == 4

    assert run("steps", "reset", "bridge-on").exit_code == 0
    assert states(project)["bridge-on"] == "skipped"  # later steps ran: not the next one
    bad = run("steps", "done", "no-such-step")
    assert bad.exit_code == 2 and "unknown step" in bad.output


def test_journal_write_failure_is_a_warning_not_a_failure(project: Path):
    (project / ".migrate" / "journal.jsonl").mkdir(parents=True)  # open() for append fails
    result = run("scan", str(ROOT / "sample_stateless_app"), "--fail-on", "never")
    assert result.exit_code == 0
    assert "warning: journal not written" in result.stderr


def test_usage_errors_and_failed_rollbacks_are_not_steps(project: Path, tmp_path: Path):
    journal.start(project)
    assert run("scan", "--no-such-option").exit_code == 2
    env = tmp_path / "x.env"
    env.write_text("A=1\n")
    assert run("switch-config", str(env), "--rollback").exit_code == 2
    assert journal.read(project) == []


def test_db_upgrade_is_an_expand_before_the_roll_and_a_contract_after_verify(
        project: Path, tmp_path: Path):
    from sample_stateful_app.db import init_db

    journal.start(project)
    _write(project, step="export-files", exit_code=0,
           command="migrate export-files /srv/up --to s3://shop/tenant-a",
           params={"sources": ["/srv/up"], "target": "s3://shop/tenant-a"})
    book = runbook.build(project)
    names = [s.name for s in book.steps]
    assert "db-upgrade" not in names
    assert (names.index("export-files") < names.index("db-expand") < names.index("switch-config")
            < names.index("roll-instances") < names.index("verify") < names.index("db-contract"))
    by = {s.name: s for s in book.steps}
    # The keys must name the objects export-files wrote: its prefix, in both commands.
    assert book.next_step == "db-expand" and book.next_command == (
        "migrate db upgrade --revision 0002 --database-url URL --prefix tenant-a")
    assert by["db-contract"].command == "migrate db upgrade --database-url URL --prefix tenant-a"

    url = f"sqlite:///{tmp_path / 'shop.db'}"
    init_db(url)
    assert run("db", "upgrade", "--revision", "0002", "--database-url", url, "--prefix",
               "tenant-a", "--dry-run").exit_code == 0  # a dry run is not the step
    assert states(project)["db-expand"] == "pending"
    expand = run("db", "upgrade", "--revision", "0002", "--database-url", url, "--prefix",
                 "tenant-a")
    assert expand.exit_code == 0, expand.output
    book = runbook.build(project)
    by = {s.name: s for s in book.steps}
    assert by["db-expand"].state == "done" and by["db-contract"].state == "pending"
    assert by["db-expand"].did == ("at revision 0002, schema expanded, avatar rows 0, "
                                   "file rows 0")
    assert book.next_step == "switch-config"
    assert by["db-contract"].command == (
        f"migrate db upgrade --database-url {url} --prefix tenant-a")

    # A contract with the wrong prefix fails and says so; the expand stays done.
    bad = run("db", "upgrade", "--database-url", url)
    assert bad.exit_code == 2
    by = {s.name: s for s in runbook.build(project).steps}
    assert by["db-expand"].state == "done" and by["db-contract"].state == "failed"
    assert "pass --prefix 'tenant-a'" in by["db-contract"].error
    assert by["db-contract"].command == f"migrate db upgrade --database-url {url}"  # the retry
    for step in ("switch-config", "roll-instances", "verify"):
        assert run("steps", "done", step).exit_code == 0
    assert runbook.build(project).next_step == "db-contract"
    assert run("db", "upgrade", "--database-url", url, "--prefix", "tenant-a").exit_code == 0
    book = runbook.build(project)
    assert states(project)["db-contract"] == "done" and book.next_step == "bridge-off"


def test_a_one_command_offline_upgrade_does_both_db_steps(project: Path):
    journal.start(project)
    _write(project, step="db-upgrade", exit_code=0, command="migrate db upgrade",
           params={"revision": "head"})
    assert states(project)["db-expand"] == states(project)["db-contract"] == "done"


def test_a_step_run_with_debug_is_journaled_as_typed(project: Path):
    assert run("steps").exit_code == 0
    app = str(ROOT / "sample_stateful_app")
    assert run("--debug", "scan", app).exit_code == 1
    [entry] = journal.read(project)
    assert (entry.step, entry.command) == ("scan", f"migrate --debug scan {app}")


def test_switch_config_is_suggested_with_the_bucket_and_endpoint_files_went_to(project: Path):
    journal.start(project)
    _write(project, step="export-files", exit_code=0,
           command="migrate export-files up --to s3://media/app --endpoint-url http://s3:9000",
           params={"sources": ["up"], "target": "s3://media/app",
                   "endpoint_url": "http://s3:9000"})
    switch = next(s for s in runbook.build(project).steps if s.name == "switch-config")
    assert switch.command == ("migrate switch-config .env --to stateless --redis "
                              "redis://HOST:6379/0 --s3 s3://media/app "
                              "--endpoint-url http://s3:9000")


def test_the_expand_revision_comes_from_the_apps_own_history(tmp_path: Path, monkeypatch):
    from migrate.runbook.db import expand_revision

    assert expand_revision(ROOT) == "0002"  # the shop's 0002 calls expand_path_to_key
    monkeypatch.chdir(tmp_path)  # no [tool.migrate] here: the runbook shows a placeholder
    assert expand_revision() is None
    journal.start(tmp_path)
    expand = next(s for s in runbook.build(tmp_path).steps if s.name == "db-expand")
    assert expand.command.startswith("migrate db upgrade --revision EXPAND ")
