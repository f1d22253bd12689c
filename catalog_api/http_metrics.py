"""Request metrics of catalog_api's two apps, and the ``/metrics`` page the admin port serves.

The route label is the matched route's template (``/v1/models/{model_id}``), never the raw path, so a client
asking for a million made-up model ids makes one series, not a million.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

__all__ = ["metered", "metrics_page"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REQUESTS = Counter("lime_http_requests", "catalog_api requests by app, route template and status",
                   ["app", "route", "status"])
DURATION = Histogram("lime_http_request_duration_seconds", "catalog_api request duration", ["app", "route"],
                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def metered(app: str) -> Any:
    """A middleware (aiohttp's own type for it is not public) that counts each request of ``app``; put it first
    so it sees the final status."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as error:
            status = error.status
            raise
        finally:
            route = _route(request)
            REQUESTS.labels(app, route, str(status)).inc()
            DURATION.labels(app, route).observe(time.perf_counter() - started)

    return middleware


async def metrics_page(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
