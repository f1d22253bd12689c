"""``lime points``, ``lime usage``, ``lime reconcile``: the billing team's commands.

Amounts are printed and accepted in micro-points (integers), the unit everything is stored in.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import redis.asyncio as aioredis
from psycopg.rows import dict_row
from redis.exceptions import RedisError

from lime import balances, quota
from lime.cli.admin_commands import print_result
from lime.cli.stores import with_stores
from lime.errors import BadRequest, ServiceUnavailable
from lime.settings import Settings

__all__ = ["register", "usage_rows"]

Conn = psycopg.AsyncConnection[Any]


@contextlib.asynccontextmanager
async def _stores(settings: Settings) -> AsyncIterator[tuple[Conn, aioredis.Redis]]:
    stores = with_stores(settings)
    redis = aioredis.Redis.from_url(stores.require_redis_url(), socket_timeout=5)
    try:
        async with await psycopg.AsyncConnection.connect(stores.require_database_url(), autocommit=True) as conn:
            yield conn, redis
    except RedisError as exc:
        raise ServiceUnavailable(f"Redis did not answer ({exc}); nothing was changed.") from None
    finally:
        await redis.aclose()


def _command(action: Callable[[argparse.Namespace, Conn, aioredis.Redis], Awaitable[None]],
             ) -> Callable[[argparse.Namespace, Settings], int]:
    def run(args: argparse.Namespace, settings: Settings) -> int:
        async def go() -> None:
            async with _stores(settings) as (conn, redis):
                await action(args, conn, redis)

        asyncio.run(go())
        return 0

    return run


async def _grant(args: argparse.Namespace, conn: Conn, redis: aioredis.Redis) -> None:
    points = await balances.grant_points(conn, redis, args.tenant, args.amount, args.note)
    print_result(args, {"tenant": args.tenant, "granted": args.amount, "balance": points},
                 f"tenant {args.tenant}: {args.amount:+d} micro-points, balance {points}")


async def _balance(args: argparse.Namespace, conn: Conn, redis: aioredis.Redis) -> None:
    points = await balances.balance_of(conn, args.tenant) or 0
    live = await redis.hgetall(quota.points_key(args.tenant))
    held = int(live.get(b"held", 0)) if live else 0
    working = int(live[b"balance"]) if live and b"balance" in live else None
    result = {"tenant": args.tenant, "balance": points, "held": held, "available": (working or points) - held,
              "unpersisted": None if working is None else points - working}
    print_result(args, result, f"tenant {args.tenant}: balance {points} micro-points, {held} held by requests in "
                               f"flight, {result['available']} available")


def _since(text: str | None) -> datetime | None:
    if not text:
        return None
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if text[-1] in units and text[:-1].isdigit():
        return datetime.now(UTC) - timedelta(**{units[text[-1]]: int(text[:-1])})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"--since takes an ISO time or an age like 30m, 24h, 7d; got {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def usage_rows(conn: Conn, tenant: str | None, since: datetime | None) -> list[dict[str, Any]]:
    """Usage summed per tenant and model: requests, tokens by kind, cost."""
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            "SELECT tenant_id, model, count(*) AS requests,"
            " sum(input_tokens)::bigint AS input_tokens, sum(cached_input_tokens)::bigint AS cached_input_tokens,"
            " sum(cache_write_tokens)::bigint AS cache_write_tokens, sum(output_tokens)::bigint AS output_tokens,"
            " sum(cost)::bigint AS cost, count(*) FILTER (WHERE estimated) AS estimated,"
            " count(*) FILTER (WHERE outcome = 'partial') AS partial,"
            " count(*) FILTER (WHERE outcome = 'failed') AS failed"
            " FROM usage_records WHERE (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s)"
            " AND (%(since)s::timestamptz IS NULL OR settled_at >= %(since)s)"
            " GROUP BY tenant_id, model ORDER BY tenant_id, model",
            {"tenant": tenant, "since": since})
        return list(await cursor.fetchall())


async def _usage(args: argparse.Namespace, conn: Conn, redis: aioredis.Redis) -> None:
    rows = await usage_rows(conn, args.tenant, _since(args.since))
    lines = [f"{'tenant':<20} {'model':<20} {'requests':>8} {'input':>10} {'cached':>8} {'output':>10} {'cost':>14}"]
    lines += [f"{r['tenant_id']:<20} {r['model']:<20} {r['requests']:>8} {r['input_tokens']:>10} "
              f"{r['cached_input_tokens']:>8} {r['output_tokens']:>10} {r['cost']:>14}" for r in rows]
    print_result(args, rows, "\n".join(lines))


async def _reconcile(args: argparse.Namespace, conn: Conn, redis: aioredis.Redis) -> None:
    tenants = [args.tenant] if args.tenant else [
        row[0] for row in await (await conn.execute("SELECT id FROM tenants ORDER BY id")).fetchall()]
    results = {tenant: await balances.reconcile_tenant(conn, redis, tenant) for tenant in tenants}
    print_result(args, results, "\n".join(
        f"{tenant}: balance {r['balance']}, held {r['held']}, in flight {r['in_flight']}"
        for tenant, r in results.items()) or "no tenants")


def register(commands: Any) -> None:
    points = commands.add_parser("points", help="tenant balances").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    grant = points.add_parser("grant", help="add (or, negative, take away) micro-points")
    grant.add_argument("tenant")
    grant.add_argument("amount", type=int, help="micro-points")
    grant.add_argument("--note", default="")
    balance = points.add_parser("balance", help="a tenant's balance, held and available points")
    balance.add_argument("tenant")
    for parser, action in ((grant, _grant), (balance, _balance)):
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.set_defaults(run=_command(action))

    usage = commands.add_parser("usage", help="settled usage per tenant and model")
    usage.add_argument("--tenant")
    usage.add_argument("--since", help="ISO time, or an age like 30m, 24h, 7d")
    usage.add_argument("--json", action="store_true", help="print JSON")
    usage.set_defaults(run=_command(_usage))

    reconcile = commands.add_parser("reconcile", help="rebuild Redis balances from PostgreSQL")
    reconcile.add_argument("--tenant")
    reconcile.add_argument("--json", action="store_true", help="print JSON")
    reconcile.set_defaults(run=_command(_reconcile))
