"""The mock upstream as the benchmark runs it: the answers of Lime's mock (:mod:`lime.devstack.mock_upstream`),
served by a lean HTTP/1.1 server so that the mock is never what limits a measurement.

Lime's mock is an aiohttp application built for tests: it logs every request (headers and body, for tests to read
back), writes an access log line, and plans every answer afresh. Measured on the 2-core machine it costs
~0.27 ms of CPU per chat completion, more than bare Envoy; under a benchmark it would be the bottleneck of the
baseline it is compared with. This server keeps what matters to the gateway and drops the rest:

* The bytes are the mock's own: status line, the provider headers (which Lime must hide), the JSON body or the
  SSE events, all from :func:`lime.devstack.mock_upstream.answers.answer` and
  :func:`lime.devstack.mock_upstream.wire.provider_headers`.
* An answer is planned once per distinct request (path, body, ``x-mock-chunks``) and then replayed: the ids inside
  repeat, which no gateway under test looks at.
* Streams are written one event per write, ``x-mock-delay-ms`` apart, in HTTP/1.1 chunked encoding, exactly as the
  mock paces them (the first event at once, each further one after the delay). Each event starts with an SSE
  comment line ``: t=<unix time>`` of the moment it was written, so a client on the same machine can measure each
  event's delivery lag (SSE clients and Lime's tap ignore comments). Non-streamed answers are not delayed.
* No request log, no access log. ``--workers N`` runs N processes sharing the port (SO_REUSEPORT).

Requests may carry a Content-Length or a chunked body; every response is keep-alive.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import signal
import socket
import time
from collections.abc import Mapping

from lime.devstack.mock_upstream.answers import API_PATHS, InvalidRequest, answer
from lime.devstack.mock_upstream.config import BadOverride, MockConfig, resolve_overrides
from lime.devstack.mock_upstream.wire import JSON_CONTENT_TYPE, SSE_CONTENT_TYPE, provider_headers

__all__ = ["Reply", "main", "plan"]

_CONFIG = MockConfig()
_MAX_HEAD = 64 * 1024


class Reply:
    """A planned answer: the bytes before the first event (or the whole response), the events, the delay."""

    __slots__ = ("delay", "events", "head")

    def __init__(self, head: bytes, events: tuple[bytes, ...] = (), delay: float = 0.0) -> None:
        self.head = head
        self.events = events
        self.delay = delay


def _status(code: int, headers: Mapping[str, str], body: bytes | None) -> bytes:
    lines = [f"HTTP/1.1 {code} {'OK' if code == 200 else 'Error'}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body)}" if body is not None else "Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def _error(code: int, message: str) -> Reply:
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                 "code": None}}).encode()
    return Reply(_status(code, {"Content-Type": JSON_CONTENT_TYPE}, body))


def plan(path: str, headers: Mapping[str, str], body: bytes) -> Reply:
    """The mock's answer to one request, as bytes to write."""
    api = API_PATHS.get(path)
    if api is None:
        return _error(404, f"no route {path}")
    try:
        overrides = resolve_overrides(headers, _CONFIG)
        parsed = json.loads(body)
        if not isinstance(parsed, dict):
            raise InvalidRequest("The request body must be a JSON object.")
        planned = answer(api, parsed, overrides.chunks, overrides.cached_tokens)
    except (BadOverride, InvalidRequest, ValueError) as exc:
        return _error(400, str(exc))
    if planned.body is not None:
        payload = json.dumps(planned.body, separators=(",", ":"), ensure_ascii=False).encode()
        return Reply(_status(200, {"Content-Type": JSON_CONTENT_TYPE, **provider_headers(api, 200)}, payload))
    head = _status(200, {"Content-Type": SSE_CONTENT_TYPE, "Cache-Control": "no-cache",
                         **provider_headers(api, 200)}, None)
    return Reply(head, planned.events, overrides.delay_ms / 1000)


class _Connection(asyncio.Protocol):
    def __init__(self, cache: dict[tuple[str, str, bytes], Reply]) -> None:
        self._cache = cache
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._streaming: asyncio.Task[None] | None = None
        self._waiting: list[Reply] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._streaming is not None:
            self._streaming.cancel()
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            request = self._next_request()
            if request is None:
                return
            reply = self._reply(*request)
            if self._streaming is not None or self._waiting:
                self._waiting.append(reply)  # pipelined behind a stream: answer in order
            else:
                self._send(reply)

    def _next_request(self) -> tuple[str, dict[str, str], bytes] | None:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > _MAX_HEAD and self._transport is not None:
                self._transport.close()
            return None
        lines = self._buffer[:end].decode("latin-1").split("\r\n")
        path = lines[0].split(" ", 2)[1].split("?", 1)[0]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        start = end + 4
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body, consumed = _dechunk(self._buffer, start)
            if body is None:
                return None
            self._buffer = self._buffer[consumed:]
            return path, headers, body
        length = int(headers.get("content-length", "0") or 0)
        if len(self._buffer) < start + length:
            return None
        body = self._buffer[start:start + length]
        self._buffer = self._buffer[start + length:]
        return path, headers, body

    def _reply(self, path: str, headers: dict[str, str], body: bytes) -> Reply:
        key = (path, headers.get("x-mock-chunks", "") + "/" + headers.get("x-mock-delay-ms", ""), body)
        reply = self._cache.get(key)
        if reply is None:
            reply = plan(path, headers, body)
            if len(self._cache) < 10_000:
                self._cache[key] = reply
        return reply

    def _send(self, reply: Reply) -> None:
        transport = self._transport
        if transport is None:
            return
        if not reply.events:
            transport.write(reply.head)
            return
        self._streaming = asyncio.get_running_loop().create_task(self._stream(reply))

    async def _stream(self, reply: Reply) -> None:
        transport = self._transport
        assert transport is not None
        transport.write(reply.head)
        for index, event in enumerate(reply.events):
            if index and reply.delay:
                await asyncio.sleep(reply.delay)
            if transport.is_closing():
                return
            stamped = b": t=%.6f\n%s" % (time.time(), event)
            transport.write(b"%x\r\n%s\r\n" % (len(stamped), stamped))
        transport.write(b"0\r\n\r\n")
        self._streaming = None
        while self._waiting and self._streaming is None:
            self._send(self._waiting.pop(0))


def _dechunk(buffer: bytes, start: int) -> tuple[bytes | None, int]:
    """A chunked body starting at ``start``: (body, end offset), or (None, 0) while it is incomplete."""
    parts: list[bytes] = []
    at = start
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return None, 0
        size = int(buffer[at:line_end].split(b";", 1)[0], 16)
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", line_end)
            if trailer_end < 0:
                return None, 0
            return b"".join(parts), trailer_end + 4
        chunk_start = line_end + 2
        if len(buffer) < chunk_start + size + 2:
            return None, 0
        parts.append(buffer[chunk_start:chunk_start + size])
        at = chunk_start + size + 2


async def _serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    cache: dict[tuple[str, str, bytes], Reply] = {}
    server = await loop.create_server(lambda: _Connection(cache), host, port, reuse_port=True, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def _worker(host: str, port: int) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(host, port))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mock", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    # The other workers are children in this process group: the bench stops (and measures) them as one.
    children = [multiprocessing.get_context("fork").Process(target=_worker, args=(args.host, args.port), daemon=True)
                for _ in range(args.workers - 1)]
    for child in children:
        child.start()
    _worker(args.host, args.port)
    for child in children:
        child.terminate()
        child.join(5)


if __name__ == "__main__":
    main()
