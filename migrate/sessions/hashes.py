"""Per-user counters across the migration: a before-app's in-memory hashes into Redis hashes.

A stateful app may keep per-user state besides the session in its own memory, e.g. an API
client's cart (user id -> {product id: quantity}), that the after-app keeps as a Redis hash it
adds to with ``HINCRBY`` (the sample shops: ``cart:<user id>``). It moves like API tokens do:

- the before-app hands ``MigrationBridge`` a callable yielding ``(key, {field: value})`` for
  every such hash it holds (``MigrationBridge(hashes=...)`` or ``app.extensions
  ["migrate_hashes"]``); the bridge streams them at ``GET /_migrate/hashes`` and
  ``migrate export-sessions`` adds them (``export_hashes``);
- during the window the app calls ``hash_incremented(key, field, total)`` on the bridge as it
  increments a field, and the bridge adds the increment to Redis at once (dual-write).

Counted once, however the two meet. Each before-process (its *origin*: the bridge makes a
random id per process) keeps, next to the hash, a marker hash ``{<key>}:migrated:<origin>``
holding, per field, the value of that field in the process that Redis has already received.
Both the mirror and the export send the field's *current total* in the process, never the
increment, and one script adds ``total - received`` (when positive) and records ``total``:

- an add mirrored and also in the exported snapshot: the second write finds it received;
- an add made between the export's read and its write: the mirror brings it (and everything
  before it), the export then finds nothing left to add;
- a mirror Redis missed (it was away): the next mirror of that field, or a re-run of the
  export, adds what is missing;
- a re-run of the export adds nothing; the after-app's own changes (more adds, a check-out
  that deletes the hash) are kept: the marker is a separate key, so a deleted cart is not
  brought back.

Two before-instances each hold their own part (a user's API cart on A and on B): different
origins, so both parts are added. The marker shares the hash's slot (its hash tag), so the
script runs on a Redis Cluster; it lives ``MARKER_SECONDS`` after its last write.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

HASHES_PATH = "/_migrate/hashes"
MARKER_SECONDS = 30 * 24 * 3600  # longer than any migration window: a re-run stays a no-op
MAX_KEY_LENGTH = 512
MAX_FIELDS = 10_000  # per hash
MAX_FIELD_LENGTH = 256
MAX_VALUE = 2**53  # a JSON number that stays exact
_ORIGIN = re.compile(r"[0-9a-f]{8,64}")

# What a before-app hands the bridge: every hash it holds, (Redis key, {field: value}).
LiveHashes = Callable[[], Iterable[tuple[str, Mapping[Any, int]]]]

# KEYS[1] the hash, KEYS[2] its marker for this origin; ARGV[1] the marker's TTL, then pairs
# of (field, the field's total in the origin). Adds what the origin has that Redis has not
# received from it yet; returns how many fields it added to.
_ADD_ONCE = """
local added = 0
for i = 2, #ARGV, 2 do
  local total = tonumber(ARGV[i + 1])
  local received = tonumber(redis.call('HGET', KEYS[2], ARGV[i]) or '0')
  if total > received then
    redis.call('HINCRBY', KEYS[1], ARGV[i], total - received)
    redis.call('HSET', KEYS[2], ARGV[i], total)
    added = added + 1
  end
end
if added > 0 then redis.call('EXPIRE', KEYS[2], ARGV[1]) end
return added
"""


def marker_key(key: str, origin: str) -> str:
    """The marker of ``key`` for ``origin``, in the same Redis Cluster slot as ``key``."""
    start = key.find("{")
    end = key.find("}", start + 1) if start != -1 else -1
    if end > start + 1 or "}" in key:
        # The key has its own hash tag (kept first, so it still decides the slot), or a brace
        # that wrapping would confuse (then the slots match on a single Redis only).
        return f"{key}:migrated:{origin}"
    return f"{{{key}}}:migrated:{origin}"


def _args(totals: Mapping[str, int]) -> list[Any]:
    args: list[Any] = [MARKER_SECONDS]
    for name, total in totals.items():
        args += [name, int(total)]
    return args


def add_once(client: Any, key: str, origin: str, totals: Mapping[str, int]) -> int:
    """Add to ``key`` what ``origin`` holds (``totals``: field -> its value there) and Redis has
    not received from it; the number of fields added to. One round trip, atomic."""
    return int(client.eval(_ADD_ONCE, 2, key, marker_key(key, origin), *_args(totals)))


# --- the before-app's side (the bridge) ------------------------------------------------------


def stream_lines(live: Iterable[tuple[str, Mapping[Any, int]]], origin: str) -> Iterator[dict]:
    """The bridge's NDJSON records: one per non-empty hash, then a trailer with the count."""
    count = 0
    for key, values in live:
        fields = {str(name): value for name, value in list(values.items())}
        if not fields:
            continue
        yield {"key": str(key), "origin": origin, "fields": fields}
        count += 1
    yield {"end": True, "count": count}


# --- the export (`migrate export-sessions` from a bridge) -------------------------------------


@dataclass
class HashExport:
    """What ``export_hashes`` did with the hashes of one or more bridges."""

    read: int = 0
    written: int = 0  # something was added to the hash
    skipped: int = 0  # Redis had received all of it (the bridge's mirror or a previous run)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)


def _valid(record: dict) -> str | None:
    """Why ``record`` cannot be added, or None. Never quotes the record (it is user data)."""
    if "error" in record:
        return str(record["error"])[:80]
    key, origin, fields = record.get("key"), record.get("origin"), record.get("fields")
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH:
        return f"a hash record without a key (1 to {MAX_KEY_LENGTH} characters)"
    if not isinstance(origin, str) or not _ORIGIN.fullmatch(origin):
        return "a hash record without the bridge's origin id"
    if not isinstance(fields, dict) or not 0 < len(fields) <= MAX_FIELDS:
        return f"a hash record without fields (1 to {MAX_FIELDS:,})"
    for name, value in fields.items():
        if not 0 < len(name) <= MAX_FIELD_LENGTH:
            return f"a hash record with a field name over {MAX_FIELD_LENGTH} characters"
        if type(value) is not int or not 0 <= value < MAX_VALUE:
            return "a hash record with a value that is not a whole number >= 0"
    return None


def export_hashes(records: Iterable[tuple[str, dict]], client: Any, *,
                  dry_run: bool = False) -> HashExport:
    """Add (source label, record) pairs to Redis, each increment once (see the module notes):
    a hash the mirror already brought, or a re-run, adds nothing."""
    import redis

    from migrate.errors import ConnectionFailure

    result = HashExport()
    for source, record in records:
        result.read += 1
        why = _valid(record)
        if why is not None:
            result.failures.append((source, why))
            continue
        key, origin, fields = record["key"], record["origin"], record["fields"]
        try:
            if dry_run:
                received = client.hmget(marker_key(key, origin), list(fields))
                added = sum(1 for total, got in zip(fields.values(), received, strict=True)
                            if total > int(got or 0))
            else:
                added = add_once(client, key, origin, fields)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise ConnectionFailure(f"lost Redis after {result.written} hashes were added "
                                    f"({type(exc).__name__}): restart it and re-run, the export "
                                    "is idempotent") from None
        except redis.exceptions.ResponseError as exc:  # e.g. the key holds a string
            result.failures.append((source, f"Redis refused a hash: {str(exc)[:60]}"))
            continue
        if added:
            result.written += 1
        else:
            result.skipped += 1
    return result
