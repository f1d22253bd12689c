from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extproc.rewrite import rewrite_request
from lime.money.grant import Grant
from lime.protocols.errors import BadRequest, ServiceUnavailable
from lime.protocols.request_body import parse_request_body

CHAT = Grant("req-1", "t", "k", "chat_completions", "chat", "mock", "gpt-4o-mini", False)
MESSAGES = Grant("req-2", "t", "k", "messages", "claude", "anth", "claude-x", True)
CREDENTIALS = {"mock": "sk-up", "anth": "ak-up"}.get


def test_openai_request_gets_bearer_credential_and_upstream_model() -> None:
    edit = rewrite_request(CHAT, b'{"model": "chat", "messages": [{"role": "user", "content": "h\\u00e9"}]}',
                           CREDENTIALS)
    assert json.loads(edit.body) == {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hé"}]}
    assert edit.set_headers == {"authorization": "Bearer sk-up", "x-lime-upstream": "mock",
                                "accept-encoding": "identity"}
    assert set(edit.remove_headers) == {"x-api-key", "x-lime-tenant-id", "cookie", "proxy-authorization"}


def test_anthropic_request_gets_x_api_key_and_loses_bearer() -> None:
    edit = rewrite_request(MESSAGES, b'{"model": "claude", "max_tokens": 5, "messages": []}', CREDENTIALS)
    assert json.loads(edit.body)["model"] == "claude-x"
    assert edit.set_headers == {"x-api-key": "ak-up", "x-lime-upstream": "anth",
                                "accept-encoding": "identity"}
    assert set(edit.remove_headers) == {"authorization", "x-lime-tenant-id", "cookie", "proxy-authorization"}


def test_the_rest_of_the_body_is_kept() -> None:
    body = {"model": "chat", "temperature": 0.2, "tools": [{"type": "function"}], "n": None}
    edit = rewrite_request(CHAT, json.dumps(body).encode(), CREDENTIALS)
    assert json.loads(edit.body) == {**body, "model": "gpt-4o-mini"}


def test_missing_credential_fails_closed() -> None:
    with pytest.raises(ServiceUnavailable):
        rewrite_request(CHAT, b'{"model": "chat"}', lambda upstream: None)


@pytest.mark.parametrize("body", [b"nope", b"[1]"])
def test_bad_body(body: bytes) -> None:
    with pytest.raises(BadRequest):
        rewrite_request(CHAT, body, CREDENTIALS)


def test_every_lime_header_the_client_sent_is_dropped() -> None:
    sent = ["content-type", "x-lime-reservation-id", "x-lime-upstream", "X-Lime-Whatever".lower(), "x-request-id"]
    edit = rewrite_request(CHAT, b'{"model": "chat"}', CREDENTIALS, sent)
    assert {"x-lime-reservation-id", "x-lime-whatever"} <= set(edit.remove_headers)
    assert "x-lime-upstream" not in edit.remove_headers  # set, not removed
    assert "content-type" not in edit.remove_headers and "x-request-id" not in edit.remove_headers


def test_numbers_json_cannot_carry_are_refused() -> None:
    with pytest.raises(BadRequest, match="out of range"):
        rewrite_request(CHAT, b'{"model": "chat", "temperature": 1e400}', CREDENTIALS)


def test_a_lone_surrogate_stays_escaped() -> None:
    edit = rewrite_request(CHAT, b'{"model": "chat", "x": "\\ud800 \\u00e9"}', CREDENTIALS)
    assert json.loads(edit.body) == {"model": "gpt-4o-mini", "x": "\ud800 \u00e9"}
    edit.body.decode("utf-8")  # valid UTF-8 on the wire


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_any_body_authz_accepts_is_rewritten_to_valid_json(extra: dict[str, object]) -> None:
    raw = json.dumps({**extra, "model": "chat"}).encode()
    try:
        facts = parse_request_body(raw)
    except BadRequest:
        return
    edit = rewrite_request(CHAT, raw, CREDENTIALS)
    rewritten = json.loads(edit.body.decode("utf-8"))
    assert rewritten == {**facts.body, "model": "gpt-4o-mini"}


STREAMED_CHAT = Grant("req-3", "t", "k", "chat_completions", "chat", "mock", "gpt-4o-mini", True)


def test_a_streamed_chat_is_asked_for_usage_and_the_client_is_not_shown_it() -> None:
    edit = rewrite_request(STREAMED_CHAT, b'{"model": "chat", "stream": true, "stream_options": {"x": 1}}',
                           CREDENTIALS)
    assert json.loads(edit.body)["stream_options"] == {"x": 1, "include_usage": True}
    assert edit.hide_usage_chunk


def test_a_client_that_asked_for_usage_sees_it() -> None:
    body = b'{"model": "chat", "stream": true, "stream_options": {"include_usage": true}}'
    edit = rewrite_request(STREAMED_CHAT, body, CREDENTIALS)
    assert not edit.hide_usage_chunk


@pytest.mark.parametrize(("endpoint", "field"), [("chat_completions", "max_completion_tokens"),
                                                 ("responses", "max_output_tokens"), ("messages", "max_tokens")])
def test_the_package_output_cap_is_set_when_the_client_sent_none(endpoint: str, field: str) -> None:
    grant = dataclasses.replace(CHAT, endpoint=endpoint, output_cap=4096)
    edit = rewrite_request(grant, b'{"model": "chat"}', CREDENTIALS)
    assert json.loads(edit.body)[field] == 4096


def test_no_cap_is_added_when_the_grant_carries_none() -> None:
    edit = rewrite_request(CHAT, b'{"model": "chat", "max_tokens": 7}', CREDENTIALS)
    assert json.loads(edit.body) == {"model": "gpt-4o-mini", "max_tokens": 7}


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1e-05, 2.5e-08, 1e16, 2**64, "é", "\ud800", "9e-4b"]) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3), max_leaves=12)


@given(st.dictionaries(st.text(), _VALUES, max_size=5), st.booleans())
def test_the_upstream_gets_the_standard_librarys_bytes(fields: dict[str, object], ascii_only: bool) -> None:
    """orjson reads and writes the body where it gives the same bytes as the standard library (fast_json); the
    standard library's own path, forced, gives exactly what the upstream gets."""
    body = json.dumps({"model": "chat", **fields}, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    grant = dataclasses.replace(CHAT, output_cap=77)
    edit = rewrite_request(grant, body, CREDENTIALS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("lime.protocols.fast_json.parse", lambda data: object())
        assert rewrite_request(grant, body, CREDENTIALS) == edit
