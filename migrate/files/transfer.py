"""A lean S3 client for the hot path of ``export-files``: one signed HTTP request per object.

boto3 spends 4-8 ms of CPU per small object (request model, event hooks, parsers); this client
spends a fraction of that (SigV4 in ``hmac``, ``http.client`` keep-alive), which is what lets a
few processes outrun ``rclone copy`` on thousands of small files. It does only what the export
needs: PUT, HEAD, GET, LIST, the bucket check and the multipart calls. Credentials and region
come from the environment, else from botocore (config files, profiles); they are never printed.

A streamed body is sent as exactly the Content-Length promised: a file that grew is cut there,
one that shrank raises ``ShortBody`` at once (the server would wait for the missing bytes), and
a request that fails half-sent closes its connection, so the next request starts clean.

What the server sends back is bounded and checked: a response body is read up to
``MAX_RESPONSE`` bytes, a listing must be well-formed XML without a DOCTYPE and must not repeat
a continuation token, a 200 whose body is an ``<Error>`` is that error, and the ETag of what was
sent must be its MD5 (``checked_etag``); anything else is an ``S3Error``, never a traceback, an
endless loop or a wrong object recorded as uploaded. The endpoint is shown as ``Endpoint.shown``
(``migrate.redact.url``: a ``user:password@`` in it is never printed).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import os
import random
import re
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, NamedTuple
from urllib.parse import quote, unquote_plus, urlsplit

from migrate import redact

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MIB = 1024 * 1024
MAX_RESPONSE = 16 * MIB  # a body read whole (a LIST page, an error): 1,000 keys fit many times
ATTEMPTS = 4  # per request: a BadDigest, a 5xx or a dropped connection is tried this often
BACKOFF = 0.1  # seconds: the wait before attempt n is drawn from [d/2, d], d = BACKOFF * 2**n
REFRESH_MARGIN = 300  # seconds: credentials that expire sooner are renewed before signing
RETRIED_CODES = ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "RequestTimeout",
                 "SlowDown", "InternalError")  # InternalError: also inside a 200 (S3 docs)
# A 2xx body that is an S3 error document (CompleteMultipartUpload and CopyObject report
# failures so; a broken server anything): never taken for success.
_ERROR_BODY = re.compile(rb"\s*(?:<\?xml[^>]{0,200}\?>\s*)?<Error>")


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to talk S3 (picklable: handed to worker processes)."""

    url: str  # scheme://host[:port], path-style addressing
    bucket: str
    region: str
    access_key: str = ""
    secret_key: str = ""
    token: str | None = None
    ca_bundle: str | None = None
    # Epoch seconds when the credentials expire (an assumed role, SSO, a credential_process):
    # every client renews them from the same provider before then. None: they do not expire.
    expires: float | None = None

    @property
    def shown(self) -> str:
        """The URL as it may be printed: a password in it masked (``migrate.redact.url``)."""
        return redact.url(self.url)

    def __repr__(self) -> str:  # credentials never appear in a log or traceback
        return f"Endpoint({self.shown!r}, bucket={self.bucket!r}, region={self.region!r})"


class S3Error(Exception):
    """A request the server refused; ``code`` is the S3 error code (BadDigest, NoSuchKey...).

    The code and message come from the server: kept to one bounded line of text (control
    characters and bidi overrides escaped), whatever it sent.
    """

    def __init__(self, status: int, code: str, message: str = "") -> None:
        code, message = _one_line(code, 80), _one_line(message, 300)
        super().__init__(f"{status} {code}{': ' + message if message else ''}")
        self.status = status
        self.code = code
        self.message = message

    def __reduce__(self):  # picklable, so a worker process can hand it back
        return (S3Error, (self.status, self.code, self.message))


RETRYABLE = (ConnectionError, TimeoutError, socket.timeout, http.client.HTTPException, OSError)


class ShortBody(Exception):
    """A streamed body ended before its Content-Length (the file shrank): never retried."""


