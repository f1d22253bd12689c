"""What a provider's answer carries for the client alone passes through Lime byte for byte: Anthropic thinking
blocks with their signatures and ``redacted_thinking`` (JSON and streamed as ``thinking_delta`` /
``signature_delta``), and Responses ``reasoning`` items with ``encrypted_content``. What the client sends back
(a thinking block with its signature, ``cache_control``, ``anthropic-beta``) reaches the upstream unchanged.
The mock records the bytes it sent; the only change Lime makes is the model id (README)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lime.devstack.mock_upstream.turns import REDACTED_THINKING_TRIGGER
from tests.e2e.conftest import Gateway, TenantAccess

UPSTREAM_CLAUDE, UPSTREAM_CHAT = "claude-sonnet-4-5", "gpt-4o-mini"
THINKING: Any = {"type": "enabled", "budget_tokens": 1024}
PROMPT: Any = [{"role": "user", "content": f"Think. {REDACTED_THINKING_TRIGGER}46C9A13E"}]


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["claude", "chat-a"], points=10**12)


def as_public(sent: str, upstream: str, public: str) -> bytes:
    return sent.replace(f'"model":"{upstream}"', f'"model":"{public}"').encode()


def test_thinking_blocks_reach_the_client_byte_for_byte(gateway: Gateway, tenant: TenantAccess) -> None:
    raw = gateway.anthropic(tenant).messages.with_raw_response.create(
        model="claude", max_tokens=2048, thinking=THINKING, messages=PROMPT)
    sent = gateway.mock_request(raw.headers["x-request-id"])["answer"]
    assert raw.http_response.content == as_public(sent, UPSTREAM_CLAUDE, "claude")
    kinds = [block.type for block in raw.parse().content]
    assert kinds == ["thinking", "redacted_thinking", "text"]


def test_streamed_thinking_and_signature_deltas_reach_the_client_byte_for_byte(gateway: Gateway,
                                                                                tenant: TenantAccess) -> None:
    client = gateway.anthropic(tenant)
    with client.messages.with_streaming_response.create(model="claude", max_tokens=2048, thinking=THINKING,
                                                        messages=PROMPT, stream=True) as response:
        received = response.read()
        request_id = response.headers["x-request-id"]
    sent = gateway.mock_request(request_id)["answer"]
    assert b"signature_delta" in received and b"thinking_delta" in received and b"redacted_thinking" in received
    assert received == as_public(sent, UPSTREAM_CLAUDE, "claude")


def test_a_thinking_block_sent_back_reaches_the_upstream_unchanged(gateway: Gateway, tenant: TenantAccess) -> None:
    client = gateway.anthropic(tenant)
    first = client.messages.create(model="claude", max_tokens=2048, thinking=THINKING, messages=PROMPT)
    returned = [block.model_dump(exclude_none=True) for block in first.content]
    history: Any = [*PROMPT, {"role": "assistant", "content": returned},
                    {"role": "user", "content": [{"type": "text", "text": "Go on.",
                                                  "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}]
    beta = "interleaved-thinking-2025-05-14,extended-cache-ttl-2025-04-11"
    raw = client.messages.with_raw_response.create(
        model="claude", max_tokens=2048, thinking=THINKING, messages=history,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        extra_headers={"anthropic-beta": beta})
    seen = gateway.mock_request(raw.headers["x-request-id"])
    assert seen["body"]["messages"] == json.loads(json.dumps(history))
    assert seen["body"]["messages"][1]["content"][0]["signature"] == first.content[0].signature  # type: ignore[union-attr]
    assert seen["body"]["system"] == [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    assert seen["headers"]["anthropic-beta"] == beta


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_encrypted_reasoning_reaches_the_client_byte_for_byte(gateway: Gateway, tenant: TenantAccess,
                                                              stream: bool) -> None:
    client = gateway.openai(tenant)
    with client.responses.with_streaming_response.create(
            model="chat-a", input="Think.", store=False, include=["reasoning.encrypted_content"],
            stream=stream) as response:
        received = response.read()
        request_id = response.headers["x-request-id"]
    sent = gateway.mock_request(request_id)["answer"]
    assert b'"encrypted_content":"gAAAAAB' in received
    assert received == as_public(sent, UPSTREAM_CHAT, "chat-a")
