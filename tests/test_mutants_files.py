"""File-export behaviour a mutation run (issue 10) found no test for: small deliberate bugs in
migrate.files passed every test. Each test names what a user would notice, on a real S3 server
(rclone serve s3) where the behaviour involves one."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from migrate.files import export_files, verify_files
from migrate.files.digests import MAX_PARTS, MIN_PART, file_digests, large_digests, part_size_for
from migrate.files.plan import plan
from migrate.files.state import default_state_path, load_state
from migrate.files.transfer import MIB, Endpoint
from migrate.files.walk import Entry
from tests import test_files_support as support

s3_server, s3_env = support.s3_server, support.s3_env


def recorder(records: list):
    """The ``record`` callback ``plan`` reports every file it does not send to. Each record
    must come with its entry (that is what advances the progress bar) and the path it names."""

    def record(rec, entry=None, etag=""):
        assert entry is not None and entry.path == rec.path, "a file left out of the progress"
        records.append(rec)
        if rec.status == "skipped":
            assert etag, "a skipped file not remembered in the state file"

    return record


def entry_for(path: Path, key: str, mtime_ns: int, size: int | None = None) -> Entry:
    return Entry(str(path), key, path.stat().st_size if size is None else size, mtime_ns)


def test_the_same_file_on_two_instances_is_uploaded_once_and_counted_as_a_duplicate(
        tmp_path: Path, s3_server, s3_env) -> None:
    for n in (1, 2):
        path = tmp_path / f"instance-{n}" / "avatars" / "me.png"
        path.parent.mkdir(parents=True)
        path.write_bytes(b"the same avatar on both instances")
        os.utime(path, ns=(n * 10**18, n * 10**18))
    progress: list[tuple[int, int]] = []
    manifest = tmp_path / "manifest.ndjson"
    result = export_files([tmp_path / "instance-1", tmp_path / "instance-2"],
                          "s3://mutants-duplicate", endpoint_url=s3_server.url,
                          create_bucket=True, manifest=manifest, jobs=1,
                          on_progress=lambda files, total, done, size: progress.append(
                              (files, total)))
    # Equal content: one upload and one duplicate, not "another instance has a newer file".
    assert result.ok and (result.uploaded, result.duplicates) == (1, 1)
    assert result.problems == []
    assert support.bucket_keys(s3_server, "mutants-duplicate") == {"avatars/me.png": 33}
    assert progress[-1] == (2, 2)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    duplicate = next(row for row in rows if row["status"] == "duplicate")
    assert duplicate["path"] == str(tmp_path / "instance-1" / "avatars" / "me.png")
    assert (duplicate["key"], duplicate["size"]) == ("avatars/me.png", 33)
    assert duplicate["sha256"] == hashlib.sha256(b"the same avatar on both instances").hexdigest()
    assert str(tmp_path / "instance-2" / "avatars" / "me.png") in duplicate["reason"]


def test_an_older_different_copy_is_reported_superseded_with_its_own_checksum(
        tmp_path: Path) -> None:
    copies = []
    for n, data in ((2, b"newer"), (1, b"old")):
        path = tmp_path / f"instance-{n}" / "me.png"
        path.parent.mkdir()
        path.write_bytes(data)
        copies.append(entry_for(path, "avatars/me.png", n * 1000))
    newest, older = copies
    records: list = []
    ep = Endpoint("http://127.0.0.1:9", "shop", "us-east-1")

    assert plan([older, newest], {}, {}, 64 * MIB, recorder(records), ep) == [newest]
    assert [(r.path, r.key, r.size, r.sha256, r.status) for r in records] == [
        (older.path, "avatars/me.png", 3, hashlib.sha256(b"old").hexdigest(), "superseded")]
    assert newest.path in records[0].reason


def test_every_older_copy_of_a_key_is_accounted_for_even_after_one_cannot_be_read(
        tmp_path: Path) -> None:
    copies = []
    for n, data in ((3, b"same"), (2, b"same"), (1, b"same")):
        path = tmp_path / f"instance-{n}" / "me.png"
        path.parent.mkdir()
        path.write_bytes(data)
        # The middle copy changed size after it was listed: it cannot be read as listed.
        copies.append(entry_for(path, "avatars/me.png", n * 1000, size=99 if n == 2 else None))
    newest, changed, oldest = copies
    records: list = []
    ep = Endpoint("http://127.0.0.1:9", "shop", "us-east-1")

    todo = plan([oldest, changed, newest], {}, {}, 64 * MIB, recorder(records), ep)

    assert todo == [newest]
    outcome = {(r.path, r.key, r.status) for r in records}
    assert outcome == {(changed.path, changed.key, "failed"),
                       (oldest.path, oldest.key, "duplicate")}
    failed = next(r for r in records if r.status == "failed")
    assert failed.size == 99 and "99" in failed.reason


def test_a_listed_file_that_cannot_be_read_is_reported_not_sent(tmp_path: Path) -> None:
    path = tmp_path / "me.png"
    path.write_bytes(b"grew after it was listed")
    listed = entry_for(path, "me.png", 1000, size=4)
    records: list = []
    ep = Endpoint("http://127.0.0.1:9", "shop", "us-east-1")

    todo = plan([listed], {"me.png": (4, "0" * 32)}, {}, 64 * MIB, recorder(records), ep)

    assert todo == []
    assert [(r.path, r.key, r.size, r.status) for r in records] == [
        (listed.path, "me.png", 4, "failed")]
    assert records[0].reason


def test_a_changed_file_under_a_multipart_etag_is_sent_and_an_equal_one_is_not(
        tmp_path: Path, s3_server, s3_env) -> None:
    bucket = "mutants-multipart"
    client = s3_server.client()
    client.create_bucket(Bucket=bucket)
    ep = Endpoint(s3_server.url, bucket, "us-east-1", support.ACCESS_KEY, support.SECRET_KEY)
    same, changed = tmp_path / "same.bin", tmp_path / "changed.bin"
    same.write_bytes(b"a" * 1000)
    changed.write_bytes(b"b" * 1000)
    # Both objects were uploaded in parts of another size: their ETags cannot be recomputed,
    # only their sha256 metadata tells whether the local file is what the bucket holds.
    for key in ("same.bin", "changed.bin"):
        client.put_object(Bucket=bucket, Key=key, Body=b"a" * 1000,
                          Metadata={"sha256": hashlib.sha256(b"a" * 1000).hexdigest()})
    listing = {"same.bin": (1000, "0123456789abcdef0123456789abcdef-3"),
               "changed.bin": (1000, "0123456789abcdef0123456789abcdef-3")}
    entries = [entry_for(same, "same.bin", 1), entry_for(changed, "changed.bin", 1)]
    records: list = []

    todo = plan(entries, listing, {}, 100, recorder(records), ep)

    assert [e.key for e in todo] == ["changed.bin"]
    assert [(r.key, r.status, r.sha256) for r in records] == [
        ("same.bin", "skipped", hashlib.sha256(b"a" * 1000).hexdigest())]

    # The other way round: a small local file (plain MD5) beside a multipart ETag, and a
    # file big enough for parts beside a plain one: the sha256 metadata decides too.
    for threshold, etag in ((64 * MIB, "0123456789abcdef0123456789abcdef-3"),
                            (100, "0123456789abcdef0123456789abcdef")):
        records = []
        todo = plan([entry_for(same, "same.bin", 1)], {"same.bin": (1000, etag)}, {},
                    threshold, recorder(records), ep)
        assert todo == [] and [r.status for r in records] == ["skipped"], (threshold, etag)


def test_a_symlink_to_a_folder_inside_the_source_is_counted_excluded_and_its_files_sent_once(
        tmp_path: Path, s3_server, s3_env) -> None:
    src = tmp_path / "uploads"
    (src / "real").mkdir(parents=True)
    (src / "real" / "a.txt").write_bytes(b"once")
    (src / "alias").symlink_to(src / "real")
    manifest = tmp_path / "manifest.ndjson"
    result = export_files([src], "s3://mutants-linked-folder", endpoint_url=s3_server.url,
                          create_bucket=True, manifest=manifest)
    assert result.ok and (result.uploaded, result.excluded) == (1, 1)
    assert [(p.path, p.status) for p in result.problems] == [(str(src / "alias"), "excluded")]
    assert "folder inside the source" in result.problems[0].reason
    assert support.bucket_keys(s3_server, "mutants-linked-folder") == {"real/a.txt": 4}


# --- checksums and the state file ----------------------------------------------------------


def test_the_multipart_etag_starts_at_the_threshold_and_is_the_md5_of_the_parts(
        tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    md5 = hashlib.md5(b"abc")
    assert file_digests(str(path), 3, 4) == (hashlib.sha256(b"abc").hexdigest(), md5.hexdigest())
    # At the threshold: one part, so the ETag S3 gives is md5(md5(part)) with "-1".
    sha, etag = file_digests(str(path), 3, 3)
    assert sha == hashlib.sha256(b"abc").hexdigest()
    assert etag == hashlib.md5(md5.digest()).hexdigest() + "-1"
    assert large_digests(str(path), 3).part_md5s == [md5.digest()]
    assert large_digests(str(path), 3, multipart=False).part_md5s == []


def test_a_file_of_exactly_two_parts_has_the_etag_of_two_parts(tmp_path: Path) -> None:
    path = tmp_path / "two-parts.bin"
    parts = [b"a" * MIN_PART, b"b" * MIN_PART]
    path.write_bytes(b"".join(parts))
    _, etag = file_digests(str(path), 2 * MIN_PART, 1)
    both = b"".join(hashlib.md5(part).digest() for part in parts)
    assert etag == hashlib.md5(both).hexdigest() + "-2"


def test_the_state_file_is_per_endpoint_and_bucket_in_the_users_cache(tmp_path: Path,
                                                                      monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    shop = default_state_path(Endpoint("http://127.0.0.1:9000", "shop", "us-east-1"))
    other = default_state_path(Endpoint("http://127.0.0.1:9000", "other", "us-east-1"))
    assert shop.parent == other.parent == tmp_path / "xdg" / "migrate" / "export-files"
    assert shop != other
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_state_path(Endpoint("http://127.0.0.1:9000", "shop", "us-east-1")).parent == (
        tmp_path / "home" / ".cache" / "migrate" / "export-files")


def test_the_part_size_doubles_only_past_ten_thousand_parts() -> None:
    assert part_size_for(MIN_PART * MAX_PARTS) == MIN_PART
    assert part_size_for(MIN_PART * MAX_PARTS + 1) == 2 * MIN_PART
    assert part_size_for(4 * MIN_PART * MAX_PARTS + 1) == 8 * MIN_PART


def test_the_state_file_remembers_what_each_uploaded_file_hashed_to(
        tmp_path: Path, s3_server, s3_env) -> None:
    src = tmp_path / "uploads"
    (src / "é").mkdir(parents=True)
    (src / "é" / "a.txt").write_bytes(b"remember me")
    state = tmp_path / "state.ndjson"
    assert export_files([src], "s3://mutants-state", endpoint_url=s3_server.url,
                        create_bucket=True, state_file=state).uploaded == 1
    path = src / "é" / "a.txt"
    known = load_state(state)[str(path)]
    assert (known.size, known.mtime_ns) == (11, path.stat().st_mtime_ns)
    assert known.sha256 == hashlib.sha256(b"remember me").hexdigest()
    assert hashlib.md5(b"remember me").hexdigest() in known.etags.split()


# --- verify files ------------------------------------------------------------------------------


def test_verify_files_counts_matches_and_names_each_difference(
        tmp_path: Path, s3_server, s3_env) -> None:
    src = tmp_path / "uploads"
    src.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (src / name).write_bytes(f"content of {name}".encode())
    bucket = "mutants-verify"
    assert export_files([src], f"s3://{bucket}", endpoint_url=s3_server.url,
                        create_bucket=True).ok
    progress: list[tuple[int, int]] = []
    result = verify_files([src], f"s3://{bucket}", endpoint_url=s3_server.url,
                          on_progress=lambda done, total, done_bytes, total_bytes: progress.append(
                              (done, total)))
    assert result.ok and (result.checked, result.matching) == (3, 3)
    assert (result.target, result.deep) == (f"s3://{bucket}", False)
    assert isinstance(result.seconds, float) and 0 <= result.seconds < 600
    assert progress[-1] == (3, 3)
    client = s3_server.client()
    # Same size, other bytes, the metadata copied along: the MD5 in the ETag tells.
    head = client.head_object(Bucket=bucket, Key="a.txt")
    client.put_object(Bucket=bucket, Key="a.txt", Body=b"CONTENT of a.txt",
                      Metadata=head["Metadata"])
    client.delete_object(Bucket=bucket, Key="b.txt")
    result = verify_files([src], f"s3://{bucket}", endpoint_url=s3_server.url)
    assert (result.checked, result.matching) == (3, 1)
    assert [(d.path, d.key) for d in result.different] == [(str(src / "a.txt"), "a.txt")]
    assert result.different[0].problem.startswith("content differs")
    assert [(d.path, d.key, d.problem) for d in result.missing] == [
        (str(src / "b.txt"), "b.txt", "missing")]


def test_verify_files_reads_the_sha256_metadata_where_the_etag_cannot_tell(
        tmp_path: Path, s3_server, s3_env) -> None:
    src = tmp_path / "uploads"
    src.mkdir()
    (src / "same.bin").write_bytes(b"x" * 100)
    (src / "other.bin").write_bytes(b"x" * 100)
    (src / "no-metadata.bin").write_bytes(b"x" * 100)
    bucket = "mutants-verify-sha"
    client = s3_server.client()
    client.create_bucket(Bucket=bucket)
    for key, sha in (("same.bin", hashlib.sha256(b"x" * 100).hexdigest()),
                     ("other.bin", hashlib.sha256(b"y" * 100).hexdigest())):
        client.put_object(Bucket=bucket, Key=key, Body=b"x" * 100, Metadata={"sha256": sha})
    client.put_object(Bucket=bucket, Key="no-metadata.bin", Body=b"x" * 100)  # another tool's
    # threshold=50: the files count as multipart, so their ETags say nothing of the content.
    result = verify_files([src], f"s3://{bucket}", endpoint_url=s3_server.url, threshold=50)
    assert result.matching == 1
    assert sorted((d.key, d.problem) for d in result.different) == [
        ("no-metadata.bin", "no sha256 metadata and the ETag differs: use --deep"),
        ("other.bin", "sha256 metadata differs")]


def test_verify_files_checks_the_newest_copy_of_a_key_found_on_two_instances(
        tmp_path: Path, s3_server, s3_env) -> None:
    for n, data in ((1, b"old avatar"), (2, b"new avatar")):
        path = tmp_path / f"instance-{n}" / "me.png"
        path.parent.mkdir()
        path.write_bytes(data)
        os.utime(path, ns=(n * 10**18, n * 10**18))
    sources = [tmp_path / "instance-1", tmp_path / "instance-2"]
    assert export_files(sources, "s3://mutants-verify-newest", endpoint_url=s3_server.url,
                        create_bucket=True).uploaded == 1
    result = verify_files(sources, "s3://mutants-verify-newest", endpoint_url=s3_server.url)
    assert result.ok and (result.checked, result.matching) == (1, 1), result.different
