"""migrate switch-config: a dotenv rewrite after real store probes; backup and rollback."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from dotenv import dotenv_values

from migrate.cli import cli
from migrate.errors import UsageError
from migrate.harness.stores import free_port
from migrate.runbook.switch import ProbesFailed, backups, quote, rollback, switch_config

STRONG = "b7f1c0d2e3a4958677aa1b2c3d4e5f60"
BEFORE = f"""# the shop, before
export SECRET_KEY={STRONG}
SESSION_TYPE=cachelib

# uploads on this host's disk
UPLOAD_FOLDER="/srv/shop/uploads"   # per instance
GREETING='hello # not a comment'
MAIL_PASSWORD=hunter2-mail
PERMANENT_SESSION_LIFETIME=604800
"""
# The sample shop's own keys, as the repo's [tool.migrate.switch] maps them.
SHOP = {"REDIS_URL": "{redis}", "S3_BUCKET": "{bucket}", "S3_ENDPOINT_URL": "{s3}",
        "DATABASE_URL": "{database_url}"}


@pytest.fixture
def s3_env(store_set, monkeypatch):
    """The embedded S3's credentials in the AWS env vars, as a user would have them."""
    s = store_set.stores
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s.s3_access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s.s3_secret_key)
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    return s


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / ".env"
    path.write_text(BEFORE)
    path.chmod(0o640)
    return path


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    from sqlalchemy import create_engine, text

    url = f"sqlite:///{tmp_path / 'shop.db'}"
    with create_engine(url).begin() as conn:
        conn.execute(text("CREATE TABLE t (x int)"))
    return url


def _redis_with_password(url: str) -> str:
    # Used only where no round trip is made (probe=False): the point is the masking.
    return url.replace("redis://", "redis://admin:s3cr3t-pw@")


def test_quote_round_trips_through_python_dotenv(tmp_path: Path):
    values = ["plain", "with space", "it's", 'dq"and\'sq', "a$HOME b", "#hash", "x=y", ""]
    path = tmp_path / "q.env"
    path.write_text("".join(f"K{i}={quote(v)}\n" for i, v in enumerate(values)))
    read = dotenv_values(path, interpolate=False)
    assert [read[f"K{i}"] for i in range(len(values))] == values


def test_switch_rewrites_in_place_and_probes_real_stores(env_file, s3_env, db_url):
    result = switch_config(env_file, redis_url=s3_env.redis_url, s3_url=s3_env.s3_endpoint_url,
                           bucket=s3_env.s3_bucket, database_url=db_url, set_keys=SHOP)
    assert result.written and result.ok
    assert [(p.target, p.ok) for p in result.probes] == [
        ("redis", True), ("s3", True), ("database", True)]
    text = env_file.read_text()
    lines = text.splitlines()
    # Comments, blank lines, order and the export prefix are kept.
    assert lines[0] == "# the shop, before"
    assert lines[1] == f"export SECRET_KEY={STRONG}"
    assert lines[2] == "SESSION_TYPE=redis"
    assert lines[3] == "" and lines[4] == "# uploads on this host's disk"
    assert lines[5].startswith("# migrate: was UPLOAD_FOLDER=/srv/shop/uploads")
    assert "GREETING='hello # not a comment'" in lines
    values = dotenv_values(env_file, interpolate=False)
    assert values["REDIS_URL"] == s3_env.redis_url
    assert values["S3_ENDPOINT_URL"] == s3_env.s3_endpoint_url
    assert values["S3_BUCKET"] == s3_env.s3_bucket
    assert values["DATABASE_URL"] == db_url
    assert values["GREETING"] == "hello # not a comment"
    assert "UPLOAD_FOLDER" not in values
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o640
    assert result.backup and Path(result.backup).read_text() == BEFORE
    assert Path(result.backup).name.startswith(".env.bak.")
    # The after-app's own config reads the switched file.
    from sample_stateless_app.config import check_required, load_config

    os.environ["ENV_FILE"] = str(env_file)
    try:
        config = load_config()
    finally:
        del os.environ["ENV_FILE"]
    check_required(config)
    assert config["SESSION_TYPE"] == "redis"
    # Nothing left to change: a second run writes nothing and makes no backup.
    again = switch_config(env_file, redis_url=s3_env.redis_url, database_url=db_url,
                          set_keys=SHOP)
    assert not again.written and again.changed == [] and len(backups(env_file)) == 1


