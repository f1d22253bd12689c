"""What :mod:`lime.money.balances` pins, on a real PostgreSQL and Redis: PostgreSQL is the truth, Redis its
working copy.

* a grant writes a ledger entry and the new balance in one transaction, and adds the amount to a *loaded* Redis
  balance (an unloaded one is read from PostgreSQL on first use anyway, so it is not created);
* when Redis cannot be reached the grant is rolled back whole: no ledger entry, no balance change;
* loading seeds Redis from PostgreSQL once and never overwrites a loaded balance;
* ``reconcile_tenant`` rebuilds lost counters: balance = PostgreSQL's balance minus the costs still in the usage
  stream (settled, not persisted yet), held and in-flight from the live reservations.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from lime import admin
from lime.devstack.embedded import free_port
from lime.money import quota
from lime.money.balances import balance_of, grant_points, load_into_redis, reconcile_tenant
from lime.money.quota import USAGE_STREAM, ReservationRequest, UsageEvent
from lime.money.settlement_writer import persist
from lime.protocols.errors import BadRequest, NotFound
from tests.integration.conftest import uid

Conn = psycopg.AsyncConnection[Any]

REDIS_DB = 12



async def new_tenant(conn: Conn) -> str:
    tenant_id = uid("tenant")
    await admin.create_tenant(conn, tenant_id, "Balance tenant", package_id=None)
    return tenant_id


async def ledger(conn: Conn, tenant_id: str) -> list[tuple[str, int, int, str | None, str]]:
    rows = await (await conn.execute(
        "SELECT kind, amount, balance_after, request_id, note FROM ledger WHERE tenant_id = %s ORDER BY id",
        (tenant_id,))).fetchall()
    return [(str(r[0]), int(r[1]), int(r[2]), r[3], str(r[4])) for r in rows]


async def redis_points(redis: aioredis.Redis, tenant_id: str) -> tuple[int, int] | None:
    balance, held = await redis.hmget(quota.points_key(tenant_id), ["balance", "held"])
    return None if balance is None or held is None else (int(balance), int(held))


def reservation(tenant_id: str, points: int) -> ReservationRequest:
    return ReservationRequest(
        reservation_id=f"req-{uuid.uuid4().hex}", tenant_id=tenant_id, key_id="key-1", endpoint="chat_completions",
        model="team-default", upstream="oai", points=points, tokens=10, rpm_limit=None, tpm_limit=None,
        concurrency_limit=None, ttl_seconds=300)


def usage_event(tenant_id: str, cost: int, request_id: str | None = None) -> UsageEvent:
    return UsageEvent(
        request_id=request_id or f"req-{uuid.uuid4().hex}", tenant_id=tenant_id, key_id="key-1",
        endpoint="chat_completions", model="team-default", upstream="oai", outcome="complete", estimated=False,
        upstream_status=200, input_tokens=10, cached_input_tokens=0, cache_write_tokens=0, output_tokens=5,
        reasoning_tokens=0, reserved=cost, cost=cost, started_at=time.time())


# -- grants -----------------------------------------------------------------------------------------------------


async def test_grant_writes_ledger_and_balance(conn: Conn, redis_client: aioredis.Redis) -> None:
    tenant_id = await new_tenant(conn)
    assert await balance_of(conn, tenant_id) is None
    assert await grant_points(conn, redis_client, tenant_id, 5_000, "welcome") == 5_000
    assert await grant_points(conn, redis_client, tenant_id, -1_200, "refund") == 3_800
    assert await balance_of(conn, tenant_id) == 3_800
    assert await ledger(conn, tenant_id) == [("grant", 5_000, 5_000, None, "welcome"),
                                             ("adjustment", -1_200, 3_800, None, "refund")]


async def test_grant_adjusts_a_loaded_redis_balance(conn: Conn, redis_client: aioredis.Redis) -> None:
    tenant_id = await new_tenant(conn)
    await grant_points(conn, redis_client, tenant_id, 1_000)
    await load_into_redis(conn, redis_client, tenant_id)
    assert await redis_points(redis_client, tenant_id) == (1_000, 0)
    req = reservation(tenant_id, 600)
    assert (await quota.reserve(redis_client, req)).ok
    assert await grant_points(conn, redis_client, tenant_id, 10**15) == 10**15 + 1_000
    assert await redis_points(redis_client, tenant_id) == (10**15 + 1_000, 600)  # the hold is untouched
    assert await grant_points(conn, redis_client, tenant_id, -500) == 10**15 + 500
    assert await redis_points(redis_client, tenant_id) == (10**15 + 500, 600)
    assert await balance_of(conn, tenant_id) == 10**15 + 500


async def test_grant_leaves_an_unloaded_redis_balance_unloaded(conn: Conn, redis_client: aioredis.Redis) -> None:
    tenant_id = await new_tenant(conn)
    await grant_points(conn, redis_client, tenant_id, 2_000)
    assert not await redis_client.exists(quota.points_key(tenant_id))
    # First use loads what PostgreSQL says, grants included; a second load changes nothing.
    await load_into_redis(conn, redis_client, tenant_id)
    assert await redis_points(redis_client, tenant_id) == (2_000, 0)
    assert (await quota.reserve(redis_client, reservation(tenant_id, 2_000))).ok
    await load_into_redis(conn, redis_client, tenant_id)
    assert await redis_points(redis_client, tenant_id) == (2_000, 2_000)


async def test_load_of_a_tenant_without_points_is_zero(conn: Conn, redis_client: aioredis.Redis) -> None:
    tenant_id = await new_tenant(conn)
    await load_into_redis(conn, redis_client, tenant_id)
    assert await redis_points(redis_client, tenant_id) == (0, 0)
    assert await balance_of(conn, tenant_id) == 0
    outcome = await quota.reserve(redis_client, reservation(tenant_id, 1))
    assert outcome.loaded and outcome.refusal is quota.Refusal.INSUFFICIENT


async def test_grant_is_rolled_back_when_redis_is_unreachable(conn: Conn, redis_client: aioredis.Redis) -> None:
    tenant_id = await new_tenant(conn)
    await grant_points(conn, redis_client, tenant_id, 700)
    # Nothing listens there; no retries, so the test does not wait out redis-py's backoff.
    closed = aioredis.Redis(host="127.0.0.1", port=free_port(), socket_timeout=1.0, socket_connect_timeout=1.0,
                            retry=Retry(NoBackoff(), 0))
    try:
        with pytest.raises(aioredis.ConnectionError):
            await grant_points(conn, closed, tenant_id, 300, "lost")
        # Even for a tenant without a balance row yet: the row is not left behind either.
        other = await new_tenant(conn)
        with pytest.raises(aioredis.ConnectionError):
            await grant_points(conn, closed, other, 300)
    finally:
        await closed.aclose()
    assert await balance_of(conn, tenant_id) == 700
    assert [entry[:3] for entry in await ledger(conn, tenant_id)] == [("grant", 700, 700)]
    assert await balance_of(conn, other) is None
    assert await ledger(conn, other) == []
    # The connection is usable afterwards, and the grant can be retried.
    assert await grant_points(conn, redis_client, tenant_id, 300) == 1_000


async def test_grant_errors(conn: Conn, redis_client: aioredis.Redis) -> None:
    tenant_id = await new_tenant(conn)
    with pytest.raises(BadRequest):
        await grant_points(conn, redis_client, tenant_id, 0)
    with pytest.raises(NotFound):
        await grant_points(conn, redis_client, uid("nobody"), 10)
    assert await balance_of(conn, tenant_id) is None


# -- reconcile --------------------------------------------------------------------------------------------------


async def test_reconcile_after_redis_lost_the_tenant(conn: Conn, redis_client: aioredis.Redis) -> None:
    tenant_id = await new_tenant(conn)
    await grant_points(conn, redis_client, tenant_id, 10_000)
    await load_into_redis(conn, redis_client, tenant_id)

    # Two requests settled: one persisted to PostgreSQL already, one still in the stream.
    persisted, pending = reservation(tenant_id, 1_000), reservation(tenant_id, 2_000)
    for req in (persisted, pending):
        assert (await quota.reserve(redis_client, req)).ok
    persisted_event = usage_event(tenant_id, 400, persisted.reservation_id)
    pending_event = usage_event(tenant_id, 650, pending.reservation_id)
    assert await quota.settle(redis_client, persisted_event) == 1
    assert await quota.settle(redis_client, pending_event) == 1
    assert await persist(conn, persisted_event)
    await _drop_from_stream(redis_client, persisted_event.request_id)
    # Another tenant's unpersisted cost is not this tenant's.
    assert await quota.settle(redis_client, usage_event(uid("someone-else"), 99_999)) == 1
    # Two requests still in flight.
    live = [reservation(tenant_id, 300), reservation(tenant_id, 45)]
    for req in live:
        assert (await quota.reserve(redis_client, req)).ok
    before = await redis_points(redis_client, tenant_id)
    assert before == (10_000 - 400 - 650, 345)
    assert await balance_of(conn, tenant_id) == 10_000 - 400

    # Redis loses the tenant's counters.
    await redis_client.delete(quota.points_key(tenant_id), quota.inflight_key(tenant_id))
    assert not (await quota.reserve(redis_client, reservation(tenant_id, 1))).loaded

    rebuilt = await reconcile_tenant(conn, redis_client, tenant_id)
    assert rebuilt == {"balance": 10_000 - 400 - 650, "held": 345, "in_flight": 2}
    assert await redis_points(redis_client, tenant_id) == before
    assert int(await redis_client.get(quota.inflight_key(tenant_id)) or 0) == 2

    # Once the pending event is persisted and gone from the stream, reconcile agrees with itself.
    assert await persist(conn, pending_event)
    await _drop_from_stream(redis_client, pending_event.request_id)
    assert await balance_of(conn, tenant_id) == 10_000 - 400 - 650
    assert await reconcile_tenant(conn, redis_client, tenant_id) == rebuilt


async def test_reconcile_overwrites_a_drifted_balance(conn: Conn, redis_client: aioredis.Redis) -> None:
    tenant_id = await new_tenant(conn)
    await grant_points(conn, redis_client, tenant_id, 3 * 10**15)
    await load_into_redis(conn, redis_client, tenant_id)
    await redis_client.hset(quota.points_key(tenant_id), mapping={"balance": 1, "held": 777})
    await redis_client.set(quota.inflight_key(tenant_id), 5)
    assert await reconcile_tenant(conn, redis_client, tenant_id) == {
        "balance": 3 * 10**15, "held": 0, "in_flight": 0}
    assert await redis_points(redis_client, tenant_id) == (3 * 10**15, 0)


async def _drop_from_stream(redis: aioredis.Redis, request_id: str) -> None:
    """What the settlement writer does after persisting: the event leaves the stream."""
    entries: Any = await redis.xrange(USAGE_STREAM)
    for entry_id, fields in entries:
        if UsageEvent.decode(fields[b"event"]).request_id == request_id:
            await redis.xdel(USAGE_STREAM, entry_id)


async def settled_once(conn: Conn, redis: aioredis.Redis, points: int, cost: int) -> tuple[str, UsageEvent]:
    """A loaded tenant with ``points`` that has just settled one request costing ``cost`` (in Redis only)."""
    tenant_id = await new_tenant(conn)
    await grant_points(conn, redis, tenant_id, points)
    await load_into_redis(conn, redis, tenant_id)
    req = reservation(tenant_id, cost)
    assert (await quota.reserve(redis, req)).ok
    event = usage_event(tenant_id, cost, req.reservation_id)
    assert await quota.settle(redis, event) == 1
    return tenant_id, event


async def test_reconcile_does_not_count_twice_what_the_writer_just_committed(
        conn: Conn, redis_client: aioredis.Redis) -> None:
    tenant_id, event = await settled_once(conn, redis_client, 10_000, 400)
    # The writer has committed this event and not yet deleted it from the stream: it is in both places.
    assert await persist(conn, event)
    assert await balance_of(conn, tenant_id) == 9_600
    result = await reconcile_tenant(conn, redis_client, tenant_id)
    assert result["balance"] == 9_600  # not 9_200
    assert await redis_points(redis_client, tenant_id) == (9_600, 0)


async def test_a_grant_whose_commit_fails_leaves_redis_as_postgresql_has_it(
        conn: Conn, redis_client: aioredis.Redis) -> None:
    tenant_id = await new_tenant(conn)
    await grant_points(conn, redis_client, tenant_id, 1_000)
    await load_into_redis(conn, redis_client, tenant_id)
    # A deferred check that fails at COMMIT: after Redis has already been credited inside the transaction.
    await conn.execute("""
        CREATE OR REPLACE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'refused at commit'; END $$""")
    await conn.execute("""
        CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON ledger DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW WHEN (NEW.note = 'refuse-at-commit') EXECUTE FUNCTION refuse_at_commit()""")
    try:
        with pytest.raises(psycopg.Error):
            await grant_points(conn, redis_client, tenant_id, 500, "refuse-at-commit")
    finally:
        await conn.execute("DROP TRIGGER refuse_at_commit ON ledger")
    assert await balance_of(conn, tenant_id) == 1_000
    assert await redis_points(redis_client, tenant_id) == (1_000, 0)  # not 1_500


async def test_a_dead_lettered_charge_is_not_given_back_by_reconcile(conn: Conn, redis_client: aioredis.Redis) -> None:
    tenant_id, event = await settled_once(conn, redis_client, 1_000, 70)
    # The writer could not store it and set it aside: gone from the usage stream, not in PostgreSQL.
    await redis_client.xadd(quota.DEAD_LETTER_STREAM, {"event": event.encode(), "error": "test"})
    await _drop_from_stream(redis_client, event.request_id)
    assert (await reconcile_tenant(conn, redis_client, tenant_id))["balance"] == 930
