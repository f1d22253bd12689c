"""Integration fixtures: real PostgreSQL and Redis (the suite's session servers), one private database per
test module so modules never see each other's rows, and small helpers to seed a catalog."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import psycopg
import pytest
import redis.asyncio as aioredis
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from lime import admin
from lime.devstack.embedded import EmbeddedPostgres, EmbeddedRedis
from lime.directory import KEY_MEMORY_SECONDS
from lime.store.migrate import apply_migrations

T = TypeVar("T")

MakeDatabase = Callable[[], str]


class Clock:
    """The Directory's clock, moved by the test: how long a process remembers a key is the test's to decide."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now

    def pass_key_memory(self) -> None:
        self.now += KEY_MEMORY_SECONDS



def uid(prefix: str) -> str:
    """A unique id, valid for every catalog table (upstream ids are lower case, digits, `_` and `-`)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def database_url(server_url: str, name: str) -> str:
    """``server_url`` with its database replaced by ``name``."""
    return urlsplit(server_url)._replace(path=f"/{name}").geturl()


async def eventually(check: Callable[[], Awaitable[T | None]], *, within: float = 5.0, what: str = "") -> T:
    """Poll ``check`` until it returns something truthy, or fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what or check}")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="session")
def make_database(postgres: EmbeddedPostgres) -> Iterator[MakeDatabase]:
    """A factory of empty databases on the session PostgreSQL; returns each one's URL."""
    created: list[str] = []
    maintenance = database_url(postgres.url, "postgres")

    def make() -> str:
        name = f"it_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(maintenance, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return database_url(postgres.url, name)

    yield make
    if postgres.is_running():
        with psycopg.connect(maintenance, autocommit=True, connect_timeout=5) as conn:
            for name in created:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def fresh_database(make_database: MakeDatabase) -> str:
    """An empty database of this test module's own."""
    return make_database()


@pytest.fixture(scope="module")
async def migrated_database(fresh_database: str) -> str:
    await apply_migrations(fresh_database)
    return fresh_database


@pytest.fixture
async def conn(migrated_database: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """An autocommit connection, like the CLI and the admin API use."""
    async with await psycopg.AsyncConnection.connect(migrated_database, autocommit=True) as connection:
        yield connection


@pytest.fixture(scope="module")
async def pool(migrated_database: str) -> AsyncIterator[AsyncConnectionPool[Any]]:
    """A pool configured like the services' (lime.connections.open_pool)."""
    async with AsyncConnectionPool(migrated_database, min_size=1, max_size=4, open=False,
                                   kwargs={"autocommit": True}, timeout=5.0) as connection_pool:
        await connection_pool.wait(timeout=10.0)
        yield connection_pool


@pytest.fixture
async def redis_client(redis_server: EmbeddedRedis, request: pytest.FixtureRequest) -> AsyncIterator[aioredis.Redis]:
    """The session Redis; a module may pick its own database with ``REDIS_DB = n`` (database 0 is the e2e
    gateway's, whose settler consumes ``lime:usage`` there) and have it emptied around each test with
    ``FLUSH_REDIS = True``."""
    client = aioredis.Redis(host=redis_server.host, port=redis_server.port, db=getattr(request.module, "REDIS_DB", 0),
                            socket_timeout=5.0, socket_connect_timeout=2.0)
    flush = getattr(request.module, "FLUSH_REDIS", False)
    if flush:
        await client.flushdb()
    try:
        yield client
    finally:
        if flush:
            await client.flushdb()
        await client.aclose()


@dataclass(frozen=True)
class Seeded:
    """One tenant on a package of three models, over an OpenAI and an Anthropic upstream."""

    tenant_id: str
    package_id: str
    openai_upstream: str
    anthropic_upstream: str
    chat: str  # OpenAI chat model, in the package
    embed: str  # embedding model, in the package
    claude: str  # Anthropic chat model, in the package
    outside: str  # a chat model that exists but is in no package of this tenant


async def seed_catalog(conn: psycopg.AsyncConnection[Any]) -> Seeded:
    s = Seeded(tenant_id=uid("tenant"), package_id=uid("pkg"), openai_upstream=uid("oai"),
               anthropic_upstream=uid("anth"), chat=uid("chat"), embed=uid("embed"), claude=uid("claude"),
               outside=uid("outside"))
    await admin.add_upstream(conn, s.openai_upstream, "openai")
    await admin.add_upstream(conn, s.anthropic_upstream, "anthropic")
    await admin.add_model(conn, s.chat, upstream_id=s.openai_upstream, upstream_model="gpt-4o-2024-08-06",
                          kind="chat")
    await admin.add_model(conn, s.embed, upstream_id=s.openai_upstream, upstream_model="text-embedding-3-small",
                          kind="embedding")
    await admin.add_model(conn, s.claude, upstream_id=s.anthropic_upstream, upstream_model="claude-sonnet-4-5",
                          kind="chat")
    await admin.add_model(conn, s.outside, upstream_id=s.openai_upstream, upstream_model="gpt-4.1", kind="chat")
    await admin.create_package(conn, s.package_id, "Test package", [s.chat, s.embed, s.claude])
    await admin.create_tenant(conn, s.tenant_id, "Test tenant", package_id=s.package_id)
    return s
