"""A model on an endpoint it cannot serve (a chat model on embeddings, an embedding model on chat, an Anthropic
model on an OpenAI endpoint and the reverse) is a 400 in the client's protocol, and never reaches the upstream.

test_access_errors.py already has an OpenAI model on /v1/messages raising BadRequestError; here its body
shape is checked too."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import openai
import pytest

from tests.e2e.conftest import Gateway, TenantAccess
from tests.e2e.test_access_errors import assert_never_forwarded, assert_openai_error

MESSAGES: Any = [{"role": "user", "content": "hi"}]

OpenAICall = Callable[[openai.OpenAI, str], object]

OPENAI_CALLS: dict[str, OpenAICall] = {
    "embeddings": lambda sdk, model: sdk.embeddings.create(model=model, input="hello"),
    "chat": lambda sdk, model: sdk.chat.completions.create(model=model, messages=MESSAGES),
    "chat-stream": lambda sdk, model: sdk.chat.completions.create(model=model, messages=MESSAGES, stream=True),
    "responses": lambda sdk, model: sdk.responses.create(model=model, input="hi"),
    "responses-stream": lambda sdk, model: sdk.responses.create(model=model, input="hi", stream=True),
}


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "claude", "embed"])


@pytest.mark.parametrize(
    ("call", "model"),
    [
        ("embeddings", "chat-a"),  # a chat model on /v1/embeddings
        ("embeddings", "claude"),
        ("chat", "embed"),  # an embedding model on /v1/chat/completions
        ("chat-stream", "embed"),
        ("responses", "embed"),
        ("chat", "claude"),  # an Anthropic-protocol model on /v1/chat/completions
        ("chat-stream", "claude"),
        ("responses", "claude"),
        ("responses-stream", "claude"),
    ],
)
def test_openai_endpoints_refuse_with_400(gateway: Gateway, tenant: TenantAccess, call: str, model: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        OPENAI_CALLS[call](gateway.openai(tenant), model)
    assert_openai_error(caught.value, 400, caught.value.response.json()["error"]["code"])
    body = caught.value.response.json()["error"]
    assert body["type"] == "invalid_request_error"
    assert body["param"] == "model"
    assert f"`{model}`" in body["message"]
    assert_never_forwarded(gateway, caught.value)


@pytest.mark.parametrize("model", ["chat-a", "embed"])
@pytest.mark.parametrize("stream", [False, True])
def test_messages_refuses_with_an_anthropic_400(gateway: Gateway, tenant: TenantAccess, model: str,
                                                stream: bool) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        gateway.anthropic_x_api_key(tenant).messages.create(model=model, max_tokens=16, messages=MESSAGES,
                                                             stream=stream)
    error = caught.value
    assert error.status_code == 400
    assert error.response.headers["content-type"].startswith("application/json")
    body = error.response.json()
    assert set(body) == {"type", "error", "request_id"}
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert f"`{model}`" in body["error"]["message"]
    assert body["request_id"] == error.response.headers["x-request-id"]
    assert_never_forwarded(gateway, error)
