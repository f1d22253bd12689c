"""Which streamed answers Envoy edits (extproc/stream_modes.py) and the word extproc gives it."""

from __future__ import annotations

import pytest

from extproc.stream_modes import (
    ObservedAnswer,
    envoy_edits_stream,
    handoff_metadata,
    hands_off,
    observed_answer,
    stream_edit_metadata,
)
from lime.money.grant import Grant
from lime.protocols.response_tap import ResponseTap


@pytest.mark.parametrize(("status", "content_type", "encoding", "edits"), [
    (200, "text/event-stream; charset=utf-8", "", True),
    (200, "text/event-stream", "identity", True),
    (200, "text/event-stream", "gzip", False),  # extproc decodes it, so extproc edits it
    (200, "application/json", "", False),  # a JSON body is rewritten whole
    (429, "text/event-stream", "", False),  # an upstream error: Lime's body replaces it
    (200, "text/plain", "", False),
])
def test_only_a_successful_sse_answer_as_the_upstream_wrote_it(status: int, content_type: str, encoding: str,
                                                               edits: bool) -> None:
    tap = ResponseTap("chat_completions", "chat")
    tap.start(status, content_type, encoding)
    assert envoy_edits_stream(tap) is edits


def test_the_public_id_goes_as_json_writes_it_and_the_usage_chunk_choice_only_when_hidden() -> None:
    assert stream_edit_metadata('my "chat"', False) == {"stream_model": '"my \\"chat\\""'}
    assert stream_edit_metadata("chat", True) == {"stream_model": '"chat"', "hide_usage": "1"}


@pytest.mark.parametrize(("endpoint", "handed_off"), [
    ("chat_completions", True),
    ("messages", True),
    ("completions", True),
    # Its stored-response record must be written before its last bytes go on: only the intercepting path holds them.
    ("responses", False),
])
def test_which_streams_the_observing_tap_reads(endpoint: str, handed_off: bool) -> None:
    grant = Grant("r", "t", "k", endpoint, "chat", "mock", "gpt-4o-mini", True)
    tap = ResponseTap(endpoint, "chat")
    tap.start(200, "text/event-stream")
    assert hands_off(grant, tap) is handed_off


def test_the_observing_tap_learns_the_answer_from_extprocs_word() -> None:
    word = handoff_metadata("chat", True, 201, "candidate_b")
    assert observed_answer(word) == ObservedAnswer(201, True, "candidate_b")
    assert observed_answer(handoff_metadata("chat", False, 200, None)) == ObservedAnswer(200, False, None)
    # Not extproc's word (an Envoy that forwards another namespace): nothing to read it by.
    assert observed_answer({}) is None and observed_answer({"status": "x"}) is None