class _Exactly:
    """A file read as exactly ``length`` bytes: never a byte more; ``ShortBody`` if it has
    fewer. What ``http.client`` streams a body from (``read`` until empty, ``seek(0)``)."""

    def __init__(self, f: BinaryIO, length: int) -> None:
        self.f, self.length, self.left = f, length, length

    def read(self, n: int = -1) -> bytes:
        if not self.left:
            return b""
        data = self.f.read(self.left if n < 0 else min(n, self.left))
        if not data:
            raise ShortBody(f"the file ended {self.left:,} bytes before the "
                            f"{self.length:,} it had when it was hashed")
        self.left -= len(data)
        return data

    def seek(self, offset: int) -> None:
        self.f.seek(offset)
        self.left = self.length - offset


class RawS3:
    """One keep-alive connection to one endpoint; not thread-safe (one per thread)."""

    def __init__(self, endpoint: Endpoint, timeout: float = 60.0) -> None:
        self.ep = endpoint
        parts = urlsplit(endpoint.url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.https else 80)
        default_port = (self.https and self.port == 443) or (not self.https and self.port == 80)
        self.host_header = self.host if default_port else f"{self.host}:{self.port}"
        self.base = parts.path.rstrip("/")
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._keys: dict[tuple[str, str], bytes] = {}
        self.credentials = Credentials(endpoint.access_key, endpoint.secret_key, endpoint.token,
                                       endpoint.expires)

    # --- signing (AWS Signature Version 4) ---------------------------------------------------

    def _signing_key(self, day: str, secret: str) -> bytes:
        key = self._keys.get((day, secret))
        if key is None:
            k = ("AWS4" + secret).encode()
            for part in (day, self.ep.region, "s3", "aws4_request"):
                k = hmac.new(k, part.encode(), hashlib.sha256).digest()
            self._keys = {(day, secret): k}
            key = k
        return key

    def _current_credentials(self) -> Credentials:
        """The credentials to sign with: renewed from their provider when they expire within
        ``REFRESH_MARGIN`` (a long export outlives a one-hour role session)."""
        creds = self.credentials
        if creds.expires is not None and time.time() > creds.expires - REFRESH_MARGIN:
            self.credentials = creds = refreshed_credentials()
        return creds

    def _headers(self, method: str, path: str, query: str, headers: dict[str, str],
                 payload_sha256: str, now: time.struct_time | None = None) -> dict[str, str]:
        """``headers`` signed with AWS Signature Version 4 (``path`` and ``query`` already
        in their canonical, percent-encoded form; ``now``: the signing time, UTC)."""
        creds = self._current_credentials()
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", now or time.gmtime())
        day = amz_date[:8]
        headers = {k.lower(): str(v).strip() for k, v in headers.items()}
        headers["host"] = self.host_header
        headers["x-amz-date"] = amz_date
        headers["x-amz-content-sha256"] = payload_sha256
        if creds.token:
            headers["x-amz-security-token"] = creds.token
        names = sorted(headers)
        canonical = "\n".join([
            method, path, query, "".join(f"{n}:{headers[n]}\n" for n in names),
            ";".join(names), payload_sha256,
        ])
        scope = f"{day}/{self.ep.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        signature = hmac.new(self._signing_key(day, creds.secret_key), to_sign.encode(),
                             hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature}"
        )
        return headers

    # --- transport ---------------------------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.https:
                context = ssl.create_default_context(cafile=self.ep.ca_bundle)
                self._conn = http.client.HTTPSConnection(self.host, self.port,
                                                         timeout=self.timeout, context=context,
                                                         blocksize=MIB)
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port,
                                                        timeout=self.timeout, blocksize=MIB)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def canonical_target(self, key: str | None, query: dict[str, str] | None,
                         ) -> tuple[str, str]:
        """(path, query string) as sent and as signed: percent-encoded as botocore does (every
        byte but unreserved ones and the path's ``/``); key None: the bucket itself (LIST)."""
        raw = f"{self.base}/{self.ep.bucket}" + ("" if key is None else f"/{key}")
        q = "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}"
                     for k, v in sorted((query or {}).items()))
        return quote(raw, safe="/~"), q

    def request(self, method: str, key: str | None, *, query: dict[str, str] | None = None,
                headers: dict[str, str] | None = None, body: bytes | BinaryIO = b"",
                length: int | None = None,
                payload_sha256: str | None = None, stream: bool = False,
                ) -> tuple[int, dict[str, str], bytes | http.client.HTTPResponse]:
        """Send one signed request; a dropped keep-alive connection is reopened once.

        ``body`` is bytes, or an open file streamed in 1 MiB blocks (give ``length`` and the
        ``payload_sha256`` then: memory does not grow with the file).
        """
        streamed = not isinstance(body, (bytes, bytearray))
        path, q = self.canonical_target(key, query)
        sha = payload_sha256 or (hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256)
        assert not streamed or (payload_sha256 and length is not None)
        signed = self._headers(method, path, q, headers or {}, sha)
        if streamed:
            signed["content-length"] = str(length)
        elif body or method in ("PUT", "POST"):
            signed["content-length"] = str(len(body))
        target = f"{path}?{q}" if q else path
        payload = _Exactly(body, length) if streamed else (body or None)  # type: ignore[arg-type]
        for attempt in (1, 2):
            conn = self._connection()
            if streamed:
                payload.seek(0)  # type: ignore[union-attr]
            try:
                conn.request(method, target, body=payload, headers=signed)
                response = conn.getresponse()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # The server closed an idle keep-alive connection: reconnect once.
                self.close()
                if attempt == 2:
                    raise
            except BaseException:
                self.close()  # half sent: the server still waits for the rest of this request
                raise
        head = {k.lower(): v for k, v in response.getheaders()}
        if stream and response.status < 300:
            return response.status, head, response
        data = response.read(MAX_RESPONSE + 1)
        if len(data) > MAX_RESPONSE:
            self.close()  # the rest is still on the wire: this connection cannot be reused
            raise S3Error(response.status, "ResponseTooLarge",
                          f"the server sent more than {MAX_RESPONSE:,} bytes")
        if response.will_close:
            self.close()
        if (response.status >= 300 and not (method == "HEAD" and response.status == 404)) or (
                data and _ERROR_BODY.match(data)):
            code = xml_text(data, "Code") or http.client.responses.get(response.status, "")
            raise S3Error(response.status, code, xml_text(data, "Message"))
        return response.status, head, data

    def list_page(self, prefix: str, token: str = "", delimiter: str = "",
                  ) -> tuple[dict[str, tuple[int, str]], list[str], str]:
        """One ListObjectsV2 page: (key -> (size, ETag), common prefixes, next token)."""
        # encoding-type=url: a key with a character XML 1.0 cannot carry (a control character,
        # which a file name may hold) is listed percent-encoded instead of breaking the page.
        query = {"list-type": "2", "max-keys": "1000", "encoding-type": "url"}
        if prefix:
            query["prefix"] = prefix
        if token:
            query["continuation-token"] = token
        if delimiter:
            query["delimiter"] = delimiter
        status, _, data = self.request("GET", None, query=query)
        return parse_listing(data, status)

    def list_objects(self, prefix: str, delimiter: str = "",
                     ) -> tuple[dict[str, tuple[int, str]], list[str]]:
        """Every object (and common prefix, with a delimiter) under ``prefix``, all pages."""
        found: dict[str, tuple[int, str]] = {}
        prefixes: list[str] = []
        token = ""
        tokens: set[str] = set()
        while True:
            page, subs, token = self.list_page(prefix, token, delimiter)
            found.update(page)
            prefixes.extend(subs)
            if not token:
                return found, prefixes
            if token in tokens:
                raise S3Error(200, "MalformedXML", "the listing repeats a continuation token")
            tokens.add(token)


