"""What a hostile folder or a hostile S3 server does to export-files and verify files.

The folders change under the export (a chunk swapped for a symlink or a FIFO after its check, a
file that shrinks or grows after it was hashed), hold names that map to one key, or names full
of Rich markup and terminal escapes. The S3 server lies: a wrong ETag, a 200 whose body is an
``<Error>``. Each is reported and skipped, never uploaded as if fine, never a hang, never a
rendered escape. The lying server is a small HTTP server on 127.0.0.1 that misbehaves on purpose
(it is the thing under test); everything else runs against the real embedded S3 and Redis.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import re
import socket
import threading
import unicodedata
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from migrate.errors import UsageError
from migrate.files import carry, export_files, verify_files, workers
from migrate.files import export as export_module
from migrate.files import send as send_module
from migrate.files.digests import large_digests
from migrate.files.send import put_streamed
from migrate.files.target import parse_target
from migrate.files.transfer import RawS3, ShortBody, endpoint_from_env
from migrate.files.walk import Entry
from migrate.keys import object_key
from tests import test_files_support as support
from tests.test_files_support import bucket_keys, migrate_cli

s3_server, s3_env, redis_server = support.s3_server, support.s3_env, support.redis_server
MIB = 1024 * 1024
WRONG_ETAG = '"0123456789abcdef0123456789abcdef"'
ESCAPES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def finishes(call: Callable[[], Any], fifos: list[Path], seconds: float = 60.0) -> Any:
    """``call()`` on a thread; still running after ``seconds`` fails the test: a FIFO must never
    hang the run, nor a changed file stall it. The FIFOs are then opened for writing, so a
    thread waiting on one can end."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test below
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    hung = thread.is_alive()
    for _ in range(60 if hung and fifos else 0):
        for fifo in fifos:
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        thread.join(0.5)
        if not thread.is_alive():
            break
    assert not hung, f"still running after {seconds:g} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


def make_upload(src: Path, upload_id: str, chunks: list[bytes]) -> Path:
    folder = src / "chunks" / upload_id
    folder.mkdir(parents=True)
    (folder / "upload.json").write_text(json.dumps({"filename": "v.mp4", "user_id": 1}))
    for n, data in enumerate(chunks, 1):
        (folder / f"{n:05d}.part").write_bytes(data)
    return folder


# --- 3: chunk parts get the checks regular files get -------------------------------------------


def test_a_chunk_swapped_for_a_symlink_after_its_check_is_never_sent(
        tmp_path: Path, s3_server, s3_env, redis_server, monkeypatch) -> None:
    redis_server.client.flushall()
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_bytes(b"SECRET: a file outside the upload folder")
    src = tmp_path / "uploads"
    upload_id = "a" * 32
    make_upload(src, upload_id, [b"one" * 100, b"two" * 100])
    described = carry.describe_upload

    def then_swap(folder: str, prefix: str):
        up = described(folder, prefix)  # checked while the parts were regular files
        part = Path(folder) / "00002.part"
        part.unlink()
        part.symlink_to(secret)
        return up

    monkeypatch.setattr(carry, "describe_upload", then_swap)
    result = export_files([src], "s3://hostile-link", endpoint_url=s3_server.url,
                          create_bucket=True, redis_url=redis_server.url)

    [up] = result.uploads
    assert up.status == "failed" and "00002.part" in up.reason, up
    assert not result.ok
    assert not redis_server.client.exists(f"upload:{upload_id}")
    pending = s3_server.client().list_multipart_uploads(Bucket="hostile-link")
    assert pending.get("Uploads", []) == []  # the multipart upload begun is aborted


