"""A missing piece of the path fails closed, with an error the SDK can read, and recovers when it returns."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from tests.e2e.conftest import Gateway, TenantAccess

MESSAGES: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "claude"])


def assert_refused_in_each_protocol(gateway: Gateway, tenant: TenantAccess, openai_code: str,
                                    *, upstream_up: bool) -> None:
    """A 503 the SDKs can read, in both protocols, and (if the upstream runs) nothing reached the upstream."""
    before = gateway.mock_request_count() if upstream_up else 0
    with pytest.raises(openai.InternalServerError) as caught:
        gateway.openai(tenant).chat.completions.create(model="chat-a", messages=MESSAGES)
    assert caught.value.status_code == 503
    assert caught.value.response.json()["error"]["code"] == openai_code
    with pytest.raises(anthropic.InternalServerError) as anthropic_caught:
        gateway.anthropic(tenant).messages.create(model="claude", max_tokens=8, messages=MESSAGES)
    assert anthropic_caught.value.status_code == 503
    body = anthropic_caught.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    if upstream_up:
        assert gateway.mock_request_count() == before


def assert_served(gateway: Gateway, tenant: TenantAccess) -> None:
    assert gateway.openai(tenant).chat.completions.create(model="chat-a", messages=MESSAGES).choices


@pytest.mark.parametrize(("service", "code"), [("authz", "service_unavailable"),
                                               ("extproc", "service_unavailable"),
                                               ("mock_upstream", "upstream_unavailable")])
def test_a_part_down_fails_closed_in_each_protocol_and_recovers(gateway: Gateway, tenant: TenantAccess,
                                                                service: str, code: str) -> None:
    with gateway.stopped(service):
        assert_refused_in_each_protocol(gateway, tenant, code, upstream_up=service != "mock_upstream")
    assert_served(gateway, tenant)


@pytest.mark.parametrize(("path", "shape"), [("/v1/chat/completions", "openai"), ("/v1/messages", "anthropic")])
def test_body_over_the_limit_is_413_in_the_clients_protocol(gateway: Gateway, tenant: TenantAccess, path: str,
                                                            shape: str) -> None:
    before = gateway.mock_request_count()
    body = b'{"model":"chat-a","messages":[{"role":"user","content":"' + b"a" * (33 * 1024 * 1024) + b'"}]}'
    status, payload = gateway.http("POST", path, body=body, headers={
        "authorization": f"Bearer {tenant.key}", "x-lime-tenant-id": tenant.tenant_id})
    assert status == 413
    if shape == "openai":
        assert payload["error"]["code"] == "request_too_large"
    else:
        assert payload["type"] == "error" and payload["error"]["type"] == "request_too_large"
    assert gateway.mock_request_count() == before


def test_a_large_body_under_the_limit_is_served(gateway: Gateway, tenant: TenantAccess) -> None:
    content = "a" * (5 * 1024 * 1024)  # a base64 image is this big
    body = ('{"model":"chat-a","messages":[{"role":"user","content":"' + content + '"}]}').encode()
    status, payload = gateway.http("POST", "/v1/chat/completions", body=body, headers={
        "authorization": f"Bearer {tenant.key}", "x-lime-tenant-id": tenant.tenant_id})
    assert status == 200, payload
    seen = gateway.mock_request(gateway.last_headers["x-request-id"])
    assert seen["body"]["messages"][0]["content"] == content


def test_directory_down_in_anthropic_shape(gateway: Gateway, tenant: TenantAccess) -> None:
    with gateway.stopped("catalog_api"):
        status, body = gateway.http("GET", "/v1/models", headers={
            "x-api-key": tenant.key, "x-lime-tenant-id": tenant.tenant_id, "anthropic-version": "2023-06-01"})
        assert status == 503
        assert body["type"] == "error" and body["error"]["type"] == "api_error"