def parse_listing(data: bytes, status: int = 200,
                  ) -> tuple[dict[str, tuple[int, str]], list[str], str]:
    """A ListObjectsV2 page -> (key -> (size, ETag), common prefixes, next token); S3Error.

    Parsed with ElementTree: boto3's response parser spends ~0.2 ms per object
    (timestamps, shapes), most of a no-op re-run over thousands of files. The body must be
    UTF-8 (as S3's is) and is parsed as text, so no declared encoding can hide a DOCTYPE from
    the check. Keys and prefixes listed with ``<EncodingType>url`` are decoded (as botocore
    does): that is how a key with a character XML cannot carry comes back whole.
    """
    import xml.etree.ElementTree as ET

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise S3Error(status, "MalformedXML", f"the listing is not UTF-8: {exc}") from None
    if "<!DOCTYPE" in text:  # entity definitions have no place in an S3 response
        raise S3Error(status, "MalformedXML", "the listing declares a DOCTYPE")
    try:
        root = ET.fromstring(text)
        ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
        name = unquote_plus if root.findtext(f"{ns}EncodingType") == "url" else str
        found = {
            name(item.findtext(f"{ns}Key") or ""): (_size(item.findtext(f"{ns}Size")),
                                                   (item.findtext(f"{ns}ETag") or "").strip('"'))
            for item in root.iter(f"{ns}Contents")
        }
    except (ET.ParseError, ValueError) as exc:
        raise S3Error(status, "MalformedXML", f"the listing cannot be read: {exc}") from None
    prefixes = [name(p.findtext(f"{ns}Prefix") or "") for p in root.iter(f"{ns}CommonPrefixes")]
    more = root.findtext(f"{ns}IsTruncated") == "true"
    return found, prefixes, (root.findtext(f"{ns}NextContinuationToken") or "") if more else ""


