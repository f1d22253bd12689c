"""Limits: reserve refuses past the concurrency, RPM (with a retry-after inside the minute) and TPM limits, a
request too large for the TPM limit, and a duplicate reservation id, and then holds nothing and counts nothing;
settlement corrects the TPM window to the tokens really used."""

from __future__ import annotations

import time

import pytest
import redis.asyncio as aioredis

from lime.money import quota
from lime.money.quota import Refusal
from tests.integration.quota.tenants import QUOTA_REDIS_DB, inflight, loaded, points, request, usage_event

#: Read by the redis_client fixture (tests/integration/conftest.py).
REDIS_DB = QUOTA_REDIS_DB


async def test_concurrency_limit(redis_client: aioredis.Redis) -> None:
    tenant_id = await loaded(redis_client, 1000)
    first, second = request(tenant_id, 10, concurrency=2), request(tenant_id, 10, concurrency=2)
    assert (await quota.reserve(redis_client, first)).ok
    assert (await quota.reserve(redis_client, second)).ok
    refused = await quota.reserve(redis_client, request(tenant_id, 10, concurrency=2))
    assert (refused.refusal, refused.retry_after) == (Refusal.CONCURRENCY, 1)
    assert await points(redis_client, tenant_id) == (1000, 20)
    assert await inflight(redis_client, tenant_id) == 2
    # One ends: a place is free again.
    assert await quota.settle(redis_client, usage_event(first, 7)) == 1
    assert await inflight(redis_client, tenant_id) == 1
    assert (await quota.reserve(redis_client, request(tenant_id, 10, concurrency=2))).ok


@pytest.mark.parametrize("second", [0.0, 0.5, 30.0, 59.999])
async def test_rpm_limit_with_retry_after_inside_the_minute(redis_client: aioredis.Redis, second: float) -> None:
    tenant_id = await loaded(redis_client, 1000)
    now = (int(time.time()) // 60) * 60 + second
    for _ in range(3):
        assert (await quota.reserve(redis_client, request(tenant_id, 10, rpm=3), now=now)).ok
    refused = await quota.reserve(redis_client, request(tenant_id, 10, rpm=3), now=now)
    assert refused.refusal is Refusal.RPM
    assert 1 <= refused.retry_after <= 60
    assert refused.retry_after == max(1, 60 - int(second))
    assert await points(redis_client, tenant_id) == (1000, 30)
    assert await inflight(redis_client, tenant_id) == 3
    assert int(await redis_client.get(quota.rpm_key(tenant_id, refused.minute)) or 0) == 3
    # The next minute has a window of its own.
    assert (await quota.reserve(redis_client, request(tenant_id, 10, rpm=3), now=now + 60)).ok


async def test_tpm_limit_too_large_and_settlement_correction(redis_client: aioredis.Redis) -> None:
    tenant_id = await loaded(redis_client, 10_000)
    now = time.time()
    first = request(tenant_id, 10, tokens=60, tpm=100)
    assert (await quota.reserve(redis_client, first, now=now)).ok
    refused = await quota.reserve(redis_client, request(tenant_id, 10, tokens=41, tpm=100), now=now)
    assert refused.refusal is Refusal.TPM and 1 <= refused.retry_after <= 60
    too_large = await quota.reserve(redis_client, request(tenant_id, 10, tokens=101, tpm=100), now=now)
    assert (too_large.refusal, too_large.retry_after) == (Refusal.TOO_LARGE, 0)
    assert await points(redis_client, tenant_id) == (10_000, 10)
    assert (await quota.reserve(redis_client, request(tenant_id, 10, tokens=40, tpm=100), now=now)).ok
    tpm = quota.tpm_key(tenant_id, refused.minute)
    assert int(await redis_client.get(tpm) or 0) == 100
    # The first request used 8 tokens, not its 60: the window is corrected at settlement.
    assert await quota.settle(redis_client, usage_event(first, 5, output_tokens=5)) == 1
    assert int(await redis_client.get(tpm) or 0) == 48
    assert (await quota.reserve(redis_client, request(tenant_id, 10, tokens=52, tpm=100), now=now)).ok


async def test_duplicate_reservation_id_is_refused(redis_client: aioredis.Redis) -> None:
    tenant_id = await loaded(redis_client, 1000)
    req = request(tenant_id, 100)
    assert (await quota.reserve(redis_client, req)).ok
    assert (await quota.reserve(redis_client, req)).refusal is Refusal.DUPLICATE
    assert await points(redis_client, tenant_id) == (1000, 100)
    assert await inflight(redis_client, tenant_id) == 1
    # Settled: the id stays spent, a replay of the request cannot reserve (and later settle) again.
    assert await quota.settle(redis_client, usage_event(req, 40)) == 1
    assert (await quota.reserve(redis_client, req)).refusal is Refusal.DUPLICATE
    assert await points(redis_client, tenant_id) == (960, 0)
