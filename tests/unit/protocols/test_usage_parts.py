"""What the usage readers pin for the parts priced apart (fixtures README, facts 21-31), read through the response
tap from the recorded bodies, as settlement sees them:

* Anthropic cache writes split by lifetime: the 1-hour part as labelled, everything else 5 minutes, also when a
  stream's ``message_delta`` repeats a larger total without the split (fact 22);
* server tool calls per HTTP response: Anthropic's ``server_tool_use.*_requests`` (10 in a paused turn, 5 in its
  continuation, never the ``server_tool_use`` blocks), Responses' ``web_search_call`` items or
  ``tool_usage.web_search.num_requests``, the larger;
* audio tokens as the audio share of the input and output totals (fact 31);
* the service tier served: OpenAI's top level or response object, final only in ``response.completed`` (fact 30);
  Anthropic's inside ``usage``.
"""

from __future__ import annotations

import pytest

from lime.protocols.response_tap import ResponseTap
from lime.protocols.usage import Usage, anthropic_usage, with_body_facts
from tests.provider_fixtures import provider_fixture


def tapped(endpoint: str, name: str) -> Usage:
    """The final usage the tap reads from a whole recorded answer."""
    tap = ResponseTap(endpoint, "public-model")
    content_type = "text/event-stream" if name.endswith(".sse") else "application/json"
    tap.start(200, content_type)
    tap.feed(provider_fixture(name).read_bytes())
    tap.finish()
    assert tap.usage is not None and tap.usage_final and tap.errors == 0
    return tap.usage


def test_anthropic_cache_writes_are_split_by_lifetime() -> None:
    usage = tapped("messages", "anthropic-messages-cache-1h.json")
    assert (usage.cache_write_tokens, usage.cache_write_1h_tokens) == (14, 2056)
    assert usage.total_input_tokens == 3 + 2070
    assert usage.service_tier == "standard"


def test_a_1h_only_write_has_no_5m_part() -> None:
    usage = tapped("messages", "anthropic-messages-cache-1h-only.json")
    assert (usage.cache_write_tokens, usage.cache_write_1h_tokens) == (0, 2056)


def test_a_total_without_its_split_is_5m() -> None:
    assert anthropic_usage({"input_tokens": 1, "cache_creation_input_tokens": 500, "output_tokens": 2}) == Usage(
        input_tokens=1, cache_write_tokens=500, output_tokens=2)


def test_a_stream_total_that_grows_after_message_start_keeps_the_labelled_1h_part() -> None:
    start = anthropic_usage({"input_tokens": 10, "cache_creation_input_tokens": 300, "output_tokens": 1,
                             "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200}})
    final = anthropic_usage({"cache_creation_input_tokens": 1300, "output_tokens": 50}, start)
    assert final is not None
    assert (final.cache_write_tokens, final.cache_write_1h_tokens) == (1100, 200)


def test_anthropic_web_search_json_counts_the_requests() -> None:
    usage = tapped("messages", "anthropic-messages-web-search.json")
    assert usage.server_tool_calls == (("web_search", 1),)  # web_fetch_requests 0 is no call
    assert (usage.cache_write_tokens, usage.cached_input_tokens) == (11107, 2836)


@pytest.mark.parametrize(("name", "calls", "input_tokens", "cache_writes"), [
    ("anthropic-messages-stream-web-search.sse", 1, 2254, 17269),  # fact 22: the total grew after message_start
    ("anthropic-messages-stream-web-search-pause-turn.sse", 10, 404500, 0),  # 11 uses, 10 ran (fact 25)
    ("anthropic-messages-stream-web-search-resumed.sse", 5, 482529, 0),
])
def test_anthropic_web_search_streams_count_the_searches_run_in_that_response(
        name: str, calls: int, input_tokens: int, cache_writes: int) -> None:
    usage = tapped("messages", name)
    assert usage.server_tool_calls == (("web_search", calls),)
    assert usage.input_tokens == input_tokens
    assert (usage.cache_write_tokens, usage.cache_write_1h_tokens) == (cache_writes, 0)


def test_responses_web_search_json_counts_its_call_items() -> None:
    usage = tapped("responses", "openai-responses-web-search.json")
    assert usage.server_tool_calls == (("web_search", 1),)
    assert usage.service_tier == "default"
    assert usage.input_tokens == 17391


def test_responses_web_search_stream_reads_the_final_response() -> None:
    usage = tapped("responses", "openai-responses-stream-web-search.sse")
    assert usage.server_tool_calls == (("web_search", 1),)
    assert usage.service_tier == "default"  # `auto` in response.created, final only in response.completed
    assert (usage.input_tokens, usage.output_tokens) == (17508, 201)


def test_call_items_beyond_the_reported_count_are_each_a_call() -> None:
    body = {"output": [{"type": "web_search_call"}, {"type": "web_search_call"}, {"type": "file_search_call"},
                       {"type": "message"}], "tool_usage": {"web_search": {"num_requests": 1}}}
    usage = with_body_facts(Usage(input_tokens=5), body)
    assert usage is not None and usage.server_tool_calls == (("file_search", 1), ("web_search", 2))


@pytest.mark.parametrize(("endpoint", "name"), [
    ("chat_completions", "openai-chat-service-tier-priority.json"),
    ("responses", "openai-responses-service-tier-priority.json"),
])
def test_the_priority_tier_served_is_read(endpoint: str, name: str) -> None:
    assert tapped(endpoint, name).service_tier == "priority"


def test_a_responses_stream_tier_is_the_completed_ones() -> None:
    assert tapped("responses", "openai-responses-stream-function-call.sse").service_tier == "flex"


def test_audio_input_tokens_are_a_share_of_the_prompt() -> None:
    usage = tapped("chat_completions", "openai-chat-audio-input-usage.json")
    assert (usage.input_tokens, usage.audio_input_tokens, usage.output_tokens, usage.audio_output_tokens) == (
        21, 2, 1, 0)


def test_audio_output_tokens_are_a_share_of_the_completion() -> None:
    usage = tapped("chat_completions", "openai-chat-audio-output-usage.json")
    assert (usage.input_tokens, usage.audio_input_tokens, usage.output_tokens, usage.audio_output_tokens) == (
        22, 0, 18, 12)
    assert usage.service_tier == "default"


def test_audio_beyond_its_total_is_capped() -> None:
    body = {"usage": {"prompt_tokens": 5, "completion_tokens": 3, "prompt_tokens_details": {"audio_tokens": 9},
                      "completion_tokens_details": {"audio_tokens": 7}}}
    usage = with_body_facts(Usage(), body)
    assert usage == Usage()
    from lime.protocols.usage import chat_usage
    read = chat_usage(body["usage"])
    assert read is not None and (read.audio_input_tokens, read.audio_output_tokens) == (5, 3)
