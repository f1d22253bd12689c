"""Running extproc's gRPC server until SIGTERM/SIGINT, then draining the calls in flight.

extproc serves its streams on grpclib (HTTP/2 in Python, over h2):
grpc.aio leaks native memory on every bidirectional stream its client resets before the server's status is out,
and Envoy resets each ext_proc stream when its request ends (grpc/grpc#43360: the ``grpc_op`` array of a batch that
fails or is abandoned is never freed). Measured behind Envoy 1.40 with a server that only acknowledges: ~120 bytes
a stream on grpcio 1.74, 1.80 and 1.85, whatever the event loop or API style (about 1 GiB a day at 100 req/s);
grpclib holds nothing once a stream ends, for about the same CPU (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Collection
from types import TracebackType
from typing import Any, Protocol

import grpclib.const
import grpclib.server
import h2.connection

from lime import h2_frame_repr
from lime.batched_writes import BatchingServer
from lime.metrics import READINESS
from lime.settings import Address

__all__ = ["InFlight", "MessageStream", "Servable", "serve_grpclib", "stop_requested"]

log = logging.getLogger(__name__)

#: How many closed streams h2 remembers per connection, to tell a late frame on one from a protocol error. Its
#: default, 65,536, is ~6 MiB a connection once reached: memory that grows for the first tens of thousands of
#: requests and looks like a leak. A stream's last frame (Envoy's RST_STREAM after extproc's trailers) arrives
#: right after it closes; 4,096 keeps a wide margin for ~0.4 MiB.
H2_CLOSED_STREAMS_KEPT = 4096


class MessageStream(Protocol):
    """A streaming call as a grpclib handler sees it (its server stream; a fake in tests and the work budget)."""

    def __aiter__(self) -> AsyncIterator[Any]: ...

    async def send_message(self, message: Any) -> None: ...


class Servable(Protocol):
    """A grpclib service: its methods by path (``/package.Service/Method``)."""

    def __mapping__(self) -> dict[str, grpclib.const.Handler]: ...


class InFlight:
    """The calls a grpclib service is handling now (``with in_flight:`` around each), for a graceful stop."""

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


async def serve_grpclib(address: Address, handlers: Collection[Servable], *, name: str, in_flight: InFlight,
                        drain_seconds: float = 10.0) -> None:
    """Serve ``handlers`` until a signal, then wait up to ``drain_seconds`` for the calls ``in_flight`` to end.

    While draining, the server still takes new calls: the Envoy beside it is draining too, and a request refused
    here would be a client's error. What is still running at the deadline is cancelled."""
    # grpclib logs each stream its client reset at INFO: for extproc, every client that leaves mid-answer (counted
    # in lime_requests_total{outcome="client_cancelled"}, not worth a line each).
    logging.getLogger("grpclib.server").setLevel(logging.WARNING)
    # A documented class attribute of h2's, read when grpclib creates a connection; this process serves no other.
    h2.connection.H2Connection.MAX_CLOSED_STREAMS = H2_CLOSED_STREAMS_KEPT
    h2_frame_repr.install()
    server = BatchingServer(handlers)
    if address.path is not None:
        await server.start(path=address.path)
    else:
        await server.start(address.host, address.port)
    log.info("%s listening on %s", name, address)
    await stop_requested()
    READINESS.drain()
    log.info("%s stopping: draining in-flight calls for up to %.0fs", name, drain_seconds)
    if not await in_flight.wait_idle(drain_seconds):
        log.warning("%s: %d calls still in flight after %.0fs; cancelling them", name, in_flight.count, drain_seconds)
    server.close()
    await server.wait_closed()