def test_a_fifo_in_place_of_a_chunk_upload_json_or_a_file_never_hangs_the_run(
        tmp_path: Path, s3_server, s3_env, redis_server, monkeypatch) -> None:
    redis_server.client.flushall()
    src = tmp_path / "uploads"
    part_fifo = make_upload(src, "b" * 32, [b"chunk"]) / "00001.part"
    json_fifo = make_upload(src, "c" * 32, [b"chunk"]) / "upload.json"
    file_fifo = src / "avatars" / "me.png"
    file_fifo.parent.mkdir()
    file_fifo.write_bytes(b"\x89PNG an avatar")
    (src / "avatars" / "other.png").write_bytes(b"\x89PNG another")
    walked, planned = export_module.walk, export_module.plan

    def walk_then_swap(roots, prefix):
        found = walked(roots, prefix)  # the folders as they were: regular files only
        for path in (part_fifo, json_fifo):
            path.unlink()
            os.mkfifo(path)
        return found

    def plan_then_swap(*args, **kwargs):
        todo = planned(*args, **kwargs)
        file_fifo.unlink()
        os.mkfifo(file_fifo)
        return todo

    monkeypatch.setattr(export_module, "walk", walk_then_swap)
    monkeypatch.setattr(export_module, "plan", plan_then_swap)
    result = finishes(lambda: export_files(
        [src], "s3://hostile-fifo", endpoint_url=s3_server.url, create_bucket=True,
        redis_url=redis_server.url), [part_fifo, json_fifo, file_fifo])

    assert not result.ok and result.uploaded == 1
    reasons = {Path(p.path).name: p.reason for p in result.problems}
    assert "fifo" in reasons["me.png"], reasons
    by_id = {up.upload_id: up for up in result.uploads}
    assert by_id["b" * 32].status == "failed" and "fifo" in by_id["b" * 32].reason
    assert by_id["c" * 32].status == "failed" and "fifo" in by_id["c" * 32].reason
    assert list(bucket_keys(s3_server, "hostile-fifo")) == ["avatars/other.png"]


# --- 4: two names, one key ------------------------------------------------------------------


def test_two_names_that_map_to_one_key_are_a_collision_and_exit_1(
        tmp_path: Path, s3_server, s3_env) -> None:
    src = tmp_path / "uploads"
    (src / "a").mkdir(parents=True)
    (src / "a" / "b").write_bytes(b"the file a/b")
    (src / "a\\b").write_bytes(b"another file, named a\\b")
    nfc = unicodedata.normalize("NFC", "café.txt")
    nfd = unicodedata.normalize("NFD", "café.txt")
    (src / nfc).write_bytes(b"written on Linux")
    (src / nfd).write_bytes(b"written on a Mac")
    (src / "fine.txt").write_bytes(b"no collision")
    manifest = tmp_path / "manifest.ndjson"

    run = migrate_cli("export-files", str(src), "--to", "s3://hostile-collide", "--endpoint-url",
                      s3_server.url, "--create-bucket", "--manifest", str(manifest), "--json",
                      env=s3_env)

    assert run.returncode == 1, run.stderr
    out = json.loads(run.stdout)
    assert (out["uploaded"], out["failed"]) == (1, 4)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert "superseded" not in {row["status"] for row in rows}
    collided = {row["path"]: row["reason"] for row in rows if row["status"] == "failed"}
    assert len(collided) == 4 and all("same key" in r for r in collided.values()), collided
    assert collided[str(src / "a\\b")].count(str(src / "a" / "b")) == 1
    assert list(bucket_keys(s3_server, "hostile-collide")) == ["fine.txt"]
    # verify files names the collision too, even where an object is under the key
    s3_server.client().put_object(Bucket="hostile-collide", Key="a/b", Body=b"the file a/b")
    checked = verify_files([src], "s3://hostile-collide", endpoint_url=s3_server.url)
    assert not checked.ok
    assert {d.key for d in checked.different} >= {"a/b", nfc}, checked


def test_one_name_on_two_instances_is_still_one_file_not_a_collision(
        tmp_path: Path, s3_server, s3_env) -> None:
    nfd = unicodedata.normalize("NFD", "Résumé.pdf")
    for n, data in ((1, b"older"), (2, b"newer")):
        (tmp_path / f"instance-{n}").mkdir()
        path = tmp_path / f"instance-{n}" / nfd
        path.write_bytes(data)
        os.utime(path, ns=(n * 10**18, n * 10**18))
    result = export_files([tmp_path / "instance-1", tmp_path / "instance-2"],
                          "s3://hostile-instances", endpoint_url=s3_server.url,
                          create_bucket=True)
    assert result.ok and result.uploaded == 1
    assert [p.status for p in result.problems] == ["superseded"]


# --- 5: a file that changes after it was hashed --------------------------------------------


