"""The overdraft bound in the reserve script (lime/money/overdraft.py): a request whose cost may run past its hold
(its ``exposure``) is admitted only while the worst case of everything in flight keeps the tenant at or above
minus the package's overdraft limit, and settlement frees the exposure as it frees the hold."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from lime.money import quota
from lime.money.quota import Refusal
from tests.integration.quota.tenants import QUOTA_REDIS_DB, loaded, points, request, usage_event

#: Read by the redis_client fixture (tests/integration/conftest.py).
REDIS_DB = QUOTA_REDIS_DB


async def exposure(redis: aioredis.Redis, tenant_id: str) -> int:
    return int(await redis.hget(quota.points_key(tenant_id), "exposure") or 0)


async def test_an_exposed_request_needs_its_worst_case_covered(redis_client: aioredis.Redis) -> None:
    tenant_id = await loaded(redis_client, 1_000)
    # The hold fits (100 <= 1,000) but hold plus exposure does not, and the package allows no overdraft:
    # waiting cannot help, so it is not retryable.
    outcome = await quota.reserve(redis_client, request(tenant_id, 100, exposure=901))
    assert (outcome.refusal, outcome.retry_after) == (Refusal.OVERDRAFT, 0)
    assert await points(redis_client, tenant_id) == (1_000, 0)
    # With an overdraft limit that covers the rest, it is served.
    assert (await quota.reserve(redis_client, request(tenant_id, 100, exposure=901, overdraft_limit=1))).ok
    assert await exposure(redis_client, tenant_id) == 901


async def test_exposure_in_flight_bounds_the_next_requests(redis_client: aioredis.Redis) -> None:
    tenant_id = await loaded(redis_client, 1_000)
    first = request(tenant_id, 100, exposure=500, overdraft_limit=200)
    assert (await quota.reserve(redis_client, first)).ok
    # Worst case so far: 1,000 - 100 - 500 = 400. A plain request of 500 would leave -100 >= -200: served.
    plain = request(tenant_id, 500, overdraft_limit=200)
    assert (await quota.reserve(redis_client, plain)).ok
    # Another exposed request would leave 1,000 - 600 - 500 - 100 - 500 = -700 < -200: refused for now,
    # retryable, because the exposure in flight will settle.
    outcome = await quota.reserve(redis_client, request(tenant_id, 100, exposure=500, overdraft_limit=200))
    assert (outcome.refusal, outcome.retry_after) == (Refusal.OVERDRAFT, 1)
    # Even a plain request that the available balance covers is refused while its worst case does not fit.
    outcome = await quota.reserve(redis_client, request(tenant_id, 350, overdraft_limit=200))
    assert outcome.refusal is Refusal.OVERDRAFT
    # The exposed request cost more than its hold (the fetched file was large): the balance goes below what
    # was available, never below the bound.
    assert await quota.settle(redis_client, usage_event(first, 550)) == 1
    assert await exposure(redis_client, tenant_id) == 0
    assert await quota.settle(redis_client, usage_event(plain, 500)) == 1
    assert await points(redis_client, tenant_id) == (-50, 0)
    # Below zero, every request is refused until points are added.
    outcome = await quota.reserve(redis_client, request(tenant_id, 1, overdraft_limit=200))
    assert outcome.refusal is Refusal.INSUFFICIENT


async def test_concurrent_exposed_requests_never_pass_the_bound(redis_client: aioredis.Redis) -> None:
    tenant_id = await loaded(redis_client, 10_000)
    requests = [request(tenant_id, 100, exposure=1_000, overdraft_limit=1_000) for _ in range(40)]
    outcomes = await asyncio.gather(*(quota.reserve(redis_client, req) for req in requests))
    admitted = [req for req, outcome in zip(requests, outcomes, strict=True) if outcome.ok]
    # Each admitted request takes 1,100 of worst case out of 10,000 + 1,000: exactly 10 fit.
    assert len(admitted) == 10
    assert {outcome.refusal for outcome in outcomes if not outcome.ok} == {Refusal.OVERDRAFT}
    # Every one of them costs its hold plus its full exposure: the tenant ends exactly at the bound.
    await asyncio.gather(*(quota.settle(redis_client, usage_event(req, 1_100)) for req in admitted))
    assert await points(redis_client, tenant_id) == (-1_000, 0)
    assert await exposure(redis_client, tenant_id) == 0


async def test_a_rebuild_recounts_the_exposure_in_flight(redis_client: aioredis.Redis) -> None:
    tenant_id = await loaded(redis_client, 5_000)
    live = request(tenant_id, 100, exposure=700, overdraft_limit=0)
    assert (await quota.reserve(redis_client, live)).ok
    await redis_client.hset(quota.points_key(tenant_id), "exposure", 0)  # a counter lost or drifted
    rebuilt = await quota.rebuild(redis_client, tenant_id, 5_000)
    assert rebuilt["held"] == 100
    assert await exposure(redis_client, tenant_id) == 700
