"""The tap reads the id a Responses answer is stored under (and whether it is), whole or split anywhere."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from lime.protocols.response_tap import ResponseTap


def _event(kind: str, response: dict[str, object]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, 'response': response})}\n\n".encode()


STREAM = (_event("response.created", {"id": "resp_1", "model": "gpt-4o", "store": True, "usage": None})
          + b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hi"}\n\n'
          + _event("response.completed", {"id": "resp_1", "model": "gpt-4o", "store": True,
                                          "usage": {"input_tokens": 5, "output_tokens": 2}}))


@given(st.lists(st.integers(0, len(STREAM)), max_size=6))
def test_a_stream_names_its_id_from_its_first_event(cuts: list[int]) -> None:
    tap = ResponseTap("responses", "chat")
    tap.start(200, "text/event-stream")
    out, last = b"", 0
    for cut in sorted(cuts):
        out += tap.feed(STREAM[last:cut])
        last = cut
    out += tap.feed(STREAM[last:]) + tap.finish()
    assert (tap.answer_id, tap.answer_stored, tap.usage_final) == ("resp_1", True, True)
    assert out == STREAM.replace(b'"gpt-4o"', b'"chat"')


def test_a_json_answer_names_its_id_and_says_when_it_was_not_stored() -> None:
    tap = ResponseTap("responses", "chat")
    tap.start(200, "application/json")
    tap.feed(b'{"id":"resp_2","object":"response","model":"gpt-4o","store":false,"usage":{"input_tokens":1}}')
    tap.finish()
    assert (tap.answer_id, tap.answer_stored) == ("resp_2", False)


def test_lifecycle_answers_are_not_recorded_again() -> None:
    tap = ResponseTap("responses_retrieve", "chat")
    tap.start(200, "application/json")
    out = tap.feed(b'{"id":"resp_2","object":"response","model":"gpt-4o"}') + tap.finish()
    assert tap.answer_id is None and out == b'{"id":"resp_2","object":"response","model":"chat"}'
