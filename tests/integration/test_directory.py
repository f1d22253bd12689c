"""The Directory on real stores: keys come from PostgreSQL once and then from Redis, catalog changes arrive by
NOTIFY, Redis down fails closed, PostgreSQL down keeps the last snapshot serving."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool

from lime import admin
from lime.connections import open_redis
from lime.devstack.embedded import EmbeddedPostgres, EmbeddedRedis, free_port
from lime.directory import Directory, key_cache_name
from lime.keys import KeyRecord, generate_key, hash_key
from lime.protocols.endpoints import match_endpoint
from lime.protocols.errors import ServiceUnavailable
from lime.settings import Settings
from lime.store.migrate import apply_migrations
from tests.integration.conftest import Clock, Seeded, eventually, seed_catalog, uid

Conn = psycopg.AsyncConnection[Any]
CACHE_SECONDS = 60


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def directory(migrated_database: str, pool: AsyncConnectionPool[Any],
                    redis_client: aioredis.Redis, clock: Clock) -> AsyncIterator[Directory]:
    """A started Directory whose version poll is far away: a change seen within seconds came by NOTIFY."""
    directory = Directory(migrated_database, pool, redis_client, key_cache_seconds=CACHE_SECONDS, poll_seconds=3600,
                          clock=clock)
    await directory.start()
    yield directory
    await directory.stop()


@pytest.fixture
async def seeded(conn: Conn) -> Seeded:
    return await seed_catalog(conn)


async def _listening(conn: Conn) -> bool:
    """True once some session of this database is waiting on `LISTEN lime_catalog` (the Directory's watcher)."""
    cursor = await conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN lime_catalog'")
    row = await cursor.fetchone()
    return row is not None and row[0] > 0


# --- keys ----------------------------------------------------------------------------------------------------


async def test_a_key_is_read_from_postgres_once_then_served_from_memory_and_redis(
        directory: Directory, conn: Conn, redis_client: aioredis.Redis, seeded: Seeded, clock: Clock) -> None:
    key = await admin.create_key(conn, seeded.tenant_id)

    assert await directory.key(key.hash) == KeyRecord(key.id, seeded.tenant_id, True, None)
    assert 0 < await redis_client.ttl(key_cache_name(key.hash)) <= CACHE_SECONDS

    # Gone from PostgreSQL, yet still answered: the answer came from the cache.
    await conn.execute("DELETE FROM api_keys WHERE id = %s", (key.id,))
    assert await directory.key(key.hash) == KeyRecord(key.id, seeded.tenant_id, True, None)

    # Without the cache entry the process still remembers it for a second; then PostgreSQL is asked again, and
    # now says "no such key".
    await redis_client.delete(key_cache_name(key.hash))
    assert await directory.key(key.hash) == KeyRecord(key.id, seeded.tenant_id, True, None)
    clock.pass_key_memory()
    assert await directory.key(key.hash) is None


async def test_a_burst_on_a_cold_key_does_one_lookup_and_every_request_is_answered(
        migrated_database: str, redis_server: EmbeddedRedis, conn: Conn, seeded: Seeded,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # An agent opening 200 streams with a key nobody used yet: with one lookup each, a small pool timed some out
    # (a 503 to the client). Single flight: one lookup, and all 200 get the key.
    from lime import directory as directory_module
    from lime.store import catalog_repo

    lookups: list[str] = []
    real_find_key = catalog_repo.find_key

    async def counting_find_key(connection: Conn, key_hash: str) -> KeyRecord | None:
        lookups.append(key_hash)
        await asyncio.sleep(0.05)  # a slow PostgreSQL: the burst arrives while the lookup runs
        return await real_find_key(connection, key_hash)

    monkeypatch.setattr(directory_module, "find_key", counting_find_key)
    key = await admin.create_key(conn, seeded.tenant_id)
    settings = Settings.from_env({"LIME_DATABASE_URL": migrated_database, "LIME_REDIS_URL": redis_server.url})
    async with AsyncConnectionPool(migrated_database, min_size=1, max_size=1, timeout=0.5, open=False) as small, \
            open_redis(settings) as redis:
        directory = Directory(migrated_database, small, redis, poll_seconds=3600)
        answers = await asyncio.gather(*(directory.key(key.hash) for _ in range(200)))
    assert answers == [KeyRecord(key.id, seeded.tenant_id, True, None)] * 200
    assert lookups == [key.hash]


async def test_unknown_keys_are_cached_as_unknown(
        directory: Directory, conn: Conn, redis_client: aioredis.Redis, seeded: Seeded) -> None:
    key = generate_key()
    assert await directory.key(key.hash) is None
    assert await redis_client.exists(key_cache_name(key.hash)) == 1

    # A row appearing behind the cache's back is not seen: bad keys do not reach PostgreSQL again.
    await conn.execute("INSERT INTO api_keys (id, tenant_id, key_hash, display_prefix) VALUES (%s, %s, %s, %s)",
                       (key.id, seeded.tenant_id, key.hash, key.display_prefix))
    assert await directory.key(key.hash) is None

    await redis_client.delete(key_cache_name(key.hash))
    assert await directory.key(key.hash) == KeyRecord(key.id, seeded.tenant_id, True, None)


async def test_expiry_is_part_of_the_cached_answer(directory: Directory, conn: Conn, seeded: Seeded) -> None:
    expires = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    key = await admin.create_key(conn, seeded.tenant_id, expires_at=expires)

    for _ in range(2):  # from PostgreSQL, then from Redis
        record = await directory.key(key.hash)
        assert record is not None
        assert record.expires_at == expires.timestamp()
        assert record.usable(expires.timestamp() - 1)
        assert not record.usable(expires.timestamp())


async def test_revocation_is_seen_within_a_second(
        directory: Directory, conn: Conn, redis_client: aioredis.Redis, seeded: Seeded, clock: Clock) -> None:
    key = await admin.create_key(conn, seeded.tenant_id)
    before = await directory.key(key.hash)
    assert before is not None and before.active

    await admin.revoke_key(conn, redis_client, key.id)

    clock.pass_key_memory()
    after = await directory.key(key.hash)
    assert after is not None
    assert not after.active


class _PausedCacheWrites:
    """The real Redis client, except that a cache write waits until the test lets it through."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self.writing = asyncio.Event()
        self.proceed = asyncio.Event()

    async def get(self, name: str) -> Any:
        return await self._client.get(name)

    async def set(self, name: str, value: str, **options: Any) -> Any:
        self.writing.set()
        await self.proceed.wait()
        return await self._client.set(name, value, **options)


async def test_a_revocation_racing_a_lookup_still_wins(
        migrated_database: str, pool: AsyncConnectionPool[Any], conn: Conn, redis_client: aioredis.Redis,
        seeded: Seeded, clock: Clock) -> None:
    key = await admin.create_key(conn, seeded.tenant_id)
    cache = _PausedCacheWrites(redis_client)
    directory = Directory(migrated_database, pool, cache, key_cache_seconds=CACHE_SECONDS,  # type: ignore[arg-type]
                          clock=clock)

    # A request reads the key from PostgreSQL (still active) and is about to cache that answer...
    lookup = asyncio.create_task(directory.key(key.hash))
    await asyncio.wait_for(cache.writing.wait(), 5)
    # ...when the operator revokes it (UPDATE, and the cached copy replaced by a revoked one)...
    await admin.revoke_key(conn, redis_client, key.id)
    # ...and then the request's write lands.
    cache.proceed.set()
    await lookup

    clock.pass_key_memory()  # the process remembers what the request read for a second from when it asked
    record = await directory.key(key.hash)
    assert record is not None and not record.active, "the revoked key is served as active for the cache TTL"


# --- the catalog ---------------------------------------------------------------------------------------------


async def test_a_catalog_change_arrives_by_notify(directory: Directory, conn: Conn, seeded: Seeded) -> None:
    await eventually(lambda: _listening(conn), what="the Directory listening on lime_catalog")
    tenant = uid("late")
    version = directory.catalog.version

    await admin.create_tenant(conn, tenant, "Late", package_id=seeded.package_id)

    async def arrived() -> bool:
        return directory.catalog.tenant(tenant) is not None

    await eventually(arrived, what=f"tenant {tenant} in the catalog without a reload")
    assert directory.catalog.version > version
    assert directory.catalog.visible_model_ids(directory.catalog.tenants[tenant]) == {
        seeded.chat, seeded.embed, seeded.claude}


async def test_a_just_created_tenant_is_found_at_once(
        migrated_database: str, pool: AsyncConnectionPool[Any], redis_client: aioredis.Redis, conn: Conn,
        seeded: Seeded) -> None:
    # Not started: no watcher, so only the lookup itself can find the new tenant.
    directory = Directory(migrated_database, pool, redis_client)
    await directory.reload()
    tenant = uid("new")
    await admin.create_tenant(conn, tenant, "New", package_id=seeded.package_id)
    assert directory.catalog.tenant(tenant) is None

    found = await directory.tenant(tenant)

    assert found is not None and found.package_id == seeded.package_id


async def test_requests_that_miss_together_all_wait_for_the_one_refresh(
        migrated_database: str, pool: AsyncConnectionPool[Any], redis_client: aioredis.Redis, conn: Conn,
        seeded: Seeded) -> None:
    directory = Directory(migrated_database, pool, redis_client)
    await directory.reload()
    tenant = uid("burst")
    await admin.create_tenant(conn, tenant, "Burst", package_id=seeded.package_id)

    found = await asyncio.gather(*(directory.tenant(tenant) for _ in range(10)))

    assert all(t is not None and t.id == tenant for t in found)


async def test_lookups_of_unknown_tenants_refresh_at_most_once_a_second(
        migrated_database: str, pool: AsyncConnectionPool[Any], redis_client: aioredis.Redis, conn: Conn,
        seeded: Seeded) -> None:
    now = [1000.0]
    directory = Directory(migrated_database, pool, redis_client, clock=lambda: now[0])
    await directory.reload()
    assert await directory.tenant("nobody") is None  # this miss refreshed

    tenant = uid("new")
    await admin.create_tenant(conn, tenant, "New", package_id=seeded.package_id)
    assert await directory.tenant(tenant) is None  # within the same second: no second refresh

    now[0] += 1.0
    assert await directory.tenant(tenant) is not None


async def test_suspension_reaches_the_snapshot(seeded: Seeded, directory: Directory, conn: Conn) -> None:
    assert directory.catalog.tenant(seeded.tenant_id) is not None
    await eventually(lambda: _listening(conn), what="the Directory listening on lime_catalog")

    await conn.execute("UPDATE tenants SET status = 'suspended' WHERE id = %s", (seeded.tenant_id,))

    async def suspended() -> bool:
        tenant = directory.catalog.tenant(seeded.tenant_id)
        return tenant is not None and not tenant.active

    await eventually(suspended, what="the suspension in the catalog")


# --- faults --------------------------------------------------------------------------------------------------


async def test_redis_down_fails_closed_then_recovers(
        tmp_path: Path, migrated_database: str, pool: AsyncConnectionPool[Any], conn: Conn, seeded: Seeded) -> None:
    key = await admin.create_key(conn, seeded.tenant_id)
    with EmbeddedRedis(tmp_path / "redis", free_port(), appendonly=False) as server:
        client = aioredis.Redis.from_url(server.url, socket_timeout=2.0, socket_connect_timeout=2.0)
        try:
            clock = Clock()
            directory = Directory(migrated_database, pool, client, clock=clock)
            await directory.reload()
            assert await directory.key(key.hash) is not None  # cached now

            server.stop()
            # Neither the cached key (once the process's second of memory is over: within it, the reservation
            # fails closed on Redis instead) nor an uncached one is answered: PostgreSQL alone is not enough.
            clock.pass_key_memory()
            with pytest.raises(ServiceUnavailable):
                await directory.key(key.hash)
            with pytest.raises(ServiceUnavailable):
                await directory.key(generate_key().hash)
            assert directory.catalog.tenant(seeded.tenant_id) is not None  # the catalog is not Redis's

            server.start()
            assert await directory.key(key.hash) == KeyRecord(key.id, seeded.tenant_id, True, None)
        finally:
            await client.aclose()


async def test_postgres_down_keeps_the_last_snapshot_serving(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    with EmbeddedPostgres(tmp_path / "pg", free_port(), durable=False) as server:
        await apply_migrations(server.url)
        async with await psycopg.AsyncConnection.connect(server.url, autocommit=True) as setup:
            seeded = await seed_catalog(setup)
            key = await admin.create_key(setup, seeded.tenant_id)
        async with AsyncConnectionPool(server.url, min_size=1, max_size=2, open=False,
                                       kwargs={"autocommit": True}, timeout=2.0) as own_pool:
            directory = Directory(server.url, own_pool, redis_client, poll_seconds=0.2)
            await directory.start()
            try:
                assert await directory.key(key.hash) is not None  # cached in Redis
                version = directory.catalog.version

                server.stop()

                with pytest.raises(psycopg.Error):
                    await directory.reload()
                assert directory.catalog.version == version
                tenant = await directory.tenant(seeded.tenant_id)
                assert tenant is not None and tenant.active
                assert await directory.tenant("nobody") is None  # the refresh fails quietly
                route = directory.catalog.route(tenant, seeded.chat, match_endpoint("POST", "/v1/chat/completions"))
                assert route.upstream.id == seeded.openai_upstream
                assert await directory.key(key.hash) == KeyRecord(key.id, seeded.tenant_id, True, None)
                with pytest.raises(ServiceUnavailable):  # a key never seen cannot be checked
                    await directory.key(hash_key("lime-sk-never-seen-" + uid("x")))

                server.start()
                later = uid("later")
                async with await psycopg.AsyncConnection.connect(server.url, autocommit=True) as again:
                    await admin.create_tenant(again, later, "Later", package_id=seeded.package_id)

                async def caught_up() -> bool:
                    return directory.catalog.tenant(later) is not None

                await eventually(caught_up, within=20.0, what="the Directory catching up after PostgreSQL restarts")
            finally:
                await directory.stop()
