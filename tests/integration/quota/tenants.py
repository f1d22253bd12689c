"""What the quota tests share: a tenant of each test's own, the requests it reserves and settles, and its state
read back from Redis as Redis stores it.

The modules in this folder pin what :mod:`lime.money.quota` does on a real Redis: the reserve and settle scripts of the
money path. Their tenants live in a Redis database of the quota tests' own, :data:`QUOTA_REDIS_DB`: the session
Redis's database 0 is shared with the e2e gateway, whose settler reads ``lime:usage`` there.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import redis.asyncio as aioredis

from lime.money import quota
from lime.money.quota import USAGE_STREAM, ReservationRequest, UsageEvent

__all__ = [
    "QUOTA_REDIS_DB",
    "inflight",
    "loaded",
    "points",
    "request",
    "stream_entries",
    "stream_events",
    "tenant",
    "usage_event",
]

#: Each quota test module sets ``REDIS_DB`` to this (tenants are unique, so the modules can share it).
QUOTA_REDIS_DB = 11


def tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:12]}"


def request(tenant_id: str, points: int = 100, *, tokens: int = 10, rpm: int | None = None,
            tpm: int | None = None, concurrency: int | None = None, ttl: int = 300,
            reservation_id: str | None = None, exposure: int = 0, overdraft_limit: int = 0) -> ReservationRequest:
    return ReservationRequest(
        reservation_id=reservation_id or f"req-{uuid.uuid4().hex}", tenant_id=tenant_id, key_id="key-1",
        endpoint="chat_completions", model="team-default", upstream="oai", points=points, tokens=tokens,
        rpm_limit=rpm, tpm_limit=tpm, concurrency_limit=concurrency, ttl_seconds=ttl, exposure=exposure,
        overdraft_limit=overdraft_limit)


def usage_event(req: ReservationRequest, cost: int, *, output_tokens: int = 5) -> UsageEvent:
    return UsageEvent(
        request_id=req.reservation_id, tenant_id=req.tenant_id, key_id=req.key_id, endpoint=req.endpoint,
        model=req.model, upstream=req.upstream, outcome="complete", estimated=False, upstream_status=200,
        input_tokens=3, cached_input_tokens=0, cache_write_tokens=0, output_tokens=output_tokens,
        reasoning_tokens=0, reserved=req.points, cost=cost, started_at=time.time())


async def points(redis: aioredis.Redis, tenant_id: str) -> tuple[int, int]:
    """(balance, held), read as Redis stores them: exact integers."""
    balance, held = await redis.hmget(quota.points_key(tenant_id), ["balance", "held"])
    assert balance is not None and held is not None
    return int(balance), int(held)


async def inflight(redis: aioredis.Redis, tenant_id: str) -> int:
    return int(await redis.get(quota.inflight_key(tenant_id)) or 0)


async def stream_entries(redis: aioredis.Redis) -> list[tuple[bytes, dict[bytes, bytes]]]:
    entries: Any = await redis.xrange(USAGE_STREAM)
    return [(entry_id, fields) for entry_id, fields in entries]


async def stream_events(redis: aioredis.Redis, request_id: str) -> list[UsageEvent]:
    """The usage events of one request in the stream."""
    events = [UsageEvent.decode(fields[b"event"]) for _, fields in await stream_entries(redis)]
    return [event for event in events if event.request_id == request_id]


async def loaded(redis: aioredis.Redis, balance: int) -> str:
    tenant_id = tenant()
    await quota.rebuild(redis, tenant_id, balance)
    return tenant_id
