"""The target ``s3://bucket/prefix``: parsed, its endpoint resolved, its bucket checked, listed.

Every failure here is one clear line that names the fix (``UsageError``: a wrong URL, a
missing bucket, no credentials; ``ConnectionFailure``: the endpoint cannot be reached or refuses
access), never a traceback, and never a credential.
"""

from __future__ import annotations

import re

from migrate.errors import ConnectionFailure, UsageError
from migrate.files.transfer import RETRYABLE, Endpoint, RawS3, S3Error, endpoint_from_env, list_tree
from migrate.keys import clean_prefix

# S3's bucket names (3-63 letters, digits, dots, hyphens; underscores and capitals for older
# servers); no "..": the name is a path segment of every request.
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]")


def parse_target(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ("bucket", "some/prefix"); UsageError for a bucket that
    is no bucket name or a prefix that would put keys outside itself (``s3://b/../x``)."""
    if not url.startswith("s3://"):
        raise UsageError(f"--to {url!r} is not an s3:// URL: use s3://BUCKET[/PREFIX]")
    bucket, _, prefix = url[5:].partition("/")
    if not bucket:
        raise UsageError(f"--to {url!r} names no bucket: use s3://BUCKET[/PREFIX]")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise UsageError(f"--to {url!r}: {bucket!r} is not a bucket name (3-63 letters, "
                         "digits, dots, hyphens): use s3://BUCKET[/PREFIX]")
    try:
        return bucket, clean_prefix(prefix)
    except ValueError as exc:
        raise UsageError(f"--to {url!r}: {exc}") from None


def connect(target: str, endpoint_url: str | None, *, create_bucket: bool = False,
            must_exist: bool = True) -> tuple[Endpoint, str, bool]:
    """Resolve the endpoint, check the bucket (create it if asked); one clear error otherwise.

    Returns (endpoint, prefix, bucket_exists).
    """
    bucket, prefix = parse_target(target)
    ep = endpoint_from_env(endpoint_url, bucket)
    if not ep.access_key:
        raise UsageError("no AWS credentials found: set AWS_ACCESS_KEY_ID and "
                         "AWS_SECRET_ACCESS_KEY or an AWS profile")
    client = RawS3(ep, timeout=10)
    try:
        status, _, _ = client.request("HEAD", None)
        if status == 200:
            return ep, prefix, True
        if create_bucket:
            client.request("PUT", None, body=_create_bucket_body(ep))
            return ep, prefix, True
    except S3Error as exc:
        if exc.status in (401, 403):
            raise ConnectionFailure(f"access to bucket {bucket!r} at {ep.shown} was denied "
                                    f"({exc.code or exc.status}): check the AWS credentials"
                                    ) from None
        raise ConnectionFailure(f"bucket {bucket!r} at {ep.shown}: {exc}") from None
    except RETRYABLE as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(
            exc).__name__
        raise ConnectionFailure(f"cannot reach the S3 endpoint {ep.shown} ({reason}): check "
                                "--endpoint-url and that the server is up") from None
    finally:
        client.close()
    if must_exist:
        raise UsageError(f"bucket {bucket!r} does not exist at {ep.shown}: create it, or pass "
                         "--create-bucket")
    return ep, prefix, False


def _create_bucket_body(ep: Endpoint) -> bytes:
    """AWS wants the region named for a bucket outside us-east-1; other servers want nothing."""
    if ep.region != "us-east-1" and "amazonaws.com" in ep.url:
        return (f"<CreateBucketConfiguration><LocationConstraint>{ep.region}"
                "</LocationConstraint></CreateBucketConfiguration>").encode()
    return b""


def list_prefix(ep: Endpoint, prefix: str) -> dict[str, tuple[int, str]]:
    """Every object under the prefix: key -> (size, ETag without quotes); LISTs, no HEADs."""
    try:
        return list_tree(ep, f"{prefix}/" if prefix else "")
    except S3Error as exc:
        raise ConnectionFailure(f"cannot list s3://{ep.bucket}/{prefix}: {exc}") from None
    except RETRYABLE as exc:
        raise ConnectionFailure(f"cannot list s3://{ep.bucket}/{prefix} at {ep.shown}: "
                                f"{exc}") from None
