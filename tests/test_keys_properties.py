"""Properties over what comes from outside: file names, prefixes, S3 keys and listings.

Hypothesis draws names from every Unicode scalar (with ``/``, ``\\``, ``.``, combining marks and
control characters drawn often) and bodies from arbitrary bytes and well-formed listings. The
promises: a key is under its prefix or refused, ``relative_path`` gives back only a path
``object_key`` maps to that very key, two names for one key are always seen as a collision, and a
listing is parsed to what the server listed or refused in one line. Example counts are modest:
these run in ``make test``.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from urllib.parse import quote_plus
from xml.sax.saxutils import escape

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from migrate.errors import UsageError
from migrate.files.target import parse_target
from migrate.files.transfer import S3Error, parse_listing
from migrate.files.walk import collided, walk
from migrate.keys import clean_prefix, object_key, relative_path

QUICK = settings(max_examples=300, deadline=None)

# Any Unicode scalar, with the characters that matter in paths drawn often.
CHAR = st.one_of(
    st.sampled_from(["/", "\\", ".", "..", " ", "é", "e\u0301", "\u212b", ":", "\x01", "\r"]),
    st.characters(blacklist_categories=("Cs",)),
)
TEXT = st.lists(CHAR, max_size=12).map("".join)
PREFIX = st.one_of(st.just(""), st.sampled_from(["shop", "/shop/media/", "a/b", "../x", "a//b"]),
                   TEXT)


def _segments(key: str) -> list[str]:
    return key.split("/")


@QUICK
@given(TEXT, PREFIX)
@example("a\\..\\..\\etc", "")
@example("x", "../outside")
def test_a_key_is_under_its_prefix_or_refused(rel: str, prefix: str) -> None:
    try:
        key = object_key(rel, prefix)
    except ValueError:
        return
    clean = clean_prefix(prefix)  # object_key took it, so it is clean
    tail = key[len(clean) + 1:] if clean else key
    assert not clean or key.startswith(clean + "/")
    assert all(part not in ("", ".", "..") for part in _segments(tail)), key
    assert all(part not in ("", ".", "..") for part in _segments(key)), key
    assert unicodedata.is_normalized("NFC", key)
    # The key's own path gives the key back, and relative_path is its inverse.
    assert relative_path(key, prefix) == tail
    assert object_key(tail, prefix) == key
    assert object_key("./" + rel, prefix) == key  # the fast path agrees with the full one


@QUICK
@given(TEXT, PREFIX)
@example("..", "")
@example("a//b", "")
@example("shop/../../etc/passwd", "shop")
def test_relative_path_gives_only_a_path_that_maps_to_that_very_key(key: str,
                                                                      prefix: str) -> None:
    try:
        path = relative_path(key, prefix)
    except ValueError:
        return
    assert object_key(path, prefix) == key
    assert ".." not in _segments(path.replace("\\", "/")) and not path.startswith("/")


@QUICK
@given(TEXT)
@example("shop/../x")
@example("../x")
@example("ab")
def test_a_target_is_a_bucket_and_a_clean_prefix_or_one_usage_error(rest: str) -> None:
    try:
        bucket, prefix = parse_target("s3://" + rest)
    except UsageError as exc:
        assert "\n" not in str(exc)
        return
    assert 3 <= len(bucket) <= 63 and "/" not in bucket and ".." not in bucket
    assert clean_prefix(prefix) == prefix
    assert object_key("f", prefix).startswith(f"{prefix}/" if prefix else "f")


NAME_PART = TEXT.filter(lambda s: s not in ("", ".", "..") and "/" not in s and "\x00" not in s)
REL_NAME = st.lists(NAME_PART, min_size=1, max_size=3).map("/".join)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(REL_NAME, min_size=1, max_size=6, unique=True))
@example(["a\\b", "a/b"])
@example([unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")])
def test_names_that_share_a_key_on_disk_are_always_a_collision(tmp_path_factory,
                                                               names: list[str]) -> None:
    root = tmp_path_factory.mktemp("names")
    for name in names:
        try:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(name.encode("utf-8", "surrogatepass"))
        except OSError:
            continue  # a name this file system refuses (too long, a file where a folder goes)
    found = walk([str(root)], "pre")
    by_key: dict[str, list] = defaultdict(list)
    for entry in found.entries:
        assert entry.key.startswith("pre/")
        by_key[entry.key].append(entry)
    for group in by_key.values():
        assert len(group) == 1 or collided(group, found.names), group


# --- the listing parser ------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
@example(b"")
@example(b"<ListBucketResult><Contents><Size>-1</Size></Contents></ListBucketResult>")
@example('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY a "SMUGGLED">]>'
         "<ListBucketResult><Contents><Key>&a;</Key></Contents></ListBucketResult>"
         .encode("utf-16"))
def test_any_body_is_parsed_or_refused_in_one_line(body: bytes) -> None:
    try:
        found, prefixes, token = parse_listing(body)
    except S3Error as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 500
        return
    assert all(isinstance(k, str) and size >= 0 for k, (size, _) in found.items())
    assert "SMUGGLED" not in found  # entities are never expanded, whatever the encoding
    assert isinstance(token, str) and all(isinstance(p, str) for p in prefixes)


KEY = st.lists(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20).map("".join)


@QUICK
@given(st.dictionaries(KEY, st.tuples(st.integers(0, 2**63), st.text("0123456789abcdef",
                                                                     max_size=34)),
                       max_size=5),
       st.booleans())
@example({"a\x01b": (1, "x"), "c\rd": (2, "y")}, True)
def test_a_listing_gives_back_every_key_the_server_listed(
        objects: dict[str, tuple[int, str]], truncated: bool) -> None:
    """The server encodes keys as S3 does when asked (``encoding-type=url``): any key, even
    one with characters XML cannot carry (rclone serve s3 writes ``&#x1;``), comes back."""
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns='
            '"http://s3.amazonaws.com/doc/2006-03-01/"><EncodingType>url</EncodingType>'
            + "".join(f"<Contents><Key>{quote_plus(key, safe='/')}</Key><Size>{size}</Size>"
                      f"<ETag>&quot;{etag}&quot;</ETag></Contents>"
                      for key, (size, etag) in objects.items())
            + f"<IsTruncated>{str(truncated).lower()}</IsTruncated>"
            + ("<NextContinuationToken>t+1/=</NextContinuationToken>" if truncated else "")
            + "</ListBucketResult>").encode()
    found, _, token = parse_listing(body)
    assert found == objects
    assert token == ("t+1/=" if truncated else "")


@pytest.mark.parametrize("key", ["plain.txt", "a&b<c>.txt", "sp ace+plus%41.txt", "é/ü"])
def test_a_listing_without_encoding_type_is_read_as_written(key: str) -> None:
    """A server that ignores ``encoding-type=url`` lists keys as XML text: nothing decoded."""
    body = (f"<ListBucketResult><Contents><Key>{escape(key)}</Key><Size>3</Size><ETag>e</ETag>"
            "</Contents></ListBucketResult>").encode()
    assert parse_listing(body)[0] == {key: (3, "e")}
