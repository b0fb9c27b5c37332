"""The hand-written S3 client (``migrate.files.transfer``) held to what boto3 would do.

- its SigV4 signatures are botocore's, byte for byte, over keys that trip encoders (spaces,
  unicode, ``+``, ``%``, ``~``, ``//``, a trailing slash, a 1,000-byte key), for a PUT and
  for a LIST whose prefix is that key;
- a 503 SlowDown (and a 200 whose body is an ``<Error>``) is retried after a jittered,
  growing wait, against a small HTTP server on 127.0.0.1 that throttles for real;
- credentials from a provider with an expiry (a ``credential_process`` in an AWS config file,
  as SSO and assumed roles are) are renewed before they lapse: the real S3 server accepts only
  the renewed key.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from migrate.files import transfer
from migrate.files.transfer import Endpoint, RawS3, S3Error, with_retries
from tests.test_files_support import S3Server, free_port, rclone_binary

UNUSUAL_KEYS = [
    "plain.txt", "with space.txt", "unicodé/ünï 名前.png", "a+b=c&d.txt", "100%/50%.bin",
    "tilde~name", "double//slash", "trailing/", "/leading", "semi;colon,comma'quote\"",
    "star*paren(1)!", "hash#question?.txt", "x" * 300 + "/" + "é" * 350,
]
SIGNED_AT = datetime.datetime(2026, 11, 30, 23, 59, 58)


def _botocore_requests(key: str, monkeypatch: pytest.MonkeyPatch) -> list:
    """The requests botocore signs for PutObject(key) and ListObjectsV2(Prefix=key), caught
    before they are sent (the endpoint is never contacted)."""
    import boto3
    import botocore.auth
    from botocore.awsrequest import AWSResponse
    from botocore.config import Config

    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: SIGNED_AT)
    client = boto3.client(
        "s3", endpoint_url="http://127.0.0.1:9", aws_access_key_id="AKIASIGNTEST",
        aws_secret_access_key="secret/with+odd=chars", region_name="eu-west-3",
        config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                      response_checksum_validation="when_required"))
    caught = []

    def catch(request, **_kwargs):
        caught.append(request)
        listing = b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>'
        return AWSResponse(request.url, 200, {}, _Raw(listing if request.method == "GET"
                                                      else b""))

    client.meta.events.register("before-send", catch)
    body = b"session avatar"
    client.put_object(Bucket="shop", Key=key, Body=body,
                      ContentMD5=base64.b64encode(hashlib.md5(body).digest()).decode())
    client.list_objects_v2(Bucket="shop", Prefix=key)
    return caught


class _Raw:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_kwargs):
        yield self.data


@pytest.mark.parametrize("key", UNUSUAL_KEYS)
def test_signatures_equal_botocore_over_unusual_keys(key: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    put, listing = _botocore_requests(key, monkeypatch)
    ours = RawS3(Endpoint("http://127.0.0.1:9", "shop", "eu-west-3", "AKIASIGNTEST",
                          "secret/with+odd=chars"))
    for request, query in ((put, None), (listing, {"list-type": "2", "prefix": key,
                                                   "encoding-type": "url"})):
        theirs = {k.lower(): v.decode() if isinstance(v, bytes) else v
                  for k, v in request.headers.items()}
        signed_names = theirs["authorization"].split("SignedHeaders=")[1].split(",")[0]
        headers = {n: theirs[n] for n in signed_names.split(";")
                   if n not in ("host", "x-amz-date", "x-amz-content-sha256")}
        url = urlsplit(request.url)
        path, q = ours.canonical_target(key if query is None else None, query)
        # The same bytes on the wire (path and query) and the same signature over them.
        assert path == url.path, key
        if query is not None:
            assert sorted(q.split("&")) == sorted(url.query.split("&")), key
        mine = ours._headers(request.method, path, q, headers, theirs["x-amz-content-sha256"],
                             now=SIGNED_AT.timetuple())
        assert mine["authorization"] == theirs["authorization"], key


# --- SlowDown: a real server that throttles -------------------------------------------------


class _Throttling(http.server.BaseHTTPRequestHandler):
    """Answers the first ``server.refusals`` PUTs with ``server.refusal``, then stores."""

    protocol_version = "HTTP/1.1"

    def do_PUT(self) -> None:  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        server = self.server
        server.arrivals.append(time.monotonic())  # type: ignore[attr-defined]
        if len(server.arrivals) <= server.refusals:  # type: ignore[attr-defined]
            status, payload = server.refusal  # type: ignore[attr-defined]
            headers = {}
        else:
            status, payload = 200, b""
            headers = {"ETag": f'"{hashlib.md5(body).hexdigest()}"'}
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def throttling() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Throttling)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


SLOW_DOWN = (503, b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
                  b"<Message>Please reduce your request rate.</Message></Error>")
ERROR_IN_200 = (200, b"<Error><Code>InternalError</Code><Message>retry</Message></Error>")


def _put_with_retries(server: http.server.ThreadingHTTPServer, refusal: tuple,
                      refusals: int) -> tuple[str, list[float]]:
    server.refusal, server.refusals, server.arrivals = refusal, refusals, []  # type: ignore
    body = b"avatar bytes"
    md5 = hashlib.md5(body)
    client = RawS3(Endpoint(f"http://127.0.0.1:{server.server_address[1]}", "shop",
                            "us-east-1", "AKIA", "secret"))
    headers = {"content-md5": base64.b64encode(md5.digest()).decode()}

    def put() -> str:
        _, head, _ = client.request("PUT", "avatars/1.png", headers=headers, body=body)
        return transfer.checked_etag(head, md5.hexdigest())

    try:
        etag = with_retries(put, client)
    finally:
        client.close()
    arrivals = server.arrivals  # type: ignore[attr-defined]
    return etag, [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]


@pytest.mark.parametrize("refusal", [SLOW_DOWN, ERROR_IN_200], ids=["503-SlowDown", "200-Error"])
def test_slow_down_is_retried_after_a_growing_jittered_wait(throttling, refusal) -> None:
    etag, waits = _put_with_retries(throttling, refusal, refusals=2)
    assert etag == hashlib.md5(b"avatar bytes").hexdigest()
    assert len(waits) == 2  # two refusals, then the PUT that stored it
    # Attempt n waits between half and all of BACKOFF * 2**n: it backs off, and grows.
    for n, wait in enumerate(waits, 1):
        assert transfer.BACKOFF * 2 ** n / 2 <= wait < transfer.BACKOFF * 2 ** n + 0.5, waits


def test_the_wait_is_jittered_so_throttled_clients_do_not_return_together() -> None:
    ceiling = transfer.BACKOFF * 2 ** 3
    waits = [transfer.backoff(3) for _ in range(200)]
    assert all(ceiling / 2 <= w <= ceiling for w in waits)
    # Spread over the upper half of the window, not one instant: a fixed schedule fails this.
    assert max(waits) - min(waits) > ceiling / 4 and len({round(w, 4) for w in waits}) > 100


def test_slow_down_past_every_attempt_is_an_error_not_a_success(throttling) -> None:
    with pytest.raises(S3Error, match="SlowDown"):
        _put_with_retries(throttling, SLOW_DOWN, refusals=transfer.ATTEMPTS)
    assert len(throttling.arrivals) == transfer.ATTEMPTS


# --- expiring credentials -------------------------------------------------------------------

PROCESS = """\
import json, pathlib, sys, datetime
calls = pathlib.Path(sys.argv[1])
calls.write_text(calls.read_text() + "x" if calls.exists() else "x")
print(json.dumps({"Version": 1, "AccessKeyId": "AKIARENEWED0001",
                  "SecretAccessKey": "renewed-secret-0123456789",
                  "Expiration": (datetime.datetime.now(datetime.timezone.utc)
                                 + datetime.timedelta(hours=1)).isoformat()}))
