"""The settler service: one settlement writer (and reaper) with its metrics on ``LIME_SETTLER_ADDR``."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import redis as sync_redis
from prometheus_client import REGISTRY

from lime.connections import open_pool, open_redis
from lime.metrics import serve_metrics
from lime.money.response_records import ResponseRecordWriter
from lime.money.settlement_writer import SettlementWriter
from lime.money.usage_metrics import SettlementBacklog
from lime.settings import Settings

__all__ = ["serve"]


async def serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with open_pool(settings) as pool, open_redis(settings) as redis:
        writer = SettlementWriter(pool, redis, reap_every=min(5.0, settings.reservation_ttl_seconds / 2))
        await writer.ensure_group()
        records = ResponseRecordWriter(pool, redis)
        await records.ensure_group()
        # The scrape runs on the metrics server's thread: it gets a client of its own, with a short timeout.
        backlog_client = sync_redis.Redis.from_url(settings.require_redis_url(), socket_timeout=2,
                                                   socket_connect_timeout=2)
        REGISTRY.register(SettlementBacklog(backlog_client))
        metrics = serve_metrics(settings.settler)
        try:
            await asyncio.gather(writer.run(stop), records.run(stop))
        finally:
            if metrics is not None:
                with contextlib.suppress(Exception):
                    metrics.close()
            backlog_client.close()
