"""The settler service: one settlement writer (and reaper) with its metrics on ``LIME_SETTLER_ADDR``."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from prometheus_client import start_http_server

from lime.connections import open_pool, open_redis
from lime.settings import Settings
from lime.settlement_writer import SettlementWriter

__all__ = ["serve"]


async def serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with open_pool(settings) as pool, open_redis(settings) as redis:
        writer = SettlementWriter(pool, redis, reap_every=min(5.0, settings.reservation_ttl_seconds / 2))
        await writer.ensure_group()
        server, thread = start_http_server(settings.settler.port, addr=settings.settler.host)
        try:
            await writer.run(stop)
        finally:
            with contextlib.suppress(Exception):
                server.shutdown()
                thread.join(timeout=2)
