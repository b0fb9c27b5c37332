"""API tokens across the migration: the before-app's opaque bearer tokens, kept hashed in Redis.

A stateful app that hands its API clients opaque tokens (a random string it looks up in its
own memory) logs every client out when it is replaced, unless the live tokens move too. They
move like sessions do:

- the before-app's ``MigrationBridge`` streams them at ``GET /_migrate/tokens`` (already
  hashed: a raw token never leaves its process) and, with a mirror Redis, writes every token
  issued or revoked during the window as it happens;
- ``migrate export-sessions`` copies the streamed ones (``export_tokens``);
- the after-app looks a token it cannot verify up with ``lookup`` until it expires, and answers
  it with a token of its own (the sample shop: a JWT pair from ``POST /api/token/refresh``).

The Redis layout (one place, used by the bridge, the export and the after-app):

- ``api-token:<sha256 hex of the token>`` -> the user id, as text; TTL = the token's remaining
  lifetime. ``revoked`` instead of a user id: the token was revoked (logout); the key stays
  until the token would have expired, so a re-run of the export (``SET NX``) cannot bring it
  back.
- ``api-revoked:<sid>`` -> ``1``: the login ``sid`` was revoked (the after-app's denylist);
  TTL = what was left of the login's lifetime. A migrated token's ``sid`` is its digest, so
  the tokens the after-app issues in exchange for it are revoked with it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

TOKEN_PREFIX = "api-token:"
DENYLIST_PREFIX = "api-revoked:"
REVOKED = b"revoked"
TOKENS_PATH = "/_migrate/tokens"
MAX_TOKEN_LENGTH = 4096  # a bearer token longer than this is not one of ours: never hashed

# What a before-app hands the bridge: live (token, user id, expires at, epoch seconds).
LiveTokens = Callable[[], Iterable[tuple[str, Any, float]]]


def digest(token: str) -> str:
    """The sha256 of a token, in hex: what Redis keeps instead of the token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_key(token_digest: str) -> str:
    return TOKEN_PREFIX + token_digest


def denylist_key(sid: str) -> str:
    return DENYLIST_PREFIX + sid


@dataclass(frozen=True)
class MigratedToken:
    """A migrated opaque token that is still good: whose it is and how long it has left."""

    digest: str
    user_id: str
    seconds_left: float


def lookup(client: Any, token: str) -> MigratedToken | None:
    """The migrated token ``token``, or None: never migrated, expired or revoked.

    One round trip (GET and PTTL in one pipeline)."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    hashed = digest(token)
    pipe = client.pipeline(transaction=False)
    pipe.get(token_key(hashed))
    pipe.pttl(token_key(hashed))
    value, pttl = pipe.execute()
    if not value or value == REVOKED or pttl is None or pttl <= 0:
        return None
    return MigratedToken(hashed, value.decode() if isinstance(value, bytes) else str(value),
                         pttl / 1000)


def revoke(client: Any, sid: str, seconds: float) -> None:
    """Revoke the login ``sid`` for ``seconds`` (what is left of it): its JWTs (denylist) and,
    when ``sid`` is a migrated token's digest, that token too. One round trip."""
    ttl = max(1, int(seconds + 0.999))
    pipe = client.pipeline(transaction=False)
    pipe.set(denylist_key(sid), 1, ex=ttl)
    # XX: only a migrated token's key is marked; KEEPTTL: it goes when the token would have.
    pipe.set(token_key(sid), REVOKED, xx=True, keepttl=True)
    pipe.execute()


def is_revoked(client: Any, sid: str) -> bool:
    return bool(client.exists(denylist_key(sid)))


# --- the before-app's side (the bridge) ------------------------------------------------------


def stream_lines(live: Iterable[tuple[str, Any, float]], now: float) -> Iterator[dict]:
    """The bridge's NDJSON records for live tokens: hashed, with user id and expiry; then a
    trailer with the count."""
    count = 0
    for token, user_id, expires in live:
        if expires <= now:
            continue
        yield {"digest": digest(token), "user_id": str(user_id), "expires": float(expires)}
        count += 1
    yield {"end": True, "count": count}


