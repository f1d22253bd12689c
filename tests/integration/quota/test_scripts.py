"""The Lua scripts themselves: amounts survive the round trip exactly, even where Lua would print them as
``1e+15``; concurrent reservations never overdraw (the script is atomic); a Redis that forgot the scripts gets
them again."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from lime.money import quota
from lime.money.quota import Refusal
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


async def test_large_amounts_survive_the_lua_round_trip(redis_client: aioredis.Redis) -> None:
    big = 10**15
    tenant_id = await loaded(redis_client, 3 * big + 7)
    first, second = request(tenant_id, big), request(tenant_id, big + 1)
    assert (await quota.reserve(redis_client, first)).ok
    assert (await quota.reserve(redis_client, second)).ok
    assert await points(redis_client, tenant_id) == (3 * big + 7, 2 * big + 1)
    assert (await quota.reserve(redis_client, request(tenant_id, big + 7))).refusal is Refusal.INSUFFICIENT
    assert await quota.settle(redis_client, usage_event(first, big - 1)) == 1
    assert await points(redis_client, tenant_id) == (2 * big + 8, big + 1)
    event = usage_event(second, 2 * big + 3)
    assert await quota.settle(redis_client, event) == 1
    assert await points(redis_client, tenant_id) == (5, 0)
    [recorded] = await stream_events(redis_client, second.reservation_id)
    assert (recorded.cost, recorded.reserved) == (2 * big + 3, big + 1)
    assert await quota.adjust_balance(redis_client, tenant_id, 4 * big)
    assert await points(redis_client, tenant_id) == (4 * big + 5, 0)
    raw: Any = await redis_client.hgetall(quota.points_key(tenant_id))
    assert b"e+" not in b"".join(raw.values())


async def test_concurrent_reservations_never_overdraw(redis_client: aioredis.Redis) -> None:
    tenant_id = await loaded(redis_client, 10 * 1_234_567)
    requests = [request(tenant_id, 1_234_567) for _ in range(50)]
    outcomes = await asyncio.gather(*(quota.reserve(redis_client, req) for req in requests))
    assert sum(outcome.ok for outcome in outcomes) == 10
    assert {outcome.refusal for outcome in outcomes if not outcome.ok} == {Refusal.INSUFFICIENT}
    assert await points(redis_client, tenant_id) == (10 * 1_234_567, 10 * 1_234_567)
    assert await inflight(redis_client, tenant_id) == 10
    held = [req for req, outcome in zip(requests, outcomes, strict=True) if outcome.ok]
    # And settling all of them at once debits exactly their costs.
    results = await asyncio.gather(*(quota.settle(redis_client, usage_event(req, 1_000_000)) for req in held))
    assert results == [1] * 10
    assert await points(redis_client, tenant_id) == (10 * 234_567, 0)
    assert await inflight(redis_client, tenant_id) == 0


async def test_scripts_survive_a_redis_that_forgot_them(redis_client: aioredis.Redis) -> None:
    tenant_id = await loaded(redis_client, 1_000)
    await redis_client.script_flush()  # a restarted Redis knows no script
    assert (await quota.reserve(redis_client, request(tenant_id, 10))).ok
