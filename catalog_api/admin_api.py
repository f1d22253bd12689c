"""The admin API: JSON over HTTP on an internal port that Envoy does not route, behind a bearer token.

It is a thin shell over :mod:`lime.admin`, the same functions the ``lime`` CLI calls.
"""

from __future__ import annotations

import hmac
import json
from datetime import datetime
from importlib.resources import files
from typing import Any

import psycopg
import redis.asyncio as aioredis
import yaml
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from catalog_api.http_metrics import Handler, metered, metrics_page
from catalog_api.public import error_response
from lime import admin
from lime.catalog import Limits
from lime.money import balances
from lime.money.price_sheet import sheet_to_dict
from lime.money.usage_report import parse_since, usage_rows
from lime.protocols.endpoints import Protocol
from lime.protocols.errors import AuthError, BadRequest, LimeError, NotFound

__all__ = ["build_admin_app"]

POOL: web.AppKey[AsyncConnectionPool[Any]] = web.AppKey("pool", AsyncConnectionPool)
REDIS: web.AppKey[aioredis.Redis] = web.AppKey("redis", aioredis.Redis)
TOKEN: web.AppKey[str] = web.AppKey("token", str)



def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(payload, default=_default).encode(),
                        content_type="application/json")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


#: Served without the admin token: probes and Prometheus (the admin port is internal, never behind Envoy).
_OPEN_PATHS = frozenset({"/healthz", "/metrics"})


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        if request.path not in _OPEN_PATHS:
            presented = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(presented.encode(), request.app[TOKEN].encode()):
                raise AuthError("A valid admin token is required (`Authorization: Bearer <token>`).")
        return await handler(request)
    except LimeError as error:
        return error_response(error, Protocol.OPENAI, request)
    except web.HTTPNotFound:
        # aiohttp's own 404 (no route, e.g. an id with a `/` in it) is text; this API's errors are JSON.
        return error_response(NotFound("No such admin route."), Protocol.OPENAI, request)
    except psycopg.DataError as error:
        # A value PostgreSQL cannot hold (a NUL in text, an integer past its column) is the caller's to fix.
        refusal = BadRequest(f"A value in the request cannot be stored: {error.diag.message_primary or error}")
        return error_response(refusal, Protocol.OPENAI, request)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise BadRequest("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


def _field(body: dict[str, Any], name: str, kind: type = str, *, required: bool = True) -> Any:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise BadRequest(f"`{name}` must be a {kind.__name__}.", param=name)
    return value


def _strings(body: dict[str, Any], name: str, *, required: bool = True) -> list[str] | None:
    """A list of strings: a number is not a model id (it would have named the model spelt like it)."""
    value: list[Any] | None = _field(body, name, list, required=required)
    if value is not None and not all(isinstance(item, str) for item in value):
        raise BadRequest(f"`{name}` must be a list of strings.", param=name)
    return value


async def list_things(request: web.Request) -> web.Response:
    table = request.match_info["table"]
    async with request.app[POOL].connection() as conn:
        if table == "keys":
            return _json({"data": await admin.list_keys(conn, request.query.get("tenant"))})
        if table not in ("upstreams", "models", "packages", "brands", "tenants"):
            raise NotFound(f"No such admin collection: {table}.")
        return _json({"data": await admin.list_table(conn, table)})


async def create_upstream(request: web.Request) -> web.Response:
    body = await _body(request)
    async with request.app[POOL].connection() as conn:
        await admin.add_upstream(conn, _field(body, "id"), _field(body, "protocol"),
                                 _field(body, "description", required=False) or "")
    return _json({"id": body["id"]}, 201)


async def create_model(request: web.Request) -> web.Response:
    body = await _body(request)
    async with request.app[POOL].connection() as conn:
        await admin.add_model(
            conn, _field(body, "id"), upstream_id=_field(body, "upstream"),
            upstream_model=_field(body, "upstream_model"), kind=_field(body, "kind"),
            display_name=_field(body, "display_name", required=False) or "",
            owned_by=_field(body, "owned_by", required=False) or "lime",
            input_price=_field(body, "input_price", int, required=False) or 0,
            output_price=_field(body, "output_price", int, required=False) or 0,
            cached_input_price=_field(body, "cached_input_price", int, required=False) or 0,
            price_sheet=_field(body, "price_sheet", dict, required=False),
        )
    return _json({"id": body["id"]}, 201)


async def update_model_prices(request: web.Request) -> web.Response:
    """Change a model's prices: each base price given replaces its own, a ``price_sheet`` given replaces every
    other part (the sheet's dictionary form, as listed). Requests in flight keep the prices they were held at."""
    body = await _body(request)
    base = {name: _field(body, name, int, required=False)
            for name in ("input_price", "output_price", "cached_input_price")}
    extras = _field(body, "price_sheet", dict, required=False)
    async with request.app[POOL].connection() as conn:
        sheet = await admin.update_prices(conn, request.match_info["model_id"], base, extras)
    return _json({"id": request.match_info["model_id"], "input_price": sheet.base.input,
                  "output_price": sheet.base.output, "cached_input_price": sheet.base.cached_input,
                  "price_sheet": sheet_to_dict(sheet)})


async def create_package(request: web.Request) -> web.Response:
    body = await _body(request)
    models = _strings(body, "models") or []
    # Only a missing cap means the default: 0 is refused (by the table's CHECK), not silently made 4096.
    default_cap = _field(body, "default_max_output_tokens", int, required=False)
    overdraft_limit = _field(body, "overdraft_limit", int, required=False)
    limits = Limits(rpm=_field(body, "rpm", int, required=False), tpm=_field(body, "tpm", int, required=False),
                    concurrency=_field(body, "concurrency", int, required=False),
                    default_max_output_tokens=Limits.default_max_output_tokens if default_cap is None else default_cap,
                    overdraft_limit=overdraft_limit or 0)
    async with request.app[POOL].connection() as conn:
        await admin.create_package(conn, _field(body, "id"), _field(body, "name"), models, limits)
    return _json({"id": body["id"]}, 201)


async def create_brand(request: web.Request) -> web.Response:
    body = await _body(request)
    models = _strings(body, "models", required=False)
    async with request.app[POOL].connection() as conn:
        await admin.create_brand(conn, _field(body, "id"), _field(body, "name"), models)
    return _json({"id": body["id"]}, 201)


async def create_tenant(request: web.Request) -> web.Response:
    body = await _body(request)
    async with request.app[POOL].connection() as conn:
        await admin.create_tenant(conn, _field(body, "id"), _field(body, "name"),
                                  package_id=_field(body, "package", required=False),
                                  brand_id=_field(body, "brand", required=False))
    return _json({"id": body["id"]}, 201)


async def create_key(request: web.Request) -> web.Response:
    body = await _body(request) if request.can_read_body else {}
    async with request.app[POOL].connection() as conn:
        key = await admin.create_key(conn, request.match_info["tenant_id"],
                                     name=_field(body, "name", required=False) or "")
    return _json({"id": key.id, "key": key.secret, "display_prefix": key.display_prefix}, 201)


async def revoke_key(request: web.Request) -> web.Response:
    async with request.app[POOL].connection() as conn:
        await admin.revoke_key(conn, request.app[REDIS], request.match_info["key_id"])
    return _json({"id": request.match_info["key_id"], "status": "revoked"})


async def grant_points(request: web.Request) -> web.Response:
    body = await _body(request)
    tenant_id = request.match_info["tenant_id"]
    amount = _field(body, "amount", int)
    async with request.app[POOL].connection() as conn:
        points = await balances.grant_points(conn, request.app[REDIS], tenant_id, amount,
                                             _field(body, "note", required=False) or "")
    return _json({"tenant": tenant_id, "granted": amount, "balance": points})


async def balance(request: web.Request) -> web.Response:
    async with request.app[POOL].connection() as conn:
        return _json(await balances.balance_view(conn, request.app[REDIS], request.match_info["tenant_id"]))


async def usage(request: web.Request) -> web.Response:
    async with request.app[POOL].connection() as conn:
        rows = await usage_rows(conn, request.query.get("tenant"), parse_since(request.query.get("since")))
    return _json({"data": rows})


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


#: This API's OpenAPI document (``catalog_api/admin_openapi.yaml``), as JSON.
_OPENAPI = json.dumps(yaml.safe_load(files("catalog_api").joinpath("admin_openapi.yaml").read_text())).encode()


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=_OPENAPI, content_type="application/json")


def build_admin_app(pool: AsyncConnectionPool[Any], redis: aioredis.Redis, token: str) -> web.Application:
    app = web.Application(middlewares=[metered("admin"), _guard])
    app[POOL] = pool
    app[REDIS] = redis
    app[TOKEN] = token
    app.router.add_get("/healthz", health)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/admin/openapi.json", openapi)
    app.router.add_get("/admin/usage", usage)
    app.router.add_get("/admin/{table}", list_things)
    app.router.add_get("/admin/tenants/{tenant_id}/balance", balance)
    app.router.add_post("/admin/tenants/{tenant_id}/points", grant_points)
    app.router.add_post("/admin/upstreams", create_upstream)
    app.router.add_post("/admin/models", create_model)
    app.router.add_patch("/admin/models/{model_id}", update_model_prices)
    app.router.add_post("/admin/packages", create_package)
    app.router.add_post("/admin/brands", create_brand)
    app.router.add_post("/admin/tenants", create_tenant)
    app.router.add_post("/admin/tenants/{tenant_id}/keys", create_key)
    app.router.add_post("/admin/keys/{key_id}/revoke", revoke_key)
    return app
