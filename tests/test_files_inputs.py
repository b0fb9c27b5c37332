"""What export-files reads from outside is checked: file names, its own state file, the chunk
folders of uploads in progress, and the S3 server's answers. A bad one is reported by name, the
rest goes on, and nothing ends in a traceback or an endless loop."""

from __future__ import annotations

import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrate.errors import ConnectionFailure
from migrate.files import export_files
from migrate.files.carry import describe_upload
from migrate.files.plan import plan
from migrate.files.target import list_prefix
from migrate.files.transfer import MIB, Endpoint
from migrate.files.walk import Entry
from tests import test_files_support as support

s3_server, s3_env = support.s3_server, support.s3_env


def test_a_file_name_that_is_not_utf8_is_reported_and_the_rest_exported(
        tmp_path: Path, s3_server, s3_env) -> None:
    src = tmp_path / "uploads"
    (src / "avatars").mkdir(parents=True)
    (src / "avatars" / "ok.png").write_bytes(b"fine")
    bad = os.path.join(os.fsencode(src / "avatars"), b"caf\xe9.png")  # Latin-1, not UTF-8
    with open(bad, "wb") as f:
        f.write(b"latin-1 name")
    manifest = tmp_path / "manifest.ndjson"

    result = export_files([src], "s3://shop-names", endpoint_url=s3_server.url,
                          create_bucket=True, manifest=manifest)

    assert result.uploaded == 1 and result.failed == 1
    [problem] = result.problems
    assert "UTF-8" in problem.reason and problem.path.endswith("caf\\xe9.png")
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
    assert sorted(row["status"] for row in rows) == ["failed", "uploaded"]
    assert list(support.bucket_keys(s3_server, "shop-names")) == ["avatars/ok.png"]


def test_a_damaged_state_file_is_ignored_line_by_line(tmp_path: Path, s3_server,
                                                      s3_env) -> None:
    src = tmp_path / "uploads"
    src.mkdir()
    for i in range(5):
        (src / f"f{i}.txt").write_bytes(b"x" * i)
    state = tmp_path / "state.ndjson"
    first = export_files([src], "s3://shop-state", endpoint_url=s3_server.url,
                         create_bucket=True, state_file=state)
    assert first.uploaded == 5
    lines = state.read_text().splitlines()
    row = json.loads(lines[0])
    with open(state, "ab") as f:
        f.write(json.dumps({**row, "e": 7}).encode() + b"\n")  # a number where an ETag goes
        f.write(json.dumps({**row, "s": "5"}).encode() + b"\n")
        f.write(b"\xff\xfe not text\n[1, 2]\n{\"p\": ")  # bytes, a list, a torn last line

    again = export_files([src], "s3://shop-state", endpoint_url=s3_server.url,
                         state_file=state)
    assert again.ok and again.skipped == 5 and again.uploaded == 0


