"""gRPC edge of extproc: one loop per Envoy stream that owns receive and send, and settles when it ends.

The stream ends normally after the last response chunk, or is cancelled when the client goes away; either
way the request is settled exactly then, from what the tap saw. Settlement runs in its own task so that a
cancelled stream still finishes it, and so that Redis is never on the path of a chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any

import grpclib.const
import redis.asyncio as aioredis
from prometheus_client import Counter

from extproc import request_metrics
from extproc.access_log import EnvoyLogs
from extproc.cut_relay import CutRelay
from extproc.message_metrics import MessageTally
from extproc.processor import StreamProcessor
from extproc.rewrite import CredentialLookup
from extproc.stream_cuts import CutReports
from lime.connections import open_redis
from lime.envoy.api import PROCESS_METHOD, proc_pb
from lime.grpc_server import MessageStream, serve_grpclib
from lime.metrics import serve_metrics
from lime.money import quota, response_records
from lime.money.quota import UsageEvent
from lime.money.response_record import ResponseRecord
from lime.money.settlement import settlement_for
from lime.protocols import token_count
from lime.serving import InFlight
from lime.settings import Settings

__all__ = ["ExternalProcessorService", "serve"]

log = logging.getLogger(__name__)

SETTLE_FAILURES = Counter("lime_settlement_failures", "Settlements that could not reach Redis (left to the reaper)")
SETTLEMENT_BUGS = Counter("lime_settlement_bugs", "Requests the gateway failed to price, settled at no charge")
#: How long a settlement keeps trying to reach Redis before it is given up (and logged in full).
SETTLE_PATIENCE_SECONDS = 600.0
#: Envoy flushes its access log every 100 ms (envoy/envoy.yaml); a report later than this is not waited for.
CUT_REPORT_WAIT_SECONDS = 2.0
#: How long an observed stream goes on being read once Envoy reported it cut: the chunks already on their way.
CUT_GRACE_SECONDS = 0.5
#: lime.stream_tap's deferred_close_timeout (envoy/envoy.yaml): an observed stream nobody reports cut or ends
#: is closed by Envoy by then, so its cut report is not awaited longer.
OBSERVED_STREAM_PATIENCE_SECONDS = 30.0
SETTLED_TOO_LATE = Counter("lime_settlements_after_reap",
                           "Settlements dropped because their reservation had already been reaped")
RECORD_FAILURES = Counter("lime_response_record_failures",
                          "Stored-response records that could not be written to Redis (their id will not be found)")


class ExternalProcessorService:
    def __init__(self, credential_for: CredentialLookup, redis: aioredis.Redis, *,
                 reservation_ttl_seconds: int = 900, cuts: CutReports | None = None) -> None:
        self._credential_for = credential_for
        self._cuts = CutReports() if cuts is None else cuts
        self._redis = redis
        self._ttl = reservation_ttl_seconds
        self._settling: set[asyncio.Task[None]] = set()
        #: Envoy streams being processed now (what a graceful stop waits for).
        self.in_flight = InFlight()

    def __mapping__(self) -> dict[str, grpclib.const.Handler]:
        return {PROCESS_METHOD: grpclib.const.Handler(self.Process, grpclib.const.Cardinality.STREAM_STREAM,
                                                      proc_pb.ProcessingRequest, proc_pb.ProcessingResponse)}

    def _background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _keep_alive(self, reservation_id: str) -> None:
        """Vouch for a request in progress every third of the TTL (two chances before the reaper would act),
        however long its answer takes; a request nobody vouches for is one whose extproc is gone."""
        while True:
            await asyncio.sleep(self._ttl / 3)
            try:
                await quota.extend(self._redis, reservation_id, time.time() + self._ttl)
            except (aioredis.RedisError, OSError) as error:
                log.warning("could not extend the reservation of %s: %s", reservation_id, error)

    async def Process(self, stream: MessageStream) -> None:
        with self.in_flight:
            await self._process(stream)

    async def _process(self, stream: MessageStream) -> None:
        processor = StreamProcessor(self._credential_for)
        tally = MessageTally()
        keep_alive: asyncio.Task[None] | None = None
        watch: asyncio.Task[None] | None = None
        try:
            async for request in stream:
                started = time.perf_counter()
                phase = request.WhichOneof("request")
                response = processor.handle(request, phase)
                tally.add(phase, time.perf_counter() - started)
                record = _record_due(processor)
                if record is not None:
                    # Before the answer's last bytes go on: a client that continues at once finds its record.
                    await self._save_record(record)
                if not processor.observing:
                    # The observing tap's stream (ext_proc observability mode) gets no reply: Envoy reads none.
                    await stream.send_message(response)
                if keep_alive is None and processor.grant is not None:
                    keep_alive = asyncio.get_running_loop().create_task(self._keep_alive(processor.grant.request_id))
                    if processor.observing:
                        watch = asyncio.get_running_loop().create_task(self._watch_cut(
                            processor, processor.grant.request_id, asyncio.current_task()))
                if processor.finished:
                    # Envoy will send nothing more: end the stream now rather than wait for Envoy to reset it.
                    break
        finally:
            if watch is not None:
                watch.cancel()
            tally.record(observed=processor.observing)
            if processor.handed_off:
                # The observing tap's own stream (extproc/stream_modes.py) counts and settles this request.
                if keep_alive is not None:
                    keep_alive.cancel()
            else:
                self._end(processor, keep_alive)

    async def _watch_cut(self, processor: StreamProcessor, request_id: str, reader: asyncio.Task[Any] | None) -> None:
        """An observed stream the client (or the upstream) cut never gets Envoy's end of stream, and Envoy keeps
        its gRPC stream open for deferred_close_timeout: once Envoy's access log says the request was cut, what is
        already on its way is read, then the stream is settled by the cut-off rule without waiting for Envoy."""
        ending = await self._cuts.wait(request_id, patience=OBSERVED_STREAM_PATIENCE_SECONDS)
        if ending is None:
            return
        processor.cut = ending
        await asyncio.sleep(CUT_GRACE_SECONDS)
        if reader is not None and not processor.finished:
            reader.cancel()

    def _end(self, processor: StreamProcessor, keep_alive: asyncio.Task[None] | None) -> None:
        """Count, record and settle the request whose answer this stream read."""
        self._count(processor)
        self._record_at_end(processor)
        event = self._settlement_of(processor)
        if event is not None:
            # The keep-alive goes on until the settlement is in: a Redis outage must not hand the request to
            # the reaper while its settlement waits.
            self._background(self._settle(event, keep_alive))
        elif keep_alive is not None:
            keep_alive.cancel()

    async def _save_record(self, record: ResponseRecord) -> None:
        try:
            await response_records.save(self._redis, record)
        except (aioredis.RedisError, OSError) as error:
            RECORD_FAILURES.inc()
            log.error("stored response %s of request %s not recorded (%s): it cannot be retrieved or continued "
                      "through the gateway", record.id, record.request_id, error)

    def _record_at_end(self, processor: StreamProcessor) -> None:
        """An answer that ended without its final usage (cut off) is recorded with what was settled."""
        record = _record_due(processor, ended=True)
        if record is not None:
            self._background(self._save_record(record))

    def _count(self, processor: StreamProcessor) -> None:
        """Count the finished request; one cut short waits (off the stream) for Envoy to say who cut it."""
        ended_at = time.time()
        try:
            ending = request_metrics.ending_of(processor.response_status, complete=processor.answer_complete,
                                               failed=processor.answer_failed)
            if ending is None and processor.cut is not None:
                request_metrics.record(processor, processor.cut, ended_at=ended_at)  # Envoy's word came already
            elif ending is None and processor.forwarded and processor.grant is not None:
                self._background(self._count_cut(processor, processor.grant.request_id, ended_at))
            else:
                request_metrics.record(processor, ending, ended_at=ended_at)
        except Exception:
            log.exception("could not count a finished request in the metrics")

    async def _count_cut(self, processor: StreamProcessor, request_id: str, ended_at: float) -> None:
        ending = await self._cuts.wait(request_id, patience=CUT_REPORT_WAIT_SECONDS)
        request_metrics.record(processor, ending, ended_at=ended_at)

    def _settlement_of(self, processor: StreamProcessor) -> UsageEvent | None:
        try:
            return processor.settlement()
        except Exception:
            grant = processor.grant
            if grant is None:
                return None
            # A bug in pricing must not leave the request unsettled (reaped, uncounted): release it at no
            # charge, as a failed request, and say so.
            SETTLEMENT_BUGS.inc()
            log.exception("could not price request %s; settled at no charge", grant.request_id)
            return settlement_for(grant, None)

    async def _settle(self, event: UsageEvent, keep_alive: asyncio.Task[None] | None) -> None:
        try:
            await self._settle_patiently(event)
        finally:
            if keep_alive is not None:
                keep_alive.cancel()

    async def _settle_patiently(self, event: UsageEvent) -> None:
        """Settle, retrying through a Redis outage (a failover takes seconds to a minute) for up to
        ``SETTLE_PATIENCE_SECONDS``; the settled marker makes a retry after a lost reply a no-op."""
        deadline = time.monotonic() + SETTLE_PATIENCE_SECONDS
        pause = 0.2
        while True:
            try:
                if await quota.settle(self._redis, event) == 0:
                    SETTLED_TOO_LATE.inc()
                    log.warning("request %s settled after its reservation was reaped: %d micro-points not charged",
                                event.request_id, event.cost)
                return
            except (aioredis.RedisError, OSError) as error:
                if time.monotonic() + pause > deadline:
                    SETTLE_FAILURES.inc()
                    # Everything needed to charge it by hand, since the reaper will charge nothing.
                    log.error("request %s not settled (%s); its usage event: %s", event.request_id, error,
                              event.encode())
                    return
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    async def drain(self) -> None:
        """Wait for settlements in flight (on shutdown)."""
        if self._settling:
            await asyncio.wait(self._settling, timeout=5)


def _record_due(processor: StreamProcessor, *, ended: bool = False) -> ResponseRecord | None:
    """A bug in making a record must not break the answer the client is receiving."""
    try:
        return processor.record_due(ended=ended)
    except Exception:
        log.exception("could not make the stored-response record of request %s",
                      processor.grant.request_id if processor.grant else "?")
        return None


async def serve(settings: Settings) -> None:
    token_count.warm_up()
    async with open_redis(settings) as redis:
        cuts = CutReports()
        service = ExternalProcessorService(settings.upstream_credential, redis,
                                           reservation_ttl_seconds=settings.reservation_ttl_seconds, cuts=cuts)
        # Envoy's access log reaches one process of a pool, maybe not the one reading the stream it reports on.
        relay = CutRelay(redis, cuts) if settings.pool_size > 1 else None
        relaying = asyncio.get_running_loop().create_task(relay.run()) if relay is not None else None
        metrics = serve_metrics(settings.extproc_metrics)

        try:
            logs = EnvoyLogs(cuts.report if relay is None else relay.report)
            await serve_grpclib(settings.extproc, [service, logs], name="extproc",
                                in_flight=service.in_flight, drain_seconds=settings.drain_seconds)
        finally:
            with contextlib.suppress(Exception):
                await service.drain()
            if relay is not None and relaying is not None:
                relaying.cancel()
                with contextlib.suppress(Exception):
                    await relay.drain()
            if metrics is not None:
                metrics.close()
