"""Cut off (a prefix of the stream and no end, or ``event: error``): ``partial`` and ``estimated``; input is the
reported one where the upstream sent it (Anthropic ``message_start``), else the reservation's estimate; output is
counted from what the client received (:func:`lime.protocols.output_count.count_output`: the larger of the text events
and the tokenizer's count of their text, :func:`lime.protocols.token_count.count_tokens`), never below what the upstream
reported, and never more than the whole answer's."""

from __future__ import annotations

import json

import pytest

from lime.money.settlement import settlement_for
from lime.protocols.output_count import count_output
from tests.provider_fixtures import provider_fixture
from tests.unit.money.settlement.taps import GRANT, assert_priced, data_of, events_of, grant, lime_count, prefix, tap_of


def test_chat_stream_cut_in_the_middle_is_partial_and_counted() -> None:
    # Role chunk (content ""), then "The", " capital", " of", " Mexico"; the fifth text chunk is half there.
    body = prefix("openai-chat-stream-include-usage.sse", 5)
    tap = tap_of("chat_completions", body, finish=False)
    event = settlement_for(GRANT, tap)
    assert (event.outcome, event.estimated, event.upstream_status) == ("partial", True, 200)
    assert (event.input_tokens, event.output_tokens) == (GRANT.input_estimate, lime_count(4, "The capital of Mexico"))
    assert event.cached_input_tokens == event.cache_write_tokens == 0
    assert_priced(event, GRANT)


def test_chat_stream_cut_without_usage_counts_what_was_delivered() -> None:
    # The role chunk (content ""), then "Hi", " there", "!", " How" delivered.
    body = prefix("openai-chat-stream.sse", 5)
    event = settlement_for(GRANT, tap_of("chat_completions", body, finish=False))
    assert (event.outcome, event.estimated, event.input_tokens, event.output_tokens) == (
        "partial", True, GRANT.input_estimate, lime_count(4, "Hi there! How"))
    assert event.output_tokens >= 4


def test_responses_stream_cut_before_completed_is_partial() -> None:
    raw = provider_fixture("openai-responses-stream.sse").read_bytes()
    completed = raw.index(b"event: response.completed")
    tap = tap_of("responses", raw[:completed], finish=False)
    event = settlement_for(grant("responses"), tap)
    assert (event.outcome, event.estimated, event.input_tokens) == ("partial", True, GRANT.input_estimate)
    deltas = [json.loads(d)["delta"] for d in data_of(raw[:completed]) if json.loads(d)["type"].endswith(".delta")]
    assert len(deltas) == 6
    assert event.output_tokens == lime_count(len(deltas), "".join(deltas)) >= 6


def test_anthropic_cut_after_message_start_keeps_the_reported_input() -> None:
    # message_start (input 20, output 1), content_block_start, ping, one text delta "2"; then the stream breaks.
    body = prefix("anthropic-messages-stream.sse", 4)
    event = settlement_for(grant("messages"), tap_of("messages", body, finish=False))
    assert event.outcome == "partial"
    assert (event.input_tokens, event.cached_input_tokens, event.cache_write_tokens) == (20, 0, 0)
    assert event.output_tokens == 1  # max(reported 1, counted 1)
    assert_priced(event, grant("messages"))


def test_anthropic_cut_keeps_input_and_counts_output_beyond_the_report() -> None:
    # message_start (input 11, output 1), then "Hello", " there" and the stream breaks mid-event.
    body = prefix("anthropic-messages-stream-sdk-basic.sse", 5)
    event = settlement_for(grant("messages"), tap_of("messages", body, finish=False))
    assert (event.outcome, event.estimated) == ("partial", True)
    assert (event.input_tokens, event.output_tokens) == (11, lime_count(2, "Hello there"))
    assert event.output_tokens > 1  # more than message_start reported


def test_anthropic_error_event_is_partial_with_reported_input() -> None:
    body = provider_fixture("anthropic-messages-stream-error.sse").read_bytes()
    tap = tap_of("messages", body)
    assert tap.failed
    event = settlement_for(grant("messages"), tap)
    assert (event.outcome, event.estimated, event.upstream_status) == ("partial", True, 200)
    assert (event.input_tokens, event.output_tokens) == (11, lime_count(2, "Hello there"))
    assert_priced(event, grant("messages"))


def test_cut_after_message_start_only_bills_at_least_the_reported_output() -> None:
    body = prefix("anthropic-messages-stream.sse", 1)
    event = settlement_for(grant("messages"), tap_of("messages", body, finish=False))
    assert (event.outcome, event.input_tokens, event.output_tokens) == ("partial", 20, 1)


@pytest.mark.parametrize(("name", "endpoint"), [
    ("openai-chat-stream-include-usage.sse", "chat_completions"),
    ("openai-chat-stream.sse", "chat_completions"),
    ("openai-chat-stream-tool-call.sse", "chat_completions"),
    ("openai-responses-stream.sse", "responses"),
    ("openai-responses-stream-function-call.sse", "responses"),
    ("anthropic-messages-stream.sse", "messages"),
    ("anthropic-messages-stream-tool-use.sse", "messages"),
])
def test_every_cut_is_partial_and_counts_no_more_output_than_the_whole(name: str, endpoint: str) -> None:
    g = grant(endpoint)
    raw = provider_fixture(name).read_bytes()
    whole = settlement_for(g, tap_of(endpoint, raw))
    for events in range(1, len(events_of(raw)) - 1):
        event = settlement_for(g, tap_of(endpoint, prefix(name, events), finish=False))
        assert event.outcome == "partial", events
        assert event.output_tokens <= max(whole.output_tokens, count_output(endpoint, data_of(raw)))
        assert_priced(event, g)
