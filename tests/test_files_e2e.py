"""The issue's story on real gunicorn instances, rclone S3 over HTTP and redis-server:
Alice uploads an avatar to before-instance 1 and starts a chunked upload on instance 2 ->
`migrate export-files` from both instances' folders -> `migrate db upgrade` -> two
after-instances serve the avatar with identical bytes, and the upload completes there."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import requests

from tests import test_files_support as support
from tests.test_files_support import migrate_cli
from tests.test_sessions_support import Processes

s3_server, redis_server = support.s3_server, support.redis_server
MIB = 1024 * 1024


def login(url: str) -> requests.Session:
    session = requests.Session()
    response = session.post(f"{url}/login", data={"username": "alice", "password": "wonderland"},
                            timeout=10)
    assert response.ok, response.status_code
    return session


@pytest.mark.slow
def test_files_and_an_upload_in_progress_cross_from_two_before_to_two_after_instances(
        tmp_path: Path, s3_server, redis_server) -> None:
    from sample_stateful_app.db import init_db

    redis_server.client.flushall()
    env = support.aws_env(tmp_path)
    database = f"sqlite:///{tmp_path / 'shop.db'}"
    init_db(database)
    servers = Processes(tmp_path / "run")
    try:
        before = [servers.gunicorn(f"stateful-{i}", "stateful", {"DATABASE_URL": database})
                  for i in (1, 2)]
        avatar = b"\x89PNG\r\n\x1a\n" + os.urandom(40_000)  # the shops take images only
        one = login(before[0])
        response = one.post(f"{before[0]}/account/avatar",
                            files={"avatar": ("me.png", avatar, "image/png")}, timeout=10)
        assert response.ok, response.text
        two = login(before[1])
        upload_id = two.post(f"{before[1]}/uploads", json={"filename": "talk.mp4"},
                             timeout=10).json()["upload_id"]
        chunks = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(777_777)]
        for n in (1, 2):
            assert two.put(f"{before[1]}/uploads/{upload_id}/chunks/{n}", data=chunks[n - 1],
                           timeout=30).ok
        folders = [str(tmp_path / "run" / f"stateful-{i}" / "uploads") for i in (1, 2)]

        export = migrate_cli("export-files", *folders, "--to", "s3://shop-e2e",
                             "--endpoint-url", s3_server.url, "--create-bucket", "--redis",
                             redis_server.url, env=env)
        assert export.returncode == 0, export.stdout + export.stderr
        assert f"upload {upload_id}" in export.stdout and "carried" in export.stdout
        verify = migrate_cli("verify", "files", *folders, "--to", "s3://shop-e2e",
                             "--endpoint-url", s3_server.url, "--redis", redis_server.url,
                             env=env)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "2 of 2 match" in verify.stdout  # the avatar and the upload in progress
        upgrade = migrate_cli("db", "upgrade", "--database-url", database, env=env)
        assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr

        after_env = {"DATABASE_URL": database, "REDIS_URL": redis_server.url,
                     "SECRET_KEY": "test-secret-key-0123456789abcdef",
                     "S3_ENDPOINT_URL": s3_server.url, "S3_BUCKET": "shop-e2e",
                     **{k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                            "AWS_DEFAULT_REGION")}}
        after = [servers.gunicorn(f"stateless-{i}", "stateless", after_env) for i in (1, 2)]
        alice = login(after[0])  # one session, shared through Redis by both instances
        served = [alice.get(f"{url}/account/avatar", timeout=10) for url in after]
        assert [r.status_code for r in served] == [200, 200]
        assert served[0].content == served[1].content == avatar
        assert {r.headers["X-Instance"] for r in served} == {"stateless-1", "stateless-2"}

        response = alice.put(f"{after[1]}/uploads/{upload_id}/chunks/3", data=chunks[2],
                             timeout=30)
        assert response.ok, response.text
        done = alice.post(f"{after[0]}/uploads/{upload_id}/complete", json={"chunks": 3},
                          timeout=30)
        assert done.ok, done.text
        assert done.json()["size"] == sum(len(c) for c in chunks)
        body = alice.get(f"{after[1]}/files/{upload_id}", timeout=30).content
        assert hashlib.sha256(body).hexdigest() == hashlib.sha256(b"".join(chunks)).hexdigest()
    finally:
        servers.stop()
