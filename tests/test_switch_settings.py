"""switch-config's settings: the Flask ecosystem's own keys, and the app's keys from the mapping
the user writes ([tool.migrate.switch] in pyproject.toml, --set / --drop)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from dotenv import dotenv_values

from migrate.cli import cli
from migrate.errors import UsageError
from migrate.runbook.settings import KeyMapping, mapping_from_table, s3_target
from migrate.runbook.switch import switch_config

STRONG = "b7f1c0d2e3a4958677aa1b2c3d4e5f60"
REDIS = "redis://10.0.0.5:6379/0"


def _switch(tmp_path: Path, body: str, **options) -> tuple[dict, object, str]:
    path = tmp_path / ".env"
    path.write_text(f"SECRET_KEY={STRONG}\n{body}")
    result = switch_config(path, probe=False, **options)
    return dotenv_values(path, interpolate=False), result, path.read_text()


@pytest.mark.parametrize("before", ["filesystem", "cachelib"])
def test_flask_session(tmp_path: Path, before: str):
    values, result, text = _switch(tmp_path, f"SESSION_TYPE={before}\nSESSION_FILE_DIR=/srv/s\n"
                                   "SESSION_CACHELIB=x\nSESSION_PERMANENT=true\n",
                                   redis_url=REDIS)
    assert values["SESSION_TYPE"] == "redis" and values["REDIS_URL"] == REDIS
    assert "SESSION_FILE_DIR" not in values and "SESSION_CACHELIB" not in values
    assert "# migrate: was SESSION_FILE_DIR=/srv/s (sessions now live in Redis" in text
    assert values["SESSION_PERMANENT"] == "true"  # a setting it does not own stays
    assert result.changed == ["SESSION_TYPE", "REDIS_URL"]
    assert result.removed == ["SESSION_FILE_DIR", "SESSION_CACHELIB"]


@pytest.mark.parametrize("before", ["SimpleCache", "FileSystemCache", "simple", "filesystem",
                                    "flask_caching.backends.FileSystemCache"])
def test_flask_caching(tmp_path: Path, before: str):
    values, result, _ = _switch(tmp_path, f"CACHE_TYPE={before}\nCACHE_DIR=/tmp/c\n"
                                "CACHE_DEFAULT_TIMEOUT=300\n", redis_url=REDIS)
    assert values["CACHE_TYPE"] == "RedisCache" and values["CACHE_REDIS_URL"] == REDIS
    assert values["REDIS_URL"] == REDIS and "CACHE_DIR" not in values
    assert values["CACHE_DEFAULT_TIMEOUT"] == "300"
    assert result.removed == ["CACHE_DIR"]


def test_a_cache_already_on_redis_follows_the_new_redis(tmp_path: Path):
    values, result, _ = _switch(tmp_path, "CACHE_TYPE=RedisCache\nCACHE_REDIS_URL=redis://old/1\n",
                                redis_url=REDIS)
    assert values["CACHE_REDIS_URL"] == REDIS and values["CACHE_TYPE"] == "RedisCache"
    values, result, _ = _switch(tmp_path, "CACHE_TYPE=NullCache\nCACHE_DIR=/tmp/c\n",
                                redis_url=REDIS)
    assert result.changed == [] and result.removed == [] and not result.written


@pytest.mark.parametrize("key", ["RATELIMIT_STORAGE_URI", "RATELIMIT_STORAGE_URL"])
def test_flask_limiter(tmp_path: Path, key: str):
    values, result, _ = _switch(tmp_path, f"{key}=memory://\nRATELIMIT_DEFAULT=5/minute\n",
                                redis_url=REDIS)
    assert values[key] == REDIS and values["REDIS_URL"] == REDIS
    assert values["RATELIMIT_DEFAULT"] == "5/minute"
    kept, result, _ = _switch(tmp_path, f"{key}=memcached://10.0.0.9:11211\n", redis_url=REDIS)
    assert kept[key] == "memcached://10.0.0.9:11211" and "REDIS_URL" not in kept


def test_rq(tmp_path: Path):
    values, result, _ = _switch(tmp_path, "RQ_REDIS_URL=redis://localhost:6379/3\n",
                                redis_url=REDIS)
    assert values["RQ_REDIS_URL"] == REDIS and values["REDIS_URL"] == REDIS


@pytest.mark.parametrize("broker,switched", [
    ("memory://", True), ("filesystem://", True), ("sqla+sqlite:///celery.db", True),
    ("amqp://guest@rabbit//", False), ("redis://broker:6379/2", False)])
def test_celery(tmp_path: Path, broker: str, switched: bool):
    values, _, _ = _switch(tmp_path, f"CELERY_BROKER_URL={broker}\n"
                           "CELERY_RESULT_BACKEND=rpc://\n", redis_url=REDIS)
    assert values["CELERY_BROKER_URL"] == (REDIS if switched else broker)
    assert values["CELERY_RESULT_BACKEND"] == "rpc://"  # rpc:// is fine to leave
    assert ("REDIS_URL" in values) == switched
    values, _, _ = _switch(tmp_path, "CELERY_RESULT_BACKEND=db+sqlite:///results.db\n",
                           redis_url=REDIS)
    assert values["CELERY_RESULT_BACKEND"] == REDIS


def test_upload_folder_moves_to_the_bucket(tmp_path: Path):
    values, result, text = _switch(tmp_path, "UPLOAD_FOLDER=/srv/up\n", redis_url=REDIS,
                                   s3_url="s3://media/prod", endpoint_url="http://s3:9000")
    assert "UPLOAD_FOLDER" not in values
    assert "# migrate: was UPLOAD_FOLDER=/srv/up (uploads now live in the bucket " \
           "s3://media/prod)" in text
    assert "REDIS_URL" not in values  # nothing Redis-backed was switched: no invented keys
    assert "S3_BUCKET" not in values and "S3_ENDPOINT_URL" not in values
    boto, _, _ = _switch(tmp_path, "AWS_ENDPOINT_URL_S3=http://old:9000\n",
                         s3_url="s3://media", endpoint_url="http://s3:9000")
    assert boto["AWS_ENDPOINT_URL_S3"] == "http://s3:9000"
    kept, result, _ = _switch(tmp_path, "UPLOAD_FOLDER=/srv/up\n", redis_url=REDIS)
    assert kept["UPLOAD_FOLDER"] == "/srv/up" and "UPLOAD_FOLDER kept" in result.notes[0]


def test_database_keys_follow_database_url_only_when_present(tmp_path: Path):
    values, _, _ = _switch(tmp_path, "SQLALCHEMY_DATABASE_URI=sqlite:///old.db\n",
                           database_url="postgresql://db/app")
    assert values["SQLALCHEMY_DATABASE_URI"] == "postgresql://db/app"
    assert "DATABASE_URL" not in values


def test_redis_needed_but_not_given_is_one_line(tmp_path: Path):
    with pytest.raises(UsageError, match=r"SESSION_TYPE move to Redis: give --redis"):
        _switch(tmp_path, "SESSION_TYPE=filesystem\n")


# --- the mapping -----------------------------------------------------------------------------


def test_mapping_placeholders_and_read_back(tmp_path: Path):
    keys = {"PHOTO_BUCKET": "{bucket}", "PHOTO_PREFIX": "{prefix}", "STORE": "{s3}",
            "BROKER": "{redis}", "DB": "{database_url}", "WHERE": "s3://{bucket}/{prefix}/x",
            "LITERAL": "{{not a placeholder}}"}
    values, result, _ = _switch(tmp_path, "MEDIA_ROOT=/srv/media\n", redis_url=REDIS,
                                s3_url="s3://photos/gallery", endpoint_url="http://s3:9000",
                                database_url="sqlite:///app.db", set_keys=keys,
                                drop_keys=["MEDIA_ROOT", "ABSENT"])
    assert values == {"SECRET_KEY": STRONG, "PHOTO_BUCKET": "photos", "PHOTO_PREFIX": "gallery",
                      "STORE": "http://s3:9000", "BROKER": REDIS, "DB": "sqlite:///app.db",
                      "WHERE": "s3://photos/gallery/x", "LITERAL": "{not a placeholder}"}
    assert result.removed == ["MEDIA_ROOT"]
    # A key mapped to exactly one placeholder is where that value is read back from.
    path = tmp_path / ".env"
    again = switch_config(path, set_keys=keys, probe=False)
    assert again.changed == [] and not again.written
    # {s3} with no endpoint (AWS S3 itself) leaves the key out, with a note; {prefix} is "".
    path.write_text(f"SECRET_KEY={STRONG}\n")
    aws = switch_config(path, s3_url="s3://photos", set_keys={"STORE": "{s3}",
                                                              "P": "{prefix}"}, probe=False)
    assert dotenv_values(path) == {"SECRET_KEY": STRONG, "P": ""}
    assert any("STORE not set" in n for n in aws.notes)


@pytest.mark.parametrize("keys,message", [
    ({"A": "{bukket}"}, r"A uses an unknown placeholder \{bukket\}: use \{redis\}, \{s3\}"),
    ({"A": "{bucket!r}"}, r"unknown placeholder \{bucket\}"),
    ({"A": "{redis"}, r"unmatched brace"),
    ({"1BAD": "x"}, r"'1BAD' is not a setting name"),
    ({"APP-KEY": "x"}, r"'APP-KEY' is not a setting name"),
    ({"API_TOKEN": "x"}, r"API_TOKEN holds a secret"),
    ({"A": "{bucket}"}, r'A = "\{bucket\}" needs the bucket: give --s3 s3://BUCKET'),
    ({"A": "{database_url}"}, r"needs the database url: give --database-url URL"),
])
def test_mapping_errors_are_one_line(tmp_path: Path, keys: dict, message: str):
    path = tmp_path / ".env"
    path.write_text(f"SECRET_KEY={STRONG}\n")
    with pytest.raises(UsageError, match=message) as info:
        switch_config(path, set_keys=keys, probe=False)
    assert "\n" not in str(info.value)


def test_mapping_from_a_table_and_the_command_line_wins():
    base = mapping_from_table({"set": {"A": "{bucket}", "B": "x"}, "drop": ["C", "D"]},
                              "[tool.migrate.switch]")
    merged = base.merged({"C": "{redis}"}, ["A"], "--set", "--drop")
    assert merged.set == {"B": "x", "C": "{redis}"} and merged.drop == ["D", "A"]
    assert merged.origin["A"] == "--drop" and merged.origin["D"] == "[tool.migrate.switch]"
    for bad, message in [({"sett": {}}, "unknown key 'sett'"),
                         ({"set": ["A"]}, "must be a table"), ({"drop": "A"}, "must be a list"),
                         ({"set": {"A": 1}}, "must be a string")]:
        with pytest.raises(UsageError, match=message):
            mapping_from_table(bad, "[tool.migrate.switch]")
    with pytest.raises(UsageError, match="both in --set and --drop"):
        KeyMapping().merged({"A": "x"}, ["A"], "--set", "--drop")


def test_cli_reads_the_pyproject_mapping_and_set_drop_win(tmp_path: Path, monkeypatch,
                                                           store_set):
    stores = store_set.stores
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", stores.s3_access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", stores.s3_secret_key)
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    app = tmp_path / "app"
    app.mkdir()
    (app / "pyproject.toml").write_text(
        '[project]\nname = "app"\n\n[tool.migrate.switch]\n'
        'set = { UPLOAD_BUCKET = "{bucket}", STORAGE_ENDPOINT = "{s3}", KEEP = "from-toml" }\n'
        'drop = ["UPLOAD_FOLDER", "MEDIA_ROOT"]\n')
    env = app / ".env"
    env.write_text(f"SECRET_KEY={STRONG}\nSESSION_TYPE=filesystem\nUPLOAD_FOLDER=/srv/up\n"
                   "MEDIA_ROOT=/srv/media\nKEEP=old\n")
    monkeypatch.chdir(app)
    bucket = stores.s3_bucket
    args = ["switch-config", ".env", "--redis", stores.redis_url, "--s3", f"s3://{bucket}/p",
            "--endpoint-url", stores.s3_endpoint_url, "--set", "KEEP=from-cli", "--set",
            "EXTRA=on {bucket}", "--drop", "UPLOAD_BUCKET"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "s3" in result.output and "put, get, delete ok" in result.output
    values = dotenv_values(env, interpolate=False)
    assert values["STORAGE_ENDPOINT"] == stores.s3_endpoint_url
    assert values["KEEP"] == "from-cli" and values["REDIS_URL"] == stores.redis_url
    assert values["EXTRA"] == f"on {bucket}" and "UPLOAD_BUCKET" not in values
    assert "UPLOAD_FOLDER" not in values and "MEDIA_ROOT" not in values
    assert "# migrate: was MEDIA_ROOT=/srv/media (dropped by [tool.migrate.switch] in" \
        in env.read_text()
    bad = CliRunner().invoke(cli, ["switch-config", ".env", "--set", "NOEQUALS"])
    assert bad.exit_code == 2 and "--set NOEQUALS: give KEY=VALUE" in bad.output
    bad = CliRunner().invoke(cli, ["switch-config", ".env", "--set", "X={nope}"])
    assert bad.exit_code == 2 and "--set: X uses an unknown placeholder {nope}" in bad.output
    assert "Traceback" not in bad.output


def test_s3_forms():
    assert s3_target("s3://media/a/b/") == s3_target(None, None, None).__class__(
        endpoint=None, bucket="media", prefix="a/b")
    t = s3_target("s3://media", "http://127.0.0.1:9000/")
    assert (t.endpoint, t.bucket, t.prefix) == ("http://127.0.0.1:9000", "media", "")
    t = s3_target("http://127.0.0.1:9000/media/pre", bucket="other")
    assert (t.endpoint, t.bucket, t.prefix) == ("http://127.0.0.1:9000", "other", "pre")
    with pytest.raises(UsageError, match="already names the endpoint"):
        s3_target("http://h:1/b", "http://h:2")
    with pytest.raises(UsageError, match="--endpoint-url ftp://x: give http"):
        s3_target("s3://b", "ftp://x")
    with pytest.raises(UsageError, match=r"--s3 ftp://u:\*\*\*@h: give s3://BUCKET") as info:
        s3_target("ftp://u:pw-secret@h")
    assert "pw-secret" not in str(info.value)
