"""The admin API against its own OpenAPI document (``catalog_api/admin_openapi.yaml``), on the running gateway:
schemathesis generates valid and invalid requests for every operation, and every answer must be documented, in
the documented shape, and never a 5xx; without the admin token every route is a 401.

The document cannot say that a model's cached price must not exceed its input price, nor which ids exist, so a
valid-looking request may be refused (400, 404): schemathesis' ``positive_data_acceptance`` is left out. Whatever
the generated requests created is deleted again at the end of the module, so the rest of the suite sees the
catalog it set up.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from importlib.resources import files
from typing import Any

import hypothesis
import psycopg
import pytest
import redis
import schemathesis
import yaml
from schemathesis import Case

from tests.e2e.conftest import ADMIN_TOKEN, Gateway

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def shipped_document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(files("catalog_api").joinpath("admin_openapi.yaml").read_text())
    return document


DOCUMENT = shipped_document()
#: What the generated requests may create; each maps to the query that lists its ids.
CREATED = {
    "upstreams": "SELECT id FROM upstreams",
    "models": "SELECT id FROM models",
    "packages": "SELECT id FROM packages",
    "brands": "SELECT id FROM brands",
    "tenants": "SELECT id FROM tenants",
    "api_keys": "SELECT id FROM api_keys",
}


def admin_url(gateway: Gateway, path: str) -> str:
    return f"http://{gateway.settings.admin}{path}"


def catalog_ids(gateway: Gateway) -> dict[str, set[str]]:
    with psycopg.connect(gateway.database_url, autocommit=True) as conn:
        return {table: {row[0] for row in conn.execute(sql)} for table, sql in CREATED.items()}


def delete_created(gateway: Gateway, before: dict[str, set[str]]) -> None:
    """Remove every row the generated requests added (and what hangs off it), children first."""
    new = {table: sorted(ids - before[table]) for table, ids in catalog_ids(gateway).items()}
    with psycopg.connect(gateway.database_url) as conn, conn.transaction():
        conn.execute("DELETE FROM api_keys WHERE id = ANY(%s) OR tenant_id = ANY(%s)",
                     (new["api_keys"], new["tenants"]))
        conn.execute("DELETE FROM ledger WHERE tenant_id = ANY(%s)", (new["tenants"],))
        conn.execute("DELETE FROM balances WHERE tenant_id = ANY(%s)", (new["tenants"],))
        conn.execute("DELETE FROM usage_records WHERE tenant_id = ANY(%s)", (new["tenants"],))
        conn.execute("DELETE FROM tenants WHERE id = ANY(%s)", (new["tenants"],))
        conn.execute("DELETE FROM brands WHERE id = ANY(%s)", (new["brands"],))
        conn.execute("DELETE FROM packages WHERE id = ANY(%s)", (new["packages"],))
        conn.execute("DELETE FROM models WHERE id = ANY(%s)", (new["models"],))
        conn.execute("DELETE FROM upstreams WHERE id = ANY(%s)", (new["upstreams"],))
    client = redis.Redis.from_url(gateway.redis_url)
    try:
        for tenant in new["tenants"]:
            for name in client.scan_iter(match=f"lime:*{{{glob_escape(tenant)}}}*"):
                client.delete(name)
    finally:
        client.close()
    assert catalog_ids(gateway) == before


def glob_escape(text: str) -> str:
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in text)


@pytest.fixture(scope="module")
def catalog_restored(gateway: Gateway) -> Iterator[None]:
    before = catalog_ids(gateway)
    yield
    delete_created(gateway, before)


#: The shipped document (the one the gateway serves: see the last test of this module), with the admin token for
#: its security scheme. Unknown query parameters are ignored, as by any HTTP API, so none are generated as invalid.
schema = schemathesis.openapi.from_dict(shipped_document(), config=schemathesis.Config.from_dict({
    "auth": {"openapi": {"adminToken": {"bearer": ADMIN_TOKEN}}},
    "generation": {"allow-extra-parameters": False},
    "checks": {"positive_data_acceptance": {"enabled": False}},
}))


#: Statuses each operation answered the generated requests, for the test after them.
ANSWERED: dict[str, set[int]] = defaultdict(set)


@schema.parametrize()
@hypothesis.settings(max_examples=30, deadline=None, suppress_health_check=list(hypothesis.HealthCheck),
                     derandomize=True, database=None)
def test_admin_api_conforms_to_its_document(case: Case[Any], gateway: Gateway, catalog_restored: None) -> None:
    """Valid and invalid requests to one operation: never a 5xx, every status and body as documented, invalid
    input refused, and (schemathesis' ignored_auth) a success that would also come without the token fails."""
    response = case.call(base_url=admin_url(gateway, ""), timeout=10)
    ANSWERED[case.operation.label].add(response.status_code)
    case.validate_response(response)


@pytest.fixture(scope="module", autouse=True)
def generated_requests_got_past_the_token() -> Iterator[None]:
    """The checks of the generated requests mean something only if the token was sent: once they have all run
    (in whatever order the tests ran), every operation answered something else than 401, every listing a 200,
    and something was created. A teardown, not a test, so that it always runs after them."""
    yield
    if len(ANSWERED) < len(operations()):
        return  # a selection of the cases ran (-k): not all operations to judge
    for label, statuses in ANSWERED.items():
        assert statuses - {401}, label
        if label.startswith("GET "):
            assert 200 in statuses, (label, statuses)
    assert any(201 in statuses for statuses in ANSWERED.values())


def test_admin_workflows_conform_to_the_document(gateway: Gateway, catalog_restored: None) -> None:
    """Sequences that follow the document's links (create a tenant, then grant it points, read its balance,
    create a key and revoke it), so the success paths are exercised too, with the same checks."""
    workflow = schema.as_state_machine()
    before = catalog_ids(gateway)

    class AdminWorkflow(workflow):  # type: ignore[misc,valid-type]
        def get_call_kwargs(self, case: Case[Any]) -> dict[str, Any]:
            return {"base_url": admin_url(gateway, ""), "timeout": 10}

        def teardown(self) -> None:
            # Each sequence starts from the same catalog: hypothesis replays choices, and rules whose bundles
            # depend on what earlier sequences created would draw differently (FlakyStrategyDefinition).
            delete_created(gateway, before)

    AdminWorkflow.run(settings=hypothesis.settings(
        max_examples=15, stateful_step_count=6, deadline=None, derandomize=True, database=None,
        suppress_health_check=list(hypothesis.HealthCheck)))


# -- the token ---------------------------------------------------------------------------------------------------------


def operations() -> list[tuple[str, str, bool]]:
    """(method, path with its parameters filled, whether the token is required) for every documented operation."""
    found = []
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            secured = operation.get("security", DOCUMENT["security"]) != []
            filled = path.replace("{tenant_id}", "t-none").replace("{key_id}", "key_none").replace("{model_id}",
                                                                                                  "m-none")
            found.append((method.upper(), filled, secured))
    return found


SECURED = [(method, path) for method, path, secured in operations() if secured]
WRONG_CREDENTIALS = {
    "none": {},
    "wrong_token": {"Authorization": "Bearer not-the-admin-token"},
    "token_with_a_suffix": {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
    "token_prefix_only": {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"},
    "empty_bearer": {"Authorization": "Bearer "},
    "basic_scheme": {"Authorization": f"Basic {ADMIN_TOKEN}"},
    "token_as_x_api_key": {"x-api-key": ADMIN_TOKEN},
    "token_in_the_query": {"x-query": f"token={ADMIN_TOKEN}"},  # sent as ?token= below
    "a_tenant_key": {"Authorization": "Bearer lime-sk-" + "a" * 43},
}


def test_the_document_names_the_routes_under_test() -> None:
    assert len(SECURED) >= 15  # every /admin route; fail rather than test nothing if the document moves


@pytest.mark.parametrize("credentials", WRONG_CREDENTIALS.values(), ids=WRONG_CREDENTIALS.keys())
@pytest.mark.parametrize(("method", "path"), SECURED, ids=[f"{m} {p}" for m, p in SECURED])
def test_every_admin_route_is_401_without_the_admin_token(gateway: Gateway, method: str, path: str,
                                                          credentials: dict[str, str]) -> None:
    headers = dict(credentials)
    query = "?" + headers.pop("x-query") if "x-query" in headers else ""
    body = b"{}" if method in ("POST", "PATCH") else None
    status, payload = gateway.http(method, path + query, body=body, headers={**headers,
                                   "content-type": "application/json"}, origin=f"http://{gateway.settings.admin}")
    assert status == 401, (status, payload)
    assert payload["error"]["code"] == "invalid_api_key"
    assert ADMIN_TOKEN not in json.dumps(payload)


def test_the_document_is_served_behind_the_token_and_is_the_shipped_file(gateway: Gateway) -> None:
    origin = f"http://{gateway.settings.admin}"
    status, _ = gateway.http("GET", "/admin/openapi.json", origin=origin)
    assert status == 401
    status, served = gateway.http("GET", "/admin/openapi.json", origin=origin, headers=AUTH)
    assert status == 200 and served == DOCUMENT
    # And not from the public listener, with or without the token.
    for headers in ({}, AUTH):
        status, _ = gateway.http("GET", "/admin/openapi.json", headers=headers)
        assert status == 404


# -- what schemathesis found (each was a 500, or a value silently changed) --------------------------------------------

HOSTILE_ADMIN_REQUESTS = {
    "nul_in_text": ("POST", "/admin/upstreams", {"id": "nul-test", "protocol": "openai", "description": "a\u0000b"}),
    "nul_in_a_query": ("GET", "/admin/keys?tenant=a%00b", None),
    "price_past_bigint": ("POST", "/admin/models", {"id": "m-big", "upstream": "mock", "upstream_model": "x",
                                                    "kind": "chat", "input_price": 2**63}),
    "limit_past_integer": ("POST", "/admin/packages", {"id": "p-big", "name": "p", "models": [], "rpm": 2**31}),
    "default_cap_of_zero": ("POST", "/admin/packages", {"id": "p-zero", "name": "p", "models": [],
                                                        "default_max_output_tokens": 0}),
    "a_number_as_a_model_id": ("POST", "/admin/packages", {"id": "p-num", "name": "p", "models": [0]}),
    "a_number_in_a_brand_allowlist": ("POST", "/admin/brands", {"id": "b-num", "name": "b", "models": [1]}),
    "grant_past_bigint": ("POST", "/admin/tenants/{tenant}/points", {"amount": 2**63}),
    # A premium below the base price (a priority tier cheaper than the standard rates) is refused, not stored.
    "a_premium_below_the_base": ("PATCH", "/admin/models/chat-a", {"price_sheet": {"tiers": {"priority": {
        "input": 1, "output": 1, "cached_input": 0}}}}),
    "image_tokens_of_zero": ("PATCH", "/admin/models/chat-a", {"price_sheet": {"image_tokens": 0}}),
    "since_past_year_one": ("GET", "/admin/usage?since=99999999999999d", None),
    "since_with_unicode_digits": ("GET", "/admin/usage?since=%C2%B2d", None),
}


@pytest.mark.parametrize(("method", "path", "body"), HOSTILE_ADMIN_REQUESTS.values(), ids=HOSTILE_ADMIN_REQUESTS.keys())
def test_a_value_the_admin_api_cannot_take_is_400(gateway: Gateway, catalog_restored: None, method: str, path: str,
                                                  body: dict[str, Any] | None) -> None:
    """A NUL in text, an integer past its column, a 0 cap (once silently 4096), a number for a model id (once
    read as the model spelt like it), an age past year 1: a 400 in the API's error shape, and nothing created."""
    before = catalog_ids(gateway)
    tenant = gateway.new_tenant(["chat-a"], wait=False, points=0)
    status, payload = gateway.http(method, path.format(tenant=tenant.tenant_id),
                                   body=None if body is None else json.dumps(body).encode(),
                                   headers={**AUTH, "content-type": "application/json"},
                                   origin=f"http://{gateway.settings.admin}")
    assert status == 400, (status, payload)
    assert payload["error"]["type"] == "invalid_request_error" and payload["error"]["message"]
    after = catalog_ids(gateway)
    assert {table: ids - before[table] for table, ids in after.items()} == {
        "upstreams": set(), "models": set(), "packages": {f"p-{tenant.tenant_id[2:]}"}, "brands": set(),
        "tenants": {tenant.tenant_id}, "api_keys": {tenant.key_id}}


def test_an_id_that_cannot_be_named_in_a_path_is_a_json_404(gateway: Gateway) -> None:
    status, payload = gateway.http("GET", "/admin/tenants//balance", headers=AUTH,
                                   origin=f"http://{gateway.settings.admin}")
    assert status == 404 and payload["error"]["code"] == "not_found"
