"""The tap's rules beyond the recorded fixtures: the hidden usage chunk, pass-through, release, model ids, odd
streams (see test_response_tap.py for what the fixtures pin)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lime.protocols.response_tap import Framing, ResponseTap
from lime.protocols.sse import parse_event
from lime.protocols.usage import Usage
from tests.provider_fixtures import PROVIDERS, provider_fixture
from tests.unit.protocols.tap_cases import (
    BODIES,
    JSON,
    LINE_ENDS,
    PUBLIC,
    SSE,
    STREAMS,
    Case,
    assert_whole,
    data_events,
    run,
    split_at,
    tap_for,
)

# -- the usage chunk the client did not ask for ---------------------------------------------------------------

INCLUDE_USAGE = next(case for case in STREAMS if case.name == "openai-chat-stream-include-usage.sse")


def hidden_expected(raw: bytes) -> bytes:
    """The include-usage stream as if include_usage had not been asked for, from the file's own separators."""
    events = [event + b"\n\n" for event in raw.split(b"\n\n")[:-1] if b'"choices":[]' not in event]
    return INCLUDE_USAGE.expected(b"".join(events).replace(b',"usage":null', b""))


def assert_plain_chat_stream(out: bytes) -> None:
    reference = json.loads(parse_event(provider_fixture("openai-chat-stream.sse").read_bytes().split(b"\n\n")[0])
                           .data or b"")
    datas = [parse_event(event).data for event in out.split(b"\n\n")[:-1]]
    assert datas[-1] == b"[DONE]"
    chunks = [json.loads(data or b"") for data in datas[:-1]]
    assert all(chunk["choices"] != [] for chunk in chunks)
    # The same top-level fields as a chat stream without include_usage: no `usage` at all.
    assert all(chunk.keys() == reference.keys() for chunk in chunks)
    assert all(chunk["model"] == PUBLIC for chunk in chunks)


def test_hide_usage_chunk() -> None:
    raw = INCLUDE_USAGE.raw
    out, tap = run(INCLUDE_USAGE, [raw], hide_usage_chunk=True)
    assert b'"choices":[]' not in out and b'"usage"' not in out
    assert out.endswith(b"data: [DONE]\n\n")
    assert out == hidden_expected(raw)
    assert_plain_chat_stream(out)
    assert tap.usage == Usage(input_tokens=14, output_tokens=8)  # still read
    assert tap.complete and not tap.failed
    assert tap.events == 11  # 10 chunks and [DONE]: the usage chunk never reached the client


def test_hide_usage_chunk_split_in_two_at_every_byte() -> None:
    raw = INCLUDE_USAGE.raw
    expected = hidden_expected(raw)
    for cut in range(len(raw) + 1):
        out, tap = run(INCLUDE_USAGE, [raw[:cut], raw[cut:]], hide_usage_chunk=True)
        assert out == expected, cut
        assert tap.usage == Usage(input_tokens=14, output_tokens=8), cut


@settings(max_examples=30)
@given(data=st.data())
def test_hide_usage_chunk_split_anywhere(data: st.DataObject) -> None:
    raw = INCLUDE_USAGE.raw
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=25), label="cuts")
    out, tap = run(INCLUDE_USAGE, split_at(raw, cuts), hide_usage_chunk=True)
    assert out == hidden_expected(raw)
    assert tap.usage == Usage(input_tokens=14, output_tokens=8) and tap.complete


@pytest.mark.parametrize("eol", LINE_ENDS.values(), ids=LINE_ENDS.keys())
def test_hide_usage_chunk_with_other_line_ends(eol: bytes) -> None:
    raw = INCLUDE_USAGE.raw.replace(b"\n", eol)
    out, tap = run(INCLUDE_USAGE, [raw], hide_usage_chunk=True)
    assert out == hidden_expected(INCLUDE_USAGE.raw).replace(b"\n", eol)
    assert tap.usage == Usage(input_tokens=14, output_tokens=8) and tap.complete


