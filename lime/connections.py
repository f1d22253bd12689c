"""Opening the stores a service needs, from settings, and closing them again."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool

from lime.directory import Directory
from lime.settings import Settings

__all__ = ["REDIS_CONNECTIONS", "open_directory", "open_pool", "open_redis"]

#: Redis connections a service process opens at most. Each request holds one for a command or a script at a time.
REDIS_CONNECTIONS = 128


@contextlib.asynccontextmanager
async def open_pool(settings: Settings, *, max_size: int = 4) -> AsyncIterator[AsyncConnectionPool[Any]]:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        settings.require_database_url(), min_size=1, max_size=max_size, open=False,
        kwargs={"autocommit": True}, timeout=5.0,
    )
    await pool.open(wait=True, timeout=10.0)
    try:
        yield pool
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def open_redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    # A blocking pool: redis-py's default pool (100 connections in redis-py 6+) raises at once when a burst needs
    # more, which refused 200 simultaneous streams of one agent with a 503. Past REDIS_CONNECTIONS a command
    # waits for a free connection, up to the socket timeout, like any slow Redis.
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.require_redis_url(), max_connections=REDIS_CONNECTIONS, timeout=2.0,
        socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=30,
    )
    client = aioredis.Redis.from_pool(pool)
    try:
        yield client
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def open_directory(settings: Settings, pool: AsyncConnectionPool[Any] | None = None,
                         redis: aioredis.Redis | None = None) -> AsyncIterator[Directory]:
    """A started :class:`Directory`, on the given stores or on its own."""
    async with contextlib.AsyncExitStack() as stack:
        if pool is None:
            pool = await stack.enter_async_context(open_pool(settings))
        if redis is None:
            redis = await stack.enter_async_context(open_redis(settings))
        directory = Directory(
            settings.require_database_url(), pool, redis,
            key_cache_seconds=settings.key_cache_seconds, poll_seconds=settings.catalog_poll_seconds,
        )
        await directory.start()
        stack.push_async_callback(directory.stop)
        yield directory
