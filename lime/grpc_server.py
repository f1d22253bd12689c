"""Running a grpc.aio server until SIGTERM/SIGINT, then draining in-flight calls."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

import grpc

from lime.metrics import READINESS

__all__ = ["serve_grpc"]

log = logging.getLogger(__name__)

# Envoy keeps a few long-lived HTTP/2 connections per worker and multiplexes every stream over them.
_OPTIONS = [
    ("grpc.max_concurrent_streams", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    # Whole request bodies travel in one message (ext_authz with_request_body, ext_proc BUFFERED); bodies with
    # base64 images are far over gRPC's 4 MiB default. Envoy's own limit (32 MiB) answers 413 before this.
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


async def serve_grpc(address: str, register: Callable[[grpc.aio.Server], None], *, name: str,
                     drain_seconds: float = 10.0) -> None:
    server = grpc.aio.server(options=_OPTIONS)
    register(server)
    server.add_insecure_port(address)
    await server.start()
    log.info("%s listening on %s", name, address)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.create_task(server.wait_for_termination())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    READINESS.drain()  # readiness goes false first: /ready answers 503 while the calls in flight finish
    log.info("%s stopping: draining in-flight calls for up to %.0fs", name, drain_seconds)
    await server.stop(drain_seconds)
    stopper.cancel()
    waiter.cancel()
