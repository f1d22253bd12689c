"""HTTP edge of authz: Envoy's HTTP ext_authz call in, :func:`authz.check.authorize` and the hold, the answer out.

The answers' shape (which headers become metadata, how a 5xx refusal travels) is lime/envoy/authz_http.py's.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import psycopg
import redis.asyncio as aioredis
from prometheus_client import Histogram
from psycopg_pool import AsyncConnectionPool

from authz.check import DirectoryAccess, Verified, authorize
from authz.hold import hold
from lime.catalog import Limits
from lime.connections import open_directory, open_pool, open_redis
from lime.directory import Directory
from lime.envoy import authz_http
from lime.http1_server import HttpRequest, serve_http1
from lime.metrics import REQUESTS, rejection_outcome, serve_metrics
from lime.money import response_records
from lime.money.grant import VERIFIED_TENANT_HEADER
from lime.money.response_record import ResponseRecord
from lime.protocols.endpoints import error_protocol
from lime.protocols.error_bodies import render_error
from lime.protocols.errors import LimeError, ServiceUnavailable
from lime.serving import InFlight
from lime.settings import Settings

__all__ = ["AuthorizationService", "serve"]

log = logging.getLogger(__name__)

DECISION_SECONDS = Histogram(
    "lime_authz_decision_seconds", "Time authz takes to decide one request, the reservation included", ["decision"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
_ALLOWED = DECISION_SECONDS.labels("allow")
_DENIED = DECISION_SECONDS.labels("deny")


class AuthorizationService:
    def __init__(self, directory: Directory, redis: aioredis.Redis, pool: AsyncConnectionPool[Any],
                 *, reservation_ttl_seconds: int) -> None:
        self._directory = directory
        self._redis = redis
        self._pool = pool
        self._ttl = reservation_ttl_seconds

    async def check(self, request: HttpRequest) -> bytes:
        """Envoy's question about one client request, answered (lime/envoy/authz_http.py)."""
        started = time.perf_counter()
        headers = request.headers
        request_id = headers.get("x-request-id")
        verified = Verified()
        try:
            decision = await authorize(request.method, request.path, headers, request.body, self._directory,
                                       verified=verified, records=self._record)
            if not isinstance(decision, DirectoryAccess):
                await hold(decision, self._limits(decision.tenant_id), self._redis, self._pool, ttl_seconds=self._ttl)
        except LimeError as error:
            return self._deny(error, request.path, headers, request_id, verified, started)
        except Exception:
            log.exception("authz bug on %s %s (request %s)", request.method, request.path, request_id)
            bug = LimeError("The gateway failed to authorize this request.")
            return self._deny(bug, request.path, headers, request_id, verified, started)
        _ALLOWED.observe(time.perf_counter() - started)
        if isinstance(decision, DirectoryAccess):
            return authz_http.allow({"tenant_id": decision.tenant_id},
                                    headers={VERIFIED_TENANT_HEADER: decision.tenant_id})
        return authz_http.allow(decision.to_metadata())

    async def _record(self, response_id: str) -> ResponseRecord | None:
        try:
            return await response_records.lookup(self._redis, self._pool, response_id)
        except (aioredis.RedisError, OSError, psycopg.Error):
            raise ServiceUnavailable("The gateway cannot look up stored responses right now; nothing was "
                                     "charged. Please retry shortly.") from None

    @staticmethod
    def _deny(error: LimeError, path: str, headers: Mapping[str, str], request_id: str | None, verified: Verified,
              started: float) -> bytes:
        REQUESTS.labels(verified.tenant, verified.model, verified.endpoint, rejection_outcome(error)).inc()
        _DENIED.observe(time.perf_counter() - started)
        return authz_http.refuse(render_error(error, error_protocol(path, headers), request_id))

    def _limits(self, tenant_id: str) -> Limits:
        catalog = self._directory.catalog
        tenant = catalog.tenant(tenant_id)
        return catalog.limits(tenant) if tenant else Limits()


async def serve(settings: Settings) -> None:
    async with contextlib.AsyncExitStack() as stack:
        pool = await stack.enter_async_context(open_pool(settings))
        redis = await stack.enter_async_context(open_redis(settings))
        directory = await stack.enter_async_context(open_directory(settings, pool, redis))
        service = AuthorizationService(directory, redis, pool, reservation_ttl_seconds=settings.reservation_ttl_seconds)
        metrics = serve_metrics(settings.authz_metrics)
        if metrics is not None:
            stack.callback(metrics.close)
        await serve_http1(settings.authz, service.check, name="authz", in_flight=InFlight(),
                          drain_seconds=settings.drain_seconds)
