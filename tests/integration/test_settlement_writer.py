"""What :mod:`lime.money.settlement_writer` pins, on a real PostgreSQL and Redis: the stream moves into PostgreSQL
exactly once.

* every event settled by :func:`lime.money.quota.settle` becomes one ``usage_records`` row, one ``usage`` ledger entry
  (when it cost something) and the new balance, in one transaction; PostgreSQL's balance then equals Redis's;
* a redelivered event (persisted again, or left unacknowledged by a writer that died after its commit) changes
  nothing;
* after a drain the stream holds only what PostgreSQL does not have yet;
* **fault**: PostgreSQL stops in the middle of a run of settlements and comes back; the writer keeps retrying and
  in the end every event is persisted exactly once, and the balance dropped by exactly the sum of the costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool

from lime import admin
from lime.devstack.embedded import EmbeddedPostgres, free_port
from lime.money import quota
from lime.money.balances import balance_of, grant_points, load_into_redis
from lime.money.quota import DEAD_LETTER_STREAM, USAGE_STREAM, ReservationRequest, UsageEvent
from lime.money.settlement_writer import (
    GROUP,
    SettlementWriter,
    persist,
    persist_batch,
    reap_expired,
)
from lime.store.migrate import apply_migrations
from tests.integration.conftest import eventually, uid

Conn = psycopg.AsyncConnection[Any]
Pool = AsyncConnectionPool[Any]

REDIS_DB = 13  # the writer reads the whole stream: it must hold this test's events only
FLUSH_REDIS = True



async def funded_tenant(conn: Conn, redis: aioredis.Redis, points: int) -> str:
    tenant_id = uid("tenant")
    await admin.create_tenant(conn, tenant_id, "Writer tenant", package_id=None)
    await grant_points(conn, redis, tenant_id, points)
    await load_into_redis(conn, redis, tenant_id)
    return tenant_id


def reservation(tenant_id: str, points: int) -> ReservationRequest:
    return ReservationRequest(
        reservation_id=f"req-{uuid.uuid4().hex}", tenant_id=tenant_id, key_id="key-1", endpoint="chat_completions",
        model="team-default", upstream="oai", points=points, tokens=100, rpm_limit=None, tpm_limit=None,
        concurrency_limit=None, ttl_seconds=300)


def usage_event(req: ReservationRequest, cost: int, *, outcome: str = "complete") -> UsageEvent:
    return UsageEvent(
        request_id=req.reservation_id, tenant_id=req.tenant_id, key_id=req.key_id, endpoint=req.endpoint,
        model=req.model, upstream=req.upstream, outcome=outcome, estimated=outcome == "partial",
        upstream_status=200, input_tokens=12, cached_input_tokens=3, cache_write_tokens=1, output_tokens=7,
        reasoning_tokens=2, reserved=req.points, cost=cost, started_at=time.time() - 2)


async def settle_one(redis: aioredis.Redis, tenant_id: str, cost: int, *, outcome: str = "complete") -> UsageEvent:
    req = reservation(tenant_id, max(cost, 1))
    assert (await quota.reserve(redis, req)).ok
    event = usage_event(req, cost, outcome=outcome)
    assert await quota.settle(redis, event) == 1
    return event


async def records(conn: Conn, tenant_id: str) -> dict[str, tuple[Any, ...]]:
    rows = await (await conn.execute(
        "SELECT request_id, tenant_id, key_id, endpoint, model, upstream, outcome, estimated, upstream_status,"
        " input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens, reserved, cost,"
        " extract(epoch FROM started_at)::float8 FROM usage_records WHERE tenant_id = %s", (tenant_id,))).fetchall()
    return {str(row[0]): tuple(row) for row in rows}


def as_record(event: UsageEvent) -> tuple[Any, ...]:
    return (event.request_id, event.tenant_id, event.key_id, event.endpoint, event.model, event.upstream,
            event.outcome, event.estimated, event.upstream_status, event.input_tokens, event.cached_input_tokens,
            event.cache_write_tokens, event.output_tokens, event.reasoning_tokens, event.reserved, event.cost)


async def usage_ledger(conn: Conn, tenant_id: str) -> list[tuple[str, int, int]]:
    rows = await (await conn.execute(
        "SELECT request_id, amount, balance_after FROM ledger WHERE tenant_id = %s AND kind = 'usage' ORDER BY id",
        (tenant_id,))).fetchall()
    return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]


async def redis_balance(redis: aioredis.Redis, tenant_id: str) -> int:
    return int(await redis.hget(quota.points_key(tenant_id), "balance") or 0)


def writer_for(pool: Pool, redis: aioredis.Redis) -> SettlementWriter:
    return SettlementWriter(pool, redis, consumer=f"test-{uuid.uuid4().hex[:6]}", block_ms=50, reap_every=0.5)


# -- exactly once -----------------------------------------------------------------------------------------------


async def test_settled_events_are_persisted_exactly_once(conn: Conn, pool: Pool, redis_client: aioredis.Redis) -> None:
    tenant_id = await funded_tenant(conn, redis_client, 100_000)
    events = [await settle_one(redis_client, tenant_id, cost) for cost in (1_000, 2_345, 1)]
    events.append(await settle_one(redis_client, tenant_id, 0, outcome="failed"))
    events.append(await settle_one(redis_client, tenant_id, 777, outcome="partial"))
    total = sum(event.cost for event in events)
    assert await redis_balance(redis_client, tenant_id) == 100_000 - total
    assert await balance_of(conn, tenant_id) == 100_000  # not persisted yet

    writer = writer_for(pool, redis_client)
    await writer.ensure_group()
    assert await writer.drain_once() == len(events)

    stored = await records(conn, tenant_id)
    assert set(stored) == {event.request_id for event in events}
    for event in events:
        assert stored[event.request_id][:16] == as_record(event)
        assert stored[event.request_id][16] == pytest.approx(event.started_at, abs=1e-3)
    # One usage ledger entry per event that cost something, each with the balance after it.
    ledger = await usage_ledger(conn, tenant_id)
    assert [(request_id, amount) for request_id, amount, _ in ledger] == [
        (event.request_id, -event.cost) for event in events if event.cost]
    assert [after for _, _, after in ledger] == [100_000 - 1_000, 100_000 - 3_345, 100_000 - 3_346,
                                                 100_000 - 4_123]
    assert await balance_of(conn, tenant_id) == 100_000 - total == await redis_balance(redis_client, tenant_id)
    assert await redis_client.xlen(USAGE_STREAM) == 0
    assert (await redis_client.xpending(USAGE_STREAM, GROUP))["pending"] == 0

    # Nothing left to do, and doing it again changes nothing.
    assert await writer.drain_once() == 0
    assert len(await records(conn, tenant_id)) == len(events)
    assert await balance_of(conn, tenant_id) == 100_000 - total


async def test_redelivered_event_is_a_no_op(conn: Conn, redis_client: aioredis.Redis) -> None:
    tenant_id = await funded_tenant(conn, redis_client, 10_000)
    event = await settle_one(redis_client, tenant_id, 1_500)
    assert await persist(conn, event) is True
    assert await persist(conn, event) is False
    # Even if the redelivery somehow carried another cost, the first record stands.
    assert await persist(conn, replace(event, cost=9_999)) is False
    assert await balance_of(conn, tenant_id) == 8_500
    assert [amount for _, amount, _ in await usage_ledger(conn, tenant_id)] == [-1_500]
    assert (await records(conn, tenant_id))[event.request_id][15] == 1_500


async def test_writer_that_died_after_its_commit_is_redelivered_without_effect(
        conn: Conn, pool: Pool, redis_client: aioredis.Redis) -> None:
    tenant_id = await funded_tenant(conn, redis_client, 10_000)
    await settle_one(redis_client, tenant_id, 2_000)
    writer = writer_for(pool, redis_client)
    await writer.ensure_group()
    # The writer read the event and committed it, then died before acknowledging it.
    reply: Any = await redis_client.xreadgroup(GROUP, writer._consumer, {USAGE_STREAM: ">"}, count=10)
    [(_, [(_, fields)])] = reply
    assert await persist(conn, UsageEvent.decode(fields[b"event"]))
    assert (await redis_client.xpending(USAGE_STREAM, GROUP))["pending"] == 1
    # Restarted, it reads its pending entries first: recorded already, so only acknowledged.
    assert await writer.drain_once() == 1
    assert (await redis_client.xpending(USAGE_STREAM, GROUP))["pending"] == 0
    assert await redis_client.xlen(USAGE_STREAM) == 0
    assert len(await records(conn, tenant_id)) == 1
    assert await balance_of(conn, tenant_id) == 8_000 == await redis_balance(redis_client, tenant_id)
    assert len(await usage_ledger(conn, tenant_id)) == 1


async def test_stream_holds_only_unpersisted_events(conn: Conn, pool: Pool, redis_client: aioredis.Redis) -> None:
    tenant_id = await funded_tenant(conn, redis_client, 10_000)
    writer = writer_for(pool, redis_client)
    await writer.ensure_group()
    for cost in (100, 200, 300):
        await settle_one(redis_client, tenant_id, cost)
    assert await writer.drain_once() == 3
    assert await redis_client.xlen(USAGE_STREAM) == 0
    later = [await settle_one(redis_client, tenant_id, cost) for cost in (40, 50)]
    entries: Any = await redis_client.xrange(USAGE_STREAM)
    in_stream = [UsageEvent.decode(fields[b"event"]) for _, fields in entries]
    assert in_stream == later
    assert set(await records(conn, tenant_id)).isdisjoint(event.request_id for event in in_stream)
    # PostgreSQL's balance + what the stream still owes = Redis's balance (what reconcile relies on).
    owed = sum(event.cost for event in in_stream)
    assert await balance_of(conn, tenant_id) == 10_000 - 600
    assert await redis_balance(redis_client, tenant_id) == 10_000 - 600 - owed
    assert await writer.drain_once() == 2
    assert await redis_client.xlen(USAGE_STREAM) == 0
    assert await balance_of(conn, tenant_id) == 10_000 - 690 == await redis_balance(redis_client, tenant_id)


async def test_reaped_reservation_is_recorded_without_charge(
        conn: Conn, pool: Pool, redis_client: aioredis.Redis) -> None:
    tenant_id = await funded_tenant(conn, redis_client, 10_000)
    req = replace(reservation(tenant_id, 4_000), ttl_seconds=5)
    assert (await quota.reserve(redis_client, req, now=time.time() - 60)).ok
    assert await reap_expired(redis_client) == 1
    writer = writer_for(pool, redis_client)
    await writer.ensure_group()
    assert await writer.drain_once() == 1
    record = (await records(conn, tenant_id))[req.reservation_id]
    assert (record[6], record[7], record[14], record[15]) == ("reaped", True, 4_000, 0)
    assert await usage_ledger(conn, tenant_id) == []
    assert await balance_of(conn, tenant_id) == 10_000 == await redis_balance(redis_client, tenant_id)


async def test_run_persists_and_reaps_until_stopped(conn: Conn, pool: Pool, redis_client: aioredis.Redis) -> None:
    tenant_id = await funded_tenant(conn, redis_client, 10_000)
    stop = asyncio.Event()
    task = asyncio.create_task(writer_for(pool, redis_client).run(stop))
    try:
        event = await settle_one(redis_client, tenant_id, 1_234)
        expired = replace(reservation(tenant_id, 500), ttl_seconds=1)
        assert (await quota.reserve(redis_client, expired, now=time.time() - 10)).ok

        async def both_recorded() -> bool:
            return set(await records(conn, tenant_id)) == {event.request_id, expired.reservation_id}

        await eventually(both_recorded, within=5.0, what="settled and reaped events persisted")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5.0)
    assert await balance_of(conn, tenant_id) == 10_000 - 1_234 == await redis_balance(redis_client, tenant_id)


# -- fault: PostgreSQL goes away in the middle ------------------------------------------------------------------

N = 100


@pytest.mark.parametrize("how", ["stop", "crash"])
async def test_writer_survives_a_postgres_restart(tmp_path: Path, redis_client: aioredis.Redis, how: str) -> None:
    server = EmbeddedPostgres(tmp_path / "pg", free_port(), durable=False)
    await asyncio.to_thread(server.start)
    try:
        await apply_migrations(server.url)
        async with await psycopg.AsyncConnection.connect(server.url, autocommit=True) as conn:
            tenant_id = await funded_tenant(conn, redis_client, 10**12)
        # Configured like the services' pool (lime.connections.open_pool).
        async with AsyncConnectionPool(server.url, min_size=1, max_size=4, open=False,
                                       kwargs={"autocommit": True}, timeout=5.0) as pool:
            await pool.wait(timeout=10.0)
            await _settle_through_an_outage(server, pool, redis_client, tenant_id, crash=how == "crash")
    finally:
        await asyncio.to_thread(server.stop)


async def _settle_through_an_outage(server: EmbeddedPostgres, pool: Pool, redis: aioredis.Redis,
                                    tenant_id: str, *, crash: bool) -> None:
    stop = asyncio.Event()
    writer = writer_for(pool, redis)
    task = asyncio.create_task(writer.run(stop))
    outage: asyncio.Task[None] | None = None

    async def restart() -> None:
        # A clean shutdown (open transactions rolled back), or a crash (SIGQUIT: no checkpoint, WAL recovery).
        await asyncio.to_thread(server.kill if crash else server.stop)
        await asyncio.sleep(1.5)
        await asyncio.to_thread(server.start)

    events: list[UsageEvent] = []
    settled_while_down = 0
    try:
        for i in range(N):
            if i == N // 3:
                outage = asyncio.create_task(restart())
            events.append(await settle_one(redis, tenant_id, 1_000 + i))
            settled_while_down += not server.is_running()
            await asyncio.sleep(0.02)
        assert outage is not None
        await outage
        assert settled_while_down > 0, "the outage must overlap the settlements"
        assert not task.done(), "the writer must keep running through the outage"

        async def count() -> int:
            async with await psycopg.AsyncConnection.connect(server.url, autocommit=True) as conn:
                row = await (await conn.execute(
                    "SELECT count(*) FROM usage_records WHERE tenant_id = %s", (tenant_id,))).fetchone()
            assert row is not None
            return int(row[0])

        async def all_persisted() -> bool:
            return await count() >= N and await redis.xlen(USAGE_STREAM) == 0

        await eventually(all_persisted, within=20.0, what=f"{N} events persisted after the restart")
    finally:
        stop.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(task, timeout=5.0)
        if outage is not None and not outage.done():
            await outage

    total = sum(event.cost for event in events)
    async with await psycopg.AsyncConnection.connect(server.url, autocommit=True) as conn:
        stored = await records(conn, tenant_id)
        assert set(stored) == {event.request_id for event in events}
        for event in events:
            assert stored[event.request_id][:16] == as_record(event)
        ledger = await usage_ledger(conn, tenant_id)
        assert len(ledger) == N
        assert sorted(request_id for request_id, _, _ in ledger) == sorted(event.request_id for event in events)
        assert sum(amount for _, amount, _ in ledger) == -total
        # Each entry's balance_after follows from the one before: no entry was applied twice or skipped.
        running = 10**12
        for _, amount, after in ledger:
            running += amount
            assert after == running
        assert await balance_of(conn, tenant_id) == 10**12 - total
    assert await redis_balance(redis, tenant_id) == 10**12 - total
    assert (await redis.xpending(USAGE_STREAM, GROUP))["pending"] == 0


async def test_an_event_postgres_refuses_is_set_aside_and_the_rest_flows(
        conn: Conn, pool: Pool, redis_client: aioredis.Redis) -> None:
    tenant_id = await funded_tenant(conn, redis_client, 100_000)
    orphan = await settle_one(redis_client, tenant_id, 10)
    # An event for a tenant PostgreSQL does not know (deleted meanwhile) can never be written ...
    stranger = replace(orphan, request_id=f"req-{uuid.uuid4().hex}", tenant_id=uid("gone"))
    await redis_client.xadd(USAGE_STREAM, {"event": stranger.encode()})
    after = await settle_one(redis_client, tenant_id, 20)
    writer = writer_for(pool, redis_client)
    await writer.ensure_group()
    await writer.drain_once()
    # ... and must not hold up the events behind it.
    assert set(await records(conn, tenant_id)) == {orphan.request_id, after.request_id}
    dead: Any = await redis_client.xrange(DEAD_LETTER_STREAM)
    assert [UsageEvent.decode(fields[b"event"]).request_id for _, fields in dead][-1] == stranger.request_id
    assert await redis_client.xlen(USAGE_STREAM) == 0


async def test_the_reaper_drops_index_entries_whose_reservation_is_gone(redis_client: aioredis.Redis) -> None:
    ghost = f"req-{uuid.uuid4().hex}"
    await redis_client.zadd(quota.RESERVATIONS, {ghost: time.time() - 10})
    assert await reap_expired(redis_client) == 0
    assert await redis_client.zscore(quota.RESERVATIONS, ghost) is None


async def test_a_batch_writes_each_request_once_and_chains_each_tenants_ledger(conn: Conn) -> None:
    first, second = uid("batch-a"), uid("batch-b")
    for tenant_id in (first, second):
        await admin.create_tenant(conn, tenant_id, tenant_id, package_id=None)
    template = usage_event(reservation(first, 1), 0)
    events = [replace(template, request_id=f"req-{uuid.uuid4().hex}", tenant_id=tenant_id, cost=cost)
              for tenant_id, cost in ((first, 10), (second, 5), (first, 0), (first, 7), (second, 1))]
    events.append(events[0])  # the same settlement twice in one batch

    assert await persist_batch(conn, events) == [True, True, True, True, True, False]
    assert await persist_batch(conn, events[:2]) == [False, False]  # and again later
    assert await usage_ledger(conn, first) == [(events[0].request_id, -10, -10), (events[3].request_id, -7, -17)]
    assert await usage_ledger(conn, second) == [(events[1].request_id, -5, -5), (events[4].request_id, -1, -6)]
    assert (await balance_of(conn, first), await balance_of(conn, second)) == (-17, -6)
    assert len(await records(conn, first)) == 3  # the free one is recorded, not charged


async def test_an_event_with_a_value_postgresql_cannot_hold_is_set_aside(
        conn: Conn, pool: Pool, redis_client: aioredis.Redis) -> None:
    tenant_id = await funded_tenant(conn, redis_client, 100_000)
    good = await settle_one(redis_client, tenant_id, 10)
    odd = replace(good, request_id=f"req-{uuid.uuid4().hex}", started_at=1e20)  # no timestamp is that late
    await redis_client.xadd(USAGE_STREAM, {"event": odd.encode()})
    writer = writer_for(pool, redis_client)
    await writer.ensure_group()
    await writer.drain_once()  # does not raise: the writer goes on
    assert set(await records(conn, tenant_id)) == {good.request_id}
    dead: Any = await redis_client.xrange(DEAD_LETTER_STREAM)
    assert UsageEvent.decode(dead[-1][1][b"event"]).request_id == odd.request_id
