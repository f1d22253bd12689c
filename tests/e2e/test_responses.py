"""The Responses API through Envoy with the official openai SDK, sync and async, JSON and SSE: the client sees
its public model id and the usage, the upstream sees its own id, and ``x-request-id`` names the request both
sides saw."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from openai.types.responses import Response, ResponseStreamEvent

from tests.e2e.conftest import Gateway, TenantAccess
from tests.e2e.helpers import assert_only_public_model, body, openai_headers, sse_json

PROMPT = "Say hi"


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "claude", "embed"])


def assert_final_response(response: Response, text: str | None = None) -> None:
    assert response.model == "chat-a"
    assert response.status == "completed"
    assert response.output_text
    if text is not None:
        assert response.output_text == text
    usage = response.usage
    assert usage is not None
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


def assert_stream_events(events: Sequence[ResponseStreamEvent]) -> str:
    """Every event that carries the response names the public model; returns the streamed text."""
    assert [event.sequence_number for event in events] == list(range(len(events)))
    snapshots = [event.response for event in events if hasattr(event, "response")]
    assert len(snapshots) == 3  # created, in_progress, completed
    assert {snapshot.model for snapshot in snapshots} == {"chat-a"}
    assert events[-1].type == "response.completed"
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert text
    assert_final_response(events[-1].response, text)
    return text


def assert_upstream_saw(gateway: Gateway, request_id: str, *, stream: bool) -> dict[str, Any]:
    seen = gateway.mock_request(request_id)
    assert seen["path"] == "/v1/responses"
    assert seen["model"] == "gpt-4o-mini"
    assert seen["stream"] is stream
    assert seen["body"]["input"] == PROMPT
    return seen


def test_create(gateway: Gateway, tenant: TenantAccess) -> None:
    raw = gateway.openai(tenant).responses.with_raw_response.create(model="chat-a", input=PROMPT)
    response = raw.parse()
    assert_final_response(response)
    seen = assert_upstream_saw(gateway, raw.headers["x-request-id"], stream=False)
    assert seen["usage"]["output_tokens"] == response.usage.output_tokens  # type: ignore[union-attr]


def test_create_streamed(gateway: Gateway, tenant: TenantAccess) -> None:
    raw = gateway.openai(tenant).responses.with_raw_response.create(model="chat-a", input=PROMPT, stream=True)
    events = list(raw.parse())
    assert_stream_events(events)
    assert_upstream_saw(gateway, raw.headers["x-request-id"], stream=True)


def test_stream_helper(gateway: Gateway, tenant: TenantAccess) -> None:
    with gateway.openai(tenant).responses.stream(model="chat-a", input=PROMPT,
                                                 extra_headers={"x-mock-chunks": "12"}) as stream:
        events = list(stream)
        final = stream.get_final_response()
    text = assert_stream_events(events)
    assert_final_response(final, text)
    assert final.usage is not None and final.usage.output_tokens == 12


async def test_async_create(gateway: Gateway, tenant: TenantAccess) -> None:
    async with gateway.async_openai(tenant) as sdk:
        raw = await sdk.responses.with_raw_response.create(model="chat-a", input=PROMPT)
        response = raw.parse()
    assert_final_response(response)
    assert_upstream_saw(gateway, raw.headers["x-request-id"], stream=False)


async def test_async_create_streamed(gateway: Gateway, tenant: TenantAccess) -> None:
    async with gateway.async_openai(tenant) as sdk:
        raw = await sdk.responses.with_raw_response.create(model="chat-a", input=PROMPT, stream=True)
        events = [event async for event in raw.parse()]
    assert_stream_events(events)
    assert_upstream_saw(gateway, raw.headers["x-request-id"], stream=True)


async def test_async_stream_helper(gateway: Gateway, tenant: TenantAccess) -> None:
    async with gateway.async_openai(tenant) as sdk:
        async with sdk.responses.stream(model="chat-a", input=PROMPT) as stream:
            events = [event async for event in stream]
            final = await stream.get_final_response()
    text = assert_stream_events(events)
    assert_final_response(final, text)


@pytest.mark.parametrize("stream", [False, True])
def test_raw_bodies_name_only_the_public_model(gateway: Gateway, tenant: TenantAccess, stream: bool) -> None:
    status, received = gateway.http("POST", "/v1/responses", headers=openai_headers(tenant),
                                     body=body({"model": "chat-a", "input": PROMPT, "stream": stream}))
    assert status == 200, received
    assert_only_public_model(received, "chat-a")
    final = sse_json(received)[-1]["response"] if stream else received
    assert final["usage"]["input_tokens"] > 0 and final["usage"]["output_tokens"] > 0
    assert_upstream_saw(gateway, gateway.last_headers["x-request-id"], stream=stream)
