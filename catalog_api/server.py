"""Running catalog_api: the public directory and the admin API on two ports, until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from catalog_api.admin_api import build_admin_app
from catalog_api.public import build_public_app
from lime.connections import open_directory, open_pool, open_redis
from lime.settings import Settings, SettingsError

__all__ = ["serve"]

log = logging.getLogger(__name__)


async def serve(settings: Settings) -> None:
    if not settings.admin_token:
        raise SettingsError("LIME_ADMIN_TOKEN is not set: the admin API will not run without a token")
    if not settings.catalog_secret:
        raise SettingsError("LIME_CATALOG_SECRET is not set: catalog_api believes the tenant header only from "
                            "Envoy, which proves itself with that secret (the same value in Envoy's environment)")
    async with open_pool(settings) as pool, open_redis(settings) as redis, \
            open_directory(settings, pool, redis) as directory:
        runners = []
        for app, address in ((build_public_app(directory, settings.catalog_secret), settings.catalog),
                             (build_admin_app(pool, redis, settings.admin_token), settings.admin)):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, address.host, address.port).start()
            runners.append(runner)
        log.info("catalog_api on %s, admin API on %s", settings.catalog, settings.admin)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        for runner in runners:
            await runner.cleanup()
