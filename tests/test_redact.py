"""The one redactor: no password, token or secret setting reaches output or the journal."""

from __future__ import annotations

import pytest

from migrate import redact


@pytest.mark.parametrize(("raw", "shown"), [
    ("redis://:secret@host/0", "redis://:***@host/0"),
    ("rediss://user:pw@h:6380/1", "rediss://user:***@h:6380/1"),
    ("sqlite:////tmp/shop.db", "sqlite:////tmp/shop.db"),
    ("postgresql+psycopg://postgres@127.0.0.1:5432/test",
     "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    # A raw '@' or ':' in the password: the userinfo ends at the last '@'.
    ("postgresql://app:p@ss:w@rd@db.internal:5432/shop", "postgresql://app:***@db.internal:5432/shop"),
    ("redis://:a@b@[::1]:6379/0", "redis://:***@[::1]:6379/0"),
])
def test_url_hides_the_password_and_keeps_the_rest(raw: str, shown: str) -> None:
    assert redact.url(raw) == shown


def test_url_hides_secret_query_values() -> None:
    shown = redact.url("redis://h:6379/0?password=hunter2&db=1")
    assert "hunter2" not in shown and "db=1" in shown


@pytest.mark.parametrize("message", [
    "cannot connect to postgresql://app:p@ss@db:5432/x: timeout",
    "REDIS_URL='redis://:p@ss:word@cache:6379/0'",
])
def test_text_masks_every_url_password_in_free_text(message: str) -> None:
    shown = redact.text(message)
    assert "p@ss" not in shown and "***@" in shown


def test_value_argv_and_params_hide_secret_settings() -> None:
    assert redact.value("SECRET_KEY", "abc") == "***"
    assert redact.value("S3_BUCKET", "shop") == "shop"
    assert redact.argv(["--token", "t0k", "--redis", "redis://:pw@h/0", "--api-key=k"]) == [
        "--token", "***", "--redis", "redis://:***@h/0", "--api-key=***"]
    assert redact.params({"token": "t", "jobs": 4, "dry_run": False, "redis_url": None}) == {
        "token": "***", "jobs": 4}


@pytest.mark.parametrize("key", ["SECRET_KEY", "DB_PASS", "SMTP_PASSWD", "MAIL_PASSWORD",
                                 "API_TOKEN", "STRIPE_API_KEY", "JWT_PRIVATE_KEY", "api-key"])
def test_secret_names(key: str) -> None:
    assert redact.is_secret_key(key)


@pytest.mark.parametrize("key", ["S3_BUCKET", "SESSION_KEY_PREFIX", "AWS_ACCESS_KEY_ID",
                                 "RECAPTCHA_PUBLIC_KEY", "key_prefix", "REDIS_URL"])
def test_names_that_hold_no_secret(key: str) -> None:
    assert not redact.is_secret_key(key)


def test_a_set_argument_is_masked_by_the_name_it_sets() -> None:
    assert redact.argv(["--set", "API_TOKEN=tok", "--set", "S3_BUCKET=shop"]) == [
        "--set", "API_TOKEN=***", "--set", "S3_BUCKET=shop"]
    assert redact.argv(["--set=DB_PASS=p"]) == ["--set=DB_PASS=***"]
    assert redact.params({"set_values": ("API_TOKEN=tok", "S3_BUCKET=shop")}) == {
        "set_values": ["API_TOKEN=***", "S3_BUCKET=shop"]}
