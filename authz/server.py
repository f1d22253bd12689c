"""gRPC edge of authz: decode the CheckRequest, call :func:`authz.check.authorize`, encode the answer."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import grpc
import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool

from authz.check import DirectoryAccess, authorize
from authz.hold import hold
from lime.catalog import Limits
from lime.connections import open_directory, open_pool, open_redis
from lime.directory import Directory
from lime.endpoints import error_protocol
from lime.envoy_api import CheckRequestView, auth_grpc, check_allow, check_deny
from lime.error_bodies import render_error
from lime.errors import LimeError
from lime.grant import VERIFIED_TENANT_HEADER
from lime.grpc_server import serve_grpc
from lime.settings import Settings

__all__ = ["AuthorizationService", "serve"]

log = logging.getLogger(__name__)


class AuthorizationService(auth_grpc.AuthorizationServicer):  # type: ignore[misc]
    def __init__(self, directory: Directory, redis: aioredis.Redis, pool: AsyncConnectionPool[Any],
                 *, reservation_ttl_seconds: int) -> None:
        self._directory = directory
        self._redis = redis
        self._pool = pool
        self._ttl = reservation_ttl_seconds

    async def Check(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        view = CheckRequestView.of(request)
        request_id = view.headers.get("x-request-id")
        try:
            decision = await authorize(view.method, view.path, view.headers, view.body, self._directory)
            if not isinstance(decision, DirectoryAccess):
                await hold(decision, self._limits(decision.tenant_id), self._redis, self._pool, ttl_seconds=self._ttl)
        except LimeError as error:
            return check_deny(render_error(error, error_protocol(view.path, view.headers), request_id))
        except Exception:
            log.exception("authz bug on %s %s (request %s)", view.method, view.path, request_id)
            bug = LimeError("The gateway failed to authorize this request.")
            return check_deny(render_error(bug, error_protocol(view.path, view.headers), request_id))
        if isinstance(decision, DirectoryAccess):
            return check_allow({"tenant_id": decision.tenant_id},
                               headers={VERIFIED_TENANT_HEADER: decision.tenant_id})
        return check_allow(decision.to_metadata())

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
        await serve_grpc(
            str(settings.authz),
            lambda server: auth_grpc.add_AuthorizationServicer_to_server(service, server),
            name="authz",
        )
