"""Where response records live: a Redis hash on the request path, PostgreSQL for as long as the upstream keeps them.

Why both. A continuation or a lifecycle call needs the record before anything is reserved, on authz's hot path: a
Redis hash (``lime:response:<id>``) is one round trip. Upstreams keep stored responses for weeks (OpenAI: 30 days)
while most continuations follow within minutes, so Redis keeps a record for ``RECORD_TTL_SECONDS`` and PostgreSQL
(``responses``, migration 0004) keeps it beyond; a lookup that misses Redis reads PostgreSQL and caches it again.

Who writes. extproc writes the hash as soon as the tap has read a stored answer's id and usage, *before* the last
bytes of that answer go to the client, so a client that continues at once cannot overtake its own record (the
settlement, and the settler's PostgreSQL write, come after the client has the answer). The same write appends the
record to the stream ``lime:responses``, which the settler copies into PostgreSQL (:class:`ResponseRecordWriter`),
as it does with usage. A DELETE the upstream confirmed leaves a tombstone the same way, so the id is not found
again even while PostgreSQL still has the row.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import UTC, datetime
from typing import Any

import psycopg
import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool

from lime.money.response_record import ResponseRecord

__all__ = ["RECORD_STREAM", "RECORD_TTL_SECONDS", "ResponseRecordWriter", "lookup", "persist_records", "save"]

log = logging.getLogger(__name__)

RECORD_STREAM = "lime:responses"
#: How long Redis keeps a record after its last write or lookup; PostgreSQL answers after that.
RECORD_TTL_SECONDS = 24 * 3600
GROUP = "response-record-writers"


def _key(response_id: str) -> str:
    return f"lime:response:{response_id}"


async def save(redis: aioredis.Redis, record: ResponseRecord) -> None:
    """Write (or tombstone, for a deleted record) ``record`` where lookups find it, and queue it for PostgreSQL.
    A record of an answer that was not stored is only queued: there is nothing to look up."""
    async with redis.pipeline(transaction=True) as pipe:
        if record.stored:
            fields: dict[Any, Any] = record.to_fields()
            pipe.hset(_key(record.id), mapping=fields)
            pipe.expire(_key(record.id), RECORD_TTL_SECONDS)
        pipe.xadd(RECORD_STREAM, {"record": record.encode()})
        await pipe.execute()


async def lookup(redis: aioredis.Redis, pool: AsyncConnectionPool[Any], response_id: str) -> ResponseRecord | None:
    """The record of ``response_id`` (deleted and unstored ones included: the caller decides), or ``None``."""
    raw = await redis.hgetall(_key(response_id))
    if raw:
        return ResponseRecord.from_fields({_text(k): _text(v) for k, v in raw.items()})
    async with pool.connection() as conn:
        row = await (await conn.execute(
            "SELECT id, tenant_id, key_id, upstream, candidate, model, upstream_model, context_tokens,"
            " extract(epoch FROM created_at), stored, deleted_at IS NOT NULL, request_id"
            " FROM responses WHERE id = %s", (response_id,))).fetchone()
    if row is None:
        return None
    record = ResponseRecord(id=row[0], tenant_id=row[1], key_id=row[2], upstream=row[3], candidate=row[4],
                            model=row[5], upstream_model=row[6], context_tokens=int(row[7]),
                            created_at=float(row[8]), stored=bool(row[9]), deleted=bool(row[10]),
                            request_id=row[11])
    if record.stored:
        cached: dict[Any, Any] = record.to_fields()
        async with redis.pipeline(transaction=True) as pipe:
            pipe.hset(_key(record.id), mapping=cached)
            pipe.expire(_key(record.id), RECORD_TTL_SECONDS)
            await pipe.execute()
    return record


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


_COLUMNS = ("id, tenant_id, key_id, upstream, candidate, model, upstream_model, context_tokens, created_at, stored,"
            " deleted_at, request_id")


def _row(record: ResponseRecord) -> tuple[Any, ...]:
    return (record.id, record.tenant_id, record.key_id, record.upstream, record.candidate, record.model,
            record.upstream_model, record.context_tokens, datetime.fromtimestamp(record.created_at, UTC),
            record.stored, datetime.now(UTC) if record.deleted else None, record.request_id)


async def persist_records(conn: psycopg.AsyncConnection[Any], records: list[ResponseRecord]) -> None:
    """Insert records in stream order; a later one of the same id (its deletion) updates it. A record never
    changes owner: an id another tenant already holds is left as it is."""
    async with conn.transaction():
        for record in records:
            await conn.execute(
                f"INSERT INTO responses ({_COLUMNS}) VALUES ({', '.join(['%s'] * 12)})"  # noqa: S608
                " ON CONFLICT (id) DO UPDATE SET context_tokens = EXCLUDED.context_tokens,"
                " deleted_at = coalesce(responses.deleted_at, EXCLUDED.deleted_at)"
                " WHERE responses.tenant_id = EXCLUDED.tenant_id", _row(record))


class ResponseRecordWriter:
    """The settler's copy of ``lime:responses`` into PostgreSQL: read in batches, written in one transaction,
    then acknowledged and deleted (a redelivery writes the same row again)."""

    def __init__(self, pool: AsyncConnectionPool[Any], redis: aioredis.Redis, *, batch: int = 200,
                 block_ms: int = 1000) -> None:
        self._pool = pool
        self._redis = redis
        self._consumer = f"{socket.gethostname()}-{id(self):x}"
        self._batch = batch
        self._block_ms = block_ms

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(RECORD_STREAM, GROUP, id="0", mkstream=True)
        except aioredis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def run(self, stop: asyncio.Event) -> None:
        await self.ensure_group()
        pending = True  # what this consumer read and did not acknowledge before a restart or an outage
        while not stop.is_set():
            try:
                await self.drain_once(start="0" if pending else ">")
                pending = False
            except aioredis.ResponseError as error:
                if "NOGROUP" not in str(error):
                    raise
                await self.ensure_group()
            except (psycopg.OperationalError, OSError, aioredis.ConnectionError, aioredis.TimeoutError) as error:
                log.warning("response record writer: %s; retrying in 1s (records wait in the stream)", error)
                pending = True
                await asyncio.sleep(1.0)

    async def drain_once(self, *, start: str = ">") -> int:
        reply: Any = await self._redis.xreadgroup(GROUP, self._consumer, {RECORD_STREAM: start},
                                                  count=self._batch, block=None if start == "0" else self._block_ms)
        entries = list(reply[0][1]) if reply else []
        records = []
        for _, fields in entries:
            raw = fields.get(b"record") if fields else None
            if raw is None:
                continue
            try:
                records.append(ResponseRecord.decode(raw))
            except (ValueError, TypeError) as error:
                log.error("response record %r could not be read and is dropped: %s", raw[:200], error)
        if records:
            async with self._pool.connection() as conn:
                await persist_records(conn, records)
        if entries:
            ids = [entry_id for entry_id, _ in entries]
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xack(RECORD_STREAM, GROUP, *ids)
                pipe.xdel(RECORD_STREAM, *ids)
                await pipe.execute()
        return len(entries)


