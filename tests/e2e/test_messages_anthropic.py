"""Anthropic Messages through Envoy with the official anthropic SDK, sync and async, JSON and SSE, with the key
as ``x-api-key`` and as a Bearer token: the client sees the public model id and the usage, the upstream its
own id, the upstream key and the client's ``anthropic-*`` headers."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest
from anthropic.types import Message, MessageParam, RawMessageStreamEvent

from tests.e2e.conftest import UPSTREAM_SECRET_ANTHROPIC, Gateway, TenantAccess
from tests.e2e.helpers import anthropic_headers, assert_only_public_model, body, sse_events, sse_json

MESSAGES: list[MessageParam] = [{"role": "user", "content": "Say hello"}]
BETAS = "prompt-caching-2024-07-31,fine-grained-tool-streaming-2025-05-14"


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "claude"])


def bearer_client(gateway: Gateway, access: TenantAccess) -> anthropic.Anthropic:
    # auth_token is sent as `Authorization: Bearer` by every SDK version.
    return anthropic.Anthropic(base_url=gateway.origin, auth_token=access.key, default_headers=access.headers,
                               max_retries=0)


def assert_message(message: Message, text: str | None = None) -> None:
    assert message.model == "claude"
    assert message.role == "assistant" and message.stop_reason == "end_turn"
    assert message.content and message.content[0].type == "text" and message.content[0].text
    if text is not None:
        assert message.content[0].text == text
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


def assert_stream_events(events: list[RawMessageStreamEvent]) -> str:
    """The public model in message_start, the final usage in message_delta; returns the streamed text."""
    types = [event.type for event in events]
    assert types[0] == "message_start" and types[-1] == "message_stop"
    start = events[0]
    assert start.type == "message_start"
    assert start.message.model == "claude"
    assert start.message.usage.input_tokens > 0
    deltas = [event for event in events if event.type == "message_delta"]
    assert len(deltas) == 1 and deltas[0].usage.output_tokens > 0
    text = "".join(event.delta.text for event in events
                   if event.type == "content_block_delta" and event.delta.type == "text_delta")
    assert text
    return text


def assert_upstream_saw(gateway: Gateway, request_id: str, sent: Any, *, stream: bool) -> dict[str, Any]:
    """The mock got the upstream model id, the upstream key, and the client's ``anthropic-*`` headers."""
    seen = gateway.mock_request(request_id)
    assert seen["path"] == "/v1/messages"
    assert seen["model"] == "claude-sonnet-4-5"
    assert seen["stream"] is stream
    headers = seen["headers"]
    assert headers["x-api-key"] == UPSTREAM_SECRET_ANTHROPIC
    assert "authorization" not in headers
    assert "x-lime-tenant-id" not in headers
    assert headers["anthropic-version"] == sent["anthropic-version"]
    if "anthropic-beta" in sent:
        assert headers["anthropic-beta"] == sent["anthropic-beta"]
    return seen


def test_create_with_x_api_key(gateway: Gateway, tenant: TenantAccess) -> None:
    raw = gateway.anthropic_x_api_key(tenant).messages.with_raw_response.create(
        model="claude", max_tokens=64, messages=MESSAGES)
    sent = raw.http_request.headers
    assert sent["x-api-key"] == tenant.key and "authorization" not in sent
    message = raw.parse()
    assert_message(message)
    seen = assert_upstream_saw(gateway, raw.headers["x-request-id"], sent, stream=False)
    assert seen["body"]["messages"] == MESSAGES
    assert seen["usage"]["output_tokens"] == message.usage.output_tokens
    assert tenant.key not in str(seen["headers"])


def test_create_with_bearer(gateway: Gateway, tenant: TenantAccess) -> None:
    raw = bearer_client(gateway, tenant).messages.with_raw_response.create(
        model="claude", max_tokens=64, messages=MESSAGES)
    sent = raw.http_request.headers
    assert sent["authorization"] == f"Bearer {tenant.key}" and "x-api-key" not in sent
    assert_message(raw.parse())
    seen = assert_upstream_saw(gateway, raw.headers["x-request-id"], sent, stream=False)
    assert tenant.key not in str(seen["headers"])


def test_anthropic_beta_reaches_the_upstream(gateway: Gateway, tenant: TenantAccess) -> None:
    raw = gateway.anthropic_x_api_key(tenant).messages.with_raw_response.create(
        model="claude", max_tokens=64, messages=MESSAGES,
        extra_headers={"anthropic-beta": BETAS, "anthropic-version": "2023-06-01"})
    sent = raw.http_request.headers
    assert sent["anthropic-version"] == "2023-06-01"
    assert_message(raw.parse())
    assert_upstream_saw(gateway, raw.headers["x-request-id"], sent, stream=False)


