"""Writes to one connection coalesced per event-loop turn, for grpclib's HTTP/2 server.

grpclib hands every HTTP/2 frame to the transport at once: a window update per message received, then the
headers, each message and the trailers of an answer, each its own ``write`` system call, each its own read and
wake-up in Envoy. Frames written during one turn of the event loop belong together; sent as one write they cost
one system call here and one read in Envoy.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import grpclib.server
from grpclib.protocol import H2Protocol

__all__ = ["BatchingServer"]


class BatchedWrites:
    """An asyncio transport whose writes wait for the end of the current loop turn and go out together."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._pending: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _BatchingProtocol(H2Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(cast(asyncio.Transport, BatchedWrites(cast(asyncio.Transport, transport))))


class BatchingServer(grpclib.server.Server):
    """grpclib's server, its connections writing through :class:`BatchedWrites`."""

    def _protocol_factory(self) -> H2Protocol:
        plain = super()._protocol_factory()
        return _BatchingProtocol(plain.handler, plain.config, plain.h2_config)
