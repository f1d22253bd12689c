"""Running extproc's gRPC server until SIGTERM/SIGINT, then draining the calls in flight (lime/serving.py).

extproc serves its streams on grpclib (HTTP/2 in Python, over h2):
grpc.aio leaks native memory on every bidirectional stream its client resets before the server's status is out,
and Envoy resets each ext_proc stream when its request ends (grpc/grpc#43360: the ``grpc_op`` array of a batch that
fails or is abandoned is never freed). Measured behind Envoy 1.40 with a server that only acknowledges: ~120 bytes
a stream on grpcio 1.74, 1.80 and 1.85, whatever the event loop or API style (about 1 GiB a day at 100 req/s);
grpclib holds nothing once a stream ends, for about the same CPU (docs/performance.md).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Collection
from typing import Any, Protocol

import grpclib.const
import grpclib.server
import h2.connection

from lime import h2_frame_repr
from lime.batched_writes import BatchingServer
from lime.serving import InFlight, run_until_stopped
from lime.settings import Address

__all__ = ["MessageStream", "Servable", "serve_grpclib"]

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
    await run_until_stopped(name, in_flight, drain_seconds)
    server.close()  # what is still running is cancelled
    await server.wait_closed()
