"""Upstream errors reach the client in Lime's words (lime.protocols.upstream_errors), through the real Envoy, with the
official SDKs: a refused credential is a 502 about the gateway (counted for the alert), errors about the request
keep their status, type, code and param with the upstream's identifiers scrubbed, a busy or failing upstream keeps
its status and retry-after with Lime's message. The mock answers the providers' recorded error bodies
(``x-mock-error-body``); nothing of the upstream's identity reaches the client, in the body or the headers."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import anthropic
import openai
import pytest

from tests.e2e.conftest import UPSTREAM_SECRET, UPSTREAM_SECRET_ANTHROPIC, Gateway, TenantAccess
from tests.e2e.test_metrics import scrape, value
from tests.e2e.test_response_headers import FORBIDDEN_NAMES, FORBIDDEN_PREFIXES

MESSAGES: Any = [{"role": "user", "content": "hi"}]
AUTH_MESSAGE = "refused the gateway's own credentials"
#: What identifies the upstream: ids, key fragments, its URLs and host names, its name, its model ids.
UPSTREAM_IDENTIFIERS = re.compile(
    r"(?<![A-Za-z0-9])(sk-|org-)|(?<![A-Za-z0-9_])(req_|proj_)|://|openai\.com|anthropic\.com|\bopenai\b|"
    r"\banthropic\b|gpt-4o-mini|claude-sonnet-4-5|cloudflare|wjh3|abcd", re.IGNORECASE)

OpenAICall = Callable[[openai.OpenAI, dict[str, str]], object]

OPENAI_CALLS: dict[str, tuple[str, OpenAICall]] = {
    "chat": ("/v1/chat/completions", lambda sdk, headers: sdk.chat.completions.create(
        model="chat-a", messages=MESSAGES, extra_headers=headers)),
    "chat-stream": ("/v1/chat/completions", lambda sdk, headers: sdk.chat.completions.create(
        model="chat-a", messages=MESSAGES, stream=True, extra_headers=headers)),
    "responses": ("/v1/responses", lambda sdk, headers: sdk.responses.create(
        model="chat-a", input="hi", extra_headers=headers)),
    "responses-stream": ("/v1/responses", lambda sdk, headers: sdk.responses.create(
        model="chat-a", input="hi", stream=True, extra_headers=headers)),
    "embeddings": ("/v1/embeddings", lambda sdk, headers: sdk.embeddings.create(
        model="embed", input="hi", extra_headers=headers)),
}

# recorded error -> SDK exception, status, and the error fields the client gets (None: any message of Lime's)
OPENAI_RECORDED: dict[str, tuple[type[openai.APIStatusError], int, dict[str, Any]]] = {
    "openai-401-invalid-api-key": (openai.InternalServerError, 502, {
        "type": "server_error", "code": "upstream_auth_failed", "param": None}),
    "openai-403-unsupported-region": (openai.InternalServerError, 502, {
        "type": "server_error", "code": "upstream_auth_failed", "param": None}),
    "openai-400-unsupported-parameter": (openai.BadRequestError, 400, {
        "type": "invalid_request_error", "code": "unsupported_parameter", "param": "max_tokens",
        "message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                   "'max_completion_tokens' instead."}),
    "openai-400-context-length-exceeded": (openai.BadRequestError, 400, {
        "type": "invalid_request_error", "code": "context_length_exceeded", "param": "messages",
        "message": "This model's maximum context length is 128000 tokens. However, your messages resulted in "
                   "130412 tokens. Please reduce the length of the messages."}),
    "openai-400-identifiers": (openai.BadRequestError, 400, {
        "type": "invalid_request_error", "code": "model_not_available", "param": "model",
        "message": "Project [redacted] in organization [redacted] cannot use chat-a with key [redacted] (request "
                   "[redacted]); see [redacted] or [redacted]."}),
    "openai-404-model-not-found": (openai.NotFoundError, 404, {
        "type": "invalid_request_error", "code": "model_not_found", "param": None,
        "message": "The model `chat-a` does not exist or you do not have access to it."}),
    "openai-429-rate-limit-exceeded": (openai.RateLimitError, 429, {
        "type": "requests", "code": "upstream_rate_limited", "param": None}),
    "openai-429-insufficient-quota": (openai.RateLimitError, 429, {
        "type": "requests", "code": "upstream_rate_limited", "param": None}),
    "html-502-bad-gateway": (openai.InternalServerError, 502, {"type": "server_error", "code": "upstream_error"}),
    # No body to replace: Lime's goes out as ext_proc's immediate response.
    "proxy-401-empty": (openai.InternalServerError, 502, {"type": "server_error", "code": "upstream_auth_failed"}),
    "proxy-429-empty": (openai.RateLimitError, 429, {"type": "requests", "code": "upstream_rate_limited"}),
    # A known limit (docs/security.md): Lime's immediate 500 is a local reply, which envoy.yaml's local_reply_config
    # maps like ext_proc failing: a 503 "cannot process ... please retry". Still Lime's words, still retryable.
    "proxy-500-empty": (openai.InternalServerError, 503, {"type": "server_error", "code": "service_unavailable"}),
}
#: Where a non-streamed answer (read whole, in one message) differs: a bodiless 500 reaches extproc like any other
#: (envoy.yaml's lime.answer_body), so it keeps its status and gets Lime's words, no local reply.
OPENAI_RECORDED_WHOLE = {
    "proxy-500-empty": (openai.InternalServerError, 500, {"type": "server_error", "code": "upstream_error"}),
}

ANTHROPIC_RECORDED: dict[str, tuple[type[anthropic.APIStatusError], int, dict[str, Any]]] = {
    "anthropic-401-authentication": (anthropic.InternalServerError, 502, {"type": "api_error"}),
    "anthropic-403-permission": (anthropic.InternalServerError, 502, {"type": "api_error"}),
    "anthropic-400-invalid-request": (anthropic.BadRequestError, 400, {
        "type": "invalid_request_error",
        "message": "This model does not support effort level 'xhigh'. Supported levels: high, low, max, medium."}),
    "anthropic-404-not-found": (anthropic.NotFoundError, 404, {"type": "not_found_error", "message": "model: claude"}),
    "anthropic-429-rate-limit": (anthropic.RateLimitError, 429, {"type": "rate_limit_error"}),
    "anthropic-529-overloaded": (anthropic.OverloadedError, 529, {
        "type": "overloaded_error", "message": "The gateway's upstream is overloaded. Please retry after a while."}),
}


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "claude", "embed"])


def assert_nothing_of_the_upstream(response: Any) -> None:
    # `response`: the SDK's HTTP response (httpx's, or the SDK's vendored copy)
    """Neither the body nor the headers say who the upstream is or what Lime's account there is."""
    names = {name.lower() for name in response.headers}
    assert not names & FORBIDDEN_NAMES, names & FORBIDDEN_NAMES
    assert not [name for name in names if name.startswith(FORBIDDEN_PREFIXES)], names
    text = response.text + "\n" + "\n".join(f"{k}: {v}" for k, v in response.headers.items() if k != "x-request-id")
    found = UPSTREAM_IDENTIFIERS.search(text)
    assert found is None, f"{found.group(0)!r} in {text[:400]}"
    for secret in (UPSTREAM_SECRET, UPSTREAM_SECRET_ANTHROPIC):
        assert secret not in text