@pytest.mark.parametrize("name", ["openai-chat-stream-tool-call.sse", "openai-chat-stream-reasoning-usage.sse"])
def test_hide_usage_chunk_other_streams(name: str) -> None:
    case = next(case for case in STREAMS if case.name == name)
    out, tap = run(case, [case.raw], hide_usage_chunk=True)
    assert b'"choices":[]' not in out and b'"usage"' not in out and out.endswith(b"data: [DONE]\n\n")
    assert tap.usage == case.usage


def test_hide_usage_chunk_leaves_a_stream_without_usage_alone() -> None:
    case = STREAMS[0]
    out, tap = run(case, [case.raw], hide_usage_chunk=True)
    assert_whole(case, out, tap)


# -- pass-through ----------------------------------------------------------------------------------------------

ERROR_BODIES = sorted(path.name for path in PROVIDERS.glob("*-error-*.json"))


@pytest.mark.parametrize("content_type", [JSON, "application/json; charset=utf-8"])
@pytest.mark.parametrize("name", ERROR_BODIES)
def test_error_answers_pass_through(name: str, content_type: str) -> None:
    raw = provider_fixture(name).read_bytes()
    status = int(name.split("-")[2])
    tap = ResponseTap("chat_completions" if name.startswith("openai") else "messages", PUBLIC)
    tap.start(status, content_type)
    assert tap.framing is Framing.OPAQUE
    assert tap.feed(raw[:10]) + tap.feed(raw[10:]) + tap.finish() == raw
    assert (tap.usage, tap.complete, tap.failed, tap.events) == (None, False, False, 0)


def test_error_fixtures_are_here() -> None:
    assert len(ERROR_BODIES) == 12


@pytest.mark.parametrize(
    ("status", "content_type"),
    [
        (500, SSE),  # a stream on an error status is still an error answer
        (404, JSON),
        (199, JSON),
        (300, SSE),
        (0, SSE),
        (200, "text/plain"),
        (200, "application/x-ndjson"),
        (200, "application/problem+json"),
        (200, ""),
    ],
)
@pytest.mark.parametrize("case", [STREAMS[1], STREAMS[6], BODIES[0]], ids=lambda case: case.name)
def test_other_answers_pass_through_untouched(case: Case, status: int, content_type: str) -> None:
    raw = case.raw
    tap = ResponseTap(case.endpoint, PUBLIC)
    tap.start(status, content_type)
    assert tap.framing is Framing.OPAQUE
    out = b"".join([tap.feed(chunk) for chunk in split_at(raw, [7, 100, 101, 500])]) + tap.finish()
    assert out == raw
    assert (tap.usage, tap.complete, tap.failed, tap.events) == (None, False, False, 0)


@pytest.mark.parametrize(
    ("content_type", "framing"),
    [
        ("text/event-stream", Framing.SSE),
        ("Text/Event-Stream; charset=utf-8", Framing.SSE),
        (" text/event-stream ;charset=utf-8", Framing.SSE),
        ("application/json", Framing.JSON),
        ("APPLICATION/JSON; charset=utf-8", Framing.JSON),
    ],
)
def test_media_type_is_matched_without_its_parameters(content_type: str, framing: Framing) -> None:
    tap = ResponseTap("chat_completions", PUBLIC)
    tap.start(200, content_type)
    assert tap.framing is framing


def test_feed_before_start_passes_through() -> None:
    tap = ResponseTap("chat_completions", PUBLIC)
    assert tap.feed(b"anything") == b"anything"
    assert tap.finish() == b""


# -- release ---------------------------------------------------------------------------------------------------


def test_release_returns_a_held_json_body_untouched() -> None:
    case = BODIES[0]
    raw = case.raw
    tap = tap_for(case)
    assert tap.feed(raw[:100]) == b"" and tap.feed(raw[100:300]) == b""
    assert tap.release() == raw[:300]  # the model id not swapped: the caller passes on what it had
    assert tap.framing is Framing.OPAQUE
    assert tap.feed(raw[300:]) == raw[300:]
    assert tap.finish() == b""
    assert tap.release() == b""


