"""Reads of the catalog and the keys from PostgreSQL. Writes live in :mod:`lime.admin`."""

from __future__ import annotations

import json
from typing import Any

import psycopg

from lime.catalog import Brand, Catalog, Limits, Model, Package, Tenant, Upstream
from lime.keys import KeyRecord
from lime.protocols.endpoints import ModelKind, Protocol

__all__ = ["catalog_version", "find_key", "load_catalog"]

AnyConnection = psycopg.AsyncConnection[Any]


async def catalog_version(conn: AnyConnection) -> int:
    cursor = await conn.execute("SELECT version FROM catalog_version")
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def load_catalog(conn: AnyConnection) -> Catalog:
    """One consistent snapshot: all reads in one repeatable-read transaction."""
    async with conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        version = await catalog_version(conn)
        upstreams = {
            row[0]: Upstream(row[0], Protocol(row[1]), row[2])
            for row in await (await conn.execute("SELECT id, protocol, description FROM upstreams")).fetchall()
        }
        models = {
            row[0]: Model(
                id=row[0], upstream_id=row[1], upstream_model=row[2], kind=ModelKind(row[3]),
                display_name=row[4], owned_by=row[5], created_at=row[6],
                input_price=row[7], output_price=row[8], cached_input_price=row[9],
                # Written only through lime.admin, which validates it.
                price_parts=json.dumps(row[10], sort_keys=True) if row[10] else "",
            )
            for row in await (await conn.execute(
                "SELECT id, upstream_id, upstream_model, kind, display_name, owned_by, created_at,"
                " input_price, output_price, cached_input_price, price_sheet FROM models"
            )).fetchall()
        }
        grants: dict[str, set[str]] = {}
        for package_id, model_id in await (
            await conn.execute("SELECT package_id, model_id FROM package_models")
        ).fetchall():
            grants.setdefault(package_id, set()).add(model_id)
        packages = {
            row[0]: Package(row[0], row[1], frozenset(grants.get(row[0], ())), Limits(*row[2:]))
            for row in await (await conn.execute(
                "SELECT id, name, rpm_limit, tpm_limit, concurrency_limit, default_max_output_tokens, overdraft_limit"
                " FROM packages"
            )).fetchall()
        }
        brands = {
            row[0]: Brand(row[0], row[1], None if row[2] is None else frozenset(row[2]))
            for row in await (await conn.execute("SELECT id, name, model_allowlist FROM brands")).fetchall()
        }
        tenants = {
            row[0]: Tenant(row[0], row[1], row[2], row[3], row[4] == "active")
            for row in await (
                await conn.execute("SELECT id, name, package_id, brand_id, status FROM tenants")
            ).fetchall()
        }
    return Catalog(version, upstreams, models, packages, brands, tenants)


async def find_key(conn: AnyConnection, key_hash: str) -> KeyRecord | None:
    cursor = await conn.execute(
        "SELECT id, tenant_id, status, extract(epoch FROM expires_at) FROM api_keys WHERE key_hash = %s",
        (key_hash,),
    )
    row = await cursor.fetchone()
    if row is None:
        return None
    expires = None if row[3] is None else float(row[3])
    return KeyRecord(id=row[0], tenant_id=row[1], active=row[2] == "active", expires_at=expires)
