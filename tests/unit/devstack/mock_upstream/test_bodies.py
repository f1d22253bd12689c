"""The pure builders against the recorded provider bodies: same keys, same event sequences, same framing."""

from __future__ import annotations

import base64
import itertools
import struct
from typing import Any

import pytest

from lime.devstack.mock_upstream import anthropic_bodies, bodies
from lime.devstack.mock_upstream.config import BadOverride, MockConfig, resolve_overrides
from lime.devstack.mock_upstream.errors import anthropic_error_body, openai_error_body
from lime.devstack.mock_upstream.reply import Reply, count_input_tokens, plan_reply, reply_pieces

from ._sse import Event, key_tree, load_json, load_sse, parse_sse

CHAT_REQUEST: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What is the capital of Mexico?"}]},
    ],
}


def make_reply(chunks: int = 5, *, truncated: bool = False, item_id: str = "msg_item") -> Reply:
    return Reply(
        model="some-model",
        pieces=reply_pieces(chunks),
        input_tokens=12,
        truncated=truncated,
        response_id="id_1",
        created=1_700_000_000,
        item_id=item_id,
    )


def join(raw_events: list[bytes]) -> list[Event]:
    return parse_sse(b"".join(raw_events))


def collapse(types: list[str | None]) -> list[str | None]:
    """Event types with runs of the same type folded into one, so N deltas compare equal to M deltas."""
    return [kind for kind, _ in itertools.groupby(types)]


# --- the planned reply -------------------------------------------------------------------------------------


def test_pieces_cycle_through_a_fixed_sentence() -> None:
    assert "".join(reply_pieces(5)) == "Hello from the mock upstream."
    assert reply_pieces(7)[5:] == (" Hello", " from")
    assert reply_pieces(0) == ()


def test_input_tokens_are_a_quarter_of_the_prompt_text() -> None:
    # "Be brief." (9) + the question (30) = 39 characters; roles and block types are not text.
    assert count_input_tokens(CHAT_REQUEST) == 10
    assert count_input_tokens({"model": "m", "input": "abcd" * 10, "instructions": "abcd"}) == 11
    anthropic = {"system": [{"type": "text", "text": "x" * 8}], "messages": [{"role": "user", "content": "y" * 8}]}
    assert count_input_tokens(anthropic) == 4
    assert count_input_tokens({"input": [[1, 2, 3], [4]]}) == 4
    assert count_input_tokens({"model": "m", "messages": []}) == 1


def test_reply_is_cut_to_the_request_token_limit() -> None:
    body = {**CHAT_REQUEST, "max_tokens": 3}
    reply = plan_reply(body, chunks=8, limit_fields=("max_completion_tokens", "max_tokens"), response_id="x", created=0)
    assert reply.output_tokens == 3 and reply.truncated
    roomy = plan_reply({**body, "max_tokens": 100}, chunks=8, limit_fields=("max_tokens",), response_id="x", created=0)
    assert roomy.output_tokens == 8 and not roomy.truncated
    assert roomy.model == "gpt-4o-mini"


# --- OpenAI Chat Completions ---------------------------------------------------------------------------


def test_chat_completion_has_the_recorded_shape() -> None:
    recorded = load_json("openai-chat-completion-reasoning.json")
    built = bodies.chat_completion(make_reply())
    assert key_tree(built) == key_tree(recorded)
    assert built["choices"][0]["message"]["content"] == "Hello from the mock upstream."
    assert built["usage"]["prompt_tokens"] == 12
    assert built["usage"]["completion_tokens"] == 5
    assert built["usage"]["total_tokens"] == 17
    assert bodies.chat_completion(make_reply(truncated=True))["choices"][0]["finish_reason"] == "length"


def test_chat_stream_with_include_usage_matches_the_recording() -> None:
    recorded = load_sse("openai-chat-stream-include-usage.sse")
    built = join(bodies.chat_completion_events(make_reply(), include_usage=True))

    for stream in (recorded, built):
        assert all(event.event is None for event in stream), "chat streams have no event: lines"
        assert stream[-1].data == "[DONE]"
        chunks = [event.json for event in stream[:-1]]
        assert all("usage" in chunk for chunk in chunks)
        assert all(chunk["usage"] is None for chunk in chunks[:-1])
        assert chunks[-1]["choices"] == []
        assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"

    recorded_chunks = [event.json for event in recorded[:-1]]
    built_chunks = [event.json for event in built[:-1]]
    assert key_tree(built_chunks[0]) == key_tree(recorded_chunks[0])
    assert key_tree(built_chunks[1]) == key_tree(recorded_chunks[1])
    assert key_tree(built_chunks[-2]) == key_tree(recorded_chunks[-2])
    assert key_tree(built_chunks[-1]) == key_tree(recorded_chunks[-1])
    assert built_chunks[-1]["usage"]["completion_tokens"] == 5
    assert "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in built_chunks[:-1]) == (
        "Hello from the mock upstream."
    )


