"""What :mod:`lime.protocols.usage` pins: each provider's usage object, read into one :class:`Usage` of disjoint parts.

* the recorded usage objects give the exact numbers in the fixture files: OpenAI cached tokens are *part of*
  ``prompt_tokens``/``input_tokens`` (README fact 8, 9: 4012 of 4020), reasoning tokens are part of the output
  (192 of 267), Anthropic cache reads and writes are *beside* ``input_tokens`` (fact 15: 3 + 403 + 1111), and an
  Anthropic ``message_delta`` replaces the cumulative ``output_tokens`` instead of adding to it (fact 14);
* a field that is missing, null, negative, a bool, a float or anything but a count reads as 0, and nothing the
  upstream sends makes a reader raise; a usage that is not an object gives ``None``;
* cached tokens are capped by the total they are part of, so the uncached part is never negative.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lime.protocols.sse import parse_event
from lime.protocols.usage import Usage, anthropic_usage, chat_usage, embeddings_usage, responses_usage
from tests.provider_fixtures import provider_fixture


def body_usage(name: str) -> Any:
    return json.loads(provider_fixture(name).read_bytes())["usage"]


def stream_payloads(name: str) -> list[dict[str, Any]]:
    """The JSON payloads of a fixture stream, in order (the tap's framing is tested elsewhere)."""
    payloads = []
    for raw in provider_fixture(name).read_bytes().split(b"\n\n"):
        data = parse_event(raw).data
        if data is not None and data != b"[DONE]":
            payloads.append(json.loads(data))
    return payloads


# -- the fixtures -----------------------------------------------------------------------------------------------


def test_usage_totals_add_the_disjoint_parts() -> None:
    usage = Usage(input_tokens=3, cached_input_tokens=1111, cache_write_tokens=403, output_tokens=33,
                  reasoning_tokens=7)
    assert usage.total_input_tokens == 1517
    assert usage.total_tokens == 1550  # reasoning is part of the output, not added again
    assert Usage().total_tokens == 0


def test_chat_completion_with_reasoning() -> None:
    usage = chat_usage(body_usage("openai-chat-completion-reasoning.json"))
    assert usage == Usage(input_tokens=27, cached_input_tokens=0, output_tokens=267, reasoning_tokens=192)
    assert usage.total_tokens == 294  # the fixture's own total_tokens


def test_chat_completion_cached_tokens_are_part_of_the_prompt() -> None:
    usage = chat_usage(body_usage("openai-chat-completion-cached.json"))
    assert usage == Usage(input_tokens=8, cached_input_tokens=4012, output_tokens=4)
    assert usage.total_tokens == 4024


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("openai-chat-stream-include-usage.sse", Usage(input_tokens=14, output_tokens=8)),
        ("openai-chat-stream-reasoning-usage.sse", Usage(input_tokens=12, output_tokens=100, reasoning_tokens=100)),
        ("openai-chat-stream-tool-call.sse", Usage(input_tokens=53, output_tokens=15)),
    ],
)
def test_chat_stream_usage_chunk(name: str, expected: Usage) -> None:
    payloads = stream_payloads(name)
    usage_chunk = payloads[-1]
    assert usage_chunk["choices"] == []
    assert chat_usage(usage_chunk["usage"]) == expected
    assert all(chat_usage(chunk["usage"]) is None for chunk in payloads[:-1])  # `"usage":null` reads as none


def test_responses_body_cached_tokens_are_part_of_the_input() -> None:
    usage = responses_usage(body_usage("openai-responses.json"))
    assert usage == Usage(input_tokens=8, cached_input_tokens=4012, output_tokens=5, reasoning_tokens=0)
    assert usage.total_tokens == 4025


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("openai-responses-stream.sse", Usage(input_tokens=20, output_tokens=10)),
        ("openai-responses-stream-function-call.sse", Usage(input_tokens=53, output_tokens=469, reasoning_tokens=448)),
    ],
)
def test_responses_stream_completed_usage(name: str, expected: Usage) -> None:
    payloads = stream_payloads(name)
    assert payloads[-1]["type"] == "response.completed"
    assert responses_usage(payloads[-1]["response"]["usage"]) == expected
    assert responses_usage(payloads[0]["response"]["usage"]) is None  # response.created has `"usage":null`


