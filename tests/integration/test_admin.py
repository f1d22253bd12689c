"""lime.admin against a real PostgreSQL and Redis: what an operator sees from `lime ... create` and the admin API.
Ids are unique per test, so tests share this module's database without depending on each other."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from lime import admin
from lime.directory import KEY_MEMORY_SECONDS, Directory, key_cache_name
from lime.keys import KEY_PREFIX, hash_key
from lime.protocols.errors import BadRequest, Conflict, NotFound
from tests.integration.conftest import seed_catalog, uid

Conn = psycopg.AsyncConnection[Any]


async def _key_row(conn: Conn, key_id: str) -> dict[str, Any]:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute("SELECT * FROM api_keys WHERE id = %s", (key_id,))
        row = await cursor.fetchone()
    assert row is not None
    return row


async def _ids(conn: Conn, table: str) -> set[str]:
    return {row["id"] for row in await admin.list_table(conn, table)}


# --- creating things ----------------------------------------------------------------------------------------


async def test_created_catalog_is_listed(conn: Conn) -> None:
    s = await seed_catalog(conn)
    brand = uid("brand")
    await admin.create_brand(conn, brand, "Acme", [s.chat])

    models = {row["id"]: row for row in await admin.list_table(conn, "models")}
    assert models[s.chat]["upstream_id"] == s.openai_upstream
    assert models[s.chat]["upstream_model"] == "gpt-4o-2024-08-06"
    assert models[s.chat]["display_name"] == s.chat  # defaults to the public id
    assert models[s.embed]["kind"] == "embedding"
    upstreams = {row["id"]: row["protocol"] for row in await admin.list_table(conn, "upstreams")}
    assert upstreams[s.openai_upstream] == "openai"
    assert upstreams[s.anthropic_upstream] == "anthropic"
    packages = {row["id"]: row for row in await admin.list_table(conn, "packages")}
    assert packages[s.package_id]["models"] == sorted([s.chat, s.embed, s.claude])
    tenants = {row["id"]: row for row in await admin.list_table(conn, "tenants")}
    assert tenants[s.tenant_id]["package_id"] == s.package_id
    assert tenants[s.tenant_id]["status"] == "active"
    brands = {row["id"]: row for row in await admin.list_table(conn, "brands")}
    assert brands[brand]["model_allowlist"] == [s.chat]


async def test_prices_are_stored_as_given(conn: Conn) -> None:
    upstream, model = uid("up"), uid("priced")
    await admin.add_upstream(conn, upstream, "openai")
    await admin.add_model(conn, model, upstream_id=upstream, upstream_model="m", kind="chat",
                          input_price=2_500_000, output_price=10_000_000, cached_input_price=1_250_000)

    row = next(r for r in await admin.list_table(conn, "models") if r["id"] == model)
    assert (row["input_price"], row["output_price"], row["cached_input_price"]) == (2_500_000, 10_000_000, 1_250_000)


async def test_empty_package_lists_no_models(conn: Conn) -> None:
    package = uid("empty")
    await admin.create_package(conn, package, "Empty", [])
    row = next(r for r in await admin.list_table(conn, "packages") if r["id"] == package)
    assert row["models"] == []


# --- conflicts, unknown references, bad values ---------------------------------------------------------------


async def test_taken_ids_are_conflicts(conn: Conn) -> None:
    s = await seed_catalog(conn)
    brand = uid("brand")
    await admin.create_brand(conn, brand, "Acme", None)

    with pytest.raises(Conflict, match="already exists"):
        await admin.add_upstream(conn, s.openai_upstream, "openai")
    with pytest.raises(Conflict, match="already exists"):
        await admin.add_model(conn, s.chat, upstream_id=s.openai_upstream, upstream_model="x", kind="chat")
    with pytest.raises(Conflict, match="already exists"):
        await admin.create_package(conn, s.package_id, "again", [s.chat])
    with pytest.raises(Conflict, match="already exists"):
        await admin.create_brand(conn, brand, "again", None)
    with pytest.raises(Conflict, match="already exists"):
        await admin.create_tenant(conn, s.tenant_id, "again", package_id=s.package_id)
    # The originals are untouched.
    tenants = {row["id"]: row for row in await admin.list_table(conn, "tenants")}
    assert tenants[s.tenant_id]["name"] == "Test tenant"


async def test_unknown_references_are_not_found(conn: Conn, redis_client: aioredis.Redis) -> None:
    s = await seed_catalog(conn)

    with pytest.raises(NotFound):
        await admin.add_model(conn, uid("m"), upstream_id="no-such-upstream", upstream_model="x", kind="chat")
    with pytest.raises(NotFound):
        await admin.create_tenant(conn, uid("t"), "t", package_id="no-such-package")
    with pytest.raises(NotFound):
        await admin.create_tenant(conn, uid("t"), "t", package_id=s.package_id, brand_id="no-such-brand")
    with pytest.raises(NotFound):
        await admin.create_key(conn, "no-such-tenant")
    with pytest.raises(NotFound, match="does not exist"):
        await admin.revoke_key(conn, redis_client, "key_doesnotexist")


async def test_a_package_naming_an_unknown_model_is_not_created_at_all(conn: Conn) -> None:
    s = await seed_catalog(conn)
    package = uid("pkg")

    with pytest.raises(NotFound):
        await admin.create_package(conn, package, "half", [s.chat, "no-such-model"])

    assert package not in await _ids(conn, "packages")
    # ...so the id is still free.
    await admin.create_package(conn, package, "whole", [s.chat])
    assert package in await _ids(conn, "packages")


async def test_bad_values_are_bad_requests(conn: Conn) -> None:
    upstream = uid("up")
    await admin.add_upstream(conn, upstream, "openai")

    with pytest.raises(BadRequest, match="protocol"):
        await admin.add_upstream(conn, uid("up"), "grpc")
    with pytest.raises(BadRequest, match="kind"):
        await admin.add_model(conn, uid("m"), upstream_id=upstream, upstream_model="x", kind="image")
    with pytest.raises(BadRequest):
        await admin.add_upstream(conn, "Not A Valid Id", "openai")
    with pytest.raises(BadRequest):
        await admin.add_model(conn, uid("m"), upstream_id=upstream, upstream_model="x", kind="chat", input_price=-1)
    assert "Not A Valid Id" not in await _ids(conn, "upstreams")


# --- keys ----------------------------------------------------------------------------------------------------


async def test_create_key_stores_only_its_hash(conn: Conn) -> None:
    s = await seed_catalog(conn)

    key = await admin.create_key(conn, s.tenant_id, name="ci")

    assert key.secret.startswith(KEY_PREFIX)
    assert key.secret not in repr(key)
    row = await _key_row(conn, key.id)
    assert row["tenant_id"] == s.tenant_id
    assert row["key_hash"] == hash_key(key.secret)
    assert row["status"] == "active"
    assert row["name"] == "ci"
    assert key.secret.startswith(row["display_prefix"]) and len(row["display_prefix"]) < len(key.secret) // 2
    for column, value in row.items():
        assert key.secret not in str(value), f"the secret is stored in api_keys.{column}"
    # Nor anywhere else in the table, in any form PostgreSQL can print.
    cursor = await conn.execute("SELECT count(*) FROM api_keys k WHERE strpos(row_to_json(k)::text, %s) > 0",
                                (key.secret,))
    assert await cursor.fetchone() == (0,)


async def test_each_key_is_new(conn: Conn) -> None:
    s = await seed_catalog(conn)
    first, second = await admin.create_key(conn, s.tenant_id), await admin.create_key(conn, s.tenant_id)
    assert first.id != second.id
    assert first.secret != second.secret


async def test_revoke_key_marks_it_revoked_and_replaces_its_cached_copy(
        conn: Conn, redis_client: aioredis.Redis, migrated_database: str, pool: AsyncConnectionPool[Any]) -> None:
    s = await seed_catalog(conn)
    key = await admin.create_key(conn, s.tenant_id)
    now = [0.0]
    directory = Directory(migrated_database, pool, redis_client, clock=lambda: now[0])
    assert (await directory.key(key.hash)).active  # type: ignore[union-attr]  # now cached as active

    await admin.revoke_key(conn, redis_client, key.id)

    assert await redis_client.exists(key_cache_name(key.hash)) == 1
    now[0] += KEY_MEMORY_SECONDS  # past the second a process trusts a key it read
    cached = await directory.key(key.hash)
    assert cached is not None and not cached.active
    row = await _key_row(conn, key.id)
    assert row["status"] == "revoked"
    assert row["revoked_at"] is not None


async def test_revoking_twice_keeps_the_first_revocation_time(conn: Conn, redis_client: aioredis.Redis) -> None:
    s = await seed_catalog(conn)
    key = await admin.create_key(conn, s.tenant_id)
    await admin.revoke_key(conn, redis_client, key.id)
    first = (await _key_row(conn, key.id))["revoked_at"]

    await admin.revoke_key(conn, redis_client, key.id)

    row = await _key_row(conn, key.id)
    assert row["status"] == "revoked"
    assert row["revoked_at"] == first


async def test_list_keys_shows_keys_but_never_their_secret(conn: Conn, redis_client: aioredis.Redis) -> None:
    s = await seed_catalog(conn)
    other = uid("other")
    await admin.create_tenant(conn, other, "other", package_id=s.package_id)
    mine = [await admin.create_key(conn, s.tenant_id, name=f"k{i}") for i in range(2)]
    theirs = await admin.create_key(conn, other)
    await admin.revoke_key(conn, redis_client, mine[1].id)

    listed = await admin.list_keys(conn, s.tenant_id)

    assert [row["id"] for row in listed] == [k.id for k in mine]  # oldest first, only this tenant's
    assert [row["status"] for row in listed] == ["active", "revoked"]
    assert [row["name"] for row in listed] == ["k0", "k1"]
    assert [row["display_prefix"] for row in listed] == [k.display_prefix for k in mine]
    everything = await admin.list_keys(conn)
    assert {k.id for k in [*mine, theirs]} <= {row["id"] for row in everything}
    for row in everything:
        assert "key_hash" not in row
        for key in [*mine, theirs]:
            assert key.secret not in str(row.values())
