"""Loading and holding: reserve answers ``unloaded`` until the tenant's balance is loaded, then holds ``estimate``
out of ``available = balance - held``, or refuses as insufficient and then holds nothing and counts nothing; a
second load keeps what is held and owed; the reservation records what settlement needs."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
import redis.asyncio as aioredis

from lime.money import quota
from lime.money.quota import Refusal
from tests.integration.quota.tenants import QUOTA_REDIS_DB, inflight, loaded, points, request, tenant, usage_event

#: Read by the redis_client fixture (tests/integration/conftest.py).
REDIS_DB = QUOTA_REDIS_DB


async def test_unloaded_tenant_is_loaded_then_reserved(redis_client: aioredis.Redis) -> None:
    tenant_id = tenant()
    req = request(tenant_id, 400)
    outcome = await quota.reserve(redis_client, req)
    assert not outcome.loaded and not outcome.ok and outcome.refusal is None
    assert not await redis_client.exists(quota.points_key(tenant_id), quota.reservation_key(req.reservation_id))
    await quota.rebuild(redis_client, tenant_id, 1000)
    assert await points(redis_client, tenant_id) == (1000, 0)
    outcome = await quota.reserve(redis_client, req)
    assert outcome.ok and outcome.loaded
    assert await points(redis_client, tenant_id) == (1000, 400)
    assert await inflight(redis_client, tenant_id) == 1


async def test_a_second_rebuild_keeps_what_is_held_and_owed(redis_client: aioredis.Redis) -> None:
    tenant_id = await loaded(redis_client, 1000)
    held = request(tenant_id, 300)
    assert (await quota.reserve(redis_client, held)).ok
    settled = request(tenant_id, 50)
    assert (await quota.reserve(redis_client, settled)).ok
    assert await quota.settle(redis_client, usage_event(settled, 40)) == 1
    # A second loader, late (or reconcile), reading PostgreSQL's 1000 while 40 are still in the stream:
    costs, last = await quota.stream_costs(redis_client, tenant_id)
    assert costs == {settled.reservation_id: 40}
    assert await quota.rebuild(redis_client, tenant_id, 1000, owed=0, after=last) == {
        "balance": 1000, "held": 300, "in_flight": 1}  # told the stream's 40 are already in PostgreSQL
    assert await quota.rebuild(redis_client, tenant_id, 1000) == {"balance": 960, "held": 300, "in_flight": 1}


async def test_insufficient_points_are_refused_and_nothing_is_held(redis_client: aioredis.Redis) -> None:
    tenant_id = await loaded(redis_client, 1000)
    req = request(tenant_id, 1001, rpm=100, tpm=1000)
    outcome = await quota.reserve(redis_client, req)
    assert outcome.refusal is Refusal.INSUFFICIENT and not outcome.ok
    assert await points(redis_client, tenant_id) == (1000, 0)
    assert await inflight(redis_client, tenant_id) == 0
    assert not await redis_client.exists(quota.reservation_key(req.reservation_id))
    assert await redis_client.zscore(quota.RESERVATIONS, req.reservation_id) is None
    # Neither the request nor its tokens were counted against the minute.
    assert not await redis_client.exists(quota.rpm_key(tenant_id, outcome.minute),
                                         quota.tpm_key(tenant_id, outcome.minute))
    # The same id may try again once there is enough.
    assert (await quota.reserve(redis_client, replace(req, points=1000))).ok


async def test_available_is_balance_minus_held(redis_client: aioredis.Redis) -> None:
    tenant_id = await loaded(redis_client, 1000)
    assert (await quota.reserve(redis_client, request(tenant_id, 300))).ok
    assert (await quota.reserve(redis_client, request(tenant_id, 500))).ok
    assert await points(redis_client, tenant_id) == (1000, 800)
    # 200 available: 201 is refused, 200 exactly fits, then nothing does.
    assert (await quota.reserve(redis_client, request(tenant_id, 201))).refusal is Refusal.INSUFFICIENT
    assert (await quota.reserve(redis_client, request(tenant_id, 200))).ok
    assert (await quota.reserve(redis_client, request(tenant_id, 1))).refusal is Refusal.INSUFFICIENT
    assert await points(redis_client, tenant_id) == (1000, 1000)
    assert await inflight(redis_client, tenant_id) == 3


async def test_reservation_records_what_settlement_needs(redis_client: aioredis.Redis) -> None:
    tenant_id = await loaded(redis_client, 1000)
    now = time.time()
    req = request(tenant_id, 250, tokens=42, ttl=30)
    assert (await quota.reserve(redis_client, req, now=now)).ok
    fields = await quota.reservation_fields(redis_client, req.reservation_id)
    assert fields is not None
    assert (fields["tenant_id"], fields["key_id"], fields["endpoint"], fields["model"], fields["upstream"],
            fields["reserved"]) == (tenant_id, "key-1", "chat_completions", "team-default", "oai", 250)
    assert fields["started_at"] == pytest.approx(now)
    deadline = await redis_client.zscore(quota.RESERVATIONS, req.reservation_id)
    assert deadline == pytest.approx(now + 30, abs=0.01)
    assert await redis_client.ttl(quota.reservation_key(req.reservation_id)) > 30