def test_release_returns_the_event_in_flight() -> None:
    case = INCLUDE_USAGE
    raw = case.raw
    first_end = raw.index(b"\n\n") + 2
    cut = first_end + 50  # the first event and 50 bytes of the second
    tap = tap_for(case)
    assert tap.feed(raw[:cut]) == case.expected(raw[:first_end])
    assert tap.release() == raw[first_end:cut]
    assert tap.feed(raw[cut:]) == raw[cut:] and tap.finish() == b""


def test_release_before_anything_is_empty() -> None:
    for case in (STREAMS[0], BODIES[0]):
        tap = tap_for(case)
        assert tap.release() == b""
    tap = ResponseTap("chat_completions", PUBLIC)
    tap.start(404, JSON)
    assert tap.feed(b"{}") == b"{}" and tap.release() == b""


# -- model ids -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("public", ['a"b', "back\\slash", "ünïcode", "line\nbreak", ""])
def test_public_model_is_written_as_a_json_string(public: str) -> None:
    case = BODIES[0]
    tap = ResponseTap(case.endpoint, public)
    tap.start(200, JSON)
    tap.feed(case.raw)
    assert json.loads(tap.finish()) == {**json.loads(case.raw), "model": public}


def sse_tap(endpoint: str = "chat_completions") -> ResponseTap:
    tap = ResponseTap(endpoint, PUBLIC)
    tap.start(200, SSE)
    return tap


def test_only_the_reported_model_id_is_swapped() -> None:
    tap = sse_tap()
    stream = (
        b'data: {"model":"up-1","choices":[]}\n\n'
        b'data: {"model" : "up-1","x":{"model":"other"},"y":{"model":null},"z":{"model":{"id":"up-1"}}}\n\n'
        b'data: {"choices":[{"delta":{"content":"say \\"model\\":\\"up-1\\""}}],"model":"up-1"}\n\n'
    )
    out = tap.feed(stream) + tap.finish()
    assert out == (
        b'data: {"model":"team-default","choices":[]}\n\n'
        b'data: {"model" : "team-default","x":{"model":"other"},"y":{"model":null},"z":{"model":{"id":"up-1"}}}\n\n'
        b'data: {"choices":[{"delta":{"content":"say \\"model\\":\\"up-1\\""}}],"model":"team-default"}\n\n'
    )


def test_model_id_with_escapes_is_matched_whole() -> None:
    tap = sse_tap()
    out = tap.feed(b'data: {"model":"a\\"b"}\n\ndata: {"model":"a\\"b","m2":{"model":"a"}}\n\n')
    assert out == b'data: {"model":"team-default"}\n\ndata: {"model":"team-default","m2":{"model":"a"}}\n\n'


# -- odd streams -----------------------------------------------------------------------------------------------


def test_chat_stream_without_done_is_not_complete() -> None:
    case = INCLUDE_USAGE
    raw = case.raw.replace(b"data: [DONE]\n\n", b"")
    out, tap = run(case, [raw])
    assert out == case.expected(raw)
    assert tap.usage == case.usage and not tap.complete


def test_invalid_json_in_a_chat_chunk_passes_through() -> None:
    tap = sse_tap()
    stream = b'data: {"usage":{not json\n\ndata: [DONE]\n\n'
    assert tap.feed(stream) + tap.finish() == stream
    assert tap.usage is None and tap.complete and tap.events == 2


@pytest.mark.parametrize("end", ["response.completed", "response.incomplete", "response.failed"])
def test_responses_end_events(end: str) -> None:
    tap = sse_tap("responses")
    payload = {"type": end, "response": {"model": "up", "usage": {"input_tokens": 3, "output_tokens": 2}}}
    event = b"event: " + end.encode() + b"\ndata: " + json.dumps(payload).encode() + b"\n\n"
    tap.feed(event)
    tap.finish()
    assert tap.complete
    assert tap.failed is (end == "response.failed")
    assert tap.usage == Usage(input_tokens=3, output_tokens=2)


def test_responses_error_event_fails_the_stream() -> None:
    tap = sse_tap("responses")
    tap.feed(b'event: error\ndata: {"type":"error","message":"boom"}\n\n')
    assert tap.failed and not tap.complete and tap.usage is None