def test_a_file_that_shrinks_after_it_was_hashed_is_reported_without_a_stall(
        tmp_path: Path, s3_server, s3_env, monkeypatch) -> None:
    src = tmp_path / "uploads"
    src.mkdir()
    for name in ("shrinks.bin", "fine.bin"):  # above 8 MiB: one PUT streamed from the file
        (src / name).write_bytes(os.urandom(9 * MIB))
    # Streamed, not read into memory (as past BUFFER_MAX with a raised --multipart-threshold).
    monkeypatch.setattr(send_module, "BUFFER_MAX", 0)
    hashed = send_module.large_digests

    def then_shrink(path: str, size: int, multipart: bool = True):
        digests = hashed(path, size, multipart)
        if path.endswith("shrinks.bin"):
            os.truncate(path, 5 * MIB)  # a writer cut it short after it was hashed
        return digests

    monkeypatch.setattr(send_module, "large_digests", then_shrink)
    result = finishes(lambda: export_files(
        [src], "s3://hostile-shrink", endpoint_url=s3_server.url, create_bucket=True), [])
    [problem] = result.problems
    assert result.uploaded == 1 and problem.path.endswith("shrinks.bin"), result.problems
    assert problem.status == "failed" and "changed" in problem.reason, problem
    assert list(bucket_keys(s3_server, "hostile-shrink")) == ["fine.bin"]


def test_a_file_read_into_memory_is_sent_as_read_whatever_happens_to_it_after(
        tmp_path: Path, s3_server, s3_env, monkeypatch) -> None:
    src = tmp_path / "uploads"
    src.mkdir()
    read_as = {name: os.urandom(9 * MIB) for name in ("rewritten.bin", "shrinks.bin")}
    for name, data in read_as.items():  # 8-64 MiB: one read into memory, one PUT from it
        (src / name).write_bytes(data)
    read = send_module.read_with_digests
    reads: list[str] = []

    def then_change(path: str, size: int):
        reads.append(os.path.basename(path))
        body, digests = read(path, size)
        if path.endswith("rewritten.bin"):
            Path(path).write_bytes(os.urandom(size))  # rewritten in place once read
        else:
            os.truncate(path, MIB)
        return body, digests

    monkeypatch.setattr(send_module, "read_with_digests", then_change)
    monkeypatch.setattr(send_module, "large_digests", None)  # no second pass over the file
    result = finishes(lambda: export_files(
        [src], "s3://hostile-read-once", endpoint_url=s3_server.url, create_bucket=True), [])
    assert result.ok and result.uploaded == 2 and sorted(reads) == sorted(read_as)
    client = s3_server.client()
    for name, data in read_as.items():  # the bytes hashed are the bytes sent: a snapshot
        got = client.get_object(Bucket="hostile-read-once", Key=name)
        assert got["Body"].read() == data
        meta = {k.lower(): v for k, v in got["Metadata"].items()}  # rclone capitalises
        assert meta["sha256"] == hashlib.sha256(data).hexdigest()


def test_a_multipart_file_that_shrinks_after_it_was_hashed_is_reported_as_changed(
        tmp_path: Path, s3_server, s3_env, monkeypatch) -> None:
    src = tmp_path / "uploads"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(17 * MIB))  # parts of 8 MiB: three of them
    hashed = send_module.large_digests

    def then_shrink(path: str, size: int, multipart: bool = True):
        digests = hashed(path, size, multipart)
        os.truncate(path, 12 * MIB)
        return digests

    monkeypatch.setattr(send_module, "large_digests", then_shrink)
    result = finishes(lambda: export_files(
        [src], "s3://hostile-shrink-mp", endpoint_url=s3_server.url, create_bucket=True,
        threshold=16 * MIB), [])
    [problem] = result.problems
    assert problem.status == "failed" and "changed" in problem.reason, problem
    assert bucket_keys(s3_server, "hostile-shrink-mp") == {}
    pending = s3_server.client().list_multipart_uploads(Bucket="hostile-shrink-mp")
    assert pending.get("Uploads", []) == []


def test_a_file_that_grows_after_it_was_hashed_sends_no_byte_past_its_length(
        tmp_path: Path, s3_server, s3_env) -> None:
    grows, after = tmp_path / "grows.bin", tmp_path / "after.bin"
    grows.write_bytes(os.urandom(9 * MIB))
    after.write_bytes(os.urandom(9 * MIB))
    ep = endpoint_from_env(s3_server.url, "hostile-grow")
    s3_server.client().create_bucket(Bucket="hostile-grow")
    workers.init_worker(ep)
    entries = [Entry(str(p), p.name, p.stat().st_size, p.stat().st_mtime_ns)
               for p in (grows, after)]
    digests = [large_digests(e.path, e.size, multipart=False) for e in entries]
    with open(grows, "ab") as f:
        f.write(b"GET / HTTP/1.1\r\nHost: poisoned\r\n\r\n" * 1000)  # appended after hashing

    def send_both() -> str:  # on one thread: one keep-alive connection for both
        with pytest.raises(Exception, match="changed"):
            put_streamed(entries[0], digests[0])
        return put_streamed(entries[1], digests[1])[0]

    with ThreadPoolExecutor(1) as one_thread:
        assert one_thread.submit(send_both).result() == digests[1].sha256
    body = s3_server.client().get_object(Bucket="hostile-grow", Key="after.bin")["Body"].read()
    assert body == after.read_bytes()
    assert list(bucket_keys(s3_server, "hostile-grow")) == ["after.bin"]


