"""What :mod:`lime.response_tap` pins, on every recorded provider body and stream, split in two at every byte
position (densely sampled in the three biggest fixtures, see ``two_way_positions``) and into many pieces by hypothesis:

* **bytes**: what the client gets is what the upstream sent with only the model id changed to the public one
  (compared with an independent ``bytes.replace`` of the fixture), whatever the chunking;
* **timing**: an SSE event goes out as soon as its blank line has arrived, never earlier, never later; a JSON body
  goes out whole at the end;
* **usage**: the exact numbers of each fixture (README facts 7-9, 12-15), read once the event carrying them has
  fully arrived, never from a half one;
* **end**: ``complete`` once the protocol's own end has fully arrived (``[DONE]``, ``response.completed``,
  ``message_stop``, a whole JSON body), not for a stream cut before it; ``failed`` for an error inside a 200
  stream (fact 17);
* **the hidden usage chunk**: with ``hide_usage_chunk`` the include-usage stream looks like a plain chat stream
  (fact 7), while its usage is still read;
* **pass-through**: non-2xx answers and unknown content types go through untouched and read nothing;
  ``release()`` hands back what was held, untouched.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lime.response_tap import Framing, ResponseTap
from lime.sse import parse_event
from lime.usage import Usage
from tests.provider_fixtures import PROVIDERS, provider_fixture

PUBLIC = "team-default"
SSE = "text/event-stream; charset=utf-8"
JSON = "application/json"

MESSAGE_START = b'"type":"message_start"'
MESSAGE_DELTA = b'"type":"message_delta"'
CHAT_USAGE_CHUNK = b'"choices":[],"usage":{'
RESPONSE_COMPLETED = b'"type":"response.completed"'


@dataclass(frozen=True)
class Case:
    name: str
    endpoint: str
    upstream_model: str
    #: (a needle on the data line that carries usage, the usage once that line is in), in stream order.
    usage_steps: tuple[tuple[bytes, Usage], ...] = ()
    #: A needle on the data line of the protocol's own end; ``None`` for a stream that never ends.
    end: bytes | None = None
    failed: bool = False
    #: Usage of a JSON body.
    body_usage: Usage | None = None

    @property
    def raw(self) -> bytes:
        return provider_fixture(self.name).read_bytes()

    @property
    def is_sse(self) -> bool:
        return self.name.endswith(".sse")

    @property
    def usage(self) -> Usage | None:
        return self.usage_steps[-1][1] if self.usage_steps else self.body_usage

    def expected(self, raw: bytes) -> bytes:
        """The fixture as the client must get it: the model id swapped, every other byte as it was."""
        out = raw
        for colon in (b":", b": "):
            out = out.replace(b'"model"' + colon + json.dumps(self.upstream_model).encode(),
                              b'"model"' + colon + json.dumps(PUBLIC).encode())
        return out


def chat(name: str, model: str, usage: Usage | None) -> Case:
    steps = ((CHAT_USAGE_CHUNK, usage),) if usage else ()
    return Case(name, "chat_completions", model, steps, end=b"data: [DONE]")


def responses(name: str, model: str, usage: Usage) -> Case:
    return Case(name, "responses", model, ((RESPONSE_COMPLETED, usage),), end=RESPONSE_COMPLETED)


def messages(name: str, model: str, start: Usage, delta: Usage | None, *, failed: bool = False) -> Case:
    steps = ((MESSAGE_START, start),) + (((MESSAGE_DELTA, delta),) if delta else ())
    return Case(name, "messages", model, steps, end=None if failed else b'"type":"message_stop"', failed=failed)


def body(name: str, endpoint: str, model: str, usage: Usage) -> Case:
    return Case(name, endpoint, model, body_usage=usage)


# The numbers are copied from the fixture files.
STREAMS = [
    chat("openai-chat-stream.sse", "gpt-5-nano-2025-08-07", None),  # no include_usage: no usage at all
    chat("openai-chat-stream-include-usage.sse", "gpt-4o-2024-08-06", Usage(input_tokens=14, output_tokens=8)),
    chat("openai-chat-stream-reasoning-usage.sse", "gpt-5-nano-2025-08-07",
         Usage(input_tokens=12, output_tokens=100, reasoning_tokens=100)),
    chat("openai-chat-stream-tool-call.sse", "gpt-4o-mini-2024-07-18", Usage(input_tokens=53, output_tokens=15)),
    responses("openai-responses-stream.sse", "gpt-5.2-2025-12-11", Usage(input_tokens=20, output_tokens=10)),
    responses("openai-responses-stream-function-call.sse", "gpt-5-2025-08-07",
              Usage(input_tokens=53, output_tokens=469, reasoning_tokens=448)),
    # message_delta's output_tokens is the cumulative total: 5, not 1 + 5.
    messages("anthropic-messages-stream.sse", "claude-sonnet-4-5-20250929",
             Usage(input_tokens=20, output_tokens=1), Usage(input_tokens=20, output_tokens=5)),
    messages("anthropic-messages-stream-sdk-basic.sse", "claude-3-opus-latest",
             Usage(input_tokens=11, output_tokens=1), Usage(input_tokens=11, output_tokens=6)),
    messages("anthropic-messages-stream-tool-use.sse", "claude-sonnet-4-20250514",
             Usage(input_tokens=377, output_tokens=1), Usage(input_tokens=377, output_tokens=65)),
    # No message_delta ever comes: what message_start said is all there is.
    messages("anthropic-messages-stream-error.sse", "claude-3-opus-latest",
             Usage(input_tokens=11, output_tokens=1), None, failed=True),
]
BODIES = [
    body("openai-chat-completion-reasoning.json", "chat_completions", "gpt-5-nano-2025-08-07",
         Usage(input_tokens=27, output_tokens=267, reasoning_tokens=192)),
    body("openai-chat-completion-cached.json", "chat_completions", "gpt-5.6-sol",
         Usage(input_tokens=8, cached_input_tokens=4012, output_tokens=4)),  # 4012 of 4020 from the cache
    body("openai-responses.json", "responses", "gpt-5.6-sol",
         Usage(input_tokens=8, cached_input_tokens=4012, output_tokens=5)),
    body("openai-embeddings-float.json", "embeddings", "text-embedding-3-small", Usage(input_tokens=7)),
    body("openai-embeddings-base64.json", "embeddings", "text-embedding-3-small", Usage(input_tokens=7)),
    body("anthropic-messages-cache.json", "messages", "claude-sonnet-4-5-20250929",
         Usage(input_tokens=3, cached_input_tokens=1111, cache_write_tokens=403, output_tokens=33)),
]
CASES = STREAMS + BODIES
case_ids = [case.name for case in CASES]


def test_every_usage_fixture_is_covered() -> None:
    on_disk = {
        path.name for path in PROVIDERS.iterdir()
        if path.name.startswith(("openai-chat-stream", "openai-responses-stream", "anthropic-messages-stream",
                                 "openai-chat-completion-", "openai-responses.json", "openai-embeddings-",
                                 "anthropic-messages-cache.json"))
    }
    assert on_disk == {case.name for case in CASES}


def tap_for(case: Case, *, hide_usage_chunk: bool = False) -> ResponseTap:
    tap = ResponseTap(case.endpoint, PUBLIC, hide_usage_chunk=hide_usage_chunk)
    tap.start(200, SSE if case.is_sse else JSON)
    return tap


def run(case: Case, chunks: list[bytes], *, hide_usage_chunk: bool = False) -> tuple[bytes, ResponseTap]:
    tap = tap_for(case, hide_usage_chunk=hide_usage_chunk)
    out = b"".join([tap.feed(chunk) for chunk in chunks])
    return out + tap.finish(), tap


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[start:end] for start, end in itertools.pairwise(bounds)]


def line_end(raw: bytes, needle: bytes) -> int:
    """Where the line holding ``needle`` has fully arrived: after its last non-blank byte."""
    start = raw.index(needle)
    end = raw.find(b"\n", start)
    return len(raw[:len(raw) if end < 0 else end].rstrip())


def event_ends(raw: bytes) -> list[int]:
    return [match.end() for match in re.finditer(rb"\n\n", raw)]


def data_events(raw: bytes) -> int:
    return len(re.findall(rb"^data:", raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n"), re.MULTILINE))


def assert_whole(case: Case, out: bytes, tap: ResponseTap, raw: bytes | None = None) -> None:
    raw = case.raw if raw is None else raw
    assert out == case.expected(raw)
    assert tap.usage == case.usage
    assert tap.complete is (case.end is not None or not case.is_sse)
    assert tap.failed is case.failed
    assert tap.events == (data_events(raw) if case.is_sse else 1)


# -- whole and split in two at every byte --------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=case_ids)
def test_whole_fixture(case: Case) -> None:
    raw = case.raw
    assert case.expected(raw) != raw  # the model id is really there to swap
    out, tap = run(case, [raw])
    assert_whole(case, out, tap)
    assert tap.framing is (Framing.SSE if case.is_sse else Framing.JSON)
    if not case.is_sse:
        assert json.loads(out) == {**json.loads(raw), "model": PUBLIC}


@pytest.mark.parametrize("case", CASES, ids=case_ids)
def test_fixture_fed_byte_by_byte(case: Case) -> None:
    raw = case.raw
    out, tap = run(case, [raw[i:i + 1] for i in range(len(raw))])
    assert_whole(case, out, tap)


#: Fixtures up to this size (13 of the 16) are cut at every byte; see :func:`two_way_positions` for the others.
EVERY_BYTE_UP_TO = 9000


def two_way_positions(case: Case) -> list[int]:
    """Every byte position of the fixture, except in the three fixtures of 14-33 KB (which would take ~15 s).

    Those are cut at every byte where framing, rewriting or reading can go wrong: around each blank line and
    each ``"model"`` field, through the end of the lines that carry usage or end the stream, and at every 8th
    byte of the JSON between (every 32nd in the embedding's floats: a JSON body is held whole wherever it is cut).
    """
    raw = case.raw
    if len(raw) <= EVERY_BYTE_UP_TO:
        return list(range(len(raw) + 1))
    keep = set(range(0, len(raw) + 1, 8 if case.is_sse else 32))
    for match in re.finditer(rb'\n\n|"model"\s*:\s*"[^"]*"', raw):
        keep.update(range(match.start() - 16, match.end() + 17))
    for needle in [needle for needle, _ in case.usage_steps] + ([case.end] if case.end else []):
        at = line_end(raw, needle)
        keep.update(range(at - 64, len(raw) + 1 if case.end == needle else at + 4))
    if not case.is_sse:
        keep.update(range(raw.index(b'"usage"'), len(raw) + 1))
    return sorted(position for position in keep if 0 <= position <= len(raw))


@pytest.mark.parametrize("case", CASES, ids=case_ids)
def test_fixture_split_in_two_at_every_byte(case: Case) -> None:
    """Split at each position; the same run also checks the stream cut there (truncated) and what went out early."""
    raw = case.raw
    expected = case.expected(raw)
    ends = event_ends(raw)
    end_of_stream = line_end(raw, case.end) if case.end else None
    usage_at = [(line_end(raw, needle), usage) for needle, usage in case.usage_steps]
    # A stream with an error in it has failed once the error event is in; before it starts, it has not.
    error = (raw.index(b"event: error"), line_end(raw, b'"type": "error"')) if case.failed else None
    sent_before = {end: case.expected(raw[:end]) for end in [0, *ends]}
    for cut in two_way_positions(case):
        tap = tap_for(case)
        first = tap.feed(raw[:cut])
        # Exactly the events whose blank line is in the first part went out; a JSON body waits for the end.
        sent = max((end for end in ends if end <= cut), default=0) if case.is_sse else 0
        assert first == sent_before[sent], cut
        cut_off = copy.deepcopy(tap)

        out = first + tap.feed(raw[cut:]) + tap.finish()
        assert out == expected, cut
        assert (tap.usage, tap.complete, tap.failed) == (case.usage, case.end is not None or not case.is_sse,
                                                         case.failed), cut

        # The same stream, cut off at `cut`.
        truncated = first + cut_off.finish()
        if case.is_sse:
            assert truncated == first + case.expected(raw[sent:cut]), cut  # no model field spans two events
            assert cut_off.complete is (end_of_stream is not None and cut >= end_of_stream), cut
            assert cut_off.usage == next((usage for at, usage in reversed(usage_at) if cut >= at), None), cut
            if error is None or cut < error[0]:
                assert not cut_off.failed, cut
            elif cut >= error[1]:
                assert cut_off.failed, cut
        elif cut < len(raw.rstrip()):  # a JSON body cut short is not JSON: it goes out as it came, read nothing
            assert (truncated, cut_off.complete, cut_off.usage) == (raw[:cut], False, None), cut
        else:
            assert (truncated, cut_off.complete, cut_off.usage) == (case.expected(raw[:cut]), True, case.usage), cut


@settings(max_examples=20)
@given(data=st.data())
@pytest.mark.parametrize("case", CASES, ids=case_ids)
def test_fixture_split_anywhere_many_times(case: Case, data: st.DataObject) -> None:
    raw = case.raw
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=25), label="cuts")
    tap = tap_for(case)
    ends = event_ends(raw)
    out = b""
    fed = 0
    for chunk in split_at(raw, cuts):
        out += tap.feed(chunk)
        fed += len(chunk)
        sent = max((end for end in ends if end <= fed), default=0) if case.is_sse else 0
        assert out == case.expected(raw[:sent])  # nothing early, nothing held back
    out += tap.finish()
    assert_whole(case, out, tap)


# -- other line ends -----------------------------------------------------------------------------------------------

LINE_ENDS = {"crlf": b"\r\n", "cr": b"\r"}


@pytest.mark.parametrize("eol", LINE_ENDS.values(), ids=LINE_ENDS.keys())
@pytest.mark.parametrize("case", STREAMS, ids=[case.name for case in STREAMS])
def test_stream_with_other_line_ends(case: Case, eol: bytes) -> None:
    raw = case.raw.replace(b"\n", eol)
    out, tap = run(case, [raw])
    assert_whole(case, out, tap, raw)
    out, tap = run(case, [raw[i:i + 1] for i in range(len(raw))])
    assert_whole(case, out, tap, raw)


@pytest.mark.parametrize("eol", LINE_ENDS.values(), ids=LINE_ENDS.keys())
@pytest.mark.parametrize("name", ["anthropic-messages-stream.sse", "openai-chat-stream-reasoning-usage.sse"])
def test_stream_with_other_line_ends_split_in_two_at_every_byte(name: str, eol: bytes) -> None:
    case = next(case for case in STREAMS if case.name == name)
    raw = case.raw.replace(b"\n", eol)
    for cut in range(len(raw) + 1):
        out, tap = run(case, [raw[:cut], raw[cut:]])
        assert_whole(case, out, tap, raw)


@settings(max_examples=10)
@given(data=st.data())
@pytest.mark.parametrize("eol", LINE_ENDS.values(), ids=LINE_ENDS.keys())
@pytest.mark.parametrize("case", STREAMS, ids=[case.name for case in STREAMS])
def test_stream_with_other_line_ends_split_anywhere(case: Case, eol: bytes, data: st.DataObject) -> None:
    raw = case.raw.replace(b"\n", eol)
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=25), label="cuts")
    out, tap = run(case, split_at(raw, cuts))
    assert_whole(case, out, tap, raw)


def test_data_without_space_after_the_colon() -> None:
    case = next(case for case in STREAMS if case.name == "anthropic-messages-stream.sse")
    raw = case.raw.replace(b"data: ", b"data:")
    out, tap = run(case, [raw])
    assert_whole(case, out, tap, raw)


def test_comments_pass_through_and_do_not_count_as_events() -> None:
    case = next(case for case in STREAMS if case.name == "openai-chat-stream-include-usage.sse")
    raw = b": keep-alive\n\n" + case.raw.replace(b"\n\ndata: [DONE]", b"\n\n: ping\n\ndata: [DONE]")
    out, tap = run(case, [raw])
    assert_whole(case, out, tap, raw)
    assert tap.events == 12


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