def _size(text: str | None) -> int:
    size = int(text or 0)
    if size < 0:
        raise ValueError(f"a negative size ({size})")
    return size


def list_tree(endpoint: Endpoint, prefix: str, workers: int = 8) -> dict[str, tuple[int, str]]:
    """Every object under ``prefix``, its top-level folders listed in parallel.

    A server's LIST is often the whole cost of a no-op re-run (rclone serve s3 hashes each
    file it lists; AWS returns 1,000 keys per round trip): folders at once use its cores
    and hide the round trips, as ``rclone copy`` does with its checkers.
    """
    from concurrent.futures import ThreadPoolExecutor

    client = RawS3(endpoint)
    try:
        found, subs = client.list_objects(prefix, delimiter="/")
        if len(subs) == 1:  # one folder (e.g. avatars/): split one level deeper
            more, subs = client.list_objects(subs[0], delimiter="/")
            found.update(more)
    finally:
        client.close()

    def walk(sub: str) -> dict[str, tuple[int, str]]:
        c = RawS3(endpoint)
        try:
            return c.list_objects(sub)[0]
        finally:
            c.close()

    with ThreadPoolExecutor(max(1, min(workers, len(subs)))) as pool:
        for part in pool.map(walk, subs):
            found.update(part)
    return found


_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
                     r"\u2066-\u2069]")


def _one_line(text: str, limit: int) -> str:
    """Server text as one bounded line: unsafe characters as ``\\xNN``, cut at ``limit``."""
    text = _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                       else f"\\u{ord(m.group()):04x}", text[: limit + 1])
    return text if len(text) <= limit else text[:limit] + "…"


def checked_etag(head: dict[str, str], md5_hex: str) -> str:
    """The ETag a PUT (or a completed multipart upload) answered, when it is ``md5_hex`` (what
    the bytes sent give); else S3Error, so a wrong object is never recorded as uploaded.

    No ETag: ``md5_hex`` (the server checked Content-MD5). Objects encrypted with SSE-KMS or a
    customer key have ETags that are not an MD5 (AWS says so in the answer): believed as given.
    """
    etag = head.get("etag", "").strip('"')
    if not etag or etag.lower() == md5_hex:
        return md5_hex
    if head.get("x-amz-server-side-encryption", "").startswith("aws:kms") or (
            "x-amz-server-side-encryption-customer-algorithm" in head):
        return etag
    raise S3Error(200, "BadETag", f"the server answered ETag {etag[:80]!r}, not the MD5 of "
                  f"what was sent ({md5_hex}): not recorded as uploaded")


