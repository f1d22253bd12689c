"""Streams that break: the client must see an error, never a clean end, and pays only for what it received.

A crashed upstream (the connection just ends) and an overloaded one (the provider's in-stream error event),
through Envoy with the official SDKs.
"""

from __future__ import annotations

import anthropic
import openai
import pytest

from tests.e2e.conftest import Gateway, TenantAccess
from tests.e2e.test_billing import record


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "claude"])


def test_an_upstream_that_dies_mid_stream_is_an_error_for_the_client(gateway: Gateway, tenant: TenantAccess) -> None:
    raw = gateway.openai(tenant).chat.completions.with_raw_response.create(
        model="chat-a", messages=[{"role": "user", "content": "hi"}], stream=True,
        extra_headers={"x-mock-chunks": "10", "x-mock-drop-after": "4", "x-mock-delay-ms": "20"})
    request_id = raw.headers["x-request-id"]
    received: list[str] = []
    # Not a clean end of stream: Envoy cuts the client's response too, and the SDK raises after what did arrive.
    with pytest.raises(openai.APIConnectionError):
        for chunk in raw.parse():
            received.extend(choice.delta.content or "" for choice in chunk.choices)
    assert 1 <= len([piece for piece in received if piece]) <= 3
    row = record(gateway, request_id)
    assert row["outcome"] == "partial" and row["estimated"] and row["output_tokens"] >= 1


def test_an_anthropic_overloaded_event_mid_stream_raises_and_bills_what_came(
        gateway: Gateway, tenant: TenantAccess) -> None:
    client = gateway.anthropic(tenant)
    texts: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as overloaded, client.messages.stream(
            model="claude", max_tokens=50, messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-mock-chunks": "10", "x-mock-error-after": "6"}) as stream:
        request_id = stream.response.headers["x-request-id"]
        texts.extend(stream.text_stream)
    assert "Overloaded" in str(overloaded.value)
    assert texts  # the text before the error did arrive
    row = record(gateway, request_id)
    assert row["outcome"] == "partial" and row["estimated"]
    assert row["input_tokens"] > 0  # reported by message_start, kept
    assert row["output_tokens"] >= len([t for t in texts if t])


def test_an_openai_error_event_mid_stream_raises(gateway: Gateway, tenant: TenantAccess) -> None:
    raw = gateway.openai(tenant).chat.completions.with_raw_response.create(
        model="chat-a", messages=[{"role": "user", "content": "hi"}], stream=True,
        extra_headers={"x-mock-chunks": "10", "x-mock-error-after": "5"})
    request_id = raw.headers["x-request-id"]
    with pytest.raises(openai.APIError) as failed:
        for _ in raw.parse():
            pass
    assert "server had an error" in str(failed.value)
    row = record(gateway, request_id)
    assert row["outcome"] == "partial" and row["estimated"]
