"""The mock's own routes under /_mock/: its request log, for tests to read back and empty, and its health."""

from __future__ import annotations

from aiohttp import web

from lime.devstack.mock_upstream.state import STATE
from lime.devstack.mock_upstream.wire import json_response

__all__ = ["add_log_routes"]


def add_log_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/_mock/requests", _list_requests)
    router.add_get("/_mock/requests/count", _count_requests)
    router.add_delete("/_mock/requests", _clear_requests)
    router.add_get("/_mock/health", _health)


async def _list_requests(request: web.Request) -> web.Response:
    entries = request.app[STATE].log.entries()
    if "request_id" in request.query:
        # A test after thousands of requests (some with megabyte bodies) wants one: not the whole log in JSON.
        entries = [entry for entry in entries if entry["request_id"] == request.query["request_id"]]
    if request.query.get("after", "").isdigit():
        entries = entries[int(request.query["after"]):]
    return json_response(200, entries)


async def _count_requests(request: web.Request) -> web.Response:
    return json_response(200, {"count": len(request.app[STATE].log)})


async def _clear_requests(request: web.Request) -> web.Response:
    return json_response(200, {"cleared": request.app[STATE].log.clear()})


async def _health(_: web.Request) -> web.Response:
    return json_response(200, {"status": "ok"})