def xml_text(data: bytes, tag: str) -> str:
    """The text of the first ``<tag>`` in an S3 XML response (they are flat and small)."""
    match = re.search(rb"<" + tag.encode() + rb">([^<]*)</" + tag.encode() + rb">", data or b"")
    return match.group(1).decode(errors="replace") if match else ""


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1, 2...): exponential, with jitter
    ("equal jitter": half fixed, half random), so clients told to SlowDown together do not
    all come back at the same instant."""
    ceiling = BACKOFF * 2 ** attempt
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def with_retries(call: Callable[[], Any], client: RawS3) -> Any:
    """``call()``, again on a BadDigest (corrupted on the way), a SlowDown or other 5xx, or a
    dropped connection, after a jittered exponential ``backoff``.

    ``client`` is the connection ``call`` uses: after a dropped connection it is closed, so the
    next attempt starts on a fresh one instead of a half-read response.
    """
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return call()
        except S3Error as exc:
            if attempt == ATTEMPTS or not (exc.status >= 500 or exc.code in RETRIED_CODES):
                raise
        except RETRYABLE:
            client.close()
            if attempt == ATTEMPTS:
                raise
        time.sleep(backoff(attempt))
    raise AssertionError("unreachable")


def endpoint_from_env(endpoint_url: str | None, bucket: str) -> Endpoint:
    """Resolve credentials and region the way the AWS CLI does (env, config, profile)."""
    env = os.environ
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY") and region:
        # Environment credentials come first in botocore's chain too; skipping its import
        # saves a quarter second on every run (most of a no-op re-run).
        url = endpoint_url or env.get("AWS_ENDPOINT_URL_S3") or env.get(
            "AWS_ENDPOINT_URL") or f"https://s3.{region}.amazonaws.com"
        return Endpoint(url=url.rstrip("/"), bucket=bucket, region=region,
                        access_key=env["AWS_ACCESS_KEY_ID"],
                        secret_key=env["AWS_SECRET_ACCESS_KEY"],
                        token=env.get("AWS_SESSION_TOKEN") or None,
                        ca_bundle=env.get("AWS_CA_BUNDLE") or None)
    creds = refreshed_credentials()
    region = _botocore_session().get_config_variable("region") or "us-east-1"
    url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get(
        "AWS_ENDPOINT_URL") or f"https://s3.{region}.amazonaws.com"
    return Endpoint(
        url=url.rstrip("/"), bucket=bucket, region=region, access_key=creds.access_key,
        secret_key=creds.secret_key, token=creds.token,
        ca_bundle=os.environ.get("AWS_CA_BUNDLE") or None, expires=creds.expires,
    )


class Credentials(NamedTuple):
    """A key pair (and session token) as of now; ``expires``: epoch seconds, or None."""

    access_key: str
    secret_key: str
    token: str | None
    expires: float | None

    def __repr__(self) -> str:  # never a secret in a log or traceback
        return f"Credentials({self.access_key[:4]}…, expires={self.expires})"


_session: Any = None  # per process: botocore's session keeps the provider that refreshes


def _botocore_session() -> Any:
    global _session
    if _session is None:
        import botocore.session

        _session = botocore.session.get_session()
    return _session


def refreshed_credentials() -> Credentials:
    """The credentials botocore's chain gives now (config files, profiles, SSO, roles,
    ``credential_process``), with their expiry when the provider has one. botocore renews
    expiring ones itself when asked; each process asks its own session."""
    credentials = _botocore_session().get_credentials()
    if credentials is None:
        return Credentials("", "", None, None)
    frozen = credentials.get_frozen_credentials()
    expiry = getattr(credentials, "_expiry_time", None)  # RefreshableCredentials only
    return Credentials(frozen.access_key, frozen.secret_key, frozen.token,
                       expiry.timestamp() if expiry is not None else None)
