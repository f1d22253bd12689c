"""What a client sees in response headers: an ``x-request-id`` on every response, the one the upstream saw for
the request, and nothing of the upstream's own (its credentials, routing, provider-specific headers).

The mock upstream itself sends only Content-Type, Content-Length, Date, Server (aiohttp) and, on streams,
Cache-Control; the provider-specific names below are checked for all the same, so a mock or gateway that
starts adding them is caught."""

from __future__ import annotations

from email.message import Message
from typing import Any

import pytest

from tests.e2e.conftest import UPSTREAM_SECRET, UPSTREAM_SECRET_ANTHROPIC, Gateway, TenantAccess
from tests.e2e.helpers import anthropic_headers, body, openai_headers

FORBIDDEN_NAMES = frozenset({
    "x-lime-upstream", "authorization", "x-api-key", "proxy-authorization", "set-cookie", "request-id",
    "openai-organization", "openai-project", "openai-processing-ms", "openai-version",
    "anthropic-organization-id", "cf-ray",
})
FORBIDDEN_PREFIXES = ("x-lime-", "openai-", "anthropic-", "x-ratelimit-", "cf-")
CHAT: Any = {"model": "chat-a", "messages": [{"role": "user", "content": "hi"}]}
MESSAGE: Any = {"model": "claude", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}

# name -> (path, protocol, body, extra request headers)
REQUESTS: dict[str, tuple[str, str, Any, dict[str, str]]] = {
    "chat": ("/v1/chat/completions", "openai", CHAT, {}),
    "chat-stream": ("/v1/chat/completions", "openai", {**CHAT, "stream": True}, {}),
    "chat-429": ("/v1/chat/completions", "openai", CHAT, {"x-mock-status": "429"}),
    "responses": ("/v1/responses", "openai", {"model": "chat-a", "input": "hi"}, {}),
    "responses-stream": ("/v1/responses", "openai", {"model": "chat-a", "input": "hi", "stream": True}, {}),
    "responses-500": ("/v1/responses", "openai", {"model": "chat-a", "input": "hi"}, {"x-mock-status": "500"}),
    "embeddings": ("/v1/embeddings", "openai", {"model": "embed", "input": "hi"}, {}),
    "embeddings-429": ("/v1/embeddings", "openai", {"model": "embed", "input": "hi"}, {"x-mock-status": "429"}),
    "messages": ("/v1/messages", "anthropic", MESSAGE, {}),
    "messages-stream": ("/v1/messages", "anthropic", {**MESSAGE, "stream": True}, {}),
    "messages-429": ("/v1/messages", "anthropic", MESSAGE, {"x-mock-status": "429"}),
    "messages-500": ("/v1/messages", "anthropic", {**MESSAGE, "stream": True}, {"x-mock-status": "500"}),
}


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "claude", "embed"])


def assert_nothing_leaks(headers: Message, received: Any, access: TenantAccess) -> None:
    names = {name.lower() for name in headers}
    assert not names & FORBIDDEN_NAMES, names & FORBIDDEN_NAMES
    assert not [name for name in names if name.startswith(FORBIDDEN_PREFIXES)], names
    for name, value in headers.items():
        for secret in (UPSTREAM_SECRET, UPSTREAM_SECRET_ANTHROPIC, access.key):
            assert secret not in value, f"{name} carries a secret"
    # Envoy names itself; the upstream's server software stays behind it.
    assert "aiohttp" not in headers.get("server", "").lower()
    text = received if isinstance(received, str) else repr(received)
    for secret in (UPSTREAM_SECRET, UPSTREAM_SECRET_ANTHROPIC, access.key):
        assert secret not in text


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_forwarded_requests(gateway: Gateway, tenant: TenantAccess, name: str) -> None:
    path, protocol, payload, extra = REQUESTS[name]
    headers = openai_headers(tenant, **extra) if protocol == "openai" else anthropic_headers(tenant, **extra)
    status, received = gateway.http("POST", path, headers=headers, body=body(payload))
    expected = int(extra.get("x-mock-status", "200"))
    assert status == expected, received
    response_headers = gateway.last_headers
    assert_nothing_leaks(response_headers, received, tenant)
    request_id = response_headers["x-request-id"]
    assert request_id
    seen = gateway.mock_request(request_id)
    assert seen["path"] == path and seen["status"] == expected


def test_the_request_id_is_the_gateways_own(gateway: Gateway, tenant: TenantAccess) -> None:
    """A client's own x-request-id is replaced (it keys reservations and logs), and the response names the id
    the upstream saw."""
    status, received = gateway.http("POST", "/v1/chat/completions", body=body(CHAT),
                                    headers=openai_headers(tenant, **{"x-request-id": "client-chosen-id"}))
    assert status == 200, received
    request_id = gateway.last_headers["x-request-id"]
    assert request_id and request_id != "client-chosen-id"
    assert gateway.mock_request(request_id)["path"] == "/v1/chat/completions"
    assert not gateway.mock_requests("client-chosen-id")


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
def test_directory_and_refusals(gateway: Gateway, tenant: TenantAccess, protocol: str) -> None:
    """Answers Lime gives itself (the model list, a refusal) carry an x-request-id and leak nothing either."""
    headers = openai_headers(tenant) if protocol == "openai" else anthropic_headers(tenant)
    status, received = gateway.http("GET", "/v1/models", headers=headers)
    assert status == 200, received
    assert gateway.last_headers["x-request-id"]
    assert_nothing_leaks(gateway.last_headers, received, tenant)

    path, payload = ("/v1/chat/completions", {**CHAT, "model": "chat-b"}) if protocol == "openai" else (
        "/v1/messages", {**MESSAGE, "model": "chat-b"})
    status, received = gateway.http("POST", path, headers=headers, body=body(payload))
    assert status == 404, received
    request_id = gateway.last_headers["x-request-id"]
    assert request_id
    assert_nothing_leaks(gateway.last_headers, received, tenant)
    assert not gateway.mock_requests(request_id)