def save(client: Any, token: str, user_id: Any, expires: float, now: float) -> bool:
    """Write one live token (the bridge's mirror, as it is issued); False if already expired."""
    left_ms = int((expires - now) * 1000)
    if left_ms <= 0:
        return False
    client.set(token_key(digest(token)), str(user_id), px=left_ms)
    return True


def save_revoked(client: Any, token: str, expires: float, now: float) -> None:
    """Mark one token revoked (the bridge's mirror, at logout) until it would have expired."""
    hashed = digest(token)
    revoke(client, hashed, max(1.0, expires - now))
    # revoke() marks the token only if its key exists: make sure it does.
    client.set(token_key(hashed), REVOKED, px=max(1000, int((expires - now) * 1000)))


# --- the export (`migrate export-sessions` from a bridge) -------------------------------------


@dataclass
class TokenExport:
    """What ``export_tokens`` did with the tokens of one or more bridges."""

    read: int = 0
    written: int = 0
    skipped: int = 0  # already in Redis: the bridge's mirror or a previous run wrote it
    expired: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)


def bridge_stream(url: str, path: str, bearer: str | None, what: str,
                  timeout: float = 30.0) -> Iterator[dict]:
    """The NDJSON records a bridge streams at ``path`` (``what`` names them in errors), the
    trailer checked and left out; none when the bridge or app lacks them (HTTP 404)."""
    import requests

    from migrate import redact
    from migrate.errors import ConnectionFailure

    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    shown = redact.url(url)
    try:
        response = requests.get(url.rstrip("/") + path, headers=headers, timeout=timeout,
                                stream=True)
    except requests.RequestException as exc:
        raise ConnectionFailure(f"cannot reach the instance at {shown} ({type(exc).__name__}): "
                                "start it, or check --from") from None
    with response:
        if response.status_code == 404:
            return  # an older bridge, or an app without such state
        if response.status_code != 200:
            raise ConnectionFailure(f"the bridge at {shown} answered HTTP "
                                    f"{response.status_code} for its {what}")
        import json

        ended = False
        for line in response.iter_lines():
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = {"error": "a record is not JSON"}
            if isinstance(record, dict) and record.get("end"):
                ended = True
                continue
            yield record if isinstance(record, dict) else {"error": "a record is not an object"}
        if not ended:
            raise ConnectionFailure(f"the stream of {what} from {shown} ended early: re-run, "
                                    "the export is idempotent")


def _valid(record: dict) -> str | None:
    """Why ``record`` cannot be written, or None."""
    if "error" in record:
        return str(record["error"])[:80]
    hashed, user_id, expires = record.get("digest"), record.get("user_id"), record.get("expires")
    if not (isinstance(hashed, str) and len(hashed) == 64
            and all(c in "0123456789abcdef" for c in hashed)):
        return "a token record without a sha256 digest"
    if not isinstance(user_id, str) or not 0 < len(user_id) <= 64:
        return "a token record without a user id"
    if isinstance(expires, bool) or not isinstance(expires, int | float):
        return "a token record without an expiry"
    return None


def export_tokens(records: Iterable[tuple[str, dict]], client: Any, *, dry_run: bool = False,
                  now: float | None = None) -> TokenExport:
    """Write (source label, record) pairs as the after-app reads them: ``SET NX PX``, so a
    token the mirror wrote or revoked is kept as it is, and a re-run writes nothing new."""
    result = TokenExport()
    now = time.time() if now is None else now
    batch: list[dict] = []
    for source, record in records:
        result.read += 1
        why = _valid(record)
        if why is not None:
            result.failures.append((source, why))
        elif record["expires"] <= now:
            result.expired += 1
        else:
            batch.append(record)
    for start in range(0, len(batch), 1000):
        part = batch[start:start + 1000]
        pipe = client.pipeline(transaction=False)
        for record in part:
            key = token_key(record["digest"])
            if dry_run:
                pipe.exists(key)
            else:
                pipe.set(key, record["user_id"], px=max(1, int((record["expires"] - now) * 1000)),
                         nx=True)
        for reply in pipe.execute():
            taken = bool(reply) if dry_run else not reply
            if taken:
                result.skipped += 1
            else:
                result.written += 1
    return result
