"""Catalog and key administration: the writes behind ``lime ... create`` and the admin API.

Each function is one PostgreSQL transaction on a connection it is given. Catalog tables fire a trigger that
makes every service reload (see :mod:`lime.directory`); keys are looked up one by one through a Redis cache, so
revoking one also replaces its cache entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import psycopg
import redis.asyncio as aioredis
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from lime.catalog import Limits
from lime.directory import cache_revocation
from lime.keys import NewKey, generate_key
from lime.money.price_sheet import PriceSheet, Rates, sheet_from_dict, sheet_to_dict
from lime.protocols.endpoints import ModelKind, Protocol
from lime.protocols.errors import BadRequest, Conflict, NotFound

__all__ = [
    "add_model",
    "add_upstream",
    "create_brand",
    "create_key",
    "create_package",
    "create_tenant",
    "list_keys",
    "list_table",
    "model_prices",
    "revoke_key",
    "set_prices",
    "update_prices",
]

Conn = psycopg.AsyncConnection[Any]


async def _insert(conn: Conn, sql: str, params: tuple[Any, ...], what: str) -> None:
    try:
        async with conn.transaction():
            await conn.execute(sql, params)
    except psycopg.errors.UniqueViolation:
        raise Conflict(f"{what} already exists.") from None
    except psycopg.errors.ForeignKeyViolation as exc:
        raise NotFound(f"{what} refers to something that does not exist: {exc.diag.message_detail}") from None
    except psycopg.errors.CheckViolation as exc:
        raise BadRequest(f"{what} is not valid: {exc.diag.constraint_name}") from None


async def add_upstream(conn: Conn, upstream_id: str, protocol: str, description: str = "") -> None:
    _one_of(protocol, [p.value for p in Protocol], "protocol")
    await _insert(conn, "INSERT INTO upstreams (id, protocol, description) VALUES (%s, %s, %s)",
                  (upstream_id, protocol, description), f"Upstream `{upstream_id}`")


async def add_model(
    conn: Conn, model_id: str, *, upstream_id: str, upstream_model: str, kind: str,
    display_name: str = "", owned_by: str = "lime",
    input_price: int = 0, output_price: int = 0, cached_input_price: int = 0,
    price_sheet: Mapping[str, Any] | None = None,
) -> None:
    """``price_sheet``: the parts beyond the three prices (lime.money.price_sheet's dictionary form)."""
    _one_of(kind, [k.value for k in ModelKind], "kind")
    sheet = sheet_from_dict(Rates(input_price, output_price, cached_input_price), price_sheet)
    await _insert(
        conn,
        "INSERT INTO models (id, upstream_id, upstream_model, kind, display_name, owned_by,"
        " input_price, output_price, cached_input_price, price_sheet)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (model_id, upstream_id, upstream_model, kind, display_name or model_id, owned_by,
         input_price, output_price, cached_input_price, Jsonb(sheet_to_dict(sheet))),
        f"Model `{model_id}`",
    )


async def model_prices(conn: Conn, model_id: str) -> tuple[PriceSheet, dict[str, Any] | None]:
    """A model's price sheet and where it came from (``None``: typed by hand)."""
    row = await (await conn.execute(
        "SELECT input_price, output_price, cached_input_price, price_sheet, price_source FROM models WHERE id = %s",
        (model_id,))).fetchone()
    if row is None:
        raise NotFound(f"Model `{model_id}` does not exist.")
    return sheet_from_dict(Rates(row[0], row[1], row[2]), row[3]), row[4]


async def set_prices(conn: Conn, model_id: str, sheet: PriceSheet, source: Mapping[str, Any] | None = None) -> None:
    """Replace a model's whole sheet (validated again here) and record where it came from. Requests in flight keep
    the prices they were reserved at (their grant carries them)."""
    sheet = sheet_from_dict(sheet.base, sheet_to_dict(sheet))
    try:
        async with conn.transaction():
            cursor = await conn.execute(
                "UPDATE models SET input_price = %s, output_price = %s, cached_input_price = %s, price_sheet = %s,"
                " price_source = %s WHERE id = %s",
                (sheet.base.input, sheet.base.output, sheet.base.cached_input, Jsonb(sheet_to_dict(sheet)),
                 None if source is None else Jsonb(dict(source)), model_id))
    except psycopg.errors.CheckViolation as exc:
        raise BadRequest(f"Prices of `{model_id}` are not valid: {exc.diag.constraint_name}") from None
    if cursor.rowcount == 0:
        raise NotFound(f"Model `{model_id}` does not exist.")


