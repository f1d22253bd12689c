"""``lime points``, ``lime usage``, ``lime reconcile``: the billing team's commands.

Amounts are printed and accepted in micro-points (integers), the unit everything is stored in.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from lime.cli.admin_commands import print_result
from lime.cli.stores import with_stores
from lime.money import balances
from lime.money.usage_report import parse_since, usage_rows
from lime.protocols.errors import ServiceUnavailable
from lime.settings import Settings

__all__ = ["register"]

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
    result = await balances.balance_view(conn, redis, args.tenant)
    print_result(args, result, f"tenant {args.tenant}: balance {result['balance']} micro-points, {result['held']} "
                               f"held by requests in flight, {result['available']} available")


async def _usage(args: argparse.Namespace, conn: Conn, redis: aioredis.Redis) -> None:
    rows = await usage_rows(conn, args.tenant, parse_since(args.since))
    lines = [f"{'tenant':<20} {'model':<20} {'requests':>8} {'input':>10} {'cached':>8} {'write5m':>8} "
             f"{'write1h':>8} {'audio in':>8} {'output':>10} {'audio out':>9} {'tools':>6} {'tiered':>6} "
             f"{'unpriced':>8} {'cost':>14}"]
    lines += [f"{r['tenant_id']:<20} {r['model']:<20} {r['requests']:>8} {r['input_tokens']:>10} "
              f"{r['cached_input_tokens']:>8} {r['cache_write_tokens']:>8} {r['cache_write_1h_tokens']:>8} "
              f"{r['audio_input_tokens']:>8} {r['output_tokens']:>10} {r['audio_output_tokens']:>9} "
              f"{r['server_tool_calls']:>6} {r['tiered']:>6} {r['unpriced']:>8} {r['cost']:>14}" for r in rows]
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
