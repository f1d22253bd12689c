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
        #: Calls begun since the start: what tells a quiet moment from a busy one that happened to end idle.
        self.started = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def __enter__(self) -> None:
        self.count += 1
        self.started += 1
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

    async def wait_quiet(self, quiet: float, patience: float) -> bool:
        """Wait up to ``patience`` seconds for ``quiet`` seconds in which no call ran or began; whether that
        happened."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        while True:
            if not await self.wait_idle(max(0.0, deadline - loop.time())):
                return False
            begun = self.started
            await asyncio.sleep(max(0.0, min(quiet, deadline - loop.time())))
            if self.count == 0 and self.started == begun:
                return True
            if loop.time() >= deadline:
                return False


async def stop_requested() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


#: How long no call may run or begin before a draining server counts as done. Envoy opens some calls a moment after
#: the request they serve is under way (the stream tap's, at an answer's headers, without waiting for extproc), so a
#: server idle for an instant may still be about to get one; closed then, it would cut that answer.
QUIET_SECONDS = 1.0


async def run_until_stopped(name: str, in_flight: InFlight, drain_seconds: float) -> None:
    """Return once a signal came and then no call ran or began for :data:`QUIET_SECONDS`, or ``drain_seconds``
    passed (then the caller closes its server, and what still runs is cut)."""
    await stop_requested()
    READINESS.drain()
    log.info("%s stopping: draining in-flight calls for up to %.0fs", name, drain_seconds)
    if not await in_flight.wait_quiet(QUIET_SECONDS, drain_seconds):
        log.warning("%s: %d calls still in flight after %.0fs", name, in_flight.count, drain_seconds)
