"""One async handler served over HTTP/1.1 until SIGTERM/SIGINT, then drained: authz's transport to Envoy.

Envoy is the only client (its HTTP ext_authz mode, lime/envoy/authz_http.py): it opens a connection per call in
flight, keeps them alive, and sends one whole request at a time on each, with a content-length. That needs no
framework: httptools
(the C parser uvicorn uses) splits the bytes, and a call costs ~0.02 ms of CPU here against ~0.19 ms for a
grpc.aio unary call (docs/performance.md, "authz's transport"). Requests that arrive on one connection before the
previous answer went out (pipelining, which Envoy does not do) are answered in order. When Envoy gives up on a call
(its timeout, or the client went away) it closes the connection, and the call is cancelled: what has not been
reserved yet is not reserved for nobody.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import cast

import httptools

from lime.serving import InFlight, run_until_stopped
from lime.settings import Address

__all__ = ["Handler", "HttpConnection", "HttpRequest", "serve_http1", "start_http1"]

log = logging.getLogger(__name__)

#: Pending connections the kernel keeps for accept (capped by net.core.somaxconn, 4096 on current kernels).
_BACKLOG = 4096
_SERVER_ERROR = b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n"
#: Envoy sends authz at most 32 MiB of body (envoy.yaml's with_request_body); more is not Envoy.
MAX_BODY_BYTES = 64 * 1024 * 1024
_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


@dataclass
class HttpRequest:
    method: str = ""
    path: str = ""
    #: Lower-case names; a repeated header's values joined with "," (as Envoy joins them for gRPC ext_authz).
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


#: Answers one request with the whole HTTP/1.1 response, status line to body.
Handler = Callable[[HttpRequest], Awaitable[bytes]]


class HttpConnection(asyncio.Protocol):
    """httptools' callbacks fill one :class:`HttpRequest`; a finished one joins the connection's queue."""

    def __init__(self, handler: Handler, in_flight: InFlight) -> None:
        self._handler = handler
        self._in_flight = in_flight
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._request = HttpRequest()
        self._url = bytearray()
        self._body = bytearray()
        self._queue: collections.deque[tuple[HttpRequest, bool]] = collections.deque()
        self._answering: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes

    def connection_lost(self, exc: Exception | None) -> None:
        # Envoy gave up on the call (its timeout, or its client left): its answer has nowhere to go, so it stops
        # here. A hold already made when it stops is released by the reaper, like any request nobody settles.
        self._transport = None
        self._queue.clear()
        if self._answering is not None:
            self._answering.cancel()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as error:
            log.warning("closing a connection that sent malformed HTTP: %s", error)
            if self._transport is not None:
                self._transport.write(_BAD_REQUEST)
                self._transport.close()

    # httptools' callbacks, in the order it calls them.
    def on_message_begin(self) -> None:
        self._request = HttpRequest()
        self._url.clear()
        self._body.clear()

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("utf-8", "replace")
        headers = self._request.headers
        headers[key] = f"{headers[key]},{text}" if key in headers else text

    def on_body(self, body: bytes) -> None:
        if len(self._body) + len(body) > MAX_BODY_BYTES:
            raise ValueError(f"a body over {MAX_BODY_BYTES} bytes")  # httptools raises it as a parser error
        self._body += body

    def on_message_complete(self) -> None:
        request = self._request
        request.method = self._parser.get_method().decode("latin-1")
        request.path = self._url.decode("utf-8", "replace")
        request.body = bytes(self._body)
        self._queue.append((request, self._parser.should_keep_alive()))
        if self._answering is None:
            self._answering = asyncio.get_running_loop().create_task(self._answer_queue())

    async def _answer_queue(self) -> None:
        try:
            while self._queue:
                request, keep_alive = self._queue.popleft()
                with self._in_flight:
                    try:
                        answer = await self._handler(request)
                    except Exception:
                        # Answered at once rather than left to Envoy's timeout: a 5xx is an authorization
                        # failure to Envoy, which then fails closed.
                        log.exception("%s %s: the handler failed", request.method, request.path)
                        answer = _SERVER_ERROR
                if self._transport is None:
                    return
                if request.method == "HEAD":
                    # An answer to HEAD has no body (a refusal of one has its headers only, like any HEAD answer).
                    answer = answer[:answer.index(b"\r\n\r\n") + 4]
                self._transport.write(answer)
                if not keep_alive:
                    self._transport.close()
                    return
        finally:
            self._answering = None


async def start_http1(address: Address, handler: Handler, in_flight: InFlight) -> asyncio.Server:
    """Listen at ``address`` and answer each request with ``handler``."""
    loop = asyncio.get_running_loop()

    def connection() -> HttpConnection:
        return HttpConnection(handler, in_flight)

    # Envoy opens a connection per call in flight: a burst of new requests is a burst of connects, which asyncio's
    # default backlog (100) would refuse, and each refusal is a client's 503.
    if address.path is not None:
        return await loop.create_unix_server(connection, address.path, backlog=_BACKLOG)
    return await loop.create_server(connection, address.host, address.port, reuse_address=True, backlog=_BACKLOG)


async def serve_http1(address: Address, handler: Handler, *, name: str, in_flight: InFlight,
                      drain_seconds: float = 10.0) -> None:
    """Serve ``handler`` until a signal, then wait up to ``drain_seconds`` for the calls ``in_flight`` to end."""
    server = await start_http1(address, handler, in_flight)
    log.info("%s listening on %s", name, address)
    await run_until_stopped(name, in_flight, drain_seconds)
    server.close()
