"""Usage reported and the answer complete: ``complete``, the upstream's exact numbers, not ``estimated``; each part
at its own rate, the same however the stream was split, and billed even where the gateway hid the usage chunk."""

from __future__ import annotations

import json

import pytest

from lime.money.settlement import settlement_for
from lime.protocols.response_tap import ResponseTap
from tests.provider_fixtures import provider_fixture
from tests.unit.money.settlement.taps import GRANT, JSON, SSE, assert_priced, grant, tap_of, tokens


@pytest.mark.parametrize(("name", "endpoint", "expected"), [
    # (input not from the cache, cache reads, cache writes, output, reasoning), as the README facts state.
    ("openai-chat-stream-include-usage.sse", "chat_completions", (14, 0, 0, 8, 0)),
    ("openai-chat-stream-reasoning-usage.sse", "chat_completions", (12, 0, 0, 100, 100)),
    ("openai-chat-stream-tool-call.sse", "chat_completions", (53, 0, 0, 15, 0)),
    ("openai-responses-stream.sse", "responses", (20, 0, 0, 10, 0)),
    ("openai-responses-stream-function-call.sse", "responses", (53, 0, 0, 469, 448)),
    ("anthropic-messages-stream.sse", "messages", (20, 0, 0, 5, 0)),
    ("anthropic-messages-stream-sdk-basic.sse", "messages", (11, 0, 0, 6, 0)),
    ("anthropic-messages-stream-tool-use.sse", "messages", (377, 0, 0, 65, 0)),
])
def test_complete_stream_is_billed_from_the_reported_usage(
        name: str, endpoint: str, expected: tuple[int, int, int, int, int]) -> None:
    g = grant(endpoint)
    event = settlement_for(g, tap_of(endpoint, provider_fixture(name).read_bytes()))
    assert (event.outcome, event.estimated, event.upstream_status) == ("complete", False, 200)
    assert tokens(event) == expected
    assert_priced(event, g)
    assert event.cost > 0


def test_hidden_usage_chunk_is_still_billed() -> None:
    # The gateway added include_usage: the client does not see the usage chunk, but it is paid for.
    body = provider_fixture("openai-chat-stream-include-usage.sse").read_bytes()
    event = settlement_for(GRANT, tap_of("chat_completions", body, hide_usage_chunk=True))
    assert (event.outcome, event.estimated) == ("complete", False)
    assert tokens(event) == (14, 0, 0, 8, 0)
    assert event.cost == 14 * 3 + 8 * 15


def test_stream_split_into_bytes_bills_the_same() -> None:
    body = provider_fixture("anthropic-messages-stream.sse").read_bytes()
    tap = ResponseTap("messages", GRANT.model)
    tap.start(200, SSE)
    for i in range(len(body)):
        tap.feed(body[i:i + 1])
    tap.finish()
    whole = settlement_for(grant("messages"), tap_of("messages", body))
    assert settlement_for(grant("messages"), tap) == whole


@pytest.mark.parametrize(("name", "endpoint", "expected"), [
    ("openai-chat-completion-cached.json", "chat_completions", (8, 4012, 0, 4, 0)),
    ("openai-chat-completion-reasoning.json", "chat_completions", None),
    ("openai-responses.json", "responses", (8, 4012, 0, 5, 0)),
    ("anthropic-messages-cache.json", "messages", (3, 1111, 403, 33, 0)),
    ("openai-embeddings-float.json", "embeddings", None),
    ("openai-embeddings-base64.json", "embeddings", None),
])
def test_json_body_is_complete_with_its_usage(
        name: str, endpoint: str, expected: tuple[int, int, int, int, int] | None) -> None:
    raw = provider_fixture(name).read_bytes()
    g = grant(endpoint)
    event = settlement_for(g, tap_of(endpoint, raw, content_type=JSON))
    assert (event.outcome, event.estimated, event.upstream_status) == ("complete", False, 200)
    assert_priced(event, g)
    assert event.cost > 0
    if expected is not None:
        assert tokens(event) == expected
    usage = json.loads(raw)["usage"]
    if endpoint == "embeddings":
        assert tokens(event) == (usage["prompt_tokens"], 0, 0, 0, 0)
    if endpoint == "chat_completions":
        assert event.input_tokens + event.cached_input_tokens == usage["prompt_tokens"]
        assert event.output_tokens == usage["completion_tokens"]
        assert event.reasoning_tokens == usage["completion_tokens_details"]["reasoning_tokens"]


def test_cache_parts_are_priced_at_their_own_rates() -> None:
    raw = provider_fixture("anthropic-messages-cache.json").read_bytes()
    event = settlement_for(grant("messages"), tap_of("messages", raw, content_type=JSON))
    # 3 uncached + 403 written at 3 points, 1111 read at 1.5, 33 out at 15 (per token, micro-points).
    assert event.cost == -(-((3 + 403) * 3_000_000 + 1111 * 1_500_000 + 33 * 15_000_000) // 1_000_000)
