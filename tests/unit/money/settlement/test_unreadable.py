"""Successful answers the tap cannot read, and usage objects that leave a part out: never settled as free.

* an unreadable 2xx (a content type that is neither SSE nor JSON, a content-encoding Lime does not decode, a JSON
  body that is not JSON): the reservation's input estimate plus the output counted from the body's size (a token
  per four bytes, at most the output reserved), ``estimated``;
* a compressed answer Lime decodes (gzip, deflate, br, zstd) is read and priced like the plain one;
* a usage that reports one side only: the other side estimated (input: the reservation's; output: Lime's count),
  ``estimated``, never 0.
"""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import brotli
import pytest
import zstandard

from lime.money.settlement import settlement_for
from tests.provider_fixtures import provider_fixture
from tests.unit.money.settlement.taps import GRANT, JSON, SSE, assert_priced, grant, lime_count, tap_of, tokens

RESERVED_OUTPUT = GRANT.reserved_tokens - GRANT.input_estimate

COMPRESS = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,  # zlib-wrapped, as RFC 9110 says
    "br": brotli.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
}


def test_an_unexpected_content_type_pays_input_and_output_by_size() -> None:
    body = b"<html>" + b"x" * 398 + b"</html>"  # 411 bytes
    event = settlement_for(GRANT, tap_of("chat_completions", body, content_type="text/html"))
    assert (event.outcome, event.estimated, event.upstream_status) == ("complete", True, 200)
    assert tokens(event) == (GRANT.input_estimate, 0, 0, 103, 0)  # ceil(411 / 4)
    assert_priced(event, GRANT)


def test_the_output_by_size_is_never_more_than_what_was_reserved() -> None:
    body = b"x" * (RESERVED_OUTPUT * 4 + 4000)
    event = settlement_for(GRANT, tap_of("chat_completions", body, content_type="application/octet-stream"))
    assert event.output_tokens == RESERVED_OUTPUT