def test_the_client_sends_exactly_content_length_bytes_of_a_streamed_body(
        tmp_path: Path, s3_server, s3_env) -> None:
    data = os.urandom(3 * MIB)
    path = tmp_path / "body.bin"
    path.write_bytes(data)
    s3_server.client().create_bucket(Bucket="hostile-length")
    client = RawS3(endpoint_from_env(s3_server.url, "hostile-length"))
    first = data[: 2 * MIB]
    try:
        with open(path, "rb") as f:  # longer than the length given: the rest is not sent
            client.request("PUT", "first", body=f, length=len(first),
                           headers={"content-md5": base64.b64encode(
                               hashlib.md5(first).digest()).decode()},
                           payload_sha256=hashlib.sha256(first).hexdigest())
        with open(path, "rb") as f, pytest.raises(ShortBody):  # shorter: refused, no stall
            client.request("PUT", "second", body=f, length=len(data) + 1,
                           payload_sha256="UNSIGNED-PAYLOAD")
        status, _, _ = client.request("HEAD", "first")  # the connection is fine after both
    finally:
        client.close()
    assert status == 200
    got = s3_server.client().get_object(Bucket="hostile-length", Key="first")["Body"].read()
    assert got == first
    assert list(bucket_keys(s3_server, "hostile-length")) == ["first"]


# --- 6: the S3 client believes only what checks out ----------------------------------------


class _Lying(http.server.BaseHTTPRequestHandler):
    """An S3 endpoint that misbehaves on purpose: ``server.answer(handler, body)`` decides."""

    protocol_version = "HTTP/1.1"  # keep-alive, as S3 servers do

    def _reply(self, status: int, body: bytes = b"", headers: tuple = ()) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_HEAD(self) -> None:  # noqa: N802 - the http.server API: the bucket exists
        self._reply(200)

    def do_GET(self) -> None:  # noqa: N802 - an empty bucket, unless told otherwise
        listing = getattr(self.server, "listing", None)
        self._reply(*listing) if listing else self._reply(
            200, b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            b"<IsTruncated>false</IsTruncated></ListBucketResult>")

    def do_PUT(self) -> None:  # noqa: N802
        body = self._body()
        if "partNumber=" in self.path:  # a part: answered truthfully
            etag = f'"{hashlib.md5(body).hexdigest()}"'
            self._reply(200, headers=(("ETag", etag),))
            return
        self._reply(*self.server.answer(self, body))  # type: ignore[attr-defined]

    def do_POST(self) -> None:  # noqa: N802 - multipart: create, then complete
        self._body()
        if self.path.endswith("?uploads=") or self.path.endswith("?uploads"):
            self._reply(200, b"<InitiateMultipartUploadResult><UploadId>u-1</UploadId>"
                        b"</InitiateMultipartUploadResult>")
        else:
            self._reply(*self.server.complete(self))  # type: ignore[attr-defined]

    def do_DELETE(self) -> None:  # noqa: N802
        self._reply(204)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def lying() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Lying)
    server.daemon_threads = True
    server.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _two_files(tmp_path: Path) -> Path:
    src = tmp_path / "uploads"
    src.mkdir()
    (src / "a.txt").write_bytes(b"first")
    (src / "b.txt").write_bytes(b"second")
    return src


@pytest.mark.parametrize("answer, reason", [
    ((200, b"", (("ETag", WRONG_ETAG),)), "ETag"),
    ((200, b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
           b"<Message>Access Denied</Message></Error>", (("ETag", WRONG_ETAG),)),
     "AccessDenied"),
    ((200, b"<Error><Code>InternalError</Code><Message>try again</Message></Error>", ()),
     "InternalError"),
])
def test_a_wrong_etag_or_a_200_holding_an_error_is_not_recorded_as_uploaded(
        tmp_path: Path, s3_env, lying, answer: tuple, reason: str) -> None:
    lying.answer = lambda handler, body: answer
    src = _two_files(tmp_path)
    state = tmp_path / "state.ndjson"
    result = export_files([src], "s3://lying", endpoint_url=lying.url, state_file=state)
    assert (result.uploaded, result.failed) == (0, 2), result.problems
    assert all(reason in p.reason for p in result.problems), result.problems
    assert not state.exists() or state.read_text() == ""


