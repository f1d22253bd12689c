"""orjson through fast_json gives exactly what the standard library gives, or leaves the job to it."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lime.protocols import fast_json

_FLOATS = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [1e-05, 2.5e-08, 1.5e-05, 0.0001, 1e16, 1e22, -0.0, 5e-324, 1.7976931348623157e308])
_INTS = st.integers(-(2**70), 2**70) | st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1])
_TEXT = st.text() | st.sampled_from(["é", "\u2028", "\x1f\x7f", "9e-4b7d", "1e-5", "v1e+2", "0.00001", "a/b"])
_JSON = st.recursive(st.none() | st.booleans() | _INTS | _FLOATS | _TEXT,
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
                     max_leaves=20)


def _stdlib(value: Any) -> bytes | None:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 for it
        return None


@settings(max_examples=500)
@given(_JSON)
def test_loads_reads_what_the_standard_library_reads(value: Any) -> None:
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False, separators=(",", ":"))):
        read = fast_json.loads(text)
        assert read == json.loads(text)
        assert type(read) is type(json.loads(text))


@settings(max_examples=500)
@given(_JSON)
def test_dumps_writes_the_standard_librarys_bytes_or_nothing(value: Any) -> None:
    written = fast_json.dumps(value)
    if written is not None:
        assert written == _stdlib(value)


@settings(max_examples=300)
@given(_JSON)
def test_what_parse_reads_is_written_back_exactly_or_not_at_all(value: Any) -> None:
    """The rewrite's way: orjson's reading, written by fast_json.dumps, is the standard library's or declined."""
    text = json.dumps(value).encode()
    parsed = fast_json.parse(text)
    if parsed is fast_json.REFUSED:
        return
    written = fast_json.dumps(parsed)
    if written is not None:
        assert written == _stdlib(json.loads(text))


@pytest.mark.parametrize("text", [
    "18446744073709551616", "[18446744073709551616]", '{"n": -9223372036854775809}',  # orjson: a float
    "NaN", "[Infinity]", "1e400", '"\\ud800"', "\ufeff{}", '{"a": 1, "a": 2}', "[" * 1100 + "]" * 1100,
])
def test_loads_where_orjson_reads_otherwise(text: str) -> None:
    try:
        expected: Any = json.loads(text)
    except (ValueError, RecursionError) as error:
        with pytest.raises(type(error)):
            fast_json.loads(text)
        return
    read = fast_json.loads(text)
    assert read == expected or (isinstance(read, float) and math.isnan(read))
    assert type(read) is type(expected)


@pytest.mark.parametrize(("value", "written"), [
    ([1e-05], None), ([2.5e-08], None), ({"x": 1e16}, None), ([2**64], None), (["\ud800"], None), ({1: 2}, None),
    ([1.234e-10, 0.0001, 100.0], b"[1.234e-10,0.0001,100.0]"),
    ({"id": "2f1c6a9e-4b7d-4c1a-9e0f-6d3b2a1c0e9f", "t": "é"}, '{"id":"2f1c6a9e-4b7d-4c1a-9e0f-6d3b2a1c0e9f","t":"é"}'
     .encode()),
])
def test_dumps_declines_what_orjson_writes_otherwise(value: Any, written: bytes | None) -> None:
    assert fast_json.dumps(value) == written


def test_parse_refuses_what_orjson_cannot_read() -> None:
    assert fast_json.parse(b"NaN") is fast_json.REFUSED
    assert fast_json.parse(b"null") is None
