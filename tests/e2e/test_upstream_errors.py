"""Upstream errors pass through with their status and the provider's own body, on every endpoint and in
both SDKs, streamed requests included (the upstream answers those with a JSON error before any event)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import openai
import pytest

from lime.devstack.mock_upstream.errors import anthropic_error_body, openai_error_body
from tests.e2e.conftest import Gateway, TenantAccess

MESSAGES: Any = [{"role": "user", "content": "hi"}]

OpenAICall = Callable[[openai.OpenAI, dict[str, str]], object]

OPENAI_CALLS: dict[str, tuple[str, OpenAICall]] = {
    "chat": ("/v1/chat/completions", lambda sdk, headers: sdk.chat.completions.create(
        model="chat-a", messages=MESSAGES, extra_headers=headers)),
    "chat-stream": ("/v1/chat/completions", lambda sdk, headers: sdk.chat.completions.create(
        model="chat-a", messages=MESSAGES, stream=True, extra_headers=headers)),
    "responses": ("/v1/responses", lambda sdk, headers: sdk.responses.create(
        model="chat-a", input="hi", extra_headers=headers)),
    "responses-stream": ("/v1/responses", lambda sdk, headers: sdk.responses.create(
        model="chat-a", input="hi", stream=True, extra_headers=headers)),
    "embeddings": ("/v1/embeddings", lambda sdk, headers: sdk.embeddings.create(
        model="embed", input="hi", extra_headers=headers)),
}

OPENAI_ERRORS: dict[int, type[openai.APIStatusError]] = {
    429: openai.RateLimitError,
    500: openai.InternalServerError,
}

ANTHROPIC_ERRORS: dict[int, type[anthropic.APIStatusError]] = {
    429: anthropic.RateLimitError,
    500: anthropic.InternalServerError,
}


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "claude", "embed"])


def assert_upstream_answered(gateway: Gateway, request_id: str, path: str, status: int) -> None:
    seen = gateway.mock_request(request_id)
    assert seen["path"] == path
    assert seen["status"] == status


@pytest.mark.parametrize("status", sorted(OPENAI_ERRORS))
@pytest.mark.parametrize("call", sorted(OPENAI_CALLS))
def test_openai_endpoints(gateway: Gateway, tenant: TenantAccess, call: str, status: int) -> None:
    path, make = OPENAI_CALLS[call]
    with pytest.raises(OPENAI_ERRORS[status]) as caught:
        make(gateway.openai(tenant), {"x-mock-status": str(status)})
    error = caught.value
    assert error.status_code == status
    assert error.response.json() == openai_error_body(status)  # the provider's body, unchanged
    assert error.body == openai_error_body(status)["error"]
    assert_upstream_answered(gateway, error.response.headers["x-request-id"], path, status)


@pytest.mark.parametrize("status", sorted(ANTHROPIC_ERRORS))
@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_messages(gateway: Gateway, tenant: TenantAccess, stream: bool, status: int) -> None:
    with pytest.raises(ANTHROPIC_ERRORS[status]) as caught:
        gateway.anthropic(tenant).messages.create(model="claude", max_tokens=16, messages=MESSAGES, stream=stream,
                                                  extra_headers={"x-mock-status": str(status)})
    error = caught.value
    assert error.status_code == status
    body = error.response.json()
    expected = anthropic_error_body(status, "")
    assert body["type"] == "error"
    assert body["error"] == expected["error"]
    assert set(body) == set(expected)
    assert_upstream_answered(gateway, error.response.headers["x-request-id"], "/v1/messages", status)


def test_anthropic_stream_helper(gateway: Gateway, tenant: TenantAccess) -> None:
    with pytest.raises(anthropic.RateLimitError) as caught, gateway.anthropic_x_api_key(tenant).messages.stream(
            model="claude", max_tokens=16, messages=MESSAGES, extra_headers={"x-mock-status": "429"}) as stream:
        stream.get_final_message()
    assert caught.value.response.json()["error"] == anthropic_error_body(429, "")["error"]
