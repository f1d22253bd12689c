"""catalog_api's public port believes the verified-tenant header only beside the catalog secret Envoy presents:
without it (or with a wrong one) the answer is a 401, whatever tenant header comes along."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import psycopg
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from catalog_api.public import build_public_app, came_through_envoy
from lime.devstack.embedded import free_port
from lime.directory import Directory
from lime.money.grant import VERIFIED_TENANT_HEADER
from lime.settings import CATALOG_SECRET_HEADER
from tests.integration.conftest import Seeded, seed_catalog

SECRET = "catalog-secret-for-this-test"


@pytest.fixture
async def seeded(conn: psycopg.AsyncConnection[Any]) -> Seeded:
    return await seed_catalog(conn)


@pytest.fixture
async def catalog(migrated_database: str, pool: AsyncConnectionPool[Any], redis_client: aioredis.Redis,
                  seeded: Seeded) -> AsyncIterator[str]:
    directory = Directory(migrated_database, pool, redis_client, poll_seconds=3600)
    await directory.start()
    runner = web.AppRunner(build_public_app(directory, SECRET))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
        await directory.stop()


async def get(url: str, headers: dict[str, str]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as reply:
        return reply.status, await reply.json(content_type=None)


async def test_with_the_secret_the_tenant_gets_its_directory(catalog: str, seeded: Seeded) -> None:
    status, body = await get(f"{catalog}/v1/models", {VERIFIED_TENANT_HEADER: seeded.tenant_id,
                                                      CATALOG_SECRET_HEADER: SECRET})
    assert status == 200
    assert {m["id"] for m in body["data"]} == {seeded.chat, seeded.embed, seeded.claude}


@pytest.mark.parametrize("presented", [None, "", "wrong", SECRET + "x", SECRET[:-1]])
@pytest.mark.parametrize("path", ["/v1/models", "/v1/models/{chat}"])
async def test_without_the_secret_no_tenant_header_is_believed(catalog: str, seeded: Seeded,
                                                              presented: str | None, path: str) -> None:
    headers = {VERIFIED_TENANT_HEADER: seeded.tenant_id}
    if presented is not None:
        headers[CATALOG_SECRET_HEADER] = presented
    status, body = await get(catalog + path.format(chat=seeded.chat), headers)
    assert status == 401
    assert seeded.chat not in str(body)
    assert body["error"]["message"] == "The request was not authorized by the gateway."


async def test_the_anthropic_shape_of_the_refusal(catalog: str, seeded: Seeded) -> None:
    status, body = await get(f"{catalog}/v1/models", {VERIFIED_TENANT_HEADER: seeded.tenant_id,
                                                      "anthropic-version": "2023-06-01"})
    assert status == 401 and body["type"] == "error"


async def test_the_health_probe_needs_no_secret(catalog: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{catalog}/healthz") as reply:
        assert reply.status == 200


def test_the_comparison() -> None:
    secret = SECRET.encode()
    assert came_through_envoy(SECRET, secret)
    assert not came_through_envoy(None, secret)
    assert not came_through_envoy("", secret)
    assert not came_through_envoy(SECRET.upper(), secret)


def test_no_app_without_a_secret() -> None:
    with pytest.raises(ValueError):
        build_public_app(None, "")  # type: ignore[arg-type]
