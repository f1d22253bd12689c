"""Running a service until SIGTERM/SIGINT, then draining its calls in flight: what extproc's gRPC server
(lime/grpc_server.py) and authz's HTTP server (lime/http1_server.py) share.

While draining, a server still takes new calls: the Envoy beside it is draining too, and a request refused there
would be a client's error. Readiness goes false first, so /ready answers 503 while the calls in flight finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from types import TracebackType

from lime.metrics import READINESS

__all__ = ["InFlight", "run_until_stopped", "stop_requested"]

log = logging.getLogger(__name__)


class InFlight:
    """The calls a service is handling now (``with in_flight:`` around each), for a graceful stop."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def __enter__(self) -> None:
        self.count += 1
        self._idle.clear()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.count -= 1
        if not self.count:
            self._idle.set()

    async def wait_idle(self, patience: float) -> bool:
        """Wait up to ``patience`` seconds for no call to be in flight; whether that happened."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), patience)
        return self._idle.is_set()


async def stop_requested() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def run_until_stopped(name: str, in_flight: InFlight, drain_seconds: float) -> None:
    """Return once a signal came and the calls ``in_flight`` ended, or ``drain_seconds`` passed (then the caller
    closes its server, and what still runs is cut)."""
    await stop_requested()
    READINESS.drain()
    log.info("%s stopping: draining in-flight calls for up to %.0fs", name, drain_seconds)
    if not await in_flight.wait_idle(drain_seconds):
        log.warning("%s: %d calls still in flight after %.0fs", name, in_flight.count, drain_seconds)