async def update_prices(conn: Conn, model_id: str, base: Mapping[str, int | None],
                        extras: Mapping[str, Any] | None) -> PriceSheet:
    """The admin API's price change: ``base`` maps ``input_price``, ``output_price``, ``cached_input_price`` to a
    new price or ``None`` (kept); ``extras``, when given, replaces every other part of the sheet. Typed by hand, so
    the imported source is cleared. Returns the sheet now in force."""
    async with conn.transaction():
        row = await (await conn.execute(
            "SELECT input_price, output_price, cached_input_price, price_sheet FROM models WHERE id = %s FOR UPDATE",
            (model_id,))).fetchone()
        if row is None:
            raise NotFound(f"Model `{model_id}` does not exist.")
        prices = [new if (new := base.get(name)) is not None else old
                  for name, old in zip(("input_price", "output_price", "cached_input_price"), row[:3], strict=True)]
        sheet = sheet_from_dict(Rates(*prices), row[3] if extras is None else extras)
        await set_prices(conn, model_id, sheet, None)
    return sheet


async def create_package(conn: Conn, package_id: str, name: str, model_ids: Iterable[str],
                         limits: Limits | None = None) -> None:
    models = sorted(set(model_ids))
    limits = limits or Limits()
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO packages (id, name, rpm_limit, tpm_limit, concurrency_limit, default_max_output_tokens,"
                " overdraft_limit) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (package_id, name, limits.rpm, limits.tpm, limits.concurrency, limits.default_max_output_tokens,
                 limits.overdraft_limit))
            for model_id in models:
                await conn.execute("INSERT INTO package_models (package_id, model_id) VALUES (%s, %s)",
                                   (package_id, model_id))
    except psycopg.errors.UniqueViolation:
        raise Conflict(f"Package `{package_id}` already exists.") from None
    except psycopg.errors.ForeignKeyViolation:
        raise NotFound(f"Package `{package_id}` names a model that does not exist: {models}.") from None
    except psycopg.errors.CheckViolation:
        raise BadRequest("Package limits must be positive numbers.") from None


async def create_brand(conn: Conn, brand_id: str, name: str, model_allowlist: Iterable[str] | None) -> None:
    allow = None if model_allowlist is None else sorted(set(model_allowlist))
    await _insert(conn, "INSERT INTO brands (id, name, model_allowlist) VALUES (%s, %s, %s)",
                  (brand_id, name, allow), f"Brand `{brand_id}`")


async def create_tenant(conn: Conn, tenant_id: str, name: str, *, package_id: str | None,
                        brand_id: str | None = None) -> None:
    await _insert(conn, "INSERT INTO tenants (id, name, package_id, brand_id) VALUES (%s, %s, %s, %s)",
                  (tenant_id, name, package_id, brand_id), f"Tenant `{tenant_id}`")


async def create_key(conn: Conn, tenant_id: str, *, name: str = "",
                     expires_at: datetime | None = None) -> NewKey:
    """A new key; its secret is in the result and nowhere else, ever."""
    key = generate_key()
    await _insert(
        conn,
        "INSERT INTO api_keys (id, tenant_id, key_hash, display_prefix, name, expires_at)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (key.id, tenant_id, key.hash, key.display_prefix, name, expires_at),
        f"A key for tenant `{tenant_id}`",
    )
    return key


async def revoke_key(conn: Conn, redis: aioredis.Redis, key_id: str) -> None:
    """Revoke at once: the cached copy is replaced inside the transaction, so if Redis cannot be written the
    revocation is rolled back and the caller learns it, rather than the key working on from the cache."""
    async with conn.transaction():
        cursor = await conn.execute(
            "UPDATE api_keys SET status = 'revoked', revoked_at = coalesce(revoked_at, now())"
            " WHERE id = %s RETURNING key_hash, tenant_id",
            (key_id,),
        )
        row = await cursor.fetchone()
        if row is None:
            raise NotFound(f"Key `{key_id}` does not exist.")
        await cache_revocation(redis, row[0], key_id, row[1])


async def list_keys(conn: Conn, tenant_id: str | None = None) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            "SELECT id, tenant_id, display_prefix, name, status, expires_at, created_at, revoked_at"
            " FROM api_keys WHERE %(t)s::text IS NULL OR tenant_id = %(t)s ORDER BY created_at",
            {"t": tenant_id},
        )
        return await cursor.fetchall()


_LISTABLE = {
    "upstreams": "SELECT id, protocol, description, created_at FROM upstreams ORDER BY id",
    "models": "SELECT id, upstream_id, upstream_model, kind, display_name, owned_by, input_price,"
              " output_price, cached_input_price, price_sheet, price_source, created_at FROM models ORDER BY id",
    "packages": "SELECT p.id, p.name, coalesce(array_agg(g.model_id ORDER BY g.model_id)"
                " FILTER (WHERE g.model_id IS NOT NULL), '{}') AS models, p.created_at"
                " FROM packages p LEFT JOIN package_models g ON g.package_id = p.id GROUP BY p.id ORDER BY p.id",
    "brands": "SELECT id, name, model_allowlist, created_at FROM brands ORDER BY id",
    "tenants": "SELECT id, name, package_id, brand_id, status, created_at FROM tenants ORDER BY id",
}


async def list_table(conn: Conn, table: str) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(_LISTABLE[table])
        return await cursor.fetchall()


def _one_of(value: str, allowed: list[str], name: str) -> None:
    if value not in allowed:
        raise BadRequest(f"`{name}` must be one of {', '.join(allowed)}; got `{value}`.", param=name)
