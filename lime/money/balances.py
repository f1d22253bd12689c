"""Balances in PostgreSQL (the truth) and their working copy in Redis (what reservations check).

PostgreSQL's ``balances`` row is changed only in a transaction that also writes the ``ledger``: by a grant here,
or by the settlement writer for usage. Redis holds ``balance`` with every settled debit already applied (the
settlement script debits it at once) plus ``held``. Loading and granting take the PostgreSQL row lock while they
touch Redis, so a grant can never be counted twice or lost between the two.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg
import redis.asyncio as aioredis

from lime.money import quota
from lime.protocols.errors import BadRequest, NotFound

__all__ = ["balance_of", "balance_view", "grant_points", "load_into_redis", "reconcile_tenant"]

Conn = psycopg.AsyncConnection[Any]


async def _locked_points(conn: Conn, tenant_id: str) -> int:
    """The tenant's balance row, created at 0 if missing, locked until the transaction ends."""
    await conn.execute("INSERT INTO balances (tenant_id) VALUES (%s) ON CONFLICT DO NOTHING", (tenant_id,))
    row = await (await conn.execute(
        "SELECT points FROM balances WHERE tenant_id = %s FOR UPDATE", (tenant_id,))).fetchone()
    assert row is not None
    return int(row[0])


async def load_into_redis(conn: Conn, redis: aioredis.Redis, tenant_id: str) -> None:
    """Seed Redis from PostgreSQL for a tenant it does not know yet (first use, or after Redis lost it): the same
    exact rebuild as ``lime reconcile``, so settlements still in the stream are not forgotten."""
    await reconcile_tenant(conn, redis, tenant_id)


async def grant_points(conn: Conn, redis: aioredis.Redis, tenant_id: str, amount: int, note: str = "") -> int:
    """Add ``amount`` micro-points (negative: take away); returns the new balance."""
    if amount == 0:
        raise BadRequest("A grant of 0 points changes nothing.")
    redis_touched = False
    try:
        async with conn.transaction():
            points = await _locked_points(conn, tenant_id) + amount
            await conn.execute("UPDATE balances SET points = %s, updated_at = now() WHERE tenant_id = %s",
                               (points, tenant_id))
            await conn.execute(
                "INSERT INTO ledger (tenant_id, kind, amount, balance_after, note) VALUES (%s, %s, %s, %s, %s)",
                (tenant_id, "grant" if amount > 0 else "adjustment", amount, points, note))
            # Inside the transaction: if Redis is down the grant is rolled back, never half done.
            redis_touched = True
            await quota.adjust_balance(redis, tenant_id, amount)
    except psycopg.errors.ForeignKeyViolation:
        raise NotFound(f"Tenant `{tenant_id}` does not exist.") from None
    except BaseException:
        if redis_touched:
            # Redis may hold the credit (a lost reply, or a failed COMMIT after it) while PostgreSQL rolled back:
            # rebuild the tenant from PostgreSQL so a retried grant cannot count twice.
            with contextlib.suppress(Exception):
                await reconcile_tenant(conn, redis, tenant_id)
        raise
    return points


async def balance_of(conn: Conn, tenant_id: str) -> int | None:
    row = await (await conn.execute("SELECT points FROM balances WHERE tenant_id = %s", (tenant_id,))).fetchone()
    return None if row is None else int(row[0])


async def balance_view(conn: Conn, redis: aioredis.Redis, tenant_id: str) -> dict[str, Any]:
    """What a tenant has: PostgreSQL's balance, what requests in flight hold, what is available to reserve, and
    the charges Redis has applied that PostgreSQL has not recorded yet (``unpersisted``)."""
    points = await balance_of(conn, tenant_id) or 0
    live = await redis.hgetall(quota.points_key(tenant_id))
    held = int(live.get(b"held", 0)) if live else 0
    working = int(live[b"balance"]) if live and b"balance" in live else None
    return {"tenant": tenant_id, "balance": points, "held": held,
            "available": (points if working is None else working) - held,
            "unpersisted": 0 if working is None else points - working}


async def reconcile_tenant(conn: Conn, redis: aioredis.Redis, tenant_id: str) -> dict[str, int]:
    """Rebuild a tenant's Redis counters from PostgreSQL and the live reservations.

    Redis ``balance`` = PostgreSQL's balance minus the costs settled in Redis and not yet in PostgreSQL. Those are
    the tenant's stream entries whose request id has no usage record (an entry can outlive its commit by a moment:
    the writer deletes it just after), plus anything settled while this runs. The balance row stays locked
    throughout, so the writer cannot commit one of them mid-way.
    """
    async with conn.transaction():
        points = await _locked_points(conn, tenant_id)
        costs, last = await quota.stream_costs(redis, tenant_id)
        persisted: set[str] = set()
        if costs:
            rows = await (await conn.execute(
                "SELECT request_id FROM usage_records WHERE request_id = ANY(%s)", (list(costs),))).fetchall()
            persisted = {row[0] for row in rows}
        owed = sum(cost for request_id, cost in costs.items() if request_id not in persisted)
        return await quota.rebuild(redis, tenant_id, points, owed=owed, after=last)