def test_an_etag_that_is_not_the_md5_is_believed_when_the_server_says_it_encrypted_with_kms(
        tmp_path: Path, s3_env, lying) -> None:
    lying.answer = lambda handler, body: (200, b"", (
        ("ETag", WRONG_ETAG), ("x-amz-server-side-encryption", "aws:kms")))
    result = export_files([_two_files(tmp_path)], "s3://lying", endpoint_url=lying.url,
                          state_file=tmp_path / "state.ndjson")
    assert result.ok and result.uploaded == 2


def test_a_multipart_upload_completed_with_a_wrong_etag_is_not_recorded_as_uploaded(
        tmp_path: Path, s3_env, lying) -> None:
    src = tmp_path / "uploads"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(6 * MIB))
    lying.complete = lambda handler: (200, b"<CompleteMultipartUploadResult><ETag>"
                                      b"&quot;0123456789abcdef0123456789abcdef-1&quot;</ETag>"
                                      b"</CompleteMultipartUploadResult>", ())
    result = export_files([src], "s3://lying", endpoint_url=lying.url, threshold=5 * MIB,
                          state_file=tmp_path / "state.ndjson")
    [problem] = result.problems
    assert result.uploaded == 0 and problem.status == "failed" and "ETag" in problem.reason


@pytest.mark.parametrize("target", [
    "s3://shop/../x", "s3://shop/a/../../x", "s3://shop/./x", "s3://shop/a//b", "s3://../x",
    "s3://shop/a\\..\\x",
])
def test_a_target_that_would_put_keys_outside_the_prefix_is_refused(
        tmp_path: Path, s3_server, s3_env, target: str) -> None:
    with pytest.raises(UsageError):
        parse_target(target)
    run = migrate_cli("export-files", str(_two_files(tmp_path)), "--to", target,
                      "--endpoint-url", s3_server.url, "--create-bucket", env=s3_env)
    assert run.returncode == 2 and run.stderr.strip().count("\n") == 0, run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("prefix", ["../x", "a/../../x", "..", "a/..", "./a", "a//b"])
def test_object_key_refuses_a_prefix_that_leaves_itself(prefix: str) -> None:
    with pytest.raises(ValueError):
        object_key("avatars/me.png", prefix)


def test_an_endpoint_password_is_never_printed(tmp_path: Path, s3_server, s3_env) -> None:
    src = _two_files(tmp_path)
    host = s3_server.url.removeprefix("http://")
    endpoint = f"http://migrate:pw-S3CRET-9@{host}"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://migrate:pw-S3CRET-9@127.0.0.1:{sock.getsockname()[1]}"
    runs = [
        migrate_cli("export-files", str(src), "--to", "s3://hostile-pw", "--endpoint-url",
                    endpoint, "--create-bucket", env=s3_env),
        migrate_cli("export-files", str(src), "--to", "s3://hostile-pw", "--endpoint-url",
                    endpoint, "--json", env=s3_env),
        migrate_cli("export-files", str(src), "--to", "s3://hostile-pw", "--endpoint-url",
                    endpoint, "--dry-run", env=s3_env),
        migrate_cli("export-files", str(src), "--to", "s3://no-such-bucket", "--endpoint-url",
                    endpoint, env=s3_env),
        migrate_cli("verify", "files", str(src), "--to", "s3://hostile-pw", "--endpoint-url",
                    endpoint, env=s3_env),
        migrate_cli("export-files", str(src), "--to", "s3://hostile-pw", "--endpoint-url",
                    dead, env=s3_env),
    ]
    assert [r.returncode for r in runs] == [0, 0, 0, 2, 0, 2], [r.stderr for r in runs]
    assert "migrate:***@" in runs[0].stdout  # the endpoint is still named
    for run in runs:
        assert "S3CRET" not in run.stdout + run.stderr, run.stdout + run.stderr


# --- 16: what came from the data is shown as text ------------------------------------------


TAIL = "[bold red]x\x1b[2J\x1b]0;owned\x07\u202egnp.exe"  # markup, escapes, a bidi override


