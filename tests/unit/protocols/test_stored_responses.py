"""What a Responses request says about stored answers: the continuation it names, and what Lime refuses."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lime.protocols.endpoints import Protocol
from lime.protocols.error_bodies import render_error
from lime.protocols.errors import BadRequest
from lime.protocols.stored_responses import (
    PreviousResponseNotFound,
    ResponseNotFound,
    continuation_of,
    is_response_id,
)


def test_a_body_without_previous_response_id_continues_nothing() -> None:
    assert continuation_of({"model": "m", "input": "hi", "store": True, "background": False}) is None
    assert continuation_of({"model": "m", "previous_response_id": None}) is None


def test_the_previous_response_id_is_returned_as_sent() -> None:
    assert continuation_of({"model": "m", "previous_response_id": "resp_1"}) == "resp_1"


@pytest.mark.parametrize(("body", "param"), [
    ({"background": True}, "background"),
    ({"conversation": "conv_1"}, "conversation"),
    ({"conversation": {"id": "conv_1"}}, "conversation"),
    ({"previous_response_id": 7}, "previous_response_id"),
])
def test_what_lime_cannot_account_for_is_refused_naming_its_parameter(body: dict[str, Any], param: str) -> None:
    with pytest.raises(BadRequest) as refused:
        continuation_of({"model": "m", **body})
    assert refused.value.param == param and f"`{param}" in refused.value.message


@given(st.text(alphabet="abcXYZ019_-", min_size=1, max_size=200))
def test_ids_of_openais_alphabet_are_ids(value: str) -> None:
    assert is_response_id(value)


@pytest.mark.parametrize("value", ["", "resp 1", "resp/1", "../x", "resp_1\n", "é", "x" * 201])
def test_anything_else_is_never_looked_up(value: str) -> None:
    assert not is_response_id(value)


def test_missing_responses_are_answered_in_openais_words() -> None:
    reply = render_error(ResponseNotFound("resp_1"), Protocol.OPENAI)
    assert reply.status == 404
    assert reply.body == (b'{"error": {"message": "Response with id \'resp_1\' not found.", '
                          b'"type": "invalid_request_error", "param": null, "code": null}}')
    previous = render_error(PreviousResponseNotFound("resp_1"), Protocol.OPENAI)
    assert previous.status == 400
    assert b'"code": "previous_response_not_found"' in previous.body
    assert b'"param": "previous_response_id"' in previous.body


def test_the_id_echoed_in_an_error_is_bounded() -> None:
    assert len(ResponseNotFound("x" * 10_000).message) < 300
