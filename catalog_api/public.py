"""``GET /v1/models`` and ``GET /v1/models/{id}``, reached only through Envoy after authz.

authz has verified the key and put the tenant in ``x-lime-verified-tenant`` (Envoy strips that header from
client requests first). That header is believed only from Envoy: Envoy's route here adds the deployment's catalog
secret (``x-lime-catalog-secret``, also stripped from clients), and a request without it is refused with a 401
before any tenant header is read, so reaching this port is not enough to read a tenant's directory. The answer is
in Anthropic's format when the request carries ``anthropic-version``.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from aiohttp import web

from catalog_api.directory_views import anthropic_model, anthropic_page, openai_list, openai_model
from catalog_api.http_metrics import Handler, metered
from lime.directory import Directory
from lime.money.grant import VERIFIED_TENANT_HEADER
from lime.protocols.endpoints import Protocol
from lime.protocols.error_bodies import render_error
from lime.protocols.errors import AuthError, LimeError, NotFound
from lime.settings import CATALOG_SECRET_HEADER

__all__ = ["build_public_app", "error_response"]

DIRECTORY: web.AppKey[Directory] = web.AppKey("directory", Directory)
SECRET: web.AppKey[bytes] = web.AppKey("catalog_secret", bytes)
#: Served to anyone who reaches the port: the readiness probe.
_OPEN_PATHS = frozenset({"/healthz"})


def came_through_envoy(presented: str | None, secret: bytes) -> bool:
    """Whether a request carries the catalog secret; constant-time, so timing tells nothing of how much matched."""
    return presented is not None and hmac.compare_digest(presented.encode(), secret)


def error_response(error: LimeError, protocol: Protocol, request: web.Request) -> web.Response:
    reply = render_error(error, protocol, request.headers.get("x-request-id"))
    return web.Response(status=reply.status, body=reply.body, headers=dict(reply.headers))


def _json(payload: dict[str, Any]) -> web.Response:
    return web.Response(body=json.dumps(payload).encode(), content_type="application/json")


def _protocol(request: web.Request) -> Protocol:
    return Protocol.ANTHROPIC if "anthropic-version" in request.headers else Protocol.OPENAI


async def _visible(request: web.Request) -> list[Any]:
    directory = request.app[DIRECTORY]
    tenant_id = request.headers.get(VERIFIED_TENANT_HEADER)
    tenant = await directory.tenant(tenant_id) if tenant_id else None
    if tenant is None:
        raise AuthError("The request was not authorized by the gateway.")
    return directory.catalog.visible_models(tenant)


async def list_models(request: web.Request) -> web.Response:
    models = await _visible(request)
    if _protocol(request) is Protocol.ANTHROPIC:
        query = request.query
        return _json(anthropic_page(models, limit=query.get("limit"), after_id=query.get("after_id"),
                                    before_id=query.get("before_id")))
    return _json(openai_list(models))


async def get_model(request: web.Request) -> web.Response:
    model_id = request.match_info["model_id"]
    for model in await _visible(request):
        if model.id == model_id:
            return _json(anthropic_model(model) if _protocol(request) is Protocol.ANTHROPIC else openai_model(model))
    raise NotFound(f"The model `{model_id}` does not exist or you do not have access to it.",
                   param="model", code="model_not_found")


@web.middleware
async def _errors_in_the_clients_protocol(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        if request.path not in _OPEN_PATHS and not came_through_envoy(
                request.headers.get(CATALOG_SECRET_HEADER), request.app[SECRET]):
            raise AuthError("The request was not authorized by the gateway.")
        return await handler(request)
    except LimeError as error:
        return error_response(error, _protocol(request), request)


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def build_public_app(directory: Directory, catalog_secret: str) -> web.Application:
    if not catalog_secret:
        raise ValueError("catalog_api needs the catalog secret Envoy presents")
    app = web.Application(middlewares=[metered("directory"), _errors_in_the_clients_protocol])
    app[DIRECTORY] = directory
    app[SECRET] = catalog_secret.encode()
    app.router.add_get("/v1/models", list_models)
    # Model ids may contain slashes (e.g. `org/model`).
    app.router.add_get("/v1/models/{model_id:.+}", get_model)
    app.router.add_get("/healthz", health)
    return app
