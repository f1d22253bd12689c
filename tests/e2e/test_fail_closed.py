"""A missing piece of the path fails closed, with an error the SDK can read, and recovers when it returns."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.e2e.conftest import Gateway, TenantAccess

MESSAGES: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "claude"])


@pytest.fixture
def authz_stopped(gateway: Gateway) -> Iterator[None]:
    gateway.stack.stop_service("authz")
    try:
        yield
    finally:
        gateway.stack.start_service("authz")


def test_authz_down_is_a_503_in_each_protocol_and_recovers(gateway: Gateway, tenant: TenantAccess,
                                                           authz_stopped: None) -> None:
    before = len(gateway.mock_requests())
    oa = openai.OpenAI(base_url=gateway.base_url, api_key=tenant.key, default_headers=tenant.headers,
                       max_retries=0)
    with pytest.raises(openai.InternalServerError) as caught:
        oa.chat.completions.create(model="chat-a", messages=MESSAGES)
    assert caught.value.status_code == 503
    assert caught.value.response.json()["error"]["code"] == "service_unavailable"

    an = anthropic.Anthropic(base_url=gateway.origin, api_key=tenant.key, default_headers=tenant.headers,
                             max_retries=0)
    with pytest.raises(anthropic.InternalServerError) as anthropic_caught:
        an.messages.create(model="claude", max_tokens=8, messages=MESSAGES)
    assert anthropic_caught.value.status_code == 503
    assert anthropic_caught.value.response.json()["type"] == "error"
    assert len(gateway.mock_requests()) == before  # nothing was served unauthorised


def test_extproc_down_fails_closed(gateway: Gateway, tenant: TenantAccess) -> None:
    gateway.stack.stop_service("extproc")
    try:
        status, body = gateway.http("POST", "/v1/chat/completions", body=b'{"model":"chat-a","messages":[]}',
                                    headers={"authorization": f"Bearer {tenant.key}",
                                             "x-lime-tenant-id": tenant.tenant_id})
        assert status == 503
        assert body["error"]["code"] == "service_unavailable"
    finally:
        gateway.stack.start_service("extproc")
    status, _ = gateway.http("POST", "/v1/chat/completions", body=b'{"model":"chat-a","messages":[]}',
                             headers={"authorization": f"Bearer {tenant.key}", "x-lime-tenant-id": tenant.tenant_id})
    assert status == 200


def test_upstream_down_is_a_clear_error(gateway: Gateway, tenant: TenantAccess) -> None:
    gateway.stack.stop_service("mock_upstream")
    try:
        oa = openai.OpenAI(base_url=gateway.base_url, api_key=tenant.key, default_headers=tenant.headers,
                           max_retries=0)
        with pytest.raises(openai.InternalServerError) as caught:
            oa.chat.completions.create(model="chat-a", messages=MESSAGES)
        assert caught.value.status_code == 503
        assert caught.value.response.json()["error"]["code"] == "upstream_unavailable"
        an = anthropic.Anthropic(base_url=gateway.origin, api_key=tenant.key, default_headers=tenant.headers,
                                 max_retries=0)
        with pytest.raises(anthropic.InternalServerError) as anthropic_caught:
            an.messages.create(model="claude", max_tokens=8, messages=MESSAGES)
        assert anthropic_caught.value.response.json()["error"]["type"] == "api_error"
    finally:
        gateway.stack.start_service("mock_upstream")


@pytest.mark.parametrize(("path", "shape"), [("/v1/chat/completions", "openai"), ("/v1/messages", "anthropic")])
def test_body_over_the_limit_is_413_in_the_clients_protocol(gateway: Gateway, tenant: TenantAccess, path: str,
                                                            shape: str) -> None:
    before = len(gateway.mock_requests())
    body = b'{"model":"chat-a","messages":[{"role":"user","content":"' + b"a" * (33 * 1024 * 1024) + b'"}]}'
    status, payload = gateway.http("POST", path, body=body, headers={
        "authorization": f"Bearer {tenant.key}", "x-lime-tenant-id": tenant.tenant_id})
    assert status == 413
    if shape == "openai":
        assert payload["error"]["code"] == "request_too_large"
    else:
        assert payload["type"] == "error" and payload["error"]["type"] == "request_too_large"
    assert len(gateway.mock_requests()) == before


def test_a_large_body_under_the_limit_is_served(gateway: Gateway, tenant: TenantAccess) -> None:
    content = "a" * (5 * 1024 * 1024)  # a base64 image is this big
    body = ('{"model":"chat-a","messages":[{"role":"user","content":"' + content + '"}]}').encode()
    status, payload = gateway.http("POST", "/v1/chat/completions", body=body, headers={
        "authorization": f"Bearer {tenant.key}", "x-lime-tenant-id": tenant.tenant_id})
    assert status == 200, payload
    seen = gateway.mock_request(gateway.last_headers["x-request-id"])
    assert seen["body"]["messages"][0]["content"] == content


def test_directory_down_in_anthropic_shape(gateway: Gateway, tenant: TenantAccess) -> None:
    gateway.stack.stop_service("catalog_api")
    try:
        status, body = gateway.http("GET", "/v1/models", headers={
            "x-api-key": tenant.key, "x-lime-tenant-id": tenant.tenant_id, "anthropic-version": "2023-06-01"})
        assert status == 503
        assert body["type"] == "error" and body["error"]["type"] == "api_error"
    finally:
        gateway.stack.start_service("catalog_api")
