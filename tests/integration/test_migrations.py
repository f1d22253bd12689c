"""`lime migrate` (apply_migrations) on a real PostgreSQL: applies what is missing once, records it, and lets
several pods start at once. Each test takes a database of its own, since each starts from an empty one."""

from __future__ import annotations

import asyncio

import psycopg

from lime.store.migrate import _LOCK_ID, apply_migrations, available_migrations
from tests.integration.conftest import MakeDatabase, eventually

CATALOG_TABLES = {"upstreams", "models", "packages", "package_models", "brands", "tenants", "api_keys",
                  "catalog_version"}


async def _recorded(url: str) -> list[tuple[int, str]]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute("SELECT version, name FROM schema_migrations ORDER BY version")
        return await cursor.fetchall()


async def _tables(url: str) -> set[str]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cursor = await conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row[0] for row in await cursor.fetchall()}


def test_the_first_migration_is_the_catalog() -> None:
    first = available_migrations()[0]
    assert (first.version, first.name) == (1, "catalog")


async def test_a_fresh_database_gets_every_migration_recorded(make_database: MakeDatabase) -> None:
    url = make_database()

    applied = await apply_migrations(url)

    assert [(m.version, m.name) for m in applied] == [(m.version, m.name) for m in available_migrations()]
    assert (1, "catalog") in await _recorded(url)
    assert CATALOG_TABLES <= await _tables(url)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        assert await (await conn.execute("SELECT version FROM catalog_version")).fetchall() == [(1,)]


async def test_running_again_applies_nothing(make_database: MakeDatabase) -> None:
    url = make_database()
    await apply_migrations(url)
    before = await _recorded(url)

    assert await apply_migrations(url) == []
    assert await _recorded(url) == before


async def test_concurrent_runs_wait_for_each_other(make_database: MakeDatabase) -> None:
    """Two pods migrating at once: one applies, the other waits on the advisory lock and applies nothing."""
    url = make_database()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as holder:
        # Hold the migrator's lock so both runs are certainly queued behind it at the same time.
        await holder.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        runs = asyncio.gather(apply_migrations(url), apply_migrations(url))

        async def both_waiting() -> bool:
            cursor = await holder.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
                " WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()")
            row = await cursor.fetchone()
            return row is not None and row[0] == 2

        try:
            await eventually(both_waiting, what="both migrators waiting on the advisory lock")
        finally:
            await holder.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
            first, second = await runs

    assert sorted([len(first), len(second)]) == [0, len(available_migrations())]
    assert [version for version, _ in await _recorded(url)] == [m.version for m in available_migrations()]
