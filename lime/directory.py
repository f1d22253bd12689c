"""The live view of the catalog and the keys that every service reads on the request path.

Strategy:
- The catalog (tenants, packages, models, upstreams, brands) is small: each process holds it in memory as an
  immutable :class:`~lime.catalog.Catalog` and swaps in a new one when PostgreSQL notifies ``lime_catalog``
  (a trigger fires on every change). A poll of the version number is the fallback when the notification
  connection is down, and a tenant the snapshot does not know triggers one rate-limited refresh.
- Keys can be many: each is looked up by hash in Redis (``lime:key:<sha256>``), falling back to PostgreSQL and
  caching the answer, unknown keys included, for ``key_cache_seconds``. Revoking a key replaces its cache
  entry by a revoked one (see :func:`cache_revocation`). A known key is also remembered in the process for
  :data:`KEY_MEMORY_SECONDS`, so a warm key costs authz no Redis round trip of its own (the reservation is then the
  request's only one) and a revocation still takes effect everywhere within that second. Expiry needs no
  invalidation (the record carries ``expires_at``, checked on every request), nor does a suspended tenant (the
  catalog snapshot, swapped on NOTIFY).
- When PostgreSQL is down the last snapshot and the cached keys keep serving. When Redis is down nothing is
  served (:class:`~lime.protocols.errors.ServiceUnavailable`): the money path cannot run without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg
import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool
from redis.exceptions import RedisError

from lime.catalog import Catalog, Tenant
from lime.keys import KeyRecord
from lime.protocols.errors import ServiceUnavailable
from lime.store.catalog_repo import catalog_version, find_key, load_catalog

__all__ = ["KEY_MEMORY_SECONDS", "Directory", "cache_revocation", "key_cache_name"]

log = logging.getLogger(__name__)

_UNKNOWN = "-"  # cached marker for "no such key", so a flood of bad keys does not reach PostgreSQL
_MISS_REFRESH_SECONDS = 1.0
# A revoked key stays revoked: its cache entry may live long, and must outlive any lookup in flight.
_REVOKED_CACHE_SECONDS = 86_400
#: How long a process trusts a known key without asking Redis: the longest a revocation takes to bite.
KEY_MEMORY_SECONDS = 1.0
#: Past this many remembered keys, the stale ones are dropped (unknown keys are never remembered: a flood of
#: random keys cannot grow it).
_KEY_MEMORY_SIZE = 10_000


def key_cache_name(key_hash: str) -> str:
    return f"lime:key:{key_hash}"


async def cache_revocation(redis: aioredis.Redis, key_hash: str, key_id: str, tenant_id: str) -> None:
    """Replace the cached copy of a key by a revoked one.

    Deleting the entry would not do: a lookup that read the key from PostgreSQL just before the revocation
    could then cache it as active again. Lookups cache with SET NX, so they never overwrite this entry.
    """
    record = KeyRecord(key_id, tenant_id, active=False)
    await redis.set(key_cache_name(key_hash), _encode_key(record), ex=_REVOKED_CACHE_SECONDS)


class Directory:
    def __init__(
        self,
        database_url: str,
        pool: AsyncConnectionPool[Any],
        redis: aioredis.Redis,
        *,
        key_cache_seconds: int = 60,
        poll_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._database_url = database_url
        self._pool = pool
        self._redis = redis
        self._key_cache_seconds = key_cache_seconds
        self._poll_seconds = poll_seconds
        self._clock = clock
        self._catalog = Catalog()
        self._last_miss_refresh = -_MISS_REFRESH_SECONDS
        self._miss_refresh: asyncio.Future[None] | None = None
        self._reload_lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        self._key_lookups: dict[str, asyncio.Future[KeyRecord | None]] = {}
        self._key_memory: dict[str, tuple[float, KeyRecord]] = {}

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    async def start(self) -> None:
        await self.reload()
        self._watcher = asyncio.create_task(self._watch(), name="catalog-watcher")

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher

    async def reload(self, *, only_if_changed: bool = False) -> None:
        async with self._reload_lock, self._pool.connection() as conn:
            if only_if_changed and await catalog_version(conn) == self._catalog.version:
                return
            catalog = await load_catalog(conn)
        if catalog.version != self._catalog.version:
            log.info("catalog version %d loaded (%d tenants, %d models)",
                     catalog.version, len(catalog.tenants), len(catalog.models))
        self._catalog = catalog

    async def tenant(self, tenant_id: str) -> Tenant | None:
        tenant = self._catalog.tenant(tenant_id)
        if tenant is not None:
            return tenant
        # A tenant created a moment ago may not have reached us yet: look once, rate-limited, and let every
        # request that missed meanwhile wait for that same look rather than be refused while it runs.
        if self._miss_refresh is None or (self._miss_refresh.done()
                                          and self._clock() - self._last_miss_refresh >= _MISS_REFRESH_SECONDS):
            self._last_miss_refresh = self._clock()
            self._miss_refresh = asyncio.ensure_future(self._refresh_quietly())
        await asyncio.shield(self._miss_refresh)
        return self._catalog.tenant(tenant_id)

    async def _refresh_quietly(self) -> None:
        with contextlib.suppress(psycopg.Error, OSError):
            await self.reload(only_if_changed=True)

    async def key(self, key_hash: str) -> KeyRecord | None:
        remembered = self._key_memory.get(key_hash)
        now = self._clock()
        if remembered is not None and remembered[0] > now:
            return remembered[1]
        record = await self._shared_key(key_hash)
        if record is not None and record.active:
            if len(self._key_memory) >= _KEY_MEMORY_SIZE:
                self._key_memory = {h: entry for h, entry in self._key_memory.items() if entry[0] > now}
            self._key_memory[key_hash] = (now + KEY_MEMORY_SECONDS, record)
        return record

    async def _shared_key(self, key_hash: str) -> KeyRecord | None:
        name = key_cache_name(key_hash)
        try:
            cached = await self._redis.get(name)
        except RedisError as exc:
            raise ServiceUnavailable("The gateway cannot verify keys right now; please retry.") from exc
        if cached is not None:
            return _decode_key(cached)
        # Single flight: a burst of first requests with one new key (an agent opening 200 streams) waits for one
        # PostgreSQL lookup instead of queueing 200 for the pool, which timed some out (a 503 to the client).
        pending = self._key_lookups.get(key_hash)
        if pending is None:
            pending = asyncio.ensure_future(self._look_up_and_cache(name, key_hash))
            self._key_lookups[key_hash] = pending
            pending.add_done_callback(lambda _: self._key_lookups.pop(key_hash, None))
        # Shielded: one waiter that gives up (its client left) must not cancel the lookup the others wait for.
        return await asyncio.shield(pending)

    async def _look_up_and_cache(self, name: str, key_hash: str) -> KeyRecord | None:
        try:
            async with self._pool.connection() as conn:
                record = await find_key(conn, key_hash)
        except (psycopg.Error, OSError) as exc:
            raise ServiceUnavailable("The gateway cannot verify keys right now; please retry.") from exc
        try:
            # NX: a revocation written meanwhile (see cache_revocation) must win over what we read before it.
            await self._redis.set(name, _encode_key(record), ex=self._key_cache_seconds, nx=True)
        except RedisError as exc:
            raise ServiceUnavailable("The gateway cannot verify keys right now; please retry.") from exc
        return record

    async def _watch(self) -> None:
        """Reload on NOTIFY; poll the version while the listening connection is down."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._database_url, autocommit=True) as conn:
                    await conn.execute("LISTEN lime_catalog")
                    await self.reload(only_if_changed=True)  # catch what changed while we were away
                    async for _ in _notifies_or_timeout(conn, self._poll_seconds):
                        await self.reload(only_if_changed=True)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broken watcher must never stop serving
                log.warning("catalog watcher: %s; retrying in %.1fs", exc, self._poll_seconds)
                await asyncio.sleep(self._poll_seconds)


async def _notifies_or_timeout(conn: psycopg.AsyncConnection[Any], every: float) -> Any:
    """Yield once per notification, and once per ``every`` seconds without one (the poll)."""
    while True:
        gen = conn.notifies(timeout=every, stop_after=1)
        async for _ in gen:
            pass
        yield None


def _encode_key(record: KeyRecord | None) -> str:
    if record is None:
        return _UNKNOWN
    return json.dumps([record.id, record.tenant_id, record.active, record.expires_at])


def _decode_key(raw: bytes | str) -> KeyRecord | None:
    text = raw.decode() if isinstance(raw, bytes) else raw
    if text == _UNKNOWN:
        return None
    key_id, tenant_id, active, expires_at = json.loads(text)
    return KeyRecord(key_id, tenant_id, bool(active), expires_at)