def test_dry_run_writes_nothing_and_masks_every_secret(env_file, s3_env, db_url, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, [
        "switch-config", str(env_file), "--to", "stateless", "--redis", s3_env.redis_url,
        "--s3", s3_env.s3_endpoint_url, "--bucket", s3_env.s3_bucket, "--database-url", db_url,
        "--dry-run"])
    assert result.exit_code == 0, result.output
    assert env_file.read_text() == BEFORE
    assert backups(env_file) == []
    assert "+SESSION_TYPE=redis" in result.output
    assert "-SESSION_TYPE=cachelib" in result.output
    for secret in (STRONG, "hunter2-mail", s3_env.s3_secret_key):
        assert secret not in result.output
    # A URL password in the file is masked in the diff too.
    env_file.write_text(BEFORE + "OLD_URL=postgresql://shop:pg-pass-123@db/shop\n"
                        "# SECRET_KEY=old-commented-secret-value\n")
    r = switch_config(env_file, redis_url=_redis_with_password("redis://h:1/0"),
                      database_url=db_url, dry_run=True, probe=False)
    assert "pg-pass-123" not in r.diff and "s3cr3t-pw" not in r.diff
    assert "old-commented-secret-value" not in r.diff
    assert "redis://admin:***@h:1/0" in r.diff and "SECRET_KEY=***" in r.diff


def test_probe_failures_refuse_with_one_line_each(env_file, db_url, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-aws-key")
    closed = free_port()
    result = CliRunner().invoke(cli, [
        "switch-config", str(env_file), "--to", "stateless",
        "--redis", f"redis://:pw-redis-xyz@127.0.0.1:{closed}/0",
        "--s3", f"http://127.0.0.1:{closed}", "--bucket", "shop",
        "--database-url", "sqlite:////nonexistent/dir/shop.db"])
    assert result.exit_code == 2
    assert env_file.read_text() == BEFORE and backups(env_file) == []
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 3, result.output
    assert errors[0].startswith("error: redis at redis://:***@127.0.0.1")
    assert errors[1].startswith("error: s3 at http://127.0.0.1")
    assert errors[2].startswith("error: database at sqlite:")
    assert "Traceback" not in result.output
    assert "pw-redis-xyz" not in result.output and "very-secret-aws-key" not in result.output


def test_s3_endpoint_refusing_credentials(env_file, s3_env, db_url, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-key")
    with pytest.raises(ProbesFailed) as info:
        switch_config(env_file, redis_url=s3_env.redis_url, s3_url=s3_env.s3_endpoint_url,
                      bucket=s3_env.s3_bucket, database_url=db_url)
    assert [p.target for p in info.value.result.probes if not p.ok] == ["s3"]
    assert env_file.read_text() == BEFORE


@pytest.mark.parametrize("value", ["dev", "changeme", "short-key-123",
                                   "a-31-character-key-0123456789ab", "ab" * 20])
def test_development_secret_key_refused(tmp_path: Path, value: str):
    path = tmp_path / ".env"
    path.write_text(f"SECRET_KEY={value}\nREDIS_URL=redis://h/0\nDATABASE_URL=sqlite://\n")
    result = CliRunner().invoke(cli, ["switch-config", str(path), "--to", "stateless"])
    assert result.exit_code == 2
    assert "SECRET_KEY" in result.output and "secrets.token_hex" in result.output
    assert f"={value}" not in result.output and f"'{value}'" not in result.output
    assert "Traceback" not in result.output


def test_missing_secret_key_and_secret_key_from_env(tmp_path: Path, monkeypatch):
    path = tmp_path / ".env"
    path.write_text("SECRET_KEY=dev\nREDIS_URL=redis://h/0\nDATABASE_URL=sqlite://\n")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(UsageError, match="not set in the environment"):
        switch_config(path, secret_key_from_env=True, probe=False)
    monkeypatch.setenv("SECRET_KEY", STRONG)
    result = switch_config(path, secret_key_from_env=True, probe=False, dry_run=True)
    assert "SECRET_KEY" in result.removed and STRONG not in result.diff


def test_backup_and_rollback_restore_byte_identical(env_file, s3_env, db_url):
    original = env_file.read_bytes()
    first = switch_config(env_file, redis_url=s3_env.redis_url, database_url=db_url,
                          s3_url=s3_env.s3_endpoint_url, bucket=s3_env.s3_bucket, probe=False,
                          set_keys=SHOP)
    switched = env_file.read_bytes()
    second = switch_config(env_file, redis_url=s3_env.redis_url + "1", database_url=db_url,
                           probe=False, set_keys=SHOP)
    assert first.backup != second.backup and len(backups(env_file)) == 2
    result = CliRunner().invoke(cli, ["switch-config", str(env_file), "--rollback"])
    assert result.exit_code == 0, result.output
    assert Path(second.backup).name in result.output
    assert env_file.read_bytes() == switched
    back = rollback(env_file)
    assert back.backup == first.backup and env_file.read_bytes() == original
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o640
    with pytest.raises(UsageError, match="no backup"):
        rollback(env_file)


def test_s3_option_forms():
    from migrate.runbook.switch import parse_s3

    assert parse_s3("s3://media") == (None, "media")
    assert parse_s3("http://127.0.0.1:9000") == ("http://127.0.0.1:9000", None)
    assert parse_s3("https://s3.example.com/media") == ("https://s3.example.com", "media")
    with pytest.raises(UsageError, match="--s3"):
        parse_s3("ftp://x")
