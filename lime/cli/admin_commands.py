"""Admin commands over the catalog: the same :mod:`lime.admin` functions the admin API calls."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import psycopg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from lime import admin
from lime.catalog import Limits
from lime.cli import price_commands
from lime.cli.stores import with_stores
from lime.money.price_sheet import PriceSheet, sheet_to_dict
from lime.protocols.errors import ServiceUnavailable
from lime.settings import Settings, upstream_env_name
from lime.store.migrate import apply_migrations

__all__ = ["register"]

Conn = psycopg.AsyncConnection[Any]
Action = Callable[[argparse.Namespace, Conn], Awaitable[Any]]


def print_result(args: argparse.Namespace, result: Any, text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(result, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v), indent=2))
    else:
        print(text)


def _csv(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _run(action: Action) -> Callable[[argparse.Namespace, Settings], int]:
    def run(args: argparse.Namespace, settings: Settings) -> int:
        async def go() -> None:
            url = with_stores(settings).require_database_url()
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await action(args, conn)

        asyncio.run(go())
        return 0

    return run


def _import_prices(args: argparse.Namespace, settings: Settings) -> int:
    # The rate is the deployment's (a setting, so every import converts alike) unless the flag overrides it.
    if args.points_per_usd is None:
        args.points_per_usd = str(settings.points_per_usd)
    return _run(price_commands.import_prices)(args, settings)


async def _upstream_add(args: argparse.Namespace, conn: Conn) -> None:
    await admin.add_upstream(conn, args.id, args.protocol, args.description)
    print_result(args, {"id": args.id, "protocol": args.protocol},
           f"upstream {args.id} added; give it a cluster upstream_{args.id} and a route in envoy/envoy.yaml, "
           f"and its credential in {upstream_env_name(args.id)} (or $LIME_SECRETS_DIR/upstream_{args.id})")


async def _model_add(args: argparse.Namespace, conn: Conn) -> None:
    sheet = price_commands.sheet_with_flags(PriceSheet(), args)
    await admin.add_model(
        conn, args.id, upstream_id=args.upstream, upstream_model=args.upstream_model or args.id, kind=args.kind,
        display_name=args.display_name, owned_by=args.owned_by, input_price=sheet.base.input,
        output_price=sheet.base.output, cached_input_price=sheet.base.cached_input, price_sheet=sheet_to_dict(sheet),
    )
    print_result(args, {"id": args.id}, f"model {args.id} added")


async def _package_create(args: argparse.Namespace, conn: Conn) -> None:
    limits = Limits(rpm=args.rpm, tpm=args.tpm, concurrency=args.concurrency,
                    default_max_output_tokens=args.default_max_output_tokens, overdraft_limit=args.overdraft_limit)
    await admin.create_package(conn, args.id, args.name or args.id, _csv(args.models), limits)
    print_result(args, {"id": args.id, "models": _csv(args.models)}, f"package {args.id} created")


async def _brand_create(args: argparse.Namespace, conn: Conn) -> None:
    models = None if args.models is None else _csv(args.models)
    await admin.create_brand(conn, args.id, args.name or args.id, models)
    print_result(args, {"id": args.id, "models": models}, f"brand {args.id} created")


async def _tenant_create(args: argparse.Namespace, conn: Conn) -> None:
    await admin.create_tenant(conn, args.id, args.name or args.id, package_id=args.package, brand_id=args.brand)
    print_result(args, {"id": args.id, "package": args.package, "brand": args.brand}, f"tenant {args.id} created")


async def _key_create(args: argparse.Namespace, conn: Conn) -> None:
    key = await admin.create_key(conn, args.tenant, name=args.name)
    print_result(args, {"id": key.id, "tenant": args.tenant, "key": key.secret},
           f"key {key.id} for tenant {args.tenant}:\n{key.secret}\n(shown once: Lime stores only its hash)")


async def _key_list(args: argparse.Namespace, conn: Conn) -> None:
    keys = await admin.list_keys(conn, args.tenant)
    print_result(args, keys, "\n".join(f"{k['id']}  {k['tenant_id']}  {k['display_prefix']}…  {k['status']}"
                                 for k in keys) or "no keys")


def _key_revoke(args: argparse.Namespace, settings: Settings) -> int:
    async def go() -> None:
        stores = with_stores(settings)
        redis = aioredis.Redis.from_url(stores.require_redis_url())
        try:
            async with await psycopg.AsyncConnection.connect(stores.require_database_url(),
                                                             autocommit=True) as conn:
                await admin.revoke_key(conn, redis, args.id)
        except RedisError as exc:
            raise ServiceUnavailable(f"Redis did not answer ({exc}), so key {args.id} was NOT revoked: its cached "
                                     "copy could not be replaced. Retry when Redis is back.") from None
        finally:
            await redis.aclose()
        print_result(args, {"id": args.id, "status": "revoked"}, f"key {args.id} revoked")

    asyncio.run(go())
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    applied = asyncio.run(apply_migrations(with_stores(settings).require_database_url()))
    names = [f"{m.version:04d}_{m.name}" for m in applied]
    print_result(args, {"applied": names}, "applied: " + ", ".join(names) if names else "schema is up to date")
    return 0


def register(commands: Any) -> None:
    def group(name: str, text: str) -> Any:
        return commands.add_parser(name, help=text).add_subparsers(dest="action", required=True, metavar="ACTION")

    def leaf(parent: Any, name: str, text: str, run: Callable[[argparse.Namespace, Settings], int]) -> Any:
        parser = parent.add_parser(name, help=text)
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.set_defaults(run=run)
        return parser

    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("--json", action="store_true")
    migrate.set_defaults(run=_migrate)

    upstream = leaf(group("upstream", "upstreams"), "add", "add an upstream", _run(_upstream_add))
    upstream.add_argument("id")
    upstream.add_argument("--protocol", required=True, choices=["openai", "anthropic"])
    upstream.add_argument("--description", default="")

    models = group("model", "models")
    model = leaf(models, "add", "add a model", _run(_model_add))
    model.add_argument("id", help="the public model id clients use")
    model.add_argument("--upstream", required=True)
    model.add_argument("--upstream-model", help="the upstream's id for it (default: the public id)")
    model.add_argument("--kind", default="chat", choices=["chat", "embedding"])
    model.add_argument("--display-name", default="")
    model.add_argument("--owned-by", default="lime")
    price_commands.add_price_flags(model, defaults=True)
    update = leaf(models, "update", "change a model's prices (only the flags given)",
                  _run(price_commands.update_prices))
    update.add_argument("id")
    price_commands.add_price_flags(update, defaults=False)
    imported = leaf(models, "import-prices", "fill a model's prices from LiteLLM's cost map (shows the diff)",
                    _import_prices)
    imported.add_argument("id", help="the Lime model to price")
    imported.add_argument("--from", dest="source_key", required=True,
                          help="the cost map's key, e.g. anthropic/claude-sonnet-4-5 or gpt-5")
    imported.add_argument("--file", help="the cost map (default: the installed litellm package's)")
    imported.add_argument("--points-per-usd",
                          help="points one US dollar buys (default: LIME_POINTS_PER_USD, or 1 if it is unset)")
    imported.add_argument("--markup", default="0", help="percent added to every price (default 0)")
    imported.add_argument("--apply", action="store_true", help="write the prices (default: only show the diff)")

    package = leaf(group("package", "packages"), "create", "create a package", _run(_package_create))
    package.add_argument("id")
    package.add_argument("--name")
    package.add_argument("--models", required=True, help="comma-separated public model ids")
    package.add_argument("--rpm", type=int, help="requests per minute per tenant (default: no limit)")
    package.add_argument("--tpm", type=int, help="tokens per minute per tenant (default: no limit)")
    package.add_argument("--concurrency", type=int, help="requests in flight per tenant (default: no limit)")
    package.add_argument("--default-max-output-tokens", type=int, default=4096,
                         help="output cap reserved and set upstream when a request has none (default 4096)")
    package.add_argument("--overdraft-limit", type=int, default=0,
                         help="micro-points a tenant may go below zero for costs a reservation cannot see, such as "
                              "a file the upstream fetches (default 0: none)")

    brand = leaf(group("brand", "brands"), "create", "create a brand", _run(_brand_create))
    brand.add_argument("id")
    brand.add_argument("--name")
    brand.add_argument("--models", help="comma-separated allowlist (omit: no narrowing)")

    tenant = leaf(group("tenant", "tenants"), "create", "create a tenant", _run(_tenant_create))
    tenant.add_argument("id")
    tenant.add_argument("--name")
    tenant.add_argument("--package")
    tenant.add_argument("--brand")

    keys = group("key", "API keys")
    key_create = leaf(keys, "create", "create a key (printed once)", _run(_key_create))
    key_create.add_argument("tenant")
    key_create.add_argument("--name", default="")
    key_list = leaf(keys, "list", "list keys (never the secrets)", _run(_key_list))
    key_list.add_argument("--tenant")
    key_revoke = leaf(keys, "revoke", "revoke a key at once", _key_revoke)
    key_revoke.add_argument("id")