def test_chat_stream_without_include_usage_carries_no_usage() -> None:
    recorded = load_sse("openai-chat-stream.sse")
    built = join(bodies.chat_completion_events(make_reply(), include_usage=False))
    for stream in (recorded, built):
        assert stream[-1].data == "[DONE]"
        chunks = [event.json for event in stream[:-1]]
        assert not any("usage" in chunk for chunk in chunks)
        assert all(chunk["choices"] for chunk in chunks)
    assert set(built[0].json) == set(recorded[0].json)
    assert set(built[0].json["choices"][0]) >= set(recorded[0].json["choices"][0])


def test_chat_stream_can_leave_out_obfuscation() -> None:
    built = join(bodies.chat_completion_events(make_reply(), include_usage=True, include_obfuscation=False))
    assert not any("obfuscation" in event.json for event in built[:-1])


# --- OpenAI Responses ----------------------------------------------------------------------------------


def test_responses_stream_matches_the_recorded_event_sequence() -> None:
    recorded = load_sse("openai-responses-stream.sse")
    request = {"model": "gpt-5.2", "input": "2+2?", "instructions": "Answer directly."}
    built = join(bodies.responses_events(make_reply(3), request))

    assert collapse([event.event for event in built]) == collapse([event.event for event in recorded])
    assert not any(event.data == "[DONE]" for event in built)
    assert [event.json["sequence_number"] for event in built] == list(range(len(built)))
    assert all(event.event == event.json["type"] for event in built)

    recorded_by_type = {event.event: event.json for event in recorded}
    for event in built:
        assert key_tree(event.json) == key_tree(recorded_by_type[event.event]), event.event

    created, completed = built[0].json["response"], built[-1].json["response"]
    assert created["usage"] is None and created["status"] == "in_progress"
    assert completed["status"] == "completed"
    assert completed["usage"] == {
        "input_tokens": 12,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 3,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 15,
    }
    assert completed["instructions"] == "Answer directly."
    deltas = [event.json["delta"] for event in built if event.event == "response.output_text.delta"]
    assert "".join(deltas) == "Hello from the" == completed["output"][0]["content"][0]["text"]
    assert {event.json["item_id"] for event in built if "item_id" in event.json} == {"msg_item"}


def test_responses_body_has_the_recorded_shape() -> None:
    streamed = load_sse("openai-responses-stream.sse")[-1].json["response"]
    recorded = load_json("openai-responses.json")
    built = bodies.responses_body(make_reply(), {"model": "gpt-5.2", "input": "hi"})
    assert set(built) == set(streamed)
    assert set(built) <= set(recorded)
    assert set(built["output"][0]) <= set(recorded["output"][0])
    assert key_tree(built["output"][0]["content"]) == key_tree(recorded["output"][0]["content"])
    assert key_tree(built["usage"]) == key_tree(streamed["usage"])
    assert built["object"] == "response" and built["status"] == "completed"


