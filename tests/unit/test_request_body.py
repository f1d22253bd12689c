from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lime.errors import BadRequest
from lime.request_body import RequestFacts, parse_request_body


def test_reads_model_stream_and_output_cap() -> None:
    facts = parse_request_body(b'{"model": "m", "stream": true, "max_tokens": 100, "messages": []}')
    assert facts == RequestFacts("m", True, {"max_tokens": 100},
                                 {"model": "m", "stream": True, "max_tokens": 100, "messages": []})


@pytest.mark.parametrize("field", ["max_completion_tokens", "max_tokens", "max_output_tokens"])
def test_each_protocol_names_its_cap(field: str) -> None:
    assert parse_request_body(json.dumps({"model": "m", field: 7}).encode()).output_caps == {field: 7}


def test_stream_null_is_false_and_unknown_fields_pass() -> None:
    facts = parse_request_body(b'{"model": "m", "stream": null, "whatever": {"x": [1]}}')
    assert facts.stream is False and facts.body["whatever"] == {"x": [1]}


@pytest.mark.parametrize(
    ("raw", "param", "fragment"),
    [
        (b"", None, "empty"),
        (b"   ", None, "empty"),
        (b"\xff\xfe", None, "UTF-8"),
        (b"{", None, "not valid JSON"),
        (b"[]", None, "JSON object"),
        (b'"model"', None, "JSON object"),
        (b"{}", "model", "model"),
        (b'{"model": null}', "model", "model"),
        (b'{"model": ""}', "model", "non-empty"),
        (b'{"model": ["a"]}', "model", "non-empty string"),
        (b'{"model": "a", "model": "b"}', "model", "more than once"),
        (b'{"model": "a", "stream": 1}', "stream", "boolean"),
        (b'{"model": "a", "max_tokens": -1}', "max_tokens", "positive"),
        (b'{"model": "a", "max_tokens": true}', "max_tokens", "positive"),
        (b'{"model": "a", "max_tokens": 1.5}', "max_tokens", "positive"),
        (b'{"model": "a", "n": 0}', "n", "positive"),
        (b'{"model": "a", "x": NaN}', None, "NaN"),
        (b'{"model": "a", "temperature": 1e400}', None, "out of range"),
        (b"[" * 100_000 + b"]" * 100_000, None, "nested"),
    ],
)
def test_bad_bodies_are_bad_requests(raw: bytes, param: str | None, fragment: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_request_body(raw)
    assert caught.value.param == param
    assert fragment in caught.value.message
    assert caught.value.status == 400


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_bad_request(raw: bytes) -> None:
    try:
        facts = parse_request_body(raw)
    except BadRequest:
        return
    assert isinstance(facts.model, str) and facts.model


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6), st.text(min_size=1, max_size=30))
def test_any_object_with_a_model_keeps_its_body(extra: dict[str, object], model: str) -> None:
    body = {**{k: v for k, v in extra.items() if k not in ("model", "stream", "n") and not k.startswith("max_")},
            "model": model}
    facts = parse_request_body(json.dumps(body).encode())
    assert facts.model == model and facts.body == body and facts.stream is False
