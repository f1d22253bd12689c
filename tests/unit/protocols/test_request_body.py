from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lime.protocols.errors import BadRequest
from lime.protocols.request_body import RequestFacts, parse_request_body


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
        (b'{"model": "a", "seed": 1' + b"0" * 5000 + b"}", None, "integer too long"),
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


# Fields Lime reads, each with values of every JSON type, and JSON text an attacker would write by hand.
READ_FIELDS = ("model", "stream", "n", "max_tokens", "max_completion_tokens", "max_output_tokens")


@dataclass(frozen=True)
class Digits:
    """An integer written with this many digits (Python will not turn one of more than 4300 into an int)."""

    count: int


numbers = st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.builds(Digits, st.integers(4290, 4310))
names = st.sampled_from(READ_FIELDS) | st.text(max_size=8)
any_json = st.recursive(
    st.none() | st.booleans() | numbers | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(names, children, max_size=4),
    max_leaves=20,
)


def _dump(value: object) -> str:
    if isinstance(value, Digits):
        return "9" * value.count
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {_dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(map(_dump, value)) + "]"
    return json.dumps(value)


@given(st.dictionaries(st.sampled_from(READ_FIELDS), any_json, max_size=6), any_json)
def test_any_json_with_any_types_in_the_read_fields_parses_or_raises_bad_request(
        read: dict[str, object], other: object) -> None:
    """Whatever types the fields Lime reads hold, the validator answers RequestFacts or BadRequest, nothing else;
    and what it accepts has the types it promises."""
    raw = (_dump(read)[:-1] + (", " if read else "") + f'"other": {_dump(other)}}}').encode()
    try:
        facts = parse_request_body(raw)
    except BadRequest as error:
        assert error.status == 400 and error.message
        return
    assert isinstance(facts.model, str) and facts.model
    assert isinstance(facts.stream, bool)
    assert all(type(cap) is int and cap > 0 for cap in facts.output_caps.values())
    assert type(facts.choices) is int and facts.choices > 0


JSON_PIECES = st.sampled_from([
    "{", "}", "[", "]", ",", ":", '"model"', '"stream"', '"n"', '"max_tokens"', '"x"', '"\\ud800"', '"\\u0000"',
    "true", "false", "null", "0", "-1", "1e400", "1.5", "NaN", "Infinity", "9" * 4301, " ", "\\", '"',
])


@given(st.lists(JSON_PIECES, max_size=40).map("".join), st.binary(max_size=4))
def test_json_like_text_parses_or_raises_bad_request(text: str, junk: bytes) -> None:
    """Near-JSON built from JSON's own tokens (with stray bytes) finds no other exception than BadRequest."""
    for raw in (text.encode(), text.encode() + junk, junk + text.encode()):
        try:
            parse_request_body(raw)
        except BadRequest:
            pass
