"""What :mod:`lime.protocols.response_tap` pins, on every recorded provider body and stream, split in two at every byte
position (sampled in the fixtures over 9 KB, see ``two_way_positions``) and into many pieces by hypothesis:

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
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lime.protocols.response_tap import Framing
from tests.provider_fixtures import PROVIDERS
from tests.unit.protocols.tap_cases import (
    CASES,
    LINE_ENDS,
    PUBLIC,
    STREAMS,
    Case,
    assert_whole,
    case_ids,
    event_ends,
    line_end,
    run,
    split_at,
    tap_for,
)

#: Recordings that are not a case here, and why: an error body is a non-2xx answer, which the tap passes on
#: untouched and reads nothing from (test_response_tap_rules replays each one); a model list or model object is
#: what catalog_api answers itself, never an upstream body the tap sees.
NOT_A_TAP_CASE = re.compile(r"-error-\d{3}-|-models?(-list)?\.json$")


def test_every_usage_fixture_is_covered() -> None:
    # Every recording is a case unless excluded by name above: a new recording fails here until it has one.
    on_disk = {path.name for path in PROVIDERS.iterdir()
               if path.suffix in (".json", ".sse") and not NOT_A_TAP_CASE.search(path.name)}
    assert on_disk == {case.name for case in CASES}
    assert len(on_disk) == 28  # and the exclusions above do not swallow the recordings


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


#: Fixtures up to this size (20 of the 28) are cut at every byte; see :func:`two_way_positions` for the others.
EVERY_BYTE_UP_TO = 9000
#: Fixtures larger than this are cut at fewer places (see two_way_positions).
LARGE = 64 * 1024


def two_way_positions(case: Case) -> list[int]:
    """Every byte position of the fixture, except in the fixtures over 9 KB (which would take minutes).

    Those are cut at every byte where framing, rewriting or reading can go wrong: around each blank line and
    each ``"model"`` field, through the end of the lines that carry usage or end the stream, and at every 8th
    byte of the JSON between (every 32nd in the embedding's floats: a JSON body is held whole wherever it is cut).
    """
    raw = case.raw
    if len(raw) <= EVERY_BYTE_UP_TO:
        return list(range(len(raw) + 1))
    # The web search recordings (0.1-0.3 MiB, hundreds of events) keep the same windows at ~12 evenly spread
    # blank lines and model fields, and ~150 cuts between: each cut replays the whole stream.
    large = len(raw) > LARGE
    keep = set(range(0, len(raw) + 1, len(raw) // 150 if large else 8 if case.is_sse else 32))
    windows = list(re.finditer(rb'\n\n|"model"\s*:\s*"[^"]*"', raw))
    for match in windows[::max(1, len(windows) // 12)] if large else windows:
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
