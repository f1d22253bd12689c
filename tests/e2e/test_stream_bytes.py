"""Envoy's ``lime.stream_bytes`` filter edits a stream exactly as the response tap did (extproc/stream_modes.py): the
client gets, byte for byte, what :class:`~lime.protocols.response_tap.ResponseTap` makes of what the upstream sent,
even when every event arrives cut in two (the mock's x-mock-split-ms) and the usage chunk Lime asked for is hidden."""

from __future__ import annotations

from typing import Any

import pytest

from lime.protocols.response_tap import ResponseTap
from tests.e2e.conftest import Gateway, TenantAccess

MESSAGES: Any = [{"role": "user", "content": "Split every event, please"}]


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "claude"])


def as_the_tap_wrote_it(sent: bytes, endpoint: str, public: str, *, hide_usage_chunk: bool) -> bytes:
    tap = ResponseTap(endpoint, public, hide_usage_chunk=hide_usage_chunk)
    tap.start(200, "text/event-stream")
    return tap.feed(sent) + tap.finish()


@pytest.mark.parametrize("asks_for_usage", [False, True])
def test_a_chat_stream_cut_mid_event_reaches_the_client_as_the_tap_wrote_it(
        gateway: Gateway, tenant: TenantAccess, asks_for_usage: bool) -> None:
    options: Any = {"stream_options": {"include_usage": True}} if asks_for_usage else {}
    client = gateway.openai(tenant)
    with client.chat.completions.with_streaming_response.create(
            model="chat-a", messages=MESSAGES, stream=True, **options,
            extra_headers={"x-mock-split-ms": "5", "x-mock-chunks": "5"}) as response:
        received = response.read()
        request_id = response.headers["x-request-id"]
    sent = gateway.mock_request(request_id)["answer"].encode()
    expected = as_the_tap_wrote_it(sent, "chat_completions", "chat-a", hide_usage_chunk=not asks_for_usage)
    assert received == expected
    assert (b'"usage":{' in received) is asks_for_usage
    assert b'"model":"chat-a"' in received and b"gpt-4o-mini" not in received


def test_an_anthropic_stream_cut_mid_event_keeps_every_byte_but_the_model_id(gateway: Gateway,
                                                                           tenant: TenantAccess) -> None:
    client = gateway.anthropic(tenant)
    with client.messages.with_streaming_response.create(
            model="claude", max_tokens=64, messages=MESSAGES, stream=True,
            extra_headers={"x-mock-split-ms": "5", "x-mock-chunks": "4"}) as response:
        received = response.read()
        request_id = response.headers["x-request-id"]
    sent = gateway.mock_request(request_id)["answer"].encode()
    assert received == as_the_tap_wrote_it(sent, "messages", "claude", hide_usage_chunk=False)
    assert received == sent.replace(b'"model":"claude-sonnet-4-5"', b'"model":"claude"')
