"""The admin API's price routes against a real PostgreSQL: `POST /admin/models` takes the whole sheet, `PATCH
/admin/models/{id}` changes it (a base price alone, or every other part at once), and what is listed is what the
gateway prices by (the catalog snapshot's sheet)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient, TestServer
from psycopg_pool import AsyncConnectionPool

from catalog_api.admin_api import build_admin_app
from lime.money.price_sheet import model_sheet
from lime.store.catalog_repo import load_catalog
from tests.integration.conftest import uid

AUTH = {"authorization": "Bearer admin-token"}
SHEET = {"cache_write_5m": 3_750_000, "cache_write_1h": 6_000_000, "image_tokens": 48_000,
         "tiers": {"priority": {"input": 6_000_000, "output": 30_000_000, "cached_input": 600_000}},
         "long_context": {"above": 200_000, "input": 6_000_000, "output": 22_500_000, "cached_input": 600_000},
         "tool_calls": {"web_search": 10_000}}


@pytest.fixture
async def client(pool: AsyncConnectionPool[Any]) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(build_admin_app(pool, cast(Any, None), "admin-token"))) as test_client:
        yield test_client


async def _model(client: TestClient[Any, Any], **fields: Any) -> str:
    upstream, model = uid("up"), uid("m")
    assert (await client.post("/admin/upstreams", json={"id": upstream, "protocol": "anthropic"},
                              headers=AUTH)).status == 201
    response = await client.post("/admin/models", headers=AUTH, json={
        "id": model, "upstream": upstream, "upstream_model": "claude", "kind": "chat", "input_price": 3_000_000,
        "output_price": 15_000_000, "cached_input_price": 300_000, **fields})
    assert response.status == 201, await response.text()
    return model


async def _listed(client: TestClient[Any, Any], model: str) -> dict[str, Any]:
    rows = (await (await client.get("/admin/models", headers=AUTH)).json())["data"]
    return next(dict(row) for row in rows if row["id"] == model)


async def test_a_model_is_added_with_its_whole_sheet(client: TestClient[Any, Any],
                                                     pool: AsyncConnectionPool[Any]) -> None:
    model = await _model(client, price_sheet=SHEET)
    assert (await _listed(client, model))["price_sheet"] == SHEET
    async with pool.connection() as conn:
        served = (await load_catalog(conn)).models[model]
    sheet = model_sheet(served.input_price, served.output_price, served.cached_input_price, served.price_parts)
    assert (sheet.base.cache_write_1h, sheet.image_tokens, sheet.tool_price("web_search")) == (6_000_000, 48_000,
                                                                                                10_000)


async def test_a_patch_changes_what_it_names_and_keeps_the_rest(client: TestClient[Any, Any]) -> None:
    model = await _model(client, price_sheet=SHEET)
    response = await client.patch(f"/admin/models/{model}", json={"input_price": 4_000_000}, headers=AUTH)
    assert response.status == 200, await response.text()
    assert (await response.json())["input_price"] == 4_000_000
    listed = await _listed(client, model)
    assert (listed["input_price"], listed["output_price"], listed["price_sheet"]) == (4_000_000, 15_000_000, SHEET)
    response = await client.patch(f"/admin/models/{model}", json={"price_sheet": {"audio_input": 1}}, headers=AUTH)
    assert (await response.json())["price_sheet"] == {"audio_input": 1}
    assert (await _listed(client, model))["price_sheet"] == {"audio_input": 1}


@pytest.mark.parametrize(("change", "param"), [
    ({"price_sheet": {"tiers": {"priority": {"input": 1, "output": 1, "cached_input": 0}}}}, "tiers"),
    ({"price_sheet": {"batch_discount": 50}}, "prices"),
    ({"price_sheet": {"image_tokens": 0}}, "image_tokens"),
    ({"cached_input_price": 9_000_000}, "cached_input_price"),
    ({"price_sheet": [1]}, "price_sheet"),
])
async def test_a_sheet_that_cannot_be_is_refused_and_nothing_changes(
        client: TestClient[Any, Any], change: dict[str, Any], param: str) -> None:
    model = await _model(client)
    before = await _listed(client, model)
    response = await client.patch(f"/admin/models/{model}", json=change, headers=AUTH)
    assert response.status == 400
    assert (await response.json())["error"]["param"] == param
    assert await _listed(client, model) == before


async def test_an_unknown_model_is_404(client: TestClient[Any, Any]) -> None:
    response = await client.patch("/admin/models/no-such-model", json={"input_price": 1}, headers=AUTH)
    assert response.status == 404

