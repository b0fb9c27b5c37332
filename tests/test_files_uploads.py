"""The before-shop's files cross to the after-shop: an avatar and a chunked upload in progress.

Real rclone S3 over HTTP and a real redis-server; the shops run in-process (test clients). The
multi-instance version over gunicorn is test_files_e2e.py.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import redis

from migrate.files import export_files
from migrate.runbook.db import upgrade
from tests import test_files_support as support
from tests.test_files_support import migrate_cli
from tests.test_sessions_support import before_app

s3_server, s3_env, redis_server = support.s3_server, support.s3_env, support.redis_server
MIB = 1024 * 1024
SECRET = "test-secret-key-0123456789abcdef"


def login(client) -> None:
    response = client.post("/login", data={"username": "alice", "password": "wonderland"})
    assert response.status_code in (302, 303), response.status_code


def start_chunked_upload(client, chunks: list[bytes]) -> str:
    upload_id = client.post("/uploads", json={"filename": "holiday video.mp4"}).get_json()[
        "upload_id"]
    for n, chunk in enumerate(chunks, 1):
        assert client.put(f"/uploads/{upload_id}/chunks/{n}", data=chunk).status_code == 200
    return upload_id


def after_app(database: str, redis_url: str, s3_url: str, bucket: str):
    from sample_stateless_app import create_app

    return create_app({"TESTING": True, "SECRET_KEY": SECRET, "DATABASE_URL": database,
                       "REDIS_URL": redis_url, "S3_ENDPOINT_URL": s3_url, "S3_BUCKET": bucket})


def test_avatar_and_chunked_upload_continue_on_the_after_shop(
        tmp_path: Path, s3_server, s3_env, redis_server) -> None:
    redis_server.client.flushall()
    before = before_app(tmp_path / "before")
    client = before.test_client()
    login(client)
    avatar = b"\x89PNG\r\n\x1a\n" + os.urandom(3000)  # the shops take images only
    assert client.post("/account/avatar", data={"avatar": (__import__("io").BytesIO(avatar),
                                                           "me.png")},
                       content_type="multipart/form-data").status_code in (200, 302, 303)
    chunks = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(1234)]
    upload_id = start_chunked_upload(client, chunks[:2])  # the third never reached it
    uploads = before.config["UPLOAD_FOLDER"]
    database = before.config["DATABASE_URL"]

    # Without --redis the upload is listed with the reason, never dropped silently (exit 1).
    run = migrate_cli("export-files", uploads, "--to", "s3://shop-up", "--endpoint-url",
                      s3_server.url, "--create-bucket", "--json", env=s3_env)
    assert run.returncode == 1, run.stderr
    listed = json.loads(run.stdout)["uploads"]
    assert [(u["upload_id"], u["status"]) for u in listed] == [(upload_id, "listed")]
    assert "--redis" in listed[0]["reason"]

    from migrate.files import verify_files

    unverified = verify_files([uploads], "s3://shop-up", endpoint_url=s3_server.url,
                              redis_url=redis_server.url)
    assert [d.key for d in unverified.missing] == [f"upload:{upload_id}"]
    # A run killed mid-carry left a multipart upload no one references: it is aborted.
    key = f"files/{upload_id}/holiday_video.mp4"
    s3_server.client().create_multipart_upload(Bucket="shop-up", Key=key)
    result = export_files([uploads], "s3://shop-up", endpoint_url=s3_server.url,
                          redis_url=redis_server.url)
    assert result.ok and [(u.upload_id, u.status, u.chunks) for u in result.uploads] == [
        (upload_id, "carried", 2)]
    # Chunk files are state, not content: they are parts of the multipart upload, not objects.
    keys = support.bucket_keys(s3_server, "shop-up")
    assert not any(k.startswith("chunks/") for k in keys), keys
    state = {k.decode(): v.decode() for k, v in
             redis_server.client.hgetall(f"upload:{upload_id}").items()}
    assert state["key"] == f"files/{upload_id}/holiday_video.mp4"  # clean_filename
    assert redis_server.client.ttl(f"upload:{upload_id}") > 0
    assert redis_server.client.hlen(f"upload:{upload_id}:parts") == 2
    pending = s3_server.client().list_multipart_uploads(Bucket="shop-up", Prefix=key)
    assert [u["UploadId"] for u in pending.get("Uploads", [])] == [state["multipart_id"]]
    assert verify_files([uploads], "s3://shop-up", endpoint_url=s3_server.url,
                        redis_url=redis_server.url).ok
    # A second run carries nothing twice.
    again = export_files([uploads], "s3://shop-up", endpoint_url=s3_server.url,
                         redis_url=redis_server.url)
    assert [u.status for u in again.uploads] == ["already-carried"] and again.uploaded == 0

    upgraded = upgrade(database)
    assert upgraded.stamped and upgraded.after == "0003" and upgraded.rows["avatar"] == 1

    after = after_app(database, redis_server.url, s3_server.url, "shop-up").test_client()
    login(after)
    assert after.get("/account/avatar").data == avatar
    response = after.put(f"/uploads/{upload_id}/chunks/3", data=chunks[2])
    assert response.status_code == 200, response.data
    done = after.post(f"/uploads/{upload_id}/complete", json={"chunks": 3})
    assert done.status_code == 200, done.data
    body = after.get(f"/files/{upload_id}").data
    assert hashlib.sha256(body).digest() == hashlib.sha256(b"".join(chunks)).digest()
    assert redis.Redis.from_url(redis_server.url).exists(f"upload:{upload_id}") == 0
