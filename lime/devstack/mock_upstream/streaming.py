"""Writing a stream as ``x-mock-*`` asks: one SSE event per write, paced, and cut, errored, made invalid or stalled
partway through.

Events are written ``delay_ms`` apart, so a client behind a proxy can tell incremental delivery from a buffered body.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from lime.devstack.mock_upstream.answers import Api
from lime.devstack.mock_upstream.config import MAX_DELAY_MS, Overrides
from lime.devstack.mock_upstream.log import LoggedRequest
from lime.devstack.mock_upstream.packing import Packer
from lime.devstack.mock_upstream.wire import SSE_CONTENT_TYPE, provider_headers

__all__ = ["INVALID_EVENT", "in_stream_error", "stall", "stream"]

logger = logging.getLogger(__name__)

#: The event an invalid stream ends with: its data is not JSON (x-mock-invalid-body).
INVALID_EVENT = b'data: {"choices": [{"delta": {"content": "cut of\n\n'


def in_stream_error(api: Api) -> bytes:
    """The error event a provider sends inside a 200 stream (fixtures: anthropic-messages-stream-error.sse)."""
    if api.is_anthropic:
        return (b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
                b'"message":"Overloaded"}}\n\n')
    return (b'data: {"error":{"message":"The server had an error while processing your request.",'
            b'"type":"server_error","param":null,"code":null}}\n\n')


async def stream(request: web.Request, entry: LoggedRequest, api: Api, events: tuple[bytes, ...],
                 overrides: Overrides) -> web.StreamResponse:
    packer = Packer(overrides.content_encoding)
    response = web.StreamResponse(status=200, headers={
        "Content-Type": SSE_CONTENT_TYPE, "Cache-Control": "no-cache", **provider_headers(api, 200),
        **packer.headers})
    await response.prepare(request)
    cut = next((after for after in (overrides.drop_after, overrides.error_after, overrides.invalid_after,
                                    overrides.stall_after) if after is not None), None)
    try:
        for index, event in enumerate(events):
            if index == cut:
                break
            if index and overrides.delay_ms:
                await asyncio.sleep(overrides.delay_ms / 1000)
            if overrides.tail_delay_ms and index == len(events) - 2:
                await asyncio.sleep(overrides.tail_delay_ms / 1000)
            if overrides.split_ms is not None:
                half = len(event) // 2
                await response.write(packer.pack(event[:half]))
                await asyncio.sleep(overrides.split_ms / 1000)
                event = event[half:]
            await response.write(packer.pack(event))
        if cut is not None and cut < len(events):
            if overrides.drop_after is not None:
                # No terminating chunk, no final event: the connection just ends, as when an upstream crashes.
                if request.transport is not None:
                    request.transport.abort()
                logger.info("dropped %s stream after %d events, as asked", request.path, cut)
                return response
            if overrides.stall_after is not None:
                await stall(request)
                return response
            await response.write(packer.pack(
                in_stream_error(api) if overrides.error_after is not None else INVALID_EVENT))
        await response.write(packer.end())
        await response.write_eof()
    except ConnectionResetError:
        # The client hung up mid-stream; the entry stays incomplete, which is what the test wants to see.
        logger.info("client left %s stream after partial delivery", request.path)
        return response
    entry["completed"] = cut is None or cut >= len(events)
    return response


async def stall(request: web.Request) -> None:
    """Send nothing, with the connection open, until the client closes it (or MAX_DELAY_MS is up)."""
    logger.info("stalling %s, as asked", request.path)
    for _ in range(MAX_DELAY_MS // 100):
        if request.transport is None or request.transport.is_closing():
            return
        await asyncio.sleep(0.1)
