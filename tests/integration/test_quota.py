"""What :mod:`lime.quota` pins, on a real Redis: the reserve and settle scripts of the money path.

* reserve answers ``unloaded`` until the tenant's balance is loaded, then holds ``estimate`` out of
  ``available = balance - held``, or refuses (insufficient, concurrency, RPM with a retry-after inside the
  minute, TPM, too large, duplicate id) and then holds nothing and counts nothing;
* settle releases the hold, debits the cost and appends exactly one usage event, all at once; a second settle of
  the same request is a no-op; a settle whose reservation Redis lost still debits and records;
* the reaper releases an expired reservation at cost 0 (recorded as ``reaped``), a later real settle of it is a
  no-op, and a live one is left alone;
* amounts survive the Lua round trip exactly, even where Lua would print them as ``1e+15``;
* concurrent reservations never overdraw: the script is atomic.

Each test has tenants of its own, in a Redis database of this module's own: the session Redis's database 0 is
shared with the e2e gateway, whose settler reads ``lime:usage`` there.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import replace
from typing import Any

import pytest
import redis.asyncio as aioredis

from lime import quota
from lime.quota import USAGE_STREAM, Refusal, ReservationRequest, UsageEvent
from lime.settlement_writer import reap_expired

REDIS_DB = 11



def tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:12]}"


def request(tenant_id: str, points: int = 100, *, tokens: int = 10, rpm: int | None = None,
            tpm: int | None = None, concurrency: int | None = None, ttl: int = 300,
            reservation_id: str | None = None) -> ReservationRequest:
    return ReservationRequest(
        reservation_id=reservation_id or f"req-{uuid.uuid4().hex}", tenant_id=tenant_id, key_id="key-1",
        endpoint="chat_completions", model="team-default", upstream="oai", points=points, tokens=tokens,
        rpm_limit=rpm, tpm_limit=tpm, concurrency_limit=concurrency, ttl_seconds=ttl)


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


# -- loading and holding ----------------------------------------------------------------------------------------


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


# -- limits -----------------------------------------------------------------------------------------------------


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


# -- settling ---------------------------------------------------------------------------------------------------


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


# -- reaping ----------------------------------------------------------------------------------------------------


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


# -- big numbers and concurrency --------------------------------------------------------------------------------


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


async def test_event_round_trips_through_the_stream(redis_client: aioredis.Redis) -> None:
    tenant_id = await loaded(redis_client, 10)
    event = replace(usage_event(request(tenant_id), 3), estimated=True, outcome="partial", reasoning_tokens=2)
    assert await quota.settle(redis_client, event) == 1
    [entry] = [fields for _, fields in await stream_entries(redis_client)
               if json.loads(fields[b"event"])["request_id"] == event.request_id]
    assert UsageEvent.decode(entry[b"event"]) == event
    assert UsageEvent.decode(event.encode()) == event


async def test_scripts_survive_a_redis_that_forgot_them(redis_client: aioredis.Redis) -> None:
    tenant_id = await loaded(redis_client, 1_000)
    await redis_client.script_flush()  # a restarted Redis knows no script
    assert (await quota.reserve(redis_client, request(tenant_id, 10))).ok


async def test_a_long_stream_pushes_its_deadline_past_the_reaper(redis_client: aioredis.Redis) -> None:
    tenant_id = await loaded(redis_client, 1_000)
    req = request(tenant_id, 10, ttl=60)
    assert (await quota.reserve(redis_client, req, now=time.time() - 100)).ok  # due for reaping ...
    assert await quota.extend(redis_client, req.reservation_id, time.time() + 60)  # ... but still answering
    assert await reap_expired(redis_client) == 0
    assert req.reservation_id not in await quota.expired_reservations(redis_client, time.time())
    assert not await quota.extend(redis_client, "req-never-reserved", time.time() + 60)
