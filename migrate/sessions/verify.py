"""``verify_sessions``: every source session is in Redis, with equal data and a TTL in tolerance.

Records are mapped by the export's own ``Plan``, so a session is looked for under the very key,
value and TTL the export writes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from migrate.sessions.export import ExportResult
from migrate.sessions.plan import Options, Plan
from migrate.sessions.sources import open_source
from migrate.sessions.target import Item, open_target


@dataclass
class Difference:
    session: str  # short id
    source: str
    problem: str


@dataclass
class VerifyResult:
    """Every source session present in Redis with equal data and a TTL within tolerance."""

    sources: list[str]
    redis: str
    checked: int = 0
    matching: int = 0
    expired: int = 0
    promoted: int = 0  # legacy records already promoted to their sid by the after-app
    unreadable: int = 0  # source sessions that could not be exported either (see export)
    differences: list[Difference] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.differences


@dataclass
class _Expected:
    """A source session as the export would write it."""

    item: Item
    data: dict  # what Flask-Session should read back
    ttl: float  # seconds
    source: str
    legacy: bool  # keyed by file digest: the after-app may have promoted it already


def verify_sessions(
    sources: list[str],
    redis_url: str,
    *,
    token: str | None = None,
    cluster: bool = False,
    options: Options | None = None,
    tolerance: float = 60.0,
) -> VerifyResult:
    """Compare every source session with its Redis record (data equal, TTL within tolerance)."""
    options = options or Options()
    opened = [open_source(s, token) for s in sources]
    target = open_target(redis_url, cluster)
    result = VerifyResult([s.label for s in opened], target.label)
    planned = ExportResult([], "", True, "skip")  # what the export would count; not reported
    plan = Plan(options, planned)
    started = time.monotonic()
    batch: list[_Expected] = []
    try:
        for source in opened:
            for record in source.records():
                found = plan.item(record, source.label, time.time())
                if found is None:
                    if plan.dropped == "expired":
                        result.expired += 1
                    elif plan.dropped == "failed":
                        failure = planned.failures[-1]
                        result.unreadable += 1
                        result.differences.append(Difference(
                            failure.session, source.label, f"cannot be exported: {failure.reason}"
                        ))
                    continue
                item, data = found
                batch.append(_Expected(item, data, item.ttl_ms / 1000, source.label,
                                       not record.sid))
                if len(batch) >= options.batch:
                    _check(batch, target.read([e.item.key for e in batch]), plan, result,
                           tolerance)
                    batch = []
            if batch:
                _check(batch, target.read([e.item.key for e in batch]), plan, result, tolerance)
                batch = []
    finally:
        target.close()
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _check(batch: list[_Expected], replies: list[tuple[bytes | None, int]], plan: Plan,
           result: VerifyResult, tolerance: float) -> None:
    """Compare a batch of expected sessions with what Redis holds, counting into ``result``."""
    for expected, (value, pttl) in zip(batch, replies, strict=True):
        result.checked += 1
        if expected.legacy and value == b"":  # the after-app promoted it: the tombstone is left
            result.promoted += 1
            continue
        problem = _problem(expected, value, pttl, plan, tolerance)
        if problem:
            result.differences.append(Difference(expected.item.label, expected.source, problem))
        else:
            result.matching += 1


def _problem(expected: _Expected, value: bytes | None, pttl: int, plan: Plan,
             tolerance: float) -> str | None:
    """What is wrong with one session in Redis, or None."""
    if value is None:
        return "missing in Redis"
    try:
        stored = plan.serializer.decode(value)
    except Exception:  # noqa: BLE001 - any undecodable value is a difference
        stored = None
    if stored != expected.data:
        return "data differs"
    got = pttl / 1000 if pttl and pttl > 0 else None
    if got is None or abs(got - expected.ttl) > tolerance:
        shown = "no TTL" if got is None else f"{got:.0f} s"
        return f"TTL {shown}, expected {expected.ttl:.0f} s ± {tolerance:.0f}"
    return None