def test_truncated_responses_end_incomplete() -> None:
    built = join(bodies.responses_events(make_reply(truncated=True), {"model": "m"}))
    assert built[-1].event == "response.incomplete"
    assert built[-1].json["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


# --- OpenAI Embeddings ---------------------------------------------------------------------------------


def test_embeddings_float_and_base64_match_the_recordings() -> None:
    recorded_float = load_json("openai-embeddings-float.json")
    recorded_b64 = load_json("openai-embeddings-base64.json")
    request = {"model": "text-embedding-3-small", "input": "The food was delicious."}

    as_float = bodies.embeddings_body(request)
    as_b64 = bodies.embeddings_body({**request, "encoding_format": "base64"})
    assert key_tree(as_float) == key_tree(recorded_float)
    assert key_tree(as_b64) == key_tree(recorded_b64)
    assert isinstance(as_b64["data"][0]["embedding"], str)

    floats = as_float["data"][0]["embedding"]
    assert len(floats) == len(recorded_float["data"][0]["embedding"]) == bodies.DEFAULT_EMBEDDING_DIMENSIONS
    raw = base64.b64decode(as_b64["data"][0]["embedding"])
    assert len(raw) == len(base64.b64decode(recorded_b64["data"][0]["embedding"]))
    assert list(struct.unpack(f"<{len(floats)}f", raw)) == pytest.approx(floats, rel=1e-6)
    assert as_float["usage"] == {"prompt_tokens": 6, "total_tokens": 6}
    assert as_float["model"] == "text-embedding-3-small"


def test_embeddings_are_deterministic_per_input() -> None:
    body = bodies.embeddings_body({"model": "m", "input": ["a", "b", "a"]}, dimensions=8)
    vectors = [item["embedding"] for item in body["data"]]
    assert [item["index"] for item in body["data"]] == [0, 1, 2]
    assert vectors[0] == vectors[2] != vectors[1]
    assert sum(v * v for v in vectors[0]) == pytest.approx(1.0, rel=1e-5)


# --- Anthropic Messages --------------------------------------------------------------------------------


def test_anthropic_message_has_the_recorded_shape() -> None:
    recorded = load_json("anthropic-messages-cache.json")
    built = anthropic_bodies.anthropic_message(make_reply())
    assert key_tree(built) == key_tree(recorded)
    assert built["usage"]["input_tokens"] == 12 and built["usage"]["output_tokens"] == 5
    assert anthropic_bodies.anthropic_message(make_reply(truncated=True))["stop_reason"] == "max_tokens"


@pytest.mark.parametrize("fixture", ["anthropic-messages-stream.sse", "anthropic-messages-stream-sdk-basic.sse"])
def test_anthropic_stream_matches_the_recorded_event_sequence(fixture: str) -> None:
    recorded = load_sse(fixture)
    built = join(anthropic_bodies.anthropic_events(make_reply(4)))
    assert collapse([event.event for event in built]) == collapse([event.event for event in recorded])
    assert all(event.event == event.json["type"] for event in built)
    assert not any(event.data == "[DONE]" for event in built)

    recorded_by_type = {event.event: event.json for event in recorded}
    for kind in ("content_block_start", "content_block_delta", "content_block_stop", "message_stop"):
        built_event = next(event.json for event in built if event.event == kind)
        assert key_tree(built_event) == key_tree(recorded_by_type[kind]), kind
    assert set(built[0].json["message"]) == set(recorded[0].json["message"])


def test_anthropic_stream_usage_is_split_like_the_api() -> None:
    recorded = {event.event: event.json for event in load_sse("anthropic-messages-stream.sse")}
    built = join(anthropic_bodies.anthropic_events(make_reply(4)))
    by_type = {event.event: event for event in built}

    start_usage = by_type["message_start"].json["message"]["usage"]
    assert set(start_usage) <= set(recorded["message_start"]["message"]["usage"])
    assert start_usage["input_tokens"] == 12 and start_usage["output_tokens"] == 1

    final_usage = by_type["message_delta"].json["usage"]
    assert set(final_usage) == set(recorded["message_delta"]["usage"])
    assert final_usage["output_tokens"] == 4 == sum(event.event == "content_block_delta" for event in built)
    assert by_type["ping"].data == '{"type": "ping"}'


# --- errors and overrides ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "fixture"),
    [
        (401, "openai-error-401-invalid-api-key.json"),
        (404, "openai-error-404-model-not-found.json"),
        (429, "openai-error-429-rate-limit-exceeded.json"),
    ],
)
def test_openai_errors_pair_status_with_the_recorded_type_and_code(status: int, fixture: str) -> None:
    recorded = load_json(fixture)["error"]
    built = openai_error_body(status)
    assert key_tree(built) == key_tree({"error": recorded})
    assert (built["error"]["type"], built["error"]["code"]) == (recorded["type"], recorded["code"])


@pytest.mark.parametrize(
    ("status", "fixture"),
    [
        (400, "anthropic-error-400-invalid-request.json"),
        (401, "anthropic-error-401-authentication.json"),
        (403, "anthropic-error-403-permission.json"),
        (404, "anthropic-error-404-not-found.json"),
        (429, "anthropic-error-429-rate-limit.json"),
        (529, "anthropic-error-529-overloaded.json"),
    ],
)
def test_anthropic_errors_pair_status_with_the_recorded_type(status: int, fixture: str) -> None:
    recorded = load_json(fixture)
    built = anthropic_error_body(status, "req_1")
    assert built["type"] == "error"
    assert set(built) >= set(recorded)
    assert set(built["error"]) == set(recorded["error"])
    assert built["error"]["type"] == recorded["error"]["type"]


def test_headers_override_the_config() -> None:
    config = MockConfig(chunks=3, delay_ms=10)
    assert resolve_overrides({}, config).chunks == 3
    overrides = resolve_overrides({"x-mock-chunks": "7", "x-mock-delay-ms": "0", "x-mock-status": "503"}, config)
    assert (overrides.chunks, overrides.delay_ms, overrides.status) == (7, 0, 503)
    # A success status is the normal answer; below 200 is nothing a mock should be asked for.
    assert resolve_overrides({"x-mock-status": "200"}, config).status is None
    for bad in ({"x-mock-chunks": "many"}, {"x-mock-chunks": "-1"}, {"x-mock-status": "100"}):
        with pytest.raises(BadOverride):
            resolve_overrides(bad, config)
    with pytest.raises(ValueError):
        MockConfig(chunks=-1)