def auth_failures(gateway: Gateway, upstream: str, status: str) -> float:
    return value(scrape(gateway.settings.extproc_metrics), "lime_upstream_auth_failures_total", upstream=upstream,
                 status=status)


def eventually_at_least(read: Callable[[], float], expected: float, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while read() < expected:
        assert time.monotonic() < deadline, f"still {read()}, expected at least {expected}"
        time.sleep(0.1)


@pytest.mark.parametrize("name", sorted(OPENAI_RECORDED))
@pytest.mark.parametrize("stream", [False, True])
def test_openai_recorded_errors(gateway: Gateway, tenant: TenantAccess, name: str, stream: bool) -> None:
    kind, status, expected = OPENAI_RECORDED[name] if stream else OPENAI_RECORDED_WHOLE.get(name, OPENAI_RECORDED[name])
    auth_before = auth_failures(gateway, "mock", name.split("-")[1])
    with pytest.raises(kind) as caught:
        gateway.openai(tenant).chat.completions.create(model="chat-a", messages=MESSAGES, stream=stream,
                                                       extra_headers={"x-mock-error-body": name})
    error = caught.value
    assert error.status_code == status
    body = error.response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert {field: body["error"][field] for field in expected} == expected
    assert_nothing_of_the_upstream(error.response)
    # The upstream did answer that error (it is no refusal of Lime's).
    seen = gateway.mock_request(error.response.headers["x-request-id"])
    assert seen["status"] == int(name.split("-")[1])
    if status == 502 and "auth" in str(expected.get("code")):
        # Not about the client's key, not worth retrying; and an SRE's page.
        assert AUTH_MESSAGE in body["error"]["message"] and "not a problem with your API key" in body["error"][
            "message"]
        assert error.response.headers["x-should-retry"] == "false"
        eventually_at_least(lambda: auth_failures(gateway, "mock", name.split("-")[1]), auth_before + 1)
    if status == 429:
        assert error.response.headers["retry-after"] == "2"  # the upstream's, kept


@pytest.mark.parametrize("name", sorted(ANTHROPIC_RECORDED))
@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_recorded_errors(gateway: Gateway, tenant: TenantAccess, name: str, stream: bool) -> None:
    kind, status, expected = ANTHROPIC_RECORDED[name]
    auth_before = auth_failures(gateway, "mock_anthropic", name.split("-")[1])
    with pytest.raises(kind) as caught:
        gateway.anthropic(tenant).messages.create(model="claude", max_tokens=16, messages=MESSAGES, stream=stream,
                                                  extra_headers={"x-mock-error-body": name})
    error = caught.value
    assert error.status_code == status
    body = error.response.json()
    request_id = error.response.headers["x-request-id"]
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    assert body["request_id"] == request_id  # Lime's id, not the upstream's req_...
    assert {field: body["error"][field] for field in expected} == expected
    assert_nothing_of_the_upstream(error.response)
    assert gateway.mock_request(request_id)["status"] == int(name.split("-")[1])
    if status == 502:
        assert AUTH_MESSAGE in body["error"]["message"]
        assert not isinstance(error, anthropic.AuthenticationError | anthropic.PermissionDeniedError)
        eventually_at_least(lambda: auth_failures(gateway, "mock_anthropic", name.split("-")[1]), auth_before + 1)
    if status == 429:
        assert error.response.headers["retry-after"] == "2"


OPENAI_STATUSES: dict[int, tuple[type[openai.APIStatusError], str]] = {
    401: (openai.InternalServerError, "upstream_auth_failed"),
    429: (openai.RateLimitError, "upstream_rate_limited"),
    500: (openai.InternalServerError, "upstream_error"),
}


@pytest.mark.parametrize("status", sorted(OPENAI_STATUSES))
@pytest.mark.parametrize("call", sorted(OPENAI_CALLS))
def test_every_openai_endpoint(gateway: Gateway, tenant: TenantAccess, call: str, status: int) -> None:
    path, make = OPENAI_CALLS[call]
    kind, code = OPENAI_STATUSES[status]
    with pytest.raises(kind) as caught:
        make(gateway.openai(tenant), {"x-mock-status": str(status)})
    error = caught.value
    assert error.status_code == (502 if status == 401 else status)
    assert error.response.json()["error"]["code"] == code
    assert_nothing_of_the_upstream(error.response)
    seen = gateway.mock_request(error.response.headers["x-request-id"])
    assert seen["path"] == path and seen["status"] == status


def test_anthropic_stream_helper(gateway: Gateway, tenant: TenantAccess) -> None:
    with pytest.raises(anthropic.RateLimitError) as caught, gateway.anthropic_x_api_key(tenant).messages.stream(
            model="claude", max_tokens=16, messages=MESSAGES,
            extra_headers={"x-mock-error-body": "anthropic-429-rate-limit"}) as stream:
        stream.get_final_message()
    assert caught.value.response.json()["error"]["type"] == "rate_limit_error"
    assert_nothing_of_the_upstream(caught.value.response)