def test_json_body_that_is_not_an_object_passes_through() -> None:
    for raw in (b"[1, 2]", b'"model"', b"", b"{", b'{"model": "x"'):
        tap = ResponseTap("chat_completions", PUBLIC)
        tap.start(200, JSON)
        assert tap.feed(raw) == b""
        assert tap.finish() == raw
        assert (tap.usage, tap.complete, tap.events) == (None, False, 0)


def test_json_body_without_usage() -> None:
    tap = ResponseTap("chat_completions", PUBLIC)
    tap.start(200, JSON)
    tap.feed(b'{"model": "x", "usage": null}')
    assert tap.finish() == b'{"model": "team-default", "usage": null}'
    assert tap.complete and tap.usage is None


@given(chunks=st.lists(st.binary(max_size=64), max_size=12), endpoint=st.sampled_from(
    ["chat_completions", "responses", "messages", "embeddings"]), sse=st.booleans(), hide=st.booleans())
def test_garbage_never_raises(chunks: list[bytes], endpoint: str, sse: bool, hide: bool) -> None:
    tap = ResponseTap(endpoint, PUBLIC, hide_usage_chunk=hide)
    tap.start(200, SSE if sse else JSON)
    out = b"".join([tap.feed(chunk) for chunk in chunks]) + tap.finish()
    if not hide and b'"model"' not in b"".join(chunks):
        assert out == b"".join(chunks)


def usage_payload(value: Any) -> bytes:
    return json.dumps(value).encode()


@given(usage=st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.text(max_size=4),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["prompt_tokens", "completion_tokens", "prompt_tokens_details", "cached_tokens"]), children,
        max_size=4),
    max_leaves=10,
))
def test_odd_usage_in_a_stream_never_raises(usage: Any) -> None:
    tap = sse_tap()
    stream = b'data: {"model":"m","choices":[],"usage":' + usage_payload(usage) + b"}\n\ndata: [DONE]\n\n"
    assert tap.feed(stream) + tap.finish() == stream.replace(b'"model":"m"', b'"model":"team-default"')
    assert tap.complete


# -- streams from relays, and the tap's own failures --------------------------------------------------------------


@pytest.mark.parametrize(("endpoint", "name"), [("messages", "anthropic-messages-stream.sse"),
                                                ("responses", "openai-responses-stream.sse")])
def test_a_stream_without_event_lines_is_read_by_its_types(endpoint: str, name: str) -> None:
    """Some relays drop the `event:` lines; the `type` inside each event says the same."""
    raw = provider_fixture(name).read_bytes()
    bare = b"\n".join(line for line in raw.split(b"\n") if not line.startswith(b"event:"))

    def read(stream: bytes) -> ResponseTap:
        tap = ResponseTap(endpoint, PUBLIC)
        tap.start(200, SSE)
        tap.feed(stream)
        tap.finish()
        return tap

    named, unnamed = read(raw), read(bare)
    assert unnamed.usage == named.usage is not None
    assert unnamed.complete and unnamed.usage_final


def test_an_event_the_tap_cannot_read_still_reaches_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = provider_fixture("openai-chat-stream-include-usage.sse").read_bytes()

    def broken(*_: Any) -> bool:
        raise RuntimeError("a bug in the tap")

    tap = ResponseTap("chat_completions", PUBLIC)
    monkeypatch.setattr(tap, "_stream_reader", broken)  # the chat reader its spec named
    tap.start(200, SSE)
    out = tap.feed(raw[:700]) + tap.feed(raw[700:]) + tap.finish()
    assert out == raw  # every byte, in order, untouched
    assert tap.errors == data_events(raw) and tap.usage is None


def test_a_json_body_the_tap_cannot_read_still_reaches_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = provider_fixture("openai-chat-completion-cached.json").read_bytes()
    tap = ResponseTap("chat_completions", PUBLIC)
    monkeypatch.setattr(tap, "_rewrite_model", lambda _: (_ for _ in ()).throw(RuntimeError("bug")))
    tap.start(200, JSON)
    assert tap.feed(raw) + tap.finish() == raw and tap.errors == 1
