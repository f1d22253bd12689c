"""The rule for upstream errors (lime.protocols.upstream_errors): each recorded provider error, and a property that
no message leaks an upstream identifier."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lime.protocols.endpoints import Protocol
from lime.protocols.upstream_errors import client_status, read_error_body, scrub, upstream_error_reply
from tests.provider_fixtures import provider_fixture

OPENAI, ANTHROPIC = Protocol.OPENAI, Protocol.ANTHROPIC
AUTH_MESSAGE = re.compile(r"refused the gateway's own credentials \(HTTP 40\d\)\. This is not a problem with your API")


def reply(status: int, body: bytes | str, protocol: Protocol = OPENAI, headers: dict[str, str] | None = None,
          upstream_model: str = "gpt-4.1-nano-wrong") -> tuple[int, dict[str, Any], dict[str, str]]:
    raw = body.encode() if isinstance(body, str) else body
    answer = upstream_error_reply(status, headers or {}, raw, protocol, public_model="chat-a",
                                  upstream_models=(upstream_model,), request_id="req-lime-1")
    return answer.status, json.loads(answer.body), dict(answer.headers)


# fixture, client protocol -> status, error fields the client gets (message: exact text, or a pattern)
RECORDED: dict[str, tuple[Protocol, int, dict[str, Any]]] = {
    "openai-error-401-invalid-api-key.json": (OPENAI, 502, {
        "type": "server_error", "code": "upstream_auth_failed", "param": None, "message": AUTH_MESSAGE}),
    "anthropic-error-401-authentication.json": (ANTHROPIC, 502, {"type": "api_error", "message": AUTH_MESSAGE}),
    "anthropic-error-403-permission.json": (ANTHROPIC, 502, {"type": "api_error", "message": AUTH_MESSAGE}),
    "openai-error-400-invalid-request.json": (OPENAI, 400, {
        "type": "invalid_request_error", "code": "unsupported_parameter", "param": "max_tokens",
        "message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                   "'max_completion_tokens' instead."}),
    "openai-error-400-empty-array.json": (OPENAI, 400, {
        "type": "invalid_request_error", "code": "empty_array", "param": "messages",
        "message": "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty "
                   "array instead."}),
    "anthropic-error-400-invalid-request.json": (ANTHROPIC, 400, {
        "type": "invalid_request_error",
        "message": "This model does not support effort level 'xhigh'. Supported levels: high, low, max, medium."}),
    # A model the upstream lacks: its id becomes the public one.
    "openai-error-404-model-not-found.json": (OPENAI, 404, {
        "type": "invalid_request_error", "code": "model_not_found", "param": None,
        "message": "The model `chat-a` does not exist or you do not have access to it."}),
    "anthropic-error-404-not-found.json": (ANTHROPIC, 404, {"type": "not_found_error", "message": "model: chat-a"}),
    # Busy or failing: status kept, Lime's message.
    "openai-error-429-rate-limit-exceeded.json": (OPENAI, 429, {
        "type": "requests", "code": "upstream_rate_limited", "param": None,
        "message": "The gateway's upstream is rate limiting requests for this model. Please retry after a while."}),
    "openai-error-429-insufficient-quota.json": (OPENAI, 429, {
        "type": "requests", "code": "upstream_rate_limited", "param": None,
        "message": "The gateway's upstream is rate limiting requests for this model. Please retry after a while."}),
    "anthropic-error-429-rate-limit.json": (ANTHROPIC, 429, {
        "type": "rate_limit_error",
        "message": "The gateway's upstream is rate limiting requests for this model. Please retry after a while."}),
    "anthropic-error-529-overloaded.json": (ANTHROPIC, 529, {
        "type": "overloaded_error", "message": "The gateway's upstream is overloaded. Please retry after a while."}),
}


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_each_recorded_provider_error(name: str) -> None:
    protocol, status, expected = RECORDED[name]
    upstream_status = int(name.split("-")[2])
    upstream_model = "claude-sonet-4-5" if name.startswith("anthropic") else "gpt-4.1-nano-wrong"
    got_status, body, headers = reply(upstream_status, provider_fixture(name).read_bytes(), protocol,
                                      {"retry-after": "3", "x-request-id": "req_up"}, upstream_model)
    assert got_status == status
    error = body["error"]
    if protocol is ANTHROPIC:
        assert body["type"] == "error" and body["request_id"] == "req-lime-1"
        assert set(error) == {"type", "message"}
    else:
        assert set(body) == {"error"} and set(error) == {"message", "type", "param", "code"}
    for field, value in expected.items():
        if isinstance(value, re.Pattern):
            assert value.search(error[field]), error[field]
        else:
            assert error[field] == value, field
    if status == 502:  # a refused credential: retrying will not help
        assert headers == {"content-type": "application/json", "x-should-retry": "false"}
    else:  # the upstream's retry advice is kept, nothing else of its headers
        assert headers == {"content-type": "application/json", "retry-after": "3"}


@pytest.mark.parametrize(("upstream", "client"), [
    (400, 400), (401, 502), (402, 502), (403, 502), (404, 404), (407, 502), (408, 408), (413, 413), (422, 422),
    (429, 429), (500, 500), (502, 502), (503, 503), (504, 504), (529, 529), (301, 502), (101, 502), (600, 502)])
def test_the_clients_status_depends_on_the_upstreams_alone(upstream: int, client: int) -> None:
    assert client_status(upstream) == client
    for body in (b"", b"<html>502</html>", b'{"error":{"message":"x","type":"invalid_request_error"}}'):
        for protocol in Protocol:
            assert reply(upstream, body, protocol)[0] == client


@pytest.mark.parametrize("body", [b"", b"<html><body>Bad Request</body></html>", b"[1, 2]", b'{"detail": "no"}',
                                  b'{"error": {"message": 5}}', b'{"error": {"message": "  "}}', b"\xff\xfe"])
@pytest.mark.parametrize("protocol", list(Protocol))
def test_a_body_that_is_no_error_gets_a_generic_message_and_keeps_the_status(body: bytes, protocol: Protocol) -> None:
    status, answer, _ = reply(422, body, protocol)
    assert status == 422
    assert answer["error"]["message"] == ("The upstream refused this request (HTTP 422) without a reason the "
                                          "gateway can pass on.")
    assert answer["error"]["type"] == "invalid_request_error"


def test_a_relays_string_error_and_the_other_protocols_shape() -> None:
    assert reply(400, '{"error": "model gpt-4.1-nano-wrong is disabled"}')[1]["error"]["message"] == \
        "model chat-a is disabled"
    # An OpenAI-shaped body to an Anthropic client: Anthropic's type for the status; and the reverse.
    assert reply(413, '{"error":{"message":"too big","type":"x"}}', ANTHROPIC)[1]["error"] == {
        "type": "request_too_large", "message": "too big"}
    assert reply(404, '{"type":"error","error":{"type":"not_found_error","message":"nope"}}')[1]["error"] == {
        "message": "nope", "type": "invalid_request_error", "param": None, "code": None}


def test_type_code_and_param_are_kept_only_when_they_look_like_providers_fields() -> None:
    error = reply(400, json.dumps({"error": {"message": "m", "type": "see https://x.io", "code": "org-1 leaks",
                                             "param": "a b <script>"}}))[1]["error"]
    assert error == {"message": "m", "type": "invalid_request_error", "param": None, "code": None}


def test_scrub_removes_each_kind_of_identifier() -> None:
    message = ("Org org-AbC123 project proj_9xYz request req_011CdufXo8Y2 key sk-proj-****abcd and sk-ant-api03-Zz_9 "
               "user user-abcdefgh1234 id 123e4567-e89b-12d3-a456-426614174000 at https://platform.openai.com/x?y=1 "
               "or api.anthropic.com via OpenAI; model gpt-4o-2024-08-06 or gpt-4o; token "
               "AbCdEf0123456789AbCdEf0123456789xyz; secret relay-key-1234")
    assert scrub(message, public_model="chat-a", upstream_models=["gpt-4o"], secrets=["relay-key-1234"]) == (
        "Org [redacted] project [redacted] request [redacted] key [redacted] and [redacted] user [redacted] id "
        "[redacted] at [redacted] or [redacted] via the upstream; model chat-a or chat-a; token [redacted]; "
        "secret [redacted]")
    # Words that merely contain the prefixes stay.
    assert scrub("task-force and unreq_x", public_model="m") == "task-force and unreq_x"


def test_read_error_body_ignores_huge_bodies() -> None:
    assert read_error_body(b'{"error":{"message":"' + b"a" * 70_000 + b'"}}') is None


IDENTIFIER = st.one_of(
    st.from_regex(r"sk-(proj-|ant-api03-)?[A-Za-z0-9*]{0,40}", fullmatch=True),
    st.from_regex(r"org-[A-Za-z0-9*]{1,24}", fullmatch=True),
    st.from_regex(r"(proj|req)_[A-Za-z0-9]{1,30}", fullmatch=True),
    st.from_regex(r"https?://(platform\.openai\.com|api\.anthropic\.com|console\.anthropic\.com)(/[a-z\-/]{0,20})?",
                  fullmatch=True),
    st.sampled_from(["api.openai.com", "platform.openai.com/account/api-keys", "docs.anthropic.com", "UPSTREAM-MODEL",
                     "UPSTREAM-MODEL-2024-08-06"]),
)
FILLER = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
LEAKS = re.compile(r"(?<![A-Za-z0-9])(sk-|org-)|(?<![A-Za-z0-9_])(req_|proj_)|://|openai\.com|anthropic\.com|"
                   r"UPSTREAM-MODEL", re.IGNORECASE)


# Mostly the statuses whose message is passed on (scrubbed); any status now and then.
STATUS = st.one_of(st.sampled_from([400, 404, 409, 413, 415, 422]), st.integers(100, 599))


@settings(max_examples=400)
@given(parts=st.lists(st.tuples(FILLER, IDENTIFIER), min_size=1, max_size=6), tail=FILLER, status=STATUS,
       protocol=st.sampled_from(list(Protocol)), field=st.sampled_from(["message", "message", "param", "code", "type"]))
def test_no_upstream_identifier_ever_reaches_the_client(parts: list[tuple[str, str]], tail: str, status: int,
                                                        protocol: Protocol, field: str) -> None:
    text = "".join(filler + identifier for filler, identifier in parts) + tail
    error = {"message": "see below", "type": "invalid_request_error", field: text}
    for body in (json.dumps({"error": error}), json.dumps({"type": "error", "error": error}), text):
        answer = upstream_error_reply(status, {}, body.encode(), protocol, public_model="chat-a",
                                      upstream_models=("UPSTREAM-MODEL",), request_id="r")
        assert not LEAKS.search(answer.body.decode()), answer.body


def test_a_long_message_is_cut_without_leaving_half_a_secret() -> None:
    secret = "relaykey" + "Q" * 40
    # URLs shrink to [redacted], so what stood at the 4000th character comes well within the 2000 kept.
    message = ("https://example.com/" + "a" * 80 + " ") * 39 + "y" * 41 + " " + secret + " tail"
    assert message.index(secret) < 4000 < message.index(secret) + len(secret)
    scrubbed = scrub(message, public_model="m", secrets=[secret])
    assert "yyy" in scrubbed and "relaykey" not in scrubbed