@pytest.mark.parametrize("name", ["openai-embeddings-float.json", "openai-embeddings-base64.json"])
def test_embeddings(name: str) -> None:
    assert embeddings_usage(body_usage(name)) == Usage(input_tokens=7)


def test_anthropic_body_cache_reads_and_writes_are_beside_the_input() -> None:
    usage = anthropic_usage(body_usage("anthropic-messages-cache.json"))
    assert usage == Usage(input_tokens=3, cached_input_tokens=1111, cache_write_tokens=403, output_tokens=33)
    assert usage.total_input_tokens == 3 + 403 + 1111


@pytest.mark.parametrize(
    ("name", "at_start", "at_end"),
    [
        # Current API: message_delta repeats the input side.
        ("anthropic-messages-stream.sse", Usage(input_tokens=20, output_tokens=1),
         Usage(input_tokens=20, output_tokens=5)),
        # Older streams: message_delta has output_tokens only; the input side stays from message_start.
        ("anthropic-messages-stream-sdk-basic.sse", Usage(input_tokens=11, output_tokens=1),
         Usage(input_tokens=11, output_tokens=6)),
        ("anthropic-messages-stream-tool-use.sse", Usage(input_tokens=377, output_tokens=1),
         Usage(input_tokens=377, output_tokens=65)),
    ],
)
def test_anthropic_stream_delta_output_is_cumulative(name: str, at_start: Usage, at_end: Usage) -> None:
    payloads = stream_payloads(name)
    start = next(p for p in payloads if p["type"] == "message_start")
    delta = next(p for p in payloads if p["type"] == "message_delta")
    first = anthropic_usage(start["message"]["usage"])
    assert first == at_start
    assert anthropic_usage(delta["usage"], first) == at_end  # 5, not 1 + 5


def test_anthropic_delta_input_side_wins_when_present() -> None:
    earlier = Usage(input_tokens=20, cached_input_tokens=5, cache_write_tokens=6, output_tokens=1)
    assert anthropic_usage({"output_tokens": 9}, earlier) == Usage(20, 5, 6, 9)
    assert anthropic_usage({"input_tokens": 21, "cache_read_input_tokens": 7, "cache_creation_input_tokens": 8,
                            "output_tokens": 9}, earlier) == Usage(21, 7, 8, 9)
    # A null field is "not said", so the earlier value stands.
    assert anthropic_usage({"input_tokens": None, "output_tokens": 9}, earlier) == Usage(20, 5, 6, 9)
    assert anthropic_usage(None, earlier) is earlier
    assert anthropic_usage("junk", earlier) is earlier
    assert anthropic_usage(None) is None


# -- odd values ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, -1, -4020, True, False, 3.0, 1e9, "12", [12], {"n": 12}])
def test_anything_but_a_count_reads_as_zero(value: Any) -> None:
    assert chat_usage({"prompt_tokens": value, "completion_tokens": value}) == Usage()
    assert responses_usage({"input_tokens": value, "output_tokens": value}) == Usage()
    assert embeddings_usage({"prompt_tokens": value}) == Usage()
    assert chat_usage({"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": value},
                       "completion_tokens_details": {"reasoning_tokens": value}}) == Usage(input_tokens=10)
    assert anthropic_usage({"input_tokens": value, "cache_read_input_tokens": value,
                            "cache_creation_input_tokens": value, "output_tokens": value}) == Usage()


@pytest.mark.parametrize("details", [None, 5, "x", [], [{"cached_tokens": 3}]])
def test_details_that_are_not_objects_read_as_zero(details: Any) -> None:
    assert chat_usage({"prompt_tokens": 10, "prompt_tokens_details": details,
                       "completion_tokens_details": details}) == Usage(input_tokens=10)
    assert responses_usage({"input_tokens": 10, "input_tokens_details": details,
                            "output_tokens_details": details}) == Usage(input_tokens=10)


@pytest.mark.parametrize("usage", [None, [], "usage", 0, 1.5, True, [{"prompt_tokens": 1}]])
def test_usage_that_is_not_an_object_is_none(usage: Any) -> None:
    assert chat_usage(usage) is None
    assert responses_usage(usage) is None
    assert embeddings_usage(usage) is None
    assert anthropic_usage(usage) is None


def test_empty_usage_object_is_all_zeros() -> None:
    for read in (chat_usage, responses_usage, embeddings_usage, anthropic_usage):
        assert read({}) == Usage()