"""


@pytest.fixture
def renewed_only_s3(tmp_path: Path) -> Iterator[S3Server]:
    """A real S3 server that knows only the renewed key (the first one has lapsed)."""
    root = tmp_path / "s3"
    (root / "shop").mkdir(parents=True)
    port = free_port()
    process = subprocess.Popen(
        [rclone_binary(), "serve", "s3", "--addr", f"127.0.0.1:{port}", "--auth-key",
         "AKIARENEWED0001,renewed-secret-0123456789", "--config", "/dev/null", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = S3Server(root, port, process)
    deadline = time.monotonic() + 15
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                raise
            time.sleep(0.05)
    yield server
    server.stop()


def credentials_from_a_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               region: str) -> Path:
    """An AWS profile whose credentials come from ``credential_process`` (PROCESS), nothing in
    the environment, a fresh botocore session; returns the file counting the process's calls."""
    script, calls = tmp_path / "creds.py", tmp_path / "calls"
    script.write_text(PROCESS)
    config = tmp_path / "aws-config"
    config.write_text(f"[default]\nregion = {region}\n"
                      f"credential_process = {sys.executable} {script} {calls}\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setattr(transfer, "_session", None)  # a fresh process's botocore session
    return calls


def test_expiring_credentials_are_renewed_from_their_provider(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, renewed_only_s3: S3Server) -> None:
    calls = credentials_from_a_process(tmp_path, monkeypatch, "us-east-1")

    # A run that started an hour ago: its key has lapsed and the server no longer knows it.
    lapsed = Endpoint(renewed_only_s3.url, "shop", "us-east-1", "AKIALAPSED00001",
                      "lapsed-secret", expires=time.time() - 1)
    stale = RawS3(Endpoint(renewed_only_s3.url, "shop", "us-east-1", "AKIALAPSED00001",
                           "lapsed-secret"))  # the same key, not known to expire
    with pytest.raises(S3Error) as refused:
        stale.request("PUT", "avatars/1.png", body=b"x")
    stale.close()
    assert refused.value.status == 403

    client = RawS3(lapsed)
    try:
        status, _, _ = client.request("PUT", "avatars/1.png", body=b"renewed")
    finally:
        client.close()
    assert status == 200
    assert (renewed_only_s3.root / "shop" / "avatars" / "1.png").read_bytes() == b"renewed"
    assert client.credentials.access_key == "AKIARENEWED0001"
    assert client.credentials.expires and client.credentials.expires > time.time() + 3000
    assert calls.read_text() == "x"  # asked once: renewed credentials are kept until they lapse


def test_an_endpoint_from_a_provider_with_an_expiry_carries_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    credentials_from_a_process(tmp_path, monkeypatch, "eu-west-3")
    ep = transfer.endpoint_from_env("http://127.0.0.1:9", "shop")
    assert (ep.access_key, ep.region) == ("AKIARENEWED0001", "eu-west-3")
    assert ep.expires is not None and 3000 < ep.expires - time.time() <= 3600
    assert "renewed-secret" not in repr(ep) and "renewed-secret" not in json.dumps(repr(ep))
