"""The doors that stay shut, through the real Envoy: its admin is on loopback and the stats listener passes only
``GET /stats/prometheus``; catalog_api answers only requests that carry the catalog secret Envoy adds, and a client
that sends that header itself gains nothing."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from lime.money.grant import VERIFIED_TENANT_HEADER
from lime.settings import CATALOG_SECRET_HEADER, Address, is_loopback
from tests.e2e.conftest import CATALOG_SECRET, Gateway, TenantAccess
from tests.e2e.helpers import openai_headers


def call(address: Address, path: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://{address}{path}", method=method, headers=headers or {},
                                     data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a"])


@pytest.fixture(scope="module")
def other(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-b", "claude"])


def test_the_stats_listener_serves_envoys_prometheus_stats(gateway: Gateway) -> None:
    assert is_loopback(gateway.settings.envoy_admin)
    status, text = call(gateway.settings.envoy_stats, "/stats/prometheus")
    assert status == 200
    assert "envoy_http_downstream_rq_total" in text and 'envoy_http_conn_manager_prefix="public"' in text


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/quitquitquit"),
    ("GET", "/quitquitquit"),
    ("POST", "/runtime_modify?lime.doors=open"),
    ("GET", "/config_dump"),
    ("POST", "/drain_listeners"),
    ("POST", "/healthcheck/fail"),
    ("GET", "/stats"),
    ("GET", "/ready"),
    ("GET", "/"),
    ("POST", "/stats/prometheus"),
    ("GET", "/stats/prometheus/../../quitquitquit"),
    ("GET", "/stats/prometheus/..%2F..%2Fquitquitquit"),
    ("GET", "//quitquitquit"),
    ("GET", "/stats/prometheus/extra"),
])
def test_the_stats_listener_serves_nothing_else(gateway: Gateway, method: str, path: str) -> None:
    status, text = call(gateway.settings.envoy_stats, path, method)
    assert 400 <= status < 500, (status, text[:200])
    assert "envoy_" not in text and "configs" not in text
    # Envoy is still up, serving, with its runtime as it was: nothing reached admin.
    admin = gateway.settings.envoy_admin
    assert call(admin, "/ready")[0] == 200
    assert "lime.doors" not in call(admin, "/runtime")[1]


def test_a_client_that_sends_the_catalog_headers_gets_its_own_directory(gateway: Gateway, tenant: TenantAccess,
                                                                       other: TenantAccess) -> None:
    # The right secret and another tenant's verified header: both are dropped, authz decides who this is.
    forged = {CATALOG_SECRET_HEADER: CATALOG_SECRET, VERIFIED_TENANT_HEADER: other.tenant_id}
    status, body = gateway.http("GET", "/v1/models", headers={**openai_headers(tenant), **forged})
    assert status == 200
    assert [m["id"] for m in body["data"]] == ["chat-a"]
    status, body = gateway.http("GET", "/v1/models/claude", headers={**openai_headers(tenant), **forged})
    assert status == 404
    # Without a key, the secret opens nothing either.
    status, body = gateway.http("GET", "/v1/models", headers=forged)
    assert status == 401 and "chat-b" not in json.dumps(body)


def test_the_catalog_secret_never_reaches_an_upstream(gateway: Gateway, tenant: TenantAccess) -> None:
    raw = gateway.openai(tenant, headers={CATALOG_SECRET_HEADER: CATALOG_SECRET}).chat.completions \
        .with_raw_response.create(model="chat-a", messages=[{"role": "user", "content": "hi"}])
    seen = gateway.mock_request(raw.headers["x-request-id"])
    assert CATALOG_SECRET_HEADER not in seen["headers"]
    assert CATALOG_SECRET not in json.dumps(seen)


def test_catalog_api_refuses_a_direct_request_without_the_secret(gateway: Gateway, tenant: TenantAccess) -> None:
    catalog = gateway.settings.catalog
    for headers in ({VERIFIED_TENANT_HEADER: tenant.tenant_id},
                    {VERIFIED_TENANT_HEADER: tenant.tenant_id, CATALOG_SECRET_HEADER: "guessed"}):
        status, text = call(catalog, "/v1/models", headers=headers)
        assert status == 401, text
        assert "chat-a" not in text
    # The door is the secret: with it, the same request is answered (as Envoy's are).
    status, text = call(catalog, "/v1/models", headers={VERIFIED_TENANT_HEADER: tenant.tenant_id,
                                                        CATALOG_SECRET_HEADER: CATALOG_SECRET})
    assert status == 200 and "chat-a" in text