def test_cached_tokens_are_capped_by_the_total() -> None:
    assert chat_usage({"prompt_tokens": 5, "prompt_tokens_details": {"cached_tokens": 9}}) == Usage(
        input_tokens=0, cached_input_tokens=5)
    assert responses_usage({"input_tokens": 5, "input_tokens_details": {"cached_tokens": 9}}) == Usage(
        input_tokens=0, cached_input_tokens=5)
    assert chat_usage({"prompt_tokens_details": {"cached_tokens": 9}}) == Usage()


def test_big_counts_are_kept_exactly() -> None:
    big = 2**70
    assert chat_usage({"prompt_tokens": big, "prompt_tokens_details": {"cached_tokens": big - 1}}) == Usage(
        input_tokens=1, cached_input_tokens=big - 1)


# -- arbitrary JSON ------------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
FIELDS = ["prompt_tokens", "completion_tokens", "total_tokens", "input_tokens", "output_tokens", "cached_tokens",
          "reasoning_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"]
DETAILS = ["prompt_tokens_details", "completion_tokens_details", "input_tokens_details", "output_tokens_details"]
count_values = json_values | st.integers(0, 10**6)
details_objects = st.dictionaries(st.sampled_from(FIELDS), count_values, max_size=4)
usage_objects = st.dictionaries(
    st.sampled_from(FIELDS + DETAILS) | st.text(max_size=6),
    count_values | details_objects,
    max_size=10,
)


def count(value: Any) -> int:
    """The rule, spelled out: a non-negative int that is not a bool, else 0."""
    return value if type(value) is int and value >= 0 else 0


def detail(usage: dict[str, Any], name: str, field: str) -> int:
    details = usage.get(name)
    return count(details.get(field)) if isinstance(details, dict) else 0


def assert_sane(usage: Usage) -> None:
    for value in (usage.input_tokens, usage.cached_input_tokens, usage.cache_write_tokens, usage.output_tokens,
                  usage.reasoning_tokens):
        assert type(value) is int and value >= 0


@given(value=json_values | usage_objects)
def test_readers_never_raise(value: Any) -> None:
    for read in (chat_usage, responses_usage, embeddings_usage, anthropic_usage):
        usage = read(value)
        assert (usage is None) == (not isinstance(value, dict))
        if usage is not None:
            assert_sane(usage)
    assert anthropic_usage(value, Usage(1, 2, 3, 4)) is not None


OPENAI_NAMES = {
    "chat": (chat_usage, "prompt_tokens", "prompt_tokens_details", "completion_tokens", "completion_tokens_details"),
    "responses": (responses_usage, "input_tokens", "input_tokens_details", "output_tokens", "output_tokens_details"),
}


@pytest.mark.parametrize("api", sorted(OPENAI_NAMES))
@settings(max_examples=50)
@given(usage=usage_objects)
def test_openai_usage_rule(api: str, usage: dict[str, Any]) -> None:
    read, input_name, input_details, output_name, output_details = OPENAI_NAMES[api]
    total = count(usage.get(input_name))
    cached = min(detail(usage, input_details, "cached_tokens"), total)
    assert read(usage) == Usage(
        input_tokens=total - cached,
        cached_input_tokens=cached,
        output_tokens=count(usage.get(output_name)),
        reasoning_tokens=detail(usage, output_details, "reasoning_tokens"),
    )


@settings(max_examples=50)
@given(usage=usage_objects)
def test_embeddings_usage_rule(usage: dict[str, Any]) -> None:
    assert embeddings_usage(usage) == Usage(input_tokens=count(usage.get("prompt_tokens")))


@settings(max_examples=50)
@given(usage=usage_objects, earlier=st.none() | st.builds(Usage, *[st.integers(0, 10**6)] * 5))
def test_anthropic_usage_rule(usage: dict[str, Any], earlier: Usage | None) -> None:
    base = earlier or Usage()

    def latest(name: str, fallback: int) -> int:
        return fallback if usage.get(name) is None else count(usage[name])

    assert anthropic_usage(usage, earlier) == Usage(
        input_tokens=latest("input_tokens", base.input_tokens),
        cached_input_tokens=latest("cache_read_input_tokens", base.cached_input_tokens),
        cache_write_tokens=latest("cache_creation_input_tokens", base.cache_write_tokens),
        output_tokens=latest("output_tokens", base.output_tokens),
    )
