"""Header spoofing through the real stack: a client that sends every header Lime uses internally, Envoy's own
control headers and headers named like the grant's metadata, all at once, is served as itself: its own tenant
charged, its model's route and credential, Envoy's request id, and none of those headers reach the upstream
(test_isolation covers the first few one by one)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis

from lime.money import balances
from lime.money.grant import Grant
from tests.e2e.conftest import UPSTREAM_SECRET, UPSTREAM_SECRET_ANTHROPIC, Gateway, TenantAccess, run_sync
from tests.e2e.helpers import anthropic_headers, openai_headers


@dataclass(frozen=True)
class Case:
    path: str
    model: str
    upstream_model: str
    upstream: str
    other_upstream: str
    body: dict[str, Any]


CASES = {
    "openai": Case("/v1/chat/completions", "chat-a", "gpt-4o-mini", "mock", "mock_anthropic",
                   {"model": "chat-a", "messages": [{"role": "user", "content": "hi"}]}),
    "anthropic": Case("/v1/messages", "claude", "claude-sonnet-4-5", "mock_anthropic", "mock",
                      {"model": "claude", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}),
}


@pytest.fixture(scope="module")
def victim(gateway: Gateway) -> TenantAccess:
    """Another tenant, whose identity the spoofing client tries to borrow."""
    return gateway.new_tenant(["chat-a", "chat-b", "claude"], points=10**9)


def spoofed(case: Case, victim: TenantAccess) -> dict[str, str]:
    """Everything a client could try to steer Lime with, besides its own key and tenant header."""
    grant = json.dumps({"tenant_id": victim.tenant_id, "key_id": victim.key_id, "upstream": case.other_upstream,
                        "upstream_model": "gpt-4.1", "reserved": 0})
    return {
        # Lime's internal headers (lime/money/grant.py), and any other x-lime-* a client may invent
        "x-lime-upstream": case.other_upstream,
        "x-lime-verified-tenant": victim.tenant_id,
        "x-lime-reservation-id": "spoofed-reservation",
        "x-lime-grant": grant,
        "x-lime-key-id": victim.key_id,
        "x-lime-cost": "0",
        # the very names authz's answer headers carry, which Envoy turns into the grant (dynamic_metadata_from_headers
        # reads authz's answer, never the client's request): a well-formed grant of the victim's, and another model
        "grant": Grant(request_id="spoofed-request-id", tenant_id=victim.tenant_id, key_id=victim.key_id,
                       endpoint="chat", model="chat-b", upstream=case.other_upstream, upstream_model="gpt-4.1",
                       stream=False).to_metadata()["grant"],
        "model": "chat-b",
        # headers named like the grant's metadata fields (authz's dynamic metadata, which only filters can write)
        "tenant_id": victim.tenant_id,
        "key_id": victim.key_id,
        "upstream": case.other_upstream,
        "upstream_model": "gpt-4.1",
        "reserved": "0",
        "x-tenant-id": victim.tenant_id,
        "x-ext-authz-metadata": grant,
        "envoy.filters.http.ext_authz": grant,
        # the request id keys the reservation and the usage record
        "x-request-id": "spoofed-request-id",
        # Envoy's control headers: retries, timeouts, internal origin, rewritten paths
        "x-envoy-internal": "true",
        "x-envoy-original-path": "/admin/tenants",
        "x-envoy-upstream-rq-timeout-ms": "1",
        "x-envoy-upstream-rq-per-try-timeout-ms": "1",
        "x-envoy-retry-on": "5xx,reset",
        "x-envoy-max-retries": "25",
        "x-envoy-force-trace": "1",
        "x-envoy-expected-rq-timeout-ms": "1",
        "x-envoy-downstream-service-cluster": "lime_authz",
        "x-envoy-external-address": "10.0.0.1",
        "x-forwarded-for": "10.0.0.1",
        # what only a browser or a proxy should carry
        "cookie": "session=abc",
        "proxy-authorization": "Basic YWRtaW46YWRtaW4=",
    }


#: Forged headers outside Lime's and Envoy's namespaces reach the upstream as the client sent them, like any other
#: client header (anthropic-beta, openai-organization, ...): they are data to Lime, never read, and change nothing
#: (which the test proves). Lime's namespace (x-lime-*), Envoy's (x-envoy-*), names with an underscore (Envoy
#: drops them: tenant_id, key_id...), the request id, the client's credentials and cookies never reach the upstream
#: with the client's value.
PASSED_ON = {"grant", "model", "upstream", "reserved", "x-tenant-id", "x-ext-authz-metadata",
             "envoy.filters.http.ext_authz", "x-forwarded-for"}


def usage_records(gateway: Gateway, column: str, value: str) -> list[dict[str, Any]]:
    async def fetch() -> list[dict[str, Any]]:
        async with await psycopg.AsyncConnection.connect(gateway.database_url, autocommit=True) as conn:
            cursor = conn.cursor(row_factory=psycopg.rows.dict_row)
            query = {"request_id": "SELECT * FROM usage_records WHERE request_id = %s",
                     "tenant_id": "SELECT * FROM usage_records WHERE tenant_id = %s"}[column]
            await cursor.execute(query, (value,))
            return list(await cursor.fetchall())

    return run_sync(fetch())


def settled(gateway: Gateway, request_id: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not (rows := usage_records(gateway, "request_id", request_id)):
        assert time.monotonic() < deadline, f"request {request_id} was not settled"
        time.sleep(0.05)
    assert len(rows) == 1
    return rows[0]


def balance(gateway: Gateway, tenant_id: str) -> dict[str, Any]:
    async def fetch() -> dict[str, Any]:
        redis = aioredis.Redis.from_url(gateway.redis_url)
        try:
            async with await psycopg.AsyncConnection.connect(gateway.database_url, autocommit=True) as conn:
                return await balances.balance_view(conn, redis, tenant_id)
        finally:
            await redis.aclose()

    return run_sync(fetch())


def envoy_access_log_line(gateway: Gateway, request_id: str, timeout: float = 15.0) -> str:
    path = Path(gateway.stack.log_dir) / "envoy.log"
    deadline = time.monotonic() + timeout
    while True:
        lines = [line for line in path.read_text(errors="replace").splitlines() if f"request_id={request_id}" in line]
        if lines:
            assert len(lines) == 1
            return lines[0]
        assert time.monotonic() < deadline, f"no access log line for {request_id}"
        time.sleep(0.1)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_internal_header_spoofed_at_once_changes_nothing(gateway: Gateway, victim: TenantAccess,
                                                               name: str) -> None:
    case = CASES[name]
    client = gateway.new_tenant([case.model], points=10**9)
    victim_before = balance(gateway, victim.tenant_id)
    own_headers = openai_headers(client) if name == "openai" else anthropic_headers(client)
    forged = spoofed(case, victim)
    status, payload = gateway.http("POST", case.path, body=json.dumps(case.body).encode(),
                                   headers={**forged, **own_headers})
    assert status == 200, payload
    request_id = gateway.last_headers["x-request-id"]
    assert request_id != forged["x-request-id"]

    # The upstream saw the client's model on its own route, with that route's credential, and no forged header.
    seen = gateway.mock_request(request_id)
    assert seen["model"] == case.upstream_model and seen["path"] == case.path
    if name == "openai":
        assert seen["headers"]["authorization"] == f"Bearer {UPSTREAM_SECRET}"
        assert "x-api-key" not in seen["headers"]
    else:
        assert seen["headers"]["x-api-key"] == UPSTREAM_SECRET_ANTHROPIC
        assert "authorization" not in seen["headers"]
    assert seen["headers"]["x-request-id"] == request_id
    reached = {header: value for header, value in seen["headers"].items()
               if header in forged and header not in PASSED_ON and forged[header] in value}
    assert reached == {}, " ".join(sorted(reached))
    assert not [header for header in seen["headers"] if header.startswith("x-lime-")]
    # Envoy's only x-envoy-* header is its own: the client's address as Envoy saw it, not the forged one.
    assert {h: v for h, v in seen["headers"].items() if h.startswith("x-envoy-")} == {
        "x-envoy-external-address": "127.0.0.1"}
    assert victim.tenant_id not in json.dumps(seen["body"])

    # Envoy routed it to the model's own cluster, under the client's tenant.
    line = envoy_access_log_line(gateway, request_id)
    assert f"tenant={client.tenant_id}" in line and f"upstream=upstream_{case.upstream} " in line + " "
    assert f"model={case.model}" in line

    # The client's tenant paid, under its own key and Envoy's request id; the victim paid nothing.
    record = settled(gateway, request_id)
    assert (record["tenant_id"], record["key_id"], record["model"], record["upstream"]) == (
        client.tenant_id, client.key_id, case.model, case.upstream)
    assert record["cost"] > 0
    assert usage_records(gateway, "request_id", forged["x-request-id"]) == []
    assert usage_records(gateway, "request_id", forged["x-lime-reservation-id"]) == []
    assert usage_records(gateway, "tenant_id", victim.tenant_id) == []
    assert balance(gateway, victim.tenant_id) == victim_before
    assert balance(gateway, client.tenant_id)["balance"] == 10**9 - record["cost"]


def test_a_spoofed_verified_tenant_opens_no_directory_without_a_key(gateway: Gateway, victim: TenantAccess) -> None:
    """catalog_api trusts x-lime-verified-tenant; a client that sends it with no key, a bad key, or a key of its
    own gets nobody's directory but its own."""
    mine = gateway.new_tenant(["chat-a"])
    forged = {"x-lime-verified-tenant": victim.tenant_id, "x-lime-tenant-id": victim.tenant_id}
    for credentials, status in (({}, 401), ({"authorization": "Bearer lime-sk-" + "a" * 43}, 401),
                                ({"authorization": f"Bearer {mine.key}"}, 403)):
        got, payload = gateway.http("GET", "/v1/models", headers={**forged, **credentials})
        assert got == status, (credentials, payload)
        assert "chat-b" not in json.dumps(payload)
        got, _ = gateway.http("GET", "/v1/models/chat-b", headers={**forged, **credentials})
        assert got == status
    got, payload = gateway.http("GET", "/v1/models", headers={
        "x-lime-verified-tenant": victim.tenant_id, "authorization": f"Bearer {mine.key}",
        "x-lime-tenant-id": mine.tenant_id})
    assert got == 200 and [model["id"] for model in payload["data"]] == ["chat-a"]
