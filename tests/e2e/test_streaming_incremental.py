"""Streams arrive as the upstream produces them: with 20 text pieces 50 ms apart, a gateway that buffered (the
whole body, or for a rewrite) would hand the client its first piece together with its last.

Behavioural, not a benchmark: the assertions are about the spread of arrivals at the client (monotonic clock),
with generous margins: the first piece at least 500 ms before the last (they are produced ~950 ms apart), and
at least 15 of the 19 gaps longer than 20 ms (each is produced 50 ms after the one before)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from typing import Any

import pytest

from tests.e2e.conftest import Gateway, TenantAccess

PIECES = 20
SLOW = {"x-mock-chunks": str(PIECES), "x-mock-delay-ms": "50"}
MESSAGES: Any = [{"role": "user", "content": "slowly"}]


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "claude"])


def arrival_times(pieces: Iterable[object]) -> list[float]:
    """The monotonic time each item of ``pieces`` reached the client."""
    return [time.monotonic() for _ in pieces]


def assert_incremental(arrivals: list[float]) -> None:
    assert len(arrivals) == PIECES
    spread = arrivals[-1] - arrivals[0]
    assert spread > 0.5, f"all {PIECES} pieces arrived within {spread * 1000:.0f} ms: the stream was buffered"
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    spaced = sum(1 for gap in gaps if gap > 0.02)
    assert spaced >= 15, f"only {spaced} of {len(gaps)} pieces arrived on their own: {[round(g, 3) for g in gaps]}"


def test_chat_completions(gateway: Gateway, tenant: TenantAccess) -> None:
    stream = gateway.openai(tenant).chat.completions.create(
        model="chat-a", messages=MESSAGES, stream=True, extra_headers=SLOW)
    assert_incremental(arrival_times(chunk for chunk in stream if chunk.choices and chunk.choices[0].delta.content))


async def test_chat_completions_async(gateway: Gateway, tenant: TenantAccess) -> None:
    async with gateway.async_openai(tenant) as sdk:
        stream = await sdk.chat.completions.create(model="chat-a", messages=MESSAGES, stream=True,
                                                   stream_options={"include_usage": True}, extra_headers=SLOW)
        arrivals = [time.monotonic() async for chunk in stream if chunk.choices and chunk.choices[0].delta.content]
    assert_incremental(arrivals)


def test_responses(gateway: Gateway, tenant: TenantAccess) -> None:
    stream = gateway.openai(tenant).responses.create(model="chat-a", input="slowly", stream=True,
                                                     extra_headers=SLOW)
    assert_incremental(arrival_times(event for event in stream if event.type == "response.output_text.delta"))


def test_responses_stream_helper(gateway: Gateway, tenant: TenantAccess) -> None:
    with gateway.openai(tenant).responses.stream(model="chat-a", input="slowly", extra_headers=SLOW) as stream:
        assert_incremental(arrival_times(event for event in stream if event.type == "response.output_text.delta"))


def test_anthropic_messages_text_stream(gateway: Gateway, tenant: TenantAccess) -> None:
    with gateway.anthropic(tenant).messages.stream(model="claude", max_tokens=64, messages=MESSAGES,
                                                   extra_headers=SLOW) as stream:
        assert_incremental(arrival_times(stream.text_stream))


def test_anthropic_messages_raw_events(gateway: Gateway, tenant: TenantAccess) -> None:
    stream = gateway.anthropic_x_api_key(tenant).messages.create(
        model="claude", max_tokens=64, messages=MESSAGES, stream=True, extra_headers=SLOW)
    assert_incremental(arrival_times(event for event in stream if event.type == "content_block_delta"))
