"""What :mod:`lime.protocols.sse` pins: SSE framing and field parsing, whatever the network's splits.

* ``EventFramer`` cuts a byte stream into raw events, each ending with its blank line, for ``\\n``, ``\\r\\n`` and
  ``\\r`` line ends (README facts 1 and 6); an event never comes out before its blank line has arrived, and never
  later than that (a trailing ``\\r`` waits one byte, since it may be half of a ``\\r\\n``);
* nothing is lost or invented: the events plus ``flush()`` give back the input, byte for byte, for any bytes;
* the framing does not depend on how the stream was split (checked against an independent line-by-line
  reference);
* ``parse_event`` reads ``event:`` and ``data:`` (with or without the space, fact 2), joins data lines, skips
  comments and unknown fields.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lime.protocols.sse import EventFramer, SSEEvent, parse_event
from tests.provider_fixtures import PROVIDERS, provider_fixture

SSE_FIXTURES = sorted(
    path.name for path in PROVIDERS.glob("*.sse")
    if path.name.startswith(("openai-chat-stream", "openai-responses-stream", "anthropic-messages-stream"))
)
LINE_ENDS = {"lf": b"\n", "crlf": b"\r\n", "cr": b"\r"}


def test_every_stream_fixture_is_here() -> None:
    assert len(SSE_FIXTURES) == 14  # fail, never silently test nothing, when the fixtures move


def fixture_events(name: str, eol: bytes = b"\n") -> tuple[list[bytes], bytes]:
    """A fixture's events, each with its blank line, and its unterminated tail, rewritten to use ``eol``.

    Computed from the files' own ``\\n\\n`` separators, independently of the framer.
    """
    *events, tail = provider_fixture(name).read_bytes().split(b"\n\n")
    return [event.replace(b"\n", eol) + eol + eol for event in events], tail.replace(b"\n", eol)


def reference_frame(stream: bytes) -> tuple[list[bytes], bytes]:
    """The framing rule, spelled out line by line: an event ends at an empty line that follows a line end.

    A ``\\r`` at the very end of the input is undecided (it may be the first half of ``\\r\\n``), so it stays in
    the tail with whatever it would end.
    """
    events: list[bytes] = []
    current = b""
    i = 0
    while i < len(stream):
        j = i
        while j < len(stream) and stream[j] not in b"\r\n":
            j += 1
        if j == len(stream) or (stream[j:j + 1] == b"\r" and j + 1 == len(stream)):
            break
        end = j + 2 if stream[j:j + 2] == b"\r\n" else j + 1
        blank_after_line_end = j == i and current != b""
        current += stream[i:end]
        if blank_after_line_end:
            events.append(current)
            current = b""
        i = end
    return events, current + stream[i:]


def frame_in_chunks(chunks: list[bytes]) -> tuple[list[bytes], bytes]:
    framer = EventFramer()
    events: list[bytes] = []
    fed = b""
    for chunk in chunks:
        events += framer.feed(chunk)
        fed += chunk
        # At every point exactly the events complete so far are out: none early, none held back.
        assert events == reference_frame(fed)[0]
        assert framer.pending == len(fed) - sum(map(len, events))
    return events, framer.flush()


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[start:end] for start, end in itertools.pairwise(bounds)]


# -- the fixtures ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("eol", LINE_ENDS.values(), ids=LINE_ENDS.keys())
@pytest.mark.parametrize("name", SSE_FIXTURES)
def test_fixture_framed_whole(name: str, eol: bytes) -> None:
    events, tail = fixture_events(name, eol)
    stream = b"".join(events) + tail
    framer = EventFramer()
    got = framer.feed(stream)
    rest = framer.flush()
    if eol == b"\r" and not tail:
        # The final `\r\r` might still become `\r\r\n`: the last event waits for the end of the stream.
        assert got == events[:-1] and rest == events[-1]
    else:
        assert got == events and rest == tail
    assert framer.pending == 0 and framer.flush() == b""


@pytest.mark.parametrize("eol", LINE_ENDS.values(), ids=LINE_ENDS.keys())
@pytest.mark.parametrize("name", SSE_FIXTURES)
def test_fixture_fed_byte_by_byte_emits_each_event_when_its_blank_line_arrives(name: str, eol: bytes) -> None:
    events, tail = fixture_events(name, eol)
    stream = b"".join(events) + tail
    ends = {sum(map(len, events[:n + 1])) for n in range(len(events))}
    # With `\r` line ends an event is known to be over one byte later (the `\r` could have been half a `\r\n`).
    delay = 1 if eol == b"\r" else 0
    framer = EventFramer()
    out: list[bytes] = []
    for position in range(1, len(stream) + 1):
        new = framer.feed(stream[position - 1:position])
        if position - delay in ends:
            assert len(new) == 1, position
            assert sum(map(len, out)) + len(new[0]) == position - delay
        else:
            assert new == [], position
        out += new
    rest = framer.flush()
    assert out + ([rest] if rest else []) == events + ([tail] if tail else [])


@pytest.mark.parametrize("name", ["anthropic-messages-stream.sse", "openai-chat-stream-include-usage.sse"])
@pytest.mark.parametrize("eol", LINE_ENDS.values(), ids=LINE_ENDS.keys())
def test_fixture_split_in_two_anywhere(name: str, eol: bytes) -> None:
    events, tail = fixture_events(name, eol)
    stream = b"".join(events) + tail
    ends = [sum(map(len, events[:n + 1])) for n in range(len(events))]
    delay = 1 if eol == b"\r" else 0
    for cut in range(len(stream) + 1):
        framer = EventFramer()
        first = framer.feed(stream[:cut])
        assert first == events[:sum(end + delay <= cut for end in ends)], cut
        second = framer.feed(stream[cut:])
        rest = framer.flush()
        assert first + second + ([rest] if rest else []) == events + ([tail] if tail else []), cut


@settings(max_examples=15)
@given(data=st.data())
@pytest.mark.parametrize("eol", LINE_ENDS.values(), ids=LINE_ENDS.keys())
@pytest.mark.parametrize("name", SSE_FIXTURES)
def test_fixture_split_anywhere_many_times(name: str, eol: bytes, data: st.DataObject) -> None:
    events, tail = fixture_events(name, eol)
    stream = b"".join(events) + tail
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20), label="cuts")
    got, rest = frame_in_chunks(split_at(stream, cuts))
    assert b"".join(got) + rest == stream
    assert [parse_event(raw) for raw in [*got, rest] if raw] == [parse_event(raw) for raw in [*events, tail] if raw]


def test_parsed_fixture_events_have_the_documented_shape() -> None:
    chat = [parse_event(raw) for raw in fixture_events("openai-chat-stream-include-usage.sse")[0]]
    assert all(event.name is None for event in chat)  # chat streams send no `event:` line (fact 3)
    assert chat[-1] == SSEEvent(None, b"[DONE]")
    anthropic_events, tail = fixture_events("anthropic-messages-stream-sdk-basic.sse")
    names = [parse_event(raw).name for raw in [*anthropic_events, tail]]
    assert names[0] == "message_start" and names[-1] == "message_stop"  # the tail is the last event (fact 6)
    assert parse_event(tail) == SSEEvent("message_stop", b'{"type":"message_stop"}')
    ping = next(parse_event(raw) for raw in anthropic_events if b"ping" in raw)
    assert ping == SSEEvent("ping", b'{"type": "ping"}')


# -- hand-written streams --------------------------------------------------------------------------------------


@pytest.mark.parametrize("eol", LINE_ENDS.values(), ids=LINE_ENDS.keys())
def test_each_line_end_frames_the_same_events(eol: bytes) -> None:
    stream = b"event: a" + eol + b"data: 1" + eol + eol + b"data: 2" + eol + b"data: 3" + eol + eol
    framer = EventFramer()
    events = [*framer.feed(stream), framer.flush()]
    events = [event for event in events if event]
    assert [parse_event(event) for event in events] == [SSEEvent("a", b"1"), SSEEvent(None, b"2\n3")]


def test_crlf_split_between_cr_and_lf_is_one_line_end() -> None:
    framer = EventFramer()
    assert framer.feed(b"data: 1\r\n\r") == []
    assert framer.feed(b"\ndata: 2\r\n") == [b"data: 1\r\n\r\n"]
    assert framer.flush() == b"data: 2\r\n"


def test_cr_at_the_end_waits_for_the_next_byte() -> None:
    framer = EventFramer()
    assert framer.feed(b"data: 1\r\r") == []  # could still become `\r\r\n`
    assert framer.feed(b"data: 2") == [b"data: 1\r\r"]
    assert framer.flush() == b"data: 2"


def test_cr_then_crlf_is_one_blank_line() -> None:
    framer = EventFramer()
    assert framer.feed(b"data: 1\r\r\ndata: 2\n\n") == [b"data: 1\r\r\n", b"data: 2\n\n"]


def test_lone_line_end_does_not_end_an_event() -> None:
    framer = EventFramer()
    assert framer.feed(b"data: 1\n") == []
    assert framer.feed(b"data: 2\r\n") == []
    assert framer.feed(b"\n") == [b"data: 1\ndata: 2\r\n\n"]


def test_stream_without_final_blank_line_is_flushed() -> None:
    framer = EventFramer()
    assert framer.feed(b'event: message_stop\ndata: {"type":"message_stop"}') == []
    assert framer.pending == len(b'event: message_stop\ndata: {"type":"message_stop"}')
    assert framer.flush() == b'event: message_stop\ndata: {"type":"message_stop"}'
    assert framer.pending == 0 and framer.flush() == b""


def test_comment_is_its_own_event_and_has_no_data() -> None:
    framer = EventFramer()
    events = framer.feed(b": keep-alive\n\ndata: 1\n\n")
    assert events == [b": keep-alive\n\n", b"data: 1\n\n"]
    assert parse_event(events[0]) == SSEEvent(None, None)


def test_empty_feed_is_harmless() -> None:
    framer = EventFramer()
    assert framer.feed(b"") == []
    assert framer.feed(b"data: 1\n") == []
    assert framer.feed(b"") == []
    assert framer.feed(b"\n") == [b"data: 1\n\n"]


# -- parse_event -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"data: {}\n\n", SSEEvent(None, b"{}")),
        (b"data:{}\n\n", SSEEvent(None, b"{}")),  # the space is optional (fact 2)
        (b"data:  {}\n\n", SSEEvent(None, b" {}")),  # only one space goes
        (b"data: {}\r\n\r\n", SSEEvent(None, b"{}")),
        (b"data: {}\r\r", SSEEvent(None, b"{}")),
        (b"event: ping\ndata: {}\n\n", SSEEvent("ping", b"{}")),
        (b"event:ping\ndata:{}\n\n", SSEEvent("ping", b"{}")),
        (b"data: a\ndata: b\n\n", SSEEvent(None, b"a\nb")),  # data lines join with `\n`
        (b"data: a\r\ndata: b\rdata: c\n\n", SSEEvent(None, b"a\nb\nc")),
        (b"data:\n\n", SSEEvent(None, b"")),  # an empty data line is data, not none
        (b"data\n\n", SSEEvent(None, b"")),  # a field name alone has an empty value
        (b": comment\n\n", SSEEvent(None, None)),
        (b": comment\ndata: x\n: more\n\n", SSEEvent(None, b"x")),
        (b"id: 7\nretry: 100\n\n", SSEEvent(None, None)),  # unknown fields are ignored
        (b"id: 7\ndata: x\nfoo: bar\n\n", SSEEvent(None, b"x")),
        (b"event: a\nevent: b\ndata: x\n\n", SSEEvent("b", b"x")),  # the last event: line wins
        (b"data: [DONE]\n\n", SSEEvent(None, b"[DONE]")),
        (b'data: {"a":"b: c"}\n\n', SSEEvent(None, b'{"a":"b: c"}')),  # only the first colon splits
        (b"data: x", SSEEvent(None, b"x")),  # an unterminated event (fact 6)
        (b"", SSEEvent(None, None)),
        (b"\n\n", SSEEvent(None, None)),
        (b"event: \xff\n\n", SSEEvent("\ufffd", None)),  # bad UTF-8 in a name does not raise
    ],
)
def test_parse_event(raw: bytes, expected: SSEEvent) -> None:
    assert parse_event(raw) == expected


# -- arbitrary bytes -----------------------------------------------------------------------------------------------

SSE_PIECES = st.sampled_from(
    [b"data:", b"data: ", b"event: ", b"id: 1", b": c", b":", b" ", b"x", b"{}", b"[DONE]", b"\n", b"\r", b"\r\n"]
)
sse_like = st.lists(SSE_PIECES, max_size=40).map(b"".join)
line_end_heavy = st.lists(st.sampled_from([b"\n", b"\r", b"\r\n", b"a", b":"]), max_size=30).map(b"".join)
streams = st.binary(max_size=200) | sse_like | line_end_heavy


@given(stream=streams)
def test_events_and_flush_give_back_the_input(stream: bytes) -> None:
    framer = EventFramer()
    events = framer.feed(stream)
    assert b"".join(events) + framer.flush() == stream
    assert (events, stream[sum(map(len, events)):]) == reference_frame(stream)


@given(stream=streams, data=st.data())
def test_framing_does_not_depend_on_the_splits(stream: bytes, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12), label="cuts")
    events, rest = frame_in_chunks(split_at(stream, cuts))
    assert b"".join(events) + rest == stream
    assert (events, rest) == reference_frame(stream)
    for event in events:
        # One blank line per event, at its very end.
        assert reference_frame(event) == ([event], b"") or event.endswith(b"\r")


@given(stream=streams)
def test_parse_event_never_raises(stream: bytes) -> None:
    event = parse_event(stream)
    has_data_line = any(
        line.partition(b":")[0] == b"data" for line in stream.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    )
    assert (event.data is not None) == has_data_line
