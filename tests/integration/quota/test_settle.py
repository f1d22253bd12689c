"""Settling: settle releases the hold, debits the cost and appends exactly one usage event, all at once; a second
settle of the same request is a no-op; a settle whose reservation Redis lost still debits and records; the event
round-trips through the stream."""

from __future__ import annotations

import json
from dataclasses import replace

import redis.asyncio as aioredis

from lime.money import quota
from lime.money.quota import USAGE_STREAM, Refusal, UsageEvent
from tests.integration.quota.tenants import (
    QUOTA_REDIS_DB,
    inflight,
    loaded,
    points,
    request,
    stream_entries,
    stream_events,
    tenant,
    usage_event,
)

#: Read by the redis_client fixture (tests/integration/conftest.py).
REDIS_DB = QUOTA_REDIS_DB


async def test_settle_releases_debits_and_records_once(redis_client: aioredis.Redis) -> None:
    tenant_id = await loaded(redis_client, 1000)
    req = request(tenant_id, 300)
    assert (await quota.reserve(redis_client, req)).ok
    event = usage_event(req, 120)
    length = await redis_client.xlen(USAGE_STREAM)
    assert await quota.settle(redis_client, event) == 1
    assert await points(redis_client, tenant_id) == (880, 0)
    assert await inflight(redis_client, tenant_id) == 0
    assert not await redis_client.exists(quota.reservation_key(req.reservation_id))
    assert await redis_client.zscore(quota.RESERVATIONS, req.reservation_id) is None
    assert await stream_events(redis_client, req.reservation_id) == [event]
    assert await redis_client.xlen(USAGE_STREAM) == length + 1
    # The same settlement again (extproc retried): nothing at all happens.
    assert await quota.settle(redis_client, event) == 0
    assert await quota.settle(redis_client, replace(event, cost=999)) == 0
    assert await points(redis_client, tenant_id) == (880, 0)
    assert await inflight(redis_client, tenant_id) == 0
    assert await redis_client.xlen(USAGE_STREAM) == length + 1
    assert await stream_events(redis_client, req.reservation_id) == [event]


async def test_settle_can_cost_more_than_was_held(redis_client: aioredis.Redis) -> None:
    # The estimate is a hold, not a cap: the actual cost is what is debited, even into the negative.
    tenant_id = await loaded(redis_client, 100)
    req = request(tenant_id, 100)
    assert (await quota.reserve(redis_client, req)).ok
    assert await quota.settle(redis_client, usage_event(req, 150)) == 1
    assert await points(redis_client, tenant_id) == (-50, 0)
    assert (await quota.reserve(redis_client, request(tenant_id, 1))).refusal is Refusal.INSUFFICIENT


async def test_failed_request_costs_nothing_but_is_recorded(redis_client: aioredis.Redis) -> None:
    tenant_id = await loaded(redis_client, 1000)
    req = request(tenant_id, 300)
    assert (await quota.reserve(redis_client, req)).ok
    event = replace(usage_event(req, 0), outcome="failed", upstream_status=429, input_tokens=0, output_tokens=0)
    assert await quota.settle(redis_client, event) == 1
    assert await points(redis_client, tenant_id) == (1000, 0)
    assert await stream_events(redis_client, req.reservation_id) == [event]


async def test_a_hold_of_nothing_settles(redis_client: aioredis.Redis) -> None:
    # A free model, or count_tokens: nothing held, yet the request is reserved (rate, concurrency) and recorded.
    # The script once released it as HINCRBY held "-0", which Redis refuses: such a request was never settled.
    tenant_id = await loaded(redis_client, 1000)
    req = request(tenant_id, 0)
    assert (await quota.reserve(redis_client, req)).ok
    assert await inflight(redis_client, tenant_id) == 1
    event = usage_event(req, 0)
    assert await quota.settle(redis_client, event) == 1
    assert await points(redis_client, tenant_id) == (1000, 0)
    assert await inflight(redis_client, tenant_id) == 0
    assert await stream_events(redis_client, req.reservation_id) == [event]


async def test_settle_without_reservation_still_debits_and_records(redis_client: aioredis.Redis) -> None:
    # Redis lost the reservation (restart, failover): the request was served, so it is charged and recorded.
    tenant_id = await loaded(redis_client, 1000)
    other = request(tenant_id, 200)
    assert (await quota.reserve(redis_client, other)).ok
    lost = request(tenant_id, 300)
    event = usage_event(lost, 70)
    assert await quota.settle(redis_client, event) == 1
    assert await points(redis_client, tenant_id) == (930, 200)  # the other hold is untouched
    assert await inflight(redis_client, tenant_id) == 1
    assert await stream_events(redis_client, lost.reservation_id) == [event]
    assert await quota.settle(redis_client, event) == 0
    assert await points(redis_client, tenant_id) == (930, 200)


async def test_settle_of_an_unloaded_tenant_records_without_creating_a_balance(
        redis_client: aioredis.Redis) -> None:
    tenant_id = tenant()
    event = usage_event(request(tenant_id, 10), 10)
    assert await quota.settle(redis_client, event) == 1
    assert not await redis_client.exists(quota.points_key(tenant_id))
    assert await stream_events(redis_client, event.request_id) == [event]


async def test_event_round_trips_through_the_stream(redis_client: aioredis.Redis) -> None:
    tenant_id = await loaded(redis_client, 10)
    event = replace(usage_event(request(tenant_id), 3), estimated=True, outcome="partial", reasoning_tokens=2)
    assert await quota.settle(redis_client, event) == 1
    [entry] = [fields for _, fields in await stream_entries(redis_client)
               if json.loads(fields[b"event"])["request_id"] == event.request_id]
    assert UsageEvent.decode(entry[b"event"]) == event
    assert UsageEvent.decode(event.encode()) == event
