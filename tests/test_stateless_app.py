"""What only the after-app does: refuse unsafe configuration, report unreachable stores as 503.
(Both shops rotate the session id at login: tests/test_shop_security.py.)"""

from __future__ import annotations

import pytest

from migrate.harness.stores import free_port
from tests.conftest import SECRET


def config(stores, **overrides) -> dict:
    env = stores.app_env()
    values = {
        "TESTING": True,
        "SECRET_KEY": SECRET,
        "DATABASE_URL": stores.database_url,
        "REDIS_URL": env["REDIS_URL"],
        "S3_ENDPOINT_URL": env["S3_ENDPOINT_URL"],
        "S3_BUCKET": env["S3_BUCKET"],
    }
    values.update(overrides)
    return values


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"SECRET_KEY": None}, "SECRET_KEY is not set"),
        ({"SECRET_KEY": "dev"}, "SECRET_KEY is a development value"),
        ({"REDIS_URL": None}, "REDIS_URL is not set"),
        ({"DATABASE_URL": None}, "DATABASE_URL is not set"),
    ],
)
def test_refuses_to_start_without_shared_settings(stores, monkeypatch, overrides, message):
    from sample_stateless_app import create_app

    for key in ("SECRET_KEY", "REDIS_URL", "DATABASE_URL"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RuntimeError, match=message):
        create_app(config(stores, **overrides))


def test_unreachable_redis_is_a_clear_503(stores, monkeypatch):
    from sample_stateless_app import create_app
    from sample_stateless_app.db import upgrade

    upgrade(stores.database_url)
    app = create_app(config(stores, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"))
    client = app.test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json["redis"].startswith("failed")
    page = client.get("/")
    assert page.status_code == 503
    assert b"unreachable" in page.data
    assert page.headers["Retry-After"]