def test_beta_messages_betas_reach_the_upstream(gateway: Gateway, tenant: TenantAccess) -> None:
    raw = gateway.anthropic(tenant).beta.messages.with_raw_response.create(
        model="claude", max_tokens=64, messages=[{"role": "user", "content": "hi"}],
        betas=["prompt-caching-2024-07-31"])
    sent = raw.http_request.headers
    assert sent["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert raw.parse().model == "claude"
    assert_upstream_saw(gateway, raw.headers["x-request-id"], sent, stream=False)


def test_create_streamed(gateway: Gateway, tenant: TenantAccess) -> None:
    raw = gateway.anthropic_x_api_key(tenant).messages.with_raw_response.create(
        model="claude", max_tokens=64, messages=MESSAGES, stream=True, extra_headers={"anthropic-beta": BETAS})
    events = list(raw.parse())
    assert_stream_events(events)
    assert_upstream_saw(gateway, raw.headers["x-request-id"], raw.http_request.headers, stream=True)


def test_stream_text_then_final_message(gateway: Gateway, tenant: TenantAccess) -> None:
    with bearer_client(gateway, tenant).messages.stream(
            model="claude", max_tokens=64, messages=MESSAGES, extra_headers={"x-mock-chunks": "7"}) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
        request_id = stream.response.headers["x-request-id"]
        sent = stream.response.request.headers
    assert text == "Hello from the mock upstream. Hello from"
    assert_message(final, text)
    assert final.usage.output_tokens == 7
    assert_upstream_saw(gateway, request_id, sent, stream=True)


def test_stream_final_message_alone(gateway: Gateway, tenant: TenantAccess) -> None:
    with gateway.anthropic_x_api_key(tenant).messages.stream(
            model="claude", max_tokens=64, messages=MESSAGES) as stream:
        final = stream.get_final_message()
    assert_message(final)


def test_models_list(gateway: Gateway, tenant: TenantAccess) -> None:
    for sdk in (gateway.anthropic_x_api_key(tenant), bearer_client(gateway, tenant)):
        page = sdk.models.list()
        assert [model.id for model in page.data] == ["chat-a", "claude"]
        assert all(model.type == "model" and model.display_name for model in page.data)


async def test_async_create(gateway: Gateway, tenant: TenantAccess) -> None:
    async with gateway.async_anthropic(tenant, x_api_key=True) as sdk:
        raw = await sdk.messages.with_raw_response.create(model="claude", max_tokens=64, messages=MESSAGES)
        message = await raw.parse()
    assert "x-api-key" in raw.http_request.headers
    assert_message(message)
    assert_upstream_saw(gateway, raw.headers["x-request-id"], raw.http_request.headers, stream=False)


async def test_async_create_streamed(gateway: Gateway, tenant: TenantAccess) -> None:
    async with gateway.async_anthropic(tenant) as sdk:
        raw = await sdk.messages.with_raw_response.create(
            model="claude", max_tokens=64, messages=MESSAGES, stream=True)
        events = [event async for event in await raw.parse()]
    assert "authorization" in raw.http_request.headers
    assert_stream_events(events)
    assert_upstream_saw(gateway, raw.headers["x-request-id"], raw.http_request.headers, stream=True)


async def test_async_stream_helper(gateway: Gateway, tenant: TenantAccess) -> None:
    async with gateway.async_anthropic(tenant, x_api_key=True) as sdk:
        async with sdk.messages.stream(model="claude", max_tokens=64, messages=MESSAGES,
                                       extra_headers={"anthropic-beta": BETAS}) as stream:
            text = "".join([piece async for piece in stream.text_stream])
            final = await stream.get_final_message()
            request_id = stream.response.headers["x-request-id"]
            sent = stream.response.request.headers
    assert_message(final, text)
    assert_upstream_saw(gateway, request_id, sent, stream=True)


async def test_async_models_list(gateway: Gateway, tenant: TenantAccess) -> None:
    async with gateway.async_anthropic(tenant) as sdk:
        page = await sdk.models.list()
        assert [model.id for model in page.data] == ["chat-a", "claude"]
        assert (await sdk.models.retrieve("claude")).id == "claude"


@pytest.mark.parametrize("stream", [False, True])
def test_raw_bodies_name_only_the_public_model(gateway: Gateway, tenant: TenantAccess, stream: bool) -> None:
    sent = anthropic_headers(tenant, **{"anthropic-beta": BETAS})
    status, received = gateway.http("POST", "/v1/messages", headers=sent, body=body(
        {"model": "claude", "max_tokens": 64, "messages": MESSAGES, "stream": stream}))
    assert status == 200, received
    assert_only_public_model(received, "claude")
    if stream:
        names = [name for name, _ in sse_events(received)]
        assert names[0] == "message_start" and names[-1] == "message_stop"
        usage = sse_json(received)[-2]["usage"]
    else:
        usage = received["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert_upstream_saw(gateway, gateway.last_headers["x-request-id"], sent, stream=stream)