def test_the_state_file_is_trusted_only_for_the_same_unchanged_inode(
        tmp_path: Path, s3_server, s3_env, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "uploads"
    src.mkdir()
    for name in ("kept.txt", "rewritten.txt", "swapped.txt"):
        (src / name).write_bytes(b"version-1 " + name.encode())
    state = tmp_path / "state.ndjson"
    first = export_files([src], "s3://shop-inode", endpoint_url=s3_server.url,
                         create_bucket=True, state_file=state)
    assert first.uploaded == 3
    # Same size and mtime, other bytes: rewritten in place and its mtime set back (cp -p,
    # rsync -t), or another file renamed over it. Only the inode and ctime tell.
    for name, how in (("rewritten.txt", "in place"), ("swapped.txt", "rename")):
        path = src / name
        st = path.stat()
        data = b"version-2 " + name.encode()
        if how == "in place":
            path.write_bytes(data)
        else:
            (tmp_path / name).write_bytes(data)
            os.replace(tmp_path / name, path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert path.stat().st_size == st.st_size
    import migrate.files.plan as plan_module

    hashed: list[str] = []
    digests = plan_module.file_digests

    def counted(path: str, size: int, threshold: int):
        hashed.append(os.path.basename(path))
        return digests(path, size, threshold)

    monkeypatch.setattr(plan_module, "file_digests", counted)
    again = export_files([src], "s3://shop-inode", endpoint_url=s3_server.url,
                         state_file=state)
    assert (again.uploaded, again.skipped) == (2, 1)
    assert sorted(hashed) == ["rewritten.txt", "swapped.txt"]  # the kept file is not read
    client = s3_server.client()
    for name in ("rewritten.txt", "swapped.txt"):
        body = client.get_object(Bucket="shop-inode", Key=name)["Body"].read()
        assert body == b"version-2 " + name.encode()


def test_a_chunk_folder_with_a_symlinked_chunk_or_an_oversized_upload_json_is_refused(
        tmp_path: Path) -> None:
    chunks = tmp_path / "uploads" / "chunks"
    linked = chunks / ("a" * 32)
    linked.mkdir(parents=True)
    (linked / "upload.json").write_text(json.dumps({"filename": "v.mp4", "user_id": 1}))
    (linked / "00001.part").write_bytes(b"chunk")
    (linked / "00002.part").symlink_to("/etc/hostname")
    huge = chunks / ("b" * 32)
    huge.mkdir()
    (huge / "upload.json").write_text(json.dumps({"filename": "v" * 100_000, "user_id": 1}))
    good = chunks / ("c" * 32)
    good.mkdir()
    (good / "upload.json").write_text(json.dumps({"filename": "v.mp4", "user_id": 1}))
    (good / "00001.part").write_bytes(b"chunk")

    up = describe_upload(str(linked), "")
    assert up.status == "failed" and "00002.part is not a regular file" in up.reason
    up = describe_upload(str(huge), "")
    assert up.status == "failed" and "larger than" in up.reason
    up = describe_upload(str(good), "pre")
    assert (up.status, up.chunks, up.key) == ("pending", 1, f"pre/files/{'c' * 32}/v.mp4")


def test_one_key_in_two_folders_whose_newest_copy_cannot_be_read_drops_nothing(
        tmp_path: Path) -> None:
    newest = Entry(str(tmp_path / "instance-2" / "me.png"), "avatars/me.png", 4, 2_000)
    older = Entry(str(tmp_path / "instance-1" / "me.png"), "avatars/me.png", 4, 1_000)
    Path(older.path).parent.mkdir()
    Path(older.path).write_bytes(b"old!")  # the newest vanished before it could be read
    records = []
    ep = Endpoint("http://127.0.0.1:9", "shop", "us-east-1")

    todo = plan([older, newest], {}, {}, 64 * MIB,
                lambda rec, entry=None, etag="": records.append(rec), ep)

    # The newest is still the one to send (and is reported when it cannot be); the older
    # copy is accounted for, not silently dropped.
    assert todo == [newest]
    assert [(r.path, r.status) for r in records] == [(older.path, "superseded")]


class _Canned(http.server.BaseHTTPRequestHandler):
    """Answers every request with the body the test put in ``server.body``."""

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        body = self.server.body(self.path)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading, as it should

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def canned() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


LOOPING = (b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
           b"<Contents><Key>a</Key><Size>1</Size><ETag>x</ETag></Contents>"
           b"<IsTruncated>true</IsTruncated><NextContinuationToken>same</NextContinuationToken>"
           b"</ListBucketResult>")


@pytest.mark.parametrize("body, message", [
    (b"<ListBucketResult><Contents><Key>a", "cannot be read"),
    (b'<!DOCTYPE x [<!ENTITY a "aaaa">]><ListBucketResult/>', "DOCTYPE"),
    (b"<ListBucketResult><Contents><Key>a</Key><Size>big</Size></Contents></ListBucketResult>",
     "cannot be read"),
    (LOOPING, "repeats a continuation token"),
    (b"<ListBucketResult>" + b" " * (17 * 1024 * 1024), "more than"),
])
def test_a_listing_that_is_malformed_loops_or_is_huge_is_one_clear_error(
        canned, body: bytes, message: str) -> None:
    canned.body = lambda _path: body
    ep = Endpoint(f"http://127.0.0.1:{canned.server_address[1]}", "shop", "us-east-1",
                  "AKIATEST", "secret")
    with pytest.raises(ConnectionFailure, match=message) as raised:
        list_prefix(ep, "")
    assert "\n" not in str(raised.value) and "secret" not in str(raised.value)
