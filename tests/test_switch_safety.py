"""switch-config writes safely (through a symlink, owner and mode kept, atomic, a read-only file
refused before any probe) and never shows a secret, in text or in --json."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from dotenv import dotenv_values

from migrate.cli import cli
from migrate.errors import UsageError
from migrate.harness.stores import free_port
from migrate.runbook.switch import backups, rollback, switch_config

STRONG = "b7f1c0d2e3a4958677aa1b2c3d4e5f60"
BEFORE = (f"SECRET_KEY={STRONG}\nSESSION_TYPE=filesystem\nSESSION_FILE_DIR=/srv/s\n"
          "MAIL_PASSWORD='hunter2-mail'\nOLD_DB=postgresql://shop:pg-pass-123@db/shop\n"
          "CACHE_TYPE=SimpleCache\n")


@pytest.fixture
def stores(store_set, monkeypatch):
    s = store_set.stores
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s.s3_access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s.s3_secret_key)
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    return s


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    path = tmp_path / "app.db"
    path.touch()
    return f"sqlite:///{path}"


def _args(env: Path, stores, db_url: str, *extra: str) -> list[str]:
    return ["switch-config", str(env), "--to", "stateless", "--redis", stores.redis_url,
            "--s3", f"s3://{stores.s3_bucket}/app", "--endpoint-url", stores.s3_endpoint_url,
            "--database-url", db_url, *extra]


def test_a_symlinked_env_is_written_through_with_owner_and_mode_kept(tmp_path: Path, stores,
                                                                     db_url):
    config = tmp_path / "etc"
    config.mkdir()
    real = config / "app.env"
    real.write_text(BEFORE)
    real.chmod(0o640)
    os.chown(real, 4321, 4322)  # we run as root here: the owner must survive the rewrite
    link = tmp_path / ".env"
    link.symlink_to(real)
    result = CliRunner().invoke(cli, _args(link, stores, db_url))
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == str(real)
    st = real.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 4321, 4322)
    assert dotenv_values(link)["SESSION_TYPE"] == "redis"
    assert f"-> {real}" in result.output
    assert sorted(p.name for p in config.iterdir()) == ["app.env"]  # no temp file left
    [backup] = backups(link)
    assert backup.parent == tmp_path and backup.read_text() == BEFORE
    assert stat.S_IMODE(backup.stat().st_mode) == 0o640 and backup.stat().st_uid == 4321
    # Rollback goes through the link too.
    assert rollback(link).backup == str(backup)
    assert link.is_symlink() and real.read_text() == BEFORE
    st = real.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 4321, 4322)


def test_a_read_only_file_is_refused_before_any_probe(tmp_path: Path, monkeypatch):
    env = tmp_path / ".env"
    env.write_text(BEFORE)
    env.chmod(0o444)
    monkeypatch.chdir(tmp_path)  # no pyproject.toml mapping here
    closed = free_port()  # a probe would fail: the refusal must come first
    result = CliRunner().invoke(cli, ["switch-config", str(env), "--redis",
                                      f"redis://127.0.0.1:{closed}/0", "--dry-run"])
    assert result.exit_code == 2
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert lines == [f"error: {env} is read-only (mode 0444): make it writable (chmod u+w "
                     f"{env}) or switch a writable copy"]
    assert env.read_text() == BEFORE and backups(env) == []
    import migrate.runbook.switch as switch

    monkeypatch.setattr(switch, "_probe", lambda targets: pytest.fail("probed"))
    with pytest.raises(UsageError, match="read-only"):
        switch_config(env, redis_url="redis://h/0")
    # A link to a read-only file names both.
    link = tmp_path / "link.env"
    link.symlink_to(env)
    with pytest.raises(UsageError, match=rf"{link} \(-> {env}\) is read-only"):
        switch_config(link, redis_url="redis://h/0")


def test_nothing_to_change_in_a_read_only_file_is_fine(tmp_path: Path):
    env = tmp_path / ".env"
    env.write_text(f"SECRET_KEY={STRONG}\nSESSION_TYPE=redis\nREDIS_URL=redis://h/0\n")
    env.chmod(0o444)
    result = switch_config(env, probe=False)
    assert not result.written and result.changed == []


def test_secrets_never_appear_in_text_or_json(tmp_path: Path, stores, db_url):
    env = tmp_path / ".env"
    secrets = [STRONG, "hunter2-mail", "pg-pass-123", stores.s3_secret_key]
    for extra in ([], ["--json"], ["--dry-run"], ["--dry-run", "--json"]):
        env.write_text(BEFORE)
        result = CliRunner().invoke(cli, _args(env, stores, db_url, *extra))
        assert result.exit_code == 0, result.output
        for secret in secrets:
            assert secret not in result.output, (extra, secret)
        if "--json" in extra:
            data = json.loads(result.output)
            assert data["ok"] and [p["target"] for p in data["probes"]] == [
                "redis", "s3", "database"]
            assert "SECRET_KEY=***" in data["diff"] and "MAIL_PASSWORD=***" in data["diff"]
            assert "postgresql://shop:***@db/shop" in data["diff"]
    # A failed probe: a URL password is masked in the lines and in the JSON.
    closed = free_port()
    bad = CliRunner().invoke(cli, [*_args(env, stores, db_url, "--json"), "--redis",
                                   f"redis://:redis-pw-777@127.0.0.1:{closed}/0"])
    assert bad.exit_code == 2 and "redis-pw-777" not in bad.output
    assert "redis://:***@127.0.0.1" in bad.output
    # A secret key in --set is refused (it would land in shell history), without its value.
    refused = CliRunner().invoke(cli, [*_args(env, stores, db_url), "--set",
                                       "API_TOKEN=tok-abc-123"])
    assert refused.exit_code == 2 and "API_TOKEN holds a secret" in refused.output
    assert "tok-abc-123" not in refused.output


def test_a_file_edited_while_the_stores_are_probed_is_not_overwritten(tmp_path: Path,
                                                                      monkeypatch):
    import migrate.runbook.switch as switch

    env = tmp_path / ".env"
    env.write_text(BEFORE)

    def someone_edits(targets):
        env.write_text(BEFORE + "ADDED_BY_HAND=1\n")
        return []

    monkeypatch.setattr(switch, "_probe", someone_edits)
    with pytest.raises(UsageError, match="changed while switch-config ran: run it again"):
        switch_config(env, redis_url="redis://h/0")
    assert env.read_text().endswith("ADDED_BY_HAND=1\n") and backups(env) == []