def test_markup_and_terminal_escapes_in_names_and_reasons_are_shown_as_text(
        tmp_path: Path, s3_server, s3_env, lying) -> None:
    src = tmp_path / "uploads"
    folder = src / "a ["  # so that a path reads ".../a [/]...": an unopened closing tag
    folder.mkdir(parents=True)
    (folder / f"]{TAIL}").symlink_to("/etc/hostname")  # outside the folder: reported
    os.mkfifo(folder / f"]{TAIL}\nexport complete: all fine")  # a special file: reported
    (src / "ok.txt").write_bytes(b"fine")
    lying.answer = lambda handler, body: (403, (
        f"<Error><Code>AccessDenied</Code><Message>[/]{TAIL}</Message></Error>").encode(), ())

    runs = {
        "export": migrate_cli("export-files", str(src), "--to", "s3://hostile-markup",
                              "--endpoint-url", s3_server.url, "--create-bucket", env=s3_env),
        "refused": migrate_cli("export-files", str(src), "--to", "s3://lying",
                               "--endpoint-url", lying.url, env=s3_env),
    }
    lying.listing = (403, f"<Error><Code>AccessDenied</Code><Message>[/]{TAIL}</Message>"
                          "</Error>".encode())
    runs["listing"] = migrate_cli("export-files", str(src), "--to", "s3://lying",
                                  "--endpoint-url", lying.url, env=s3_env)
    s3_server.client().delete_object(Bucket="hostile-markup", Key="ok.txt")
    (folder / f"]{TAIL}.txt").write_bytes(b"never exported")
    runs["verify"] = migrate_cli("verify", "files", str(src), "--to", "s3://hostile-markup",
                                 "--endpoint-url", s3_server.url, env=s3_env)

    # excluded files are not failures; a listing refused is a connection error, one line
    expected = {"export": 0, "refused": 1, "listing": 2, "verify": 1}
    for name, run in runs.items():
        out = run.stdout + run.stderr
        assert run.returncode == expected[name] and "Traceback" not in out, (name, out)
        assert not ESCAPES.search(out), (name, out)
        assert "[/][bold red]x" in out, (name, out)
        assert "\\x1b[2J" in out and "\\u202e" in out, (name, out)
        assert "\nexport complete: all fine" not in out, (name, out)


# --- what the property tests found, on the real server --------------------------------------


def test_a_name_with_a_control_character_does_not_break_the_next_listing(
        tmp_path: Path, s3_server, s3_env) -> None:
    """rclone (and S3) write such a key as ``&#x1;`` in a listing, which XML 1.0 forbids: the
    listing is asked for URL-encoded keys, so every later run still reads it."""
    src = tmp_path / "uploads"
    src.mkdir()
    names = ["bell\x07.txt", "a\x01b.txt", "cr\rlf\n.txt", "tab\t.txt", "plain.txt",
             "sp ace+plus%41.txt"]
    for name in names:
        (src / name).write_bytes(name.encode())
    first = export_files([src], "s3://hostile-control", endpoint_url=s3_server.url,
                         create_bucket=True)
    assert first.ok and first.uploaded == len(names)
    again = export_files([src], "s3://hostile-control", endpoint_url=s3_server.url,
                         state_file=tmp_path / "fresh-state.ndjson")  # confirmed by the listing
    assert again.ok and again.skipped == len(names) and again.uploaded == 0
    assert verify_files([src], "s3://hostile-control", endpoint_url=s3_server.url).ok


def test_a_small_file_still_being_written_when_walked_is_sent_as_it_settled(
        tmp_path: Path, s3_server, s3_env) -> None:
    # A live app's upload: the walk saw it half-written; by the read it is whole. One more look
    # at its settled size sends it (a file that keeps changing is still reported: above).
    avatar = tmp_path / "me.png"
    avatar.write_bytes(b"\x89PNG" + os.urandom(2000))
    half = 1000
    s3_server.client().create_bucket(Bucket="hostile-settled")
    workers.init_worker(endpoint_from_env(s3_server.url, "hostile-settled"))
    key, status, size, sha, _, reason = send_module.put_small(
        (str(avatar), "me.png", avatar.stat().st_mtime_ns, half))
    assert (status, reason, size) == ("uploaded", "", avatar.stat().st_size)
    assert sha == hashlib.sha256(avatar.read_bytes()).hexdigest()
    body = s3_server.client().get_object(Bucket="hostile-settled", Key="me.png")["Body"].read()
    assert body == avatar.read_bytes()
