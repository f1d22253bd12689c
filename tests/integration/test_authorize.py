"""authz's decision on real stores: what a client is told, in the order the design fixes (path, credentials,
tenant, model), for keys and tenants created through lime.admin."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool

from authz.check import DirectoryAccess, authorize
from lime import admin
from lime.directory import Directory
from lime.keys import generate_key
from lime.money.grant import Grant
from lime.money.price_sheet import GrantPrices, PriceSheet, encode_prices
from lime.protocols.errors import AuthError, LimeError, MethodNotAllowed, NotFound, PermissionDenied, UnsupportedModel
from lime.protocols.input_estimate import estimate_input
from tests.integration.conftest import Clock, Seeded, seed_catalog, uid

Conn = psycopg.AsyncConnection[Any]
CHAT = "/v1/chat/completions"


@pytest.fixture
async def seeded(conn: Conn) -> Seeded:
    return await seed_catalog(conn)


@pytest.fixture
async def key(conn: Conn, seeded: Seeded) -> str:
    return (await admin.create_key(conn, seeded.tenant_id)).secret


@pytest.fixture
async def directory(seeded: Seeded, migrated_database: str, pool: AsyncConnectionPool[Any],
                    redis_client: aioredis.Redis, clock: Clock) -> AsyncIterator[Directory]:
    directory = Directory(migrated_database, pool, redis_client, clock=clock)
    await directory.reload()
    yield directory


@pytest.fixture
def clock() -> Clock:
    return Clock()


def headers(key: str | None, tenant: str | None, **extra: str) -> dict[str, str]:
    out = dict(extra)
    if key is not None:
        out["authorization"] = f"Bearer {key}"
    if tenant is not None:
        out["x-lime-tenant-id"] = tenant
    return out


def body(model: str, **fields: Any) -> bytes:
    return json.dumps({"model": model, **fields}).encode()


async def refused(error: type[LimeError], *args: Any, **kwargs: Any) -> LimeError:
    with pytest.raises(error) as caught:
        await authorize(*args, **kwargs)
    return caught.value


# --- path and method: before anything else ---------------------------------------------------------------------


async def test_an_unknown_path_is_404_even_without_a_key(directory: Directory) -> None:
    error = await refused(NotFound, "POST", "/v1/nope", {}, b"", directory)
    assert (error.status, error.openai_code) == (404, "unknown_url")


async def test_a_wrong_method_is_405_even_without_a_key(directory: Directory) -> None:
    error = await refused(MethodNotAllowed, "GET", CHAT, {}, b"", directory)
    assert error.status == 405


# --- credentials: 401 -----------------------------------------------------------------------------------------


async def test_no_key_is_401(directory: Directory, seeded: Seeded) -> None:
    error = await refused(AuthError, "POST", CHAT, headers(None, seeded.tenant_id), body(seeded.chat), directory)
    assert (error.status, error.openai_code) == (401, "missing_api_key")


async def test_no_tenant_is_401(directory: Directory, key: str, seeded: Seeded) -> None:
    error = await refused(AuthError, "POST", CHAT, headers(key, None), body(seeded.chat), directory)
    assert (error.status, error.openai_code) == (401, "missing_tenant")


async def test_an_unknown_key_is_401(directory: Directory, seeded: Seeded) -> None:
    error = await refused(AuthError, "POST", CHAT, headers(generate_key().secret, seeded.tenant_id),
                          body(seeded.chat), directory)
    assert (error.status, error.openai_code) == (401, "invalid_api_key")


async def test_a_bad_key_says_nothing_about_the_tenant(directory: Directory) -> None:
    error = await refused(AuthError, "POST", CHAT, headers(generate_key().secret, "no-such-tenant"),
                          body("any-model"), directory)
    assert (error.status, error.openai_code) == (401, "invalid_api_key")


async def test_a_revoked_key_is_401_within_a_second(directory: Directory, conn: Conn, redis_client: aioredis.Redis,
                                                    seeded: Seeded, clock: Clock) -> None:
    new = await admin.create_key(conn, seeded.tenant_id)
    request = ("POST", CHAT, headers(new.secret, seeded.tenant_id), body(seeded.chat), directory)
    assert isinstance(await authorize(*request), Grant)  # works, and is now cached

    await admin.revoke_key(conn, redis_client, new.id)
    clock.pass_key_memory()

    error = await refused(AuthError, *request)
    assert (error.status, error.openai_code) == (401, "revoked_api_key")


async def test_an_expired_key_is_401(directory: Directory, conn: Conn, seeded: Seeded) -> None:
    expired = await admin.create_key(conn, seeded.tenant_id, expires_at=datetime.now(UTC) - timedelta(minutes=1))
    error = await refused(AuthError, "POST", CHAT, headers(expired.secret, seeded.tenant_id), body(seeded.chat),
                          directory)
    assert (error.status, error.openai_code) == (401, "expired_api_key")


async def test_a_key_that_expires_later_works(directory: Directory, conn: Conn, seeded: Seeded) -> None:
    later = await admin.create_key(conn, seeded.tenant_id, expires_at=datetime.now(UTC) + timedelta(days=1))
    grant = await authorize("POST", CHAT, headers(later.secret, seeded.tenant_id), body(seeded.chat), directory)
    assert isinstance(grant, Grant)


async def test_credentials_are_checked_before_the_body(directory: Directory, seeded: Seeded) -> None:
    error = await refused(AuthError, "POST", CHAT, headers(generate_key().secret, seeded.tenant_id), b"not json",
                          directory)
    assert error.status == 401


# --- tenant: 403 ----------------------------------------------------------------------------------------------


async def test_a_key_of_another_tenant_is_403(directory: Directory, conn: Conn, key: str, seeded: Seeded) -> None:
    other = uid("other")
    await admin.create_tenant(conn, other, "Other", package_id=seeded.package_id)
    error = await refused(PermissionDenied, "POST", CHAT, headers(key, other), body(seeded.chat), directory)
    assert (error.status, error.openai_code) == (403, "tenant_mismatch")


async def test_a_suspended_tenant_is_403(directory: Directory, conn: Conn, key: str, seeded: Seeded) -> None:
    await conn.execute("UPDATE tenants SET status = 'suspended' WHERE id = %s", (seeded.tenant_id,))
    await directory.reload()

    for path, payload in ((CHAT, body(seeded.chat)), ("/v1/models", b"")):
        method = "GET" if path == "/v1/models" else "POST"
        error = await refused(PermissionDenied, method, path, headers(key, seeded.tenant_id), payload, directory)
        assert (error.status, error.openai_code) == (403, "tenant_suspended")


# --- the model: 404 / 400 -------------------------------------------------------------------------------------


async def test_a_model_outside_the_package_looks_exactly_like_an_unknown_one(
        directory: Directory, key: str, seeded: Seeded) -> None:
    outside = await refused(NotFound, "POST", CHAT, headers(key, seeded.tenant_id), body(seeded.outside), directory)
    unknown = await refused(NotFound, "POST", CHAT, headers(key, seeded.tenant_id), body("no-such-model"), directory)

    assert (outside.status, outside.openai_code) == (404, "model_not_found")
    assert (unknown.status, unknown.openai_code) == (404, "model_not_found")
    assert outside.message.replace(seeded.outside, "X") == unknown.message.replace("no-such-model", "X")


async def test_a_brand_narrows_what_the_package_grants(directory: Directory, conn: Conn, seeded: Seeded) -> None:
    brand, tenant = uid("brand"), uid("branded")
    await admin.create_brand(conn, brand, "Brand", [seeded.embed])
    await admin.create_tenant(conn, tenant, "Branded", package_id=seeded.package_id, brand_id=brand)
    branded_key = (await admin.create_key(conn, tenant)).secret
    await directory.reload()

    error = await refused(NotFound, "POST", CHAT, headers(branded_key, tenant), body(seeded.chat), directory)
    assert error.openai_code == "model_not_found"
    grant = await authorize("POST", "/v1/embeddings", headers(branded_key, tenant), body(seeded.embed), directory)
    assert isinstance(grant, Grant)


async def test_a_chat_model_on_embeddings_is_400(directory: Directory, key: str, seeded: Seeded) -> None:
    error = await refused(UnsupportedModel, "POST", "/v1/embeddings", headers(key, seeded.tenant_id),
                          body(seeded.chat), directory)
    assert (error.status, error.openai_code) == (400, "model_not_supported")


async def test_an_anthropic_model_on_chat_completions_is_400(directory: Directory, key: str, seeded: Seeded) -> None:
    error = await refused(UnsupportedModel, "POST", CHAT, headers(key, seeded.tenant_id), body(seeded.claude),
                          directory)
    assert (error.status, error.openai_code) == (400, "model_not_supported")


async def test_an_openai_model_on_messages_is_400(directory: Directory, key: str, seeded: Seeded) -> None:
    error = await refused(UnsupportedModel, "POST", "/v1/messages", headers(key, seeded.tenant_id),
                          body(seeded.chat), directory)
    assert error.status == 400


# --- allowed --------------------------------------------------------------------------------------------------


async def test_an_allowed_request_gets_a_grant(directory: Directory, conn: Conn, seeded: Seeded) -> None:
    new = await admin.create_key(conn, seeded.tenant_id)

    raw = body(seeded.chat, stream=True)
    grant = await authorize("POST", CHAT, headers(new.secret, seeded.tenant_id, **{"x-request-id": "req-1"}),
                            raw, directory, now=1000.0)

    # Free models in this catalog: nothing to hold, but the estimate is made all the same (the body's text by the
    # tokenizer: lime.protocols.input_estimate). No cap was sent, so the package default (4096) is reserved for
    # and will be set on the upstream request.
    input_estimate = estimate_input(json.loads(raw)).tokens
    assert 0 < input_estimate < len(raw)
    assert grant == Grant(request_id="req-1", tenant_id=seeded.tenant_id, key_id=new.id, endpoint="chat_completions",
                          model=seeded.chat, upstream=seeded.openai_upstream, upstream_model="gpt-4o-2024-08-06",
                          stream=True, reserved=0, reserved_tokens=input_estimate + 4096,
                          input_estimate=input_estimate, output_cap=4096,
                          prices=encode_prices(GrantPrices(PriceSheet())), started_at=1000.0)


async def test_anthropic_clients_get_a_grant_with_x_api_key(directory: Directory, key: str, seeded: Seeded) -> None:
    grant = await authorize("POST", "/v1/messages", {"x-api-key": key, "x-lime-tenant-id": seeded.tenant_id},
                            body(seeded.claude, max_tokens=16), directory)

    assert isinstance(grant, Grant)
    assert (grant.endpoint, grant.upstream, grant.upstream_model, grant.stream) == (
        "messages", seeded.anthropic_upstream, "claude-sonnet-4-5", False)


async def test_embeddings_get_a_grant(directory: Directory, key: str, seeded: Seeded) -> None:
    grant = await authorize("POST", "/v1/embeddings", headers(key, seeded.tenant_id), body(seeded.embed), directory)
    assert isinstance(grant, Grant)
    assert grant.upstream_model == "text-embedding-3-small"


async def test_the_model_directory_needs_only_the_credentials(directory: Directory, key: str,
                                                              seeded: Seeded) -> None:
    access = await authorize("GET", "/v1/models", headers(key, seeded.tenant_id), b"", directory)
    assert access == DirectoryAccess(seeded.tenant_id)


async def test_a_tenant_created_a_moment_ago_is_served(directory: Directory, conn: Conn, seeded: Seeded) -> None:
    tenant = uid("fresh")
    await admin.create_tenant(conn, tenant, "Fresh", package_id=seeded.package_id)
    fresh_key = (await admin.create_key(conn, tenant)).secret

    grant = await authorize("POST", CHAT, headers(fresh_key, tenant), body(seeded.chat), directory)

    assert isinstance(grant, Grant) and grant.tenant_id == tenant
