"""Streamed load: N concurrent SSE streams, each on its own HTTP/1.1 keep-alive connection, one after another for
the phase's duration, with every event's arrival time taken as the bytes are read.

No C load generator reports per-event timings, so this client is Python: a bare :class:`asyncio.Protocol` (no
HTTP library) that timestamps each read, decodes the chunked body and cuts it into events at blank lines. The
mock (:mod:`bench.mock`) starts each event with ``: t=<unix time>`` of the moment it wrote it, so for targets that
pass events through (Envoy, Lime) each event's delivery lag is ``arrival - t``.

Per stream: time to first event (TTFB), total time, the gaps between consecutive events, each event's lag, and
how many events arrived in the same read as the one before (coalesced: what a buffering proxy would cause).
"""

from __future__ import annotations

import asyncio
import functools
import math
import re
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from bench.load import Latency

__all__ = ["StreamPhase", "run_streams"]

_STAMP = re.compile(rb"^: t=([0-9.]+)", re.MULTILINE)


@dataclass
class _Stream:
    sent: float
    status: int = 0
    arrivals: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    coalesced: int = 0
    ended: float = 0.0
    complete: bool = False


class _Client(asyncio.Protocol):
    """One connection: sends a request, reads its streamed answer, and sends the next until told to stop."""

    def __init__(self, request: bytes, deadline: float, done: asyncio.Future[None], results: list[_Stream]) -> None:
        self._request = request
        self._deadline = deadline
        self._done = done
        self._results = results
        self._transport: asyncio.Transport | None = None
        self._reset()

    def _reset(self) -> None:
        self._buffer = b""
        self._head_done = False
        self._chunked = False
        self._remaining = -1  # content-length body still to read
        self._body = b""
        self._stream: _Stream | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._send()

    def _send(self) -> None:
        assert self._transport is not None
        self._reset()
        self._stream = _Stream(time.time())
        self._transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._stream is not None and self._stream.ended == 0.0:
            self._stream.status = self._stream.status or -1
            self._stream.ended = time.time()
            self._results.append(self._stream)
            self._stream = None
        if not self._done.done():
            self._done.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        stream = self._stream
        if stream is None:
            return
        self._buffer += data
        if not self._head_done:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self._buffer[:end].decode("latin-1").lower()
            self._buffer = self._buffer[end + 4:]
            self._head_done = True
            stream.status = int(head.split(" ", 2)[1])
            self._chunked = "transfer-encoding: chunked" in head
            length = re.search(r"content-length:\s*(\d+)", head)
            self._remaining = int(length.group(1)) if length else -1
        finished = self._decode()
        self._events(now)
        if finished:
            stream.ended = now
            stream.complete = True
            self._results.append(stream)
            self._stream = None
            if now < self._deadline and self._transport is not None:
                self._send()
            elif self._transport is not None:
                self._transport.close()

    def _decode(self) -> bool:
        """Move body bytes from the buffer to ``_body``; True once the response is complete."""
        if not self._chunked:
            take = self._buffer if self._remaining < 0 else self._buffer[:self._remaining]
            self._body += take
            self._buffer = self._buffer[len(take):]
            if self._remaining >= 0:
                self._remaining -= len(take)
                return self._remaining == 0
            return False
        while True:
            line_end = self._buffer.find(b"\r\n")
            if line_end < 0:
                return False
            size = int(self._buffer[:line_end].split(b";", 1)[0] or b"0", 16)
            if size == 0:
                return self._buffer.find(b"\r\n", line_end + 2) >= 0
            if len(self._buffer) < line_end + 2 + size + 2:
                return False
            self._body += self._buffer[line_end + 2:line_end + 2 + size]
            self._buffer = self._buffer[line_end + 2 + size + 2:]

    def _events(self, now: float) -> None:
        stream = self._stream
        assert stream is not None
        first_in_read = True
        while True:
            end = self._body.find(b"\n\n")
            if end < 0:
                return
            event, self._body = self._body[:end], self._body[end + 2:]
            if not event.strip():
                continue
            if not first_in_read:
                stream.coalesced += 1
            first_in_read = False
            stream.arrivals.append(now)
            stamp = _STAMP.search(event)
            if stamp is not None:
                stream.lags.append(now - float(stamp.group(1)))


@dataclass(frozen=True)
class StreamPhase:
    concurrency: int
    seconds: float
    streams: int
    failed: int  # not 200, or cut before its end
    events: int
    events_per_stream: float
    ttfb: Latency
    total: Latency
    gap: Latency
    #: Standard deviation of the gaps between consecutive events, ms.
    gap_stdev: float
    #: Delivery lag of each event (arrival - the mock's write), ms; NaN where the target re-encodes events.
    lag: Latency
    #: Events that arrived in the same read as the previous event of their stream.
    coalesced: int

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _request(url: str, headers: Mapping[str, str], body: bytes) -> bytes:
    parts = urlsplit(url)
    lines = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", "Content-Type: application/json",
             "Accept: text/event-stream", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _run(url: str, headers: Mapping[str, str], body: bytes, concurrency: int, seconds: float,
               stagger: float) -> list[_Stream]:
    loop = asyncio.get_running_loop()
    parts = urlsplit(url)
    request = _request(url, headers, body)
    deadline = time.time() + seconds
    results: list[_Stream] = []
    waiters: list[asyncio.Future[None]] = []
    for index in range(concurrency):
        # Spread the starts over one event interval, or every stream's events would be written in the same instant.
        await asyncio.sleep(max(0.0, deadline - seconds + index * stagger / concurrency - time.time()))
        done: asyncio.Future[None] = loop.create_future()
        waiters.append(done)
        await loop.create_connection(functools.partial(_Client, request, deadline, done, results),
                                     parts.hostname or "127.0.0.1", parts.port or 80)
    # Each connection ends after the stream that was running at the deadline; a stuck one is cut a bit later.
    _, pending = await asyncio.wait(waiters, timeout=seconds + 30)
    for future in pending:
        future.cancel()
    return results


def run_streams(url: str, headers: Mapping[str, str], body: bytes, concurrency: int, seconds: float,
                stagger: float = 0.0) -> StreamPhase:
    started = time.time()
    streams = asyncio.run(_run(url, headers, body, concurrency, seconds, stagger))
    elapsed = time.time() - started
    good = [s for s in streams if s.status == 200 and s.complete and s.arrivals]
    ttfb = [(s.arrivals[0] - s.sent) * 1000 for s in good]
    total = [(s.ended - s.sent) * 1000 for s in good]
    gaps = [(b - a) * 1000 for s in good for a, b in zip(s.arrivals, s.arrivals[1:], strict=False)]
    lags = [lag * 1000 for s in good for lag in s.lags]
    events = sum(len(s.arrivals) for s in good)
    return StreamPhase(
        concurrency=concurrency, seconds=elapsed, streams=len(good), failed=len(streams) - len(good), events=events,
        events_per_stream=events / len(good) if good else math.nan,
        ttfb=Latency.of(ttfb), total=Latency.of(total), gap=Latency.of(gaps),
        gap_stdev=statistics.pstdev(gaps) if len(gaps) > 1 else math.nan,
        lag=Latency.of(lags), coalesced=sum(s.coalesced for s in good),
    )
