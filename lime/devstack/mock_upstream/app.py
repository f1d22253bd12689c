"""The mock upstream's HTTP server: OpenAI and Anthropic endpoints, plus a request log for tests.

Routes:
    POST   /v1/chat/completions, /v1/completions, /v1/responses, /v1/embeddings (OpenAI),
           /v1/messages, /v1/messages/count_tokens (Anthropic)
    GET, DELETE /v1/responses/{id}; POST /v1/responses/{id}/cancel; GET /v1/responses/{id}/input_items: the
           responses this account stored (stored.py)
    GET    /_mock/requests   the log, oldest first; ``?request_id=...``: only that request's entries;
                             ``?after=n``: only the entries after the first n
    GET    /_mock/requests/count   how many entries the log has: ``{"count": n}``
    DELETE /_mock/requests   empty the log
    GET    /_mock/health     200 once serving

``x-mock-replay: <file>`` answers with a recorded provider body or stream instead (replay.py).

Each group of routes has its module: api_routes.py (the provider endpoints; streaming.py writes their streams,
one SSE event per write, and replay_route.py their replays), stored_routes.py and log_routes.py. wire.py has what
every answer shares (content types, the provider's headers, error bodies); this module builds and runs the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass

from aiohttp import web

from lime.devstack.mock_upstream.answers import API_PATHS
from lime.devstack.mock_upstream.api_routes import api_handler
from lime.devstack.mock_upstream.config import MockConfig
from lime.devstack.mock_upstream.log import RequestLog
from lime.devstack.mock_upstream.log_routes import add_log_routes
from lime.devstack.mock_upstream.state import STATE, MockState
from lime.devstack.mock_upstream.stored import ResponseStore
from lime.devstack.mock_upstream.stored_routes import add_stored_routes

__all__ = ["MockServer", "build_app", "main", "run", "start"]

logger = logging.getLogger(__name__)

# Prompts in load tests can be large; the aiohttp default of 1 MiB would turn them into 413s.
_MAX_BODY_BYTES = 64 * 1024 * 1024


def build_app(config: MockConfig) -> web.Application:
    """The mock as an aiohttp application, with its own empty request log."""
    app = web.Application(client_max_size=_MAX_BODY_BYTES)
    app[STATE] = MockState(config=config, log=RequestLog(), responses=ResponseStore())
    for path, api in API_PATHS.items():
        app.router.add_post(path, api_handler(api))
    add_stored_routes(app.router)
    add_log_routes(app.router)
    return app


@dataclass(frozen=True)
class MockServer:
    """A started mock: where it listens, its log (also at ``GET /_mock/requests``), and how to stop it."""

    runner: web.AppRunner
    host: str
    port: int

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def log(self) -> RequestLog:
        return self.runner.app[STATE].log

    async def close(self) -> None:
        await self.runner.cleanup()


async def start(host: str, port: int, config: MockConfig) -> MockServer:
    """Start serving in the background; ``port=0`` picks a free port, reported in ``MockServer.port``."""
    runner = web.AppRunner(build_app(config))
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = int(runner.addresses[0][1])
    return MockServer(runner=runner, host=host, port=bound_port)


async def run(host: str, port: int, config: MockConfig) -> None:
    """Serve until cancelled."""
    server = await start(host, port, config)
    logger.info(
        "mock upstream listening on %s (chunks=%d, delay_ms=%d)", server.base_url, config.chunks, config.delay_ms
    )
    try:
        await asyncio.Event().wait()
    finally:
        await server.close()


async def _serve_until_terminated(host: str, port: int, config: MockConfig) -> None:
    # SIGTERM (docker stop, process managers) should close the listener cleanly, like Ctrl-C does.
    task = asyncio.current_task()
    if task is not None:
        with contextlib.suppress(NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await run(host, port, config)


def main(host: str, port: int, chunks: int = 8, delay_ms: int = 0) -> None:
    """Blocking entry point for the CLI: serve until Ctrl-C or SIGTERM."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_until_terminated(host, port, MockConfig(chunks=chunks, delay_ms=delay_ms)))
