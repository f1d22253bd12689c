"""The settlement writer: usage events from the Redis stream into PostgreSQL, exactly once; and the reaper.

Each event becomes, in one PostgreSQL transaction, a ``usage_records`` row keyed by the request id, a ``ledger``
entry and the new balance. Only after the commit is the event acknowledged (and deleted: the stream holds only
what PostgreSQL does not have yet, which ``lime reconcile`` relies on). A crash between commit and acknowledge
redelivers the event; the request id makes the second insert a no-op, so nothing is counted twice. While
PostgreSQL is down, events wait in the stream and the writer retries.

The reaper releases reservations whose request never settled (an extproc that died mid-request) once their
deadline passed: the rule is **release the hold, charge nothing, record the request as ``reaped``**, because
Lime cannot prove what was served. Reaps are counted (``lime_reservations_reaped_total``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
import redis.asyncio as aioredis
from prometheus_client import Counter
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from lime.money import quota
from lime.money.quota import DEAD_LETTER_STREAM, USAGE_STREAM, UsageEvent
from lime.money.usage_metrics import count_persisted

__all__ = ["GROUP", "SettlementWriter", "persist", "persist_batch", "reap_expired"]

log = logging.getLogger(__name__)

GROUP = "settlement-writers"

REAPED = Counter("lime_reservations_reaped", "Reservations released by the reaper because no settlement came")
DEAD_LETTERS = Counter("lime_settlement_dead_letters", "Usage events PostgreSQL refused; kept in lime:usage:dead")
RETRIES = Counter("lime_settlement_write_retries", "Failed attempts to write a usage event to PostgreSQL")


async def persist(conn: psycopg.AsyncConnection[Any], event: UsageEvent) -> bool:
    """Write one event in its own transaction; ``False`` when its request id was already recorded."""
    async with conn.transaction():
        return await _write(conn, event)


_RECORD_COLUMNS = ("request_id, tenant_id, key_id, endpoint, model, upstream, outcome, estimated, upstream_status,"
                   " input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens,"
                   " reserved, cost, started_at, cache_write_1h_tokens, audio_input_tokens, audio_output_tokens,"
                   " server_tool_calls, service_tier, unpriced")
_RECORD_VALUES = "(" + ", ".join(["%s"] * 23) + ")"


def _record_row(event: UsageEvent) -> tuple[Any, ...]:
    return (event.request_id, event.tenant_id, event.key_id, event.endpoint, event.model, event.upstream,
            event.outcome, event.estimated, event.upstream_status, event.input_tokens, event.cached_input_tokens,
            event.cache_write_tokens, event.output_tokens, event.reasoning_tokens, event.reserved, event.cost,
            datetime.fromtimestamp(event.started_at, UTC), event.cache_write_1h_tokens, event.audio_input_tokens,
            event.audio_output_tokens, Jsonb(event.server_tool_calls), event.service_tier, list(event.unpriced))


async def persist_batch(conn: psycopg.AsyncConnection[Any], events: list[UsageEvent]) -> list[bool]:
    """Write events in one transaction and a handful of statements, whatever their number: one multi-row
    insert of the records, one balance update per tenant, one multi-row insert into the ledger. Returns, per
    event, whether it was new.

    Balance rows are locked tenant by tenant in sorted order, so two writers cannot deadlock on each other."""
    if not events:
        return []
    async with conn.transaction():
        cursor = await conn.execute(
            # Built from constants and placeholders only: every value travels as a parameter.
            f"INSERT INTO usage_records ({_RECORD_COLUMNS}) VALUES "  # noqa: S608
            + ", ".join([_RECORD_VALUES] * len(events)) + " ON CONFLICT (request_id) DO NOTHING RETURNING request_id",
            [value for event in events for value in _record_row(event)])
        inserted = {row[0] for row in await cursor.fetchall()}
        # The first event of a request id is the one written (a redelivery inside one batch is a no-op too).
        written, seen = [], set()
        for event in events:
            new = event.request_id in inserted and event.request_id not in seen
            seen.add(event.request_id)
            written.append(new)
        charges: dict[str, list[UsageEvent]] = {}
        for event, new in zip(events, written, strict=True):
            if new and event.cost:
                charges.setdefault(event.tenant_id, []).append(event)
        ledger: list[Any] = []
        for tenant_id in sorted(charges):
            tenant_events = charges[tenant_id]
            await conn.execute("INSERT INTO balances (tenant_id) VALUES (%s) ON CONFLICT DO NOTHING", (tenant_id,))
            row = await (await conn.execute(
                "UPDATE balances SET points = points - %s, updated_at = now() WHERE tenant_id = %s RETURNING points",
                (sum(e.cost for e in tenant_events), tenant_id))).fetchone()
            assert row is not None
            balance = int(row[0]) + sum(e.cost for e in tenant_events)
            for event in tenant_events:  # in stream order, each entry with the balance it left
                balance -= event.cost
                ledger.extend((tenant_id, -event.cost, balance, event.request_id))
        if ledger:
            await conn.execute(
                "INSERT INTO ledger (tenant_id, kind, amount, balance_after, request_id) VALUES "  # noqa: S608
                + ", ".join(["(%s, 'usage', %s, %s, %s)"] * (len(ledger) // 4)), ledger)
    return written


async def _write(conn: psycopg.AsyncConnection[Any], event: UsageEvent) -> bool:
    cursor = await conn.execute(
        f"INSERT INTO usage_records ({_RECORD_COLUMNS}) VALUES {_RECORD_VALUES}"  # noqa: S608
        " ON CONFLICT (request_id) DO NOTHING",
        _record_row(event))
    if cursor.rowcount == 0:
        return False
    if event.cost:
        await conn.execute("INSERT INTO balances (tenant_id) VALUES (%s) ON CONFLICT DO NOTHING",
                           (event.tenant_id,))
        row = await (await conn.execute(
            "UPDATE balances SET points = points - %s, updated_at = now() WHERE tenant_id = %s"
            " RETURNING points", (event.cost, event.tenant_id))).fetchone()
        assert row is not None
        await conn.execute(
            "INSERT INTO ledger (tenant_id, kind, amount, balance_after, request_id)"
            " VALUES (%s, 'usage', %s, %s, %s)", (event.tenant_id, -event.cost, row[0], event.request_id))
    return True


async def reap_expired(redis: aioredis.Redis, now: float | None = None) -> int:
    """Release every reservation past its deadline; returns how many were reaped."""
    now = time.time() if now is None else now
    reaped = 0
    for reservation_id in await quota.expired_reservations(redis, now):
        fields = await quota.reservation_fields(redis, reservation_id)
        if fields is None:
            # Settled a moment ago, or its record expired: nothing to release, only the index entry to drop.
            await redis.zrem(quota.RESERVATIONS, reservation_id)
            continue
        event = UsageEvent(
            request_id=reservation_id, tenant_id=fields["tenant_id"], key_id=fields["key_id"],
            endpoint=fields["endpoint"], model=fields["model"], upstream=fields["upstream"], outcome="reaped",
            estimated=True, upstream_status=0, input_tokens=0, cached_input_tokens=0, cache_write_tokens=0,
            output_tokens=0, reasoning_tokens=0, reserved=int(fields["reserved"]), cost=0,
            started_at=float(fields["started_at"]),
        )
        if await quota.settle(redis, event, tpm_tokens=0, only_if_expired_at=now) == 1:
            reaped += 1
            REAPED.inc()
            log.warning("reservation %s of tenant %s reaped: no settlement came before its deadline",
                        reservation_id, event.tenant_id)
    return reaped


class SettlementWriter:
    def __init__(self, pool: AsyncConnectionPool[Any], redis: aioredis.Redis, *, consumer: str | None = None,
                 batch: int = 200, block_ms: int = 1000, reap_every: float = 5.0,
                 gather_seconds: float = 0.05) -> None:
        self._pool = pool
        self._redis = redis
        self._consumer = consumer or f"{socket.gethostname()}-{id(self):x}"
        self._batch = batch
        self._block_ms = block_ms
        self._reap_every = reap_every
        self._gather = gather_seconds

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(USAGE_STREAM, GROUP, id="0", mkstream=True)
        except aioredis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def run(self, stop: asyncio.Event) -> None:
        await self.ensure_group()
        last_reap = 0.0
        while not stop.is_set():
            try:
                # Redeliveries and other consumers' orphans are looked for with the reaper, not on every read.
                maintenance = time.monotonic() - last_reap >= self._reap_every
                done = await self.drain_once(recover=maintenance)
                if maintenance:
                    last_reap = time.monotonic()
                    await reap_expired(self._redis)
                if 0 < done < self._batch:
                    # A few events at a time cost a transaction each: let the next read find a batch. Persisting
                    # waits up to this much longer; the request path does not wait at all.
                    await asyncio.sleep(self._gather)
            except aioredis.ResponseError as error:
                if "NOGROUP" not in str(error):
                    raise
                # Redis lost its data (a restart without persistence): the stream and group start afresh.
                log.warning("settlement writer: the usage stream's consumer group is gone; creating it again")
                await self.ensure_group()
            except (psycopg.OperationalError, OSError, aioredis.ConnectionError, aioredis.TimeoutError) as error:
                RETRIES.inc()
                log.warning("settlement writer: %s; retrying in 1s (events wait in the stream)", error)
                last_reap = 0.0  # what was read and not written is pending: pick it up on the next round
                await asyncio.sleep(1.0)

    async def drain_once(self, *, recover: bool = True) -> int:
        """Persist new events; with ``recover``, first what is pending for this consumer (redeliveries) and then
        what a dead consumer left. Returns the count."""
        done = await self._process(await self._read("0", block=False)) if recover else 0
        done += await self._process(await self._read(">", block=True))
        if recover:
            # Events another consumer took and never acknowledged (it died) are claimed after a minute.
            claimed = await self._redis.xautoclaim(USAGE_STREAM, GROUP, self._consumer, min_idle_time=60_000,
                                                   start_id="0-0", count=self._batch)
            if claimed and claimed[1]:
                done += await self._process(claimed[1])
        return done

    async def _read(self, start: str, *, block: bool) -> list[Any]:
        reply: Any = await self._redis.xreadgroup(GROUP, self._consumer, {USAGE_STREAM: start},
                                                  count=self._batch, block=self._block_ms if block else None)
        return list(reply[0][1]) if reply else []  # RESP2: [[stream, [(id, fields), ...]]]

    async def _process(self, entries: list[Any]) -> int:
        if not entries:
            return 0
        batch: list[tuple[Any, UsageEvent]] = []
        for entry_id, fields in entries:
            raw = fields.get(b"event") if fields else None
            if raw is None:  # deleted meanwhile: nothing to write
                continue
            try:
                event = UsageEvent.decode(raw)
                _record_row(event)  # a value PostgreSQL cannot take (a timestamp out of range) shows here
            except (ValueError, TypeError, KeyError, OverflowError) as error:
                await self._set_aside(entry_id, raw, error)
                continue
            batch.append((entry_id, event))
        async with self._pool.connection() as conn:
            try:
                written = await persist_batch(conn, [event for _, event in batch])
            except (psycopg.DataError, psycopg.IntegrityError):
                # One event PostgreSQL refuses spoils the batch: write them one by one to find it.
                written = [await self._persist_or_set_aside(conn, entry_id, event) for entry_id, event in batch]
        for (_, event), new in zip(batch, written, strict=True):
            if new:
                count_persisted(event)
        await self._ack([entry_id for entry_id, _ in entries])
        return len(entries)

    async def _persist_or_set_aside(self, conn: psycopg.AsyncConnection[Any], entry_id: Any,
                                    event: UsageEvent) -> bool:
        try:
            return await persist(conn, event)
        except (psycopg.DataError, psycopg.IntegrityError) as error:
            await self._set_aside(entry_id, event.encode().encode(), error)
            return False

    async def _set_aside(self, entry_id: Any, raw: bytes, error: Exception) -> None:
        """An event PostgreSQL can never take (its tenant deleted, say) must not stall all the others behind it:
        it goes to a stream of its own, visible to an operator, and is counted. Its charge stays applied in Redis
        (``lime reconcile`` counts dead-lettered costs as owed), so nothing is silently given back."""
        await self._redis.xadd(DEAD_LETTER_STREAM, {"event": raw, "error": str(error)[:500]})
        DEAD_LETTERS.inc()
        log.error("usage event %s set aside in %s: %s", entry_id, DEAD_LETTER_STREAM, error)

    async def _ack(self, entry_ids: list[Any]) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(USAGE_STREAM, GROUP, *entry_ids)
            pipe.xdel(USAGE_STREAM, *entry_ids)
            await pipe.execute()