def test_an_unknown_encoding_is_passed_on_and_paid_by_size() -> None:
    raw = provider_fixture("openai-chat-completion-cached.json").read_bytes()
    tap = tap_of("chat_completions", b"", content_type=JSON, content_encoding="compress", finish=False)
    assert tap.feed(raw) == raw and tap.finish() == b""  # untouched
    assert (tap.unreadable, tap.decodes) == ("encoding", False)
    event = settlement_for(GRANT, tap)
    assert (event.outcome, event.estimated) == ("complete", True)
    assert tokens(event) == (GRANT.input_estimate, 0, 0, -(-len(raw) // 4), 0)


def test_a_json_body_that_is_not_json_pays_by_size() -> None:
    raw = provider_fixture("openai-chat-completion-cached.json").read_bytes()[:100]
    tap = tap_of("chat_completions", raw, content_type=JSON)
    assert tap.unreadable == "body"
    event = settlement_for(GRANT, tap)
    assert (event.outcome, event.estimated) == ("partial", True)
    assert tokens(event) == (GRANT.input_estimate, 0, 0, 25, 0)


def test_an_unreadable_embeddings_answer_pays_its_input_only() -> None:
    event = settlement_for(grant("embeddings"), tap_of("embeddings", b"x" * 4000, content_type="text/plain"))
    assert tokens(event) == (GRANT.input_estimate, 0, 0, 0, 0)


def test_an_error_status_stays_free_whatever_its_body() -> None:
    event = settlement_for(GRANT, tap_of("chat_completions", b"<html>bad gateway</html>", status=502,
                                         content_type="text/html"))
    assert (event.outcome, event.cost) == ("failed", 0)


@pytest.mark.parametrize("encoding", sorted(COMPRESS))
def test_a_compressed_json_answer_is_decoded_and_priced_as_reported(encoding: str) -> None:
    raw = provider_fixture("openai-chat-completion-cached.json").read_bytes()
    plain = settlement_for(GRANT, tap_of("chat_completions", raw, content_type=JSON))
    tap = tap_of("chat_completions", b"", content_type=JSON, content_encoding=encoding, finish=False)
    packed = COMPRESS[encoding](raw)
    out = b"".join(tap.feed(packed[i:i + 7]) for i in range(0, len(packed), 7)) + tap.finish()
    assert tap.decodes and tap.unreadable is None
    assert json.loads(out)["model"] == GRANT.model  # decoded, and the model id rewritten as usual
    event = settlement_for(GRANT, tap)
    assert (event.outcome, event.estimated, event.cost) == ("complete", False, plain.cost)
    assert tokens(event) == tokens(plain)


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
def test_a_compressed_stream_is_decoded_event_by_event(encoding: str) -> None:
    raw = provider_fixture("openai-chat-stream-include-usage.sse").read_bytes()
    plain = settlement_for(GRANT, tap_of("chat_completions", raw))
    tap = tap_of("chat_completions", b"", content_encoding=encoding, finish=False)
    packed = COMPRESS[encoding](raw)
    out = b"".join(tap.feed(packed[i:i + 50]) for i in range(0, len(packed), 50)) + tap.finish()
    assert b"data: [DONE]" in out
    assert tokens(settlement_for(GRANT, tap)) == tokens(plain)


def test_raw_deflate_is_read_too() -> None:
    raw = provider_fixture("openai-chat-completion-cached.json").read_bytes()
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    tap = tap_of("chat_completions", packer.compress(raw) + packer.flush(), content_type=JSON,
                 content_encoding="deflate")
    assert tap.unreadable is None and tap.usage is not None


def test_a_usage_without_input_estimates_the_input() -> None:
    body = json.dumps({"id": "c", "object": "chat.completion", "model": "gpt-4o",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
                       "usage": {"completion_tokens": 10}}).encode()
    event = settlement_for(GRANT, tap_of("chat_completions", body, content_type=JSON))
    assert (event.outcome, event.estimated) == ("complete", True)
    assert tokens(event) == (GRANT.input_estimate, 0, 0, 10, 0)


def test_a_usage_without_output_counts_the_output() -> None:
    events = [
        {"choices": [{"index": 0, "delta": {"content": "Hello there, friend"}}]},
        {"choices": [], "usage": {"prompt_tokens": 12}},
    ]
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    event = settlement_for(GRANT, tap_of("chat_completions", body, content_type=SSE))
    assert (event.outcome, event.estimated) == ("complete", True)
    assert tokens(event) == (12, 0, 0, lime_count(1, "Hello there, friend"), 0)


def test_an_anthropic_stream_that_never_reports_input_estimates_it() -> None:
    start = {"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant",
                                                  "model": "claude", "content": [], "usage": {"output_tokens": 1}}}
    delta = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}}
    stop = {"type": "message_stop"}
    body = b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in (start, delta, stop))
    event = settlement_for(grant("messages"), tap_of("messages", body))
    assert (event.outcome, event.estimated) == ("complete", True)
    assert tokens(event) == (GRANT.input_estimate, 0, 0, 7, 0)


@pytest.mark.parametrize(("endpoint", "body"), [
    ("chat_completions", {"error": {"message": "upstream overloaded", "type": "server_error", "code": None}}),
    ("responses", {"error": {"message": "quota", "type": "insufficient_quota"}}),
    ("messages", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
])
def test_a_200_whose_body_is_an_error_object_is_an_upstream_error_and_free(endpoint: str, body: dict[str, Any]) -> None:
    tap = tap_of(endpoint, json.dumps(body).encode(), content_type=JSON)
    assert tap.error_body and tap.failed
    event = settlement_for(grant(endpoint), tap)
    assert (event.outcome, event.cost, event.estimated, event.upstream_status) == ("failed", 0, False, 200)


def test_an_answer_that_mentions_an_error_is_still_an_answer() -> None:
    body = {"id": "c", "object": "chat.completion", "model": "gpt-4o", "error": None,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "no error here"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3}}
    event = settlement_for(GRANT, tap_of("chat_completions", json.dumps(body).encode(), content_type=JSON))
    assert (event.outcome, event.estimated) == ("complete", False) and tokens(event) == (5, 0, 0, 3, 0)
