"""Reaping: the reaper releases an expired reservation at cost 0 (recorded as ``reaped``), a later real settle of
it is a no-op, and a live one, or one a long stream keeps extending, is left alone."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
import redis.asyncio as aioredis

from lime.money import quota
from lime.money.settlement_writer import reap_expired
from tests.integration.quota.tenants import (
    QUOTA_REDIS_DB,
    inflight,
    loaded,
    points,
    request,
    stream_events,
    usage_event,
)

#: Read by the redis_client fixture (tests/integration/conftest.py).
REDIS_DB = QUOTA_REDIS_DB


async def test_expired_reservation_is_reaped_at_no_cost(redis_client: aioredis.Redis) -> None:
    tenant_id = await loaded(redis_client, 1000)
    started = time.time() - 100
    expired = request(tenant_id, 300, tokens=50, ttl=10)
    assert (await quota.reserve(redis_client, expired, now=started)).ok
    live = request(tenant_id, 200, ttl=300)
    assert (await quota.reserve(redis_client, live)).ok
    assert await points(redis_client, tenant_id) == (1000, 500)

    assert await reap_expired(redis_client) >= 1
    assert await points(redis_client, tenant_id) == (1000, 200)  # released, nothing charged
    assert await inflight(redis_client, tenant_id) == 1
    assert await redis_client.zscore(quota.RESERVATIONS, expired.reservation_id) is None
    [reaped] = await stream_events(redis_client, expired.reservation_id)
    assert (reaped.outcome, reaped.cost, reaped.reserved, reaped.estimated) == ("reaped", 0, 300, True)
    assert (reaped.tenant_id, reaped.key_id, reaped.model) == (tenant_id, "key-1", "team-default")
    assert reaped.started_at == pytest.approx(started)
    assert reaped.tokens == 0

    # The real settlement comes late (the extproc was only slow): a no-op, never a second record.
    assert await quota.settle(redis_client, usage_event(expired, 250)) == 0
    assert await points(redis_client, tenant_id) == (1000, 200)
    assert len(await stream_events(redis_client, expired.reservation_id)) == 1

    # The live reservation was left alone, and settles normally.
    assert await quota.reservation_fields(redis_client, live.reservation_id) is not None
    assert await stream_events(redis_client, live.reservation_id) == []
    assert await quota.settle(redis_client, usage_event(live, 150)) == 1
    assert await points(redis_client, tenant_id) == (850, 0)


async def test_reservation_not_yet_expired_is_not_reaped(redis_client: aioredis.Redis) -> None:
    tenant_id = await loaded(redis_client, 1000)
    now = time.time()
    req = request(tenant_id, 300, ttl=60)
    assert (await quota.reserve(redis_client, req, now=now)).ok
    await reap_expired(redis_client, now=now + 59)
    assert await quota.reservation_fields(redis_client, req.reservation_id) is not None
    assert await points(redis_client, tenant_id) == (1000, 300)
    assert await stream_events(redis_client, req.reservation_id) == []
    # Settle-if-expired on a live reservation answers -1 and changes nothing.
    event = replace(usage_event(req, 0), outcome="reaped")
    assert await quota.settle(redis_client, event, only_if_expired_at=now + 59) == -1
    assert await points(redis_client, tenant_id) == (1000, 300)
    # Past its deadline it goes.
    await reap_expired(redis_client, now=now + 61)
    assert await points(redis_client, tenant_id) == (1000, 0)
    assert [e.outcome for e in await stream_events(redis_client, req.reservation_id)] == ["reaped"]


async def test_a_long_stream_pushes_its_deadline_past_the_reaper(redis_client: aioredis.Redis) -> None:
    tenant_id = await loaded(redis_client, 1_000)
    req = request(tenant_id, 10, ttl=60)
    assert (await quota.reserve(redis_client, req, now=time.time() - 100)).ok  # due for reaping ...
    assert await quota.extend(redis_client, req.reservation_id, time.time() + 60)  # ... but still answering
    assert await reap_expired(redis_client) == 0
    assert req.reservation_id not in await quota.expired_reservations(redis_client, time.time())
    assert not await quota.extend(redis_client, "req-never-reserved", time.time() + 60)
