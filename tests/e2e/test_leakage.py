"""Leakage through the real stack: the upstream credentials and the admin token never appear in any response
(status line to last byte: success, stream, error, refusal, Envoy's own replies) nor in any log line of any
process of the stack (Envoy's access log included) or of its PostgreSQL and Redis; the client's key never reaches
the upstream, is never echoed back, and is never logged.

The requests are made once, by a module fixture that every test here asks for (so the tests hold in any order
and alone); each test then checks what the client received for one kind, and the scans read everything."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from lime.devstack.embedded import EmbeddedPostgres, EmbeddedRedis
from tests.e2e.conftest import (
    ADMIN_TOKEN,
    CATALOG_SECRET,
    UPSTREAM_SECRET,
    UPSTREAM_SECRET_ANTHROPIC,
    Gateway,
    TenantAccess,
)
from tests.e2e.helpers import anthropic_headers, body, openai_headers

#: What a client received, as text (status, headers, body), for every request this module made.
RECEIVED: list[str] = []
#: Request ids of those requests.
REQUEST_IDS: list[str] = []
#: Client keys used in this module, good and bad.
CLIENT_KEYS: list[str] = []
BAD_KEY = "lime-sk-" + "Q" * 43
UPSTREAM_SECRETS = (UPSTREAM_SECRET, UPSTREAM_SECRET_ANTHROPIC)


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    access = gateway.new_tenant(["chat-a", "claude", "embed"], points=10**12)
    CLIENT_KEYS.extend([access.key, BAD_KEY])
    return access


def send(gateway: Gateway, method: str, path: str, headers: dict[str, str], payload: dict[str, Any] | None = None,
         ) -> tuple[int, Any]:
    status, received = gateway.http(method, path, headers=headers, body=None if payload is None else body(payload))
    RECEIVED.append(f"{status}\n{dict(gateway.last_headers)}\n{received}")
    REQUEST_IDS.append(gateway.last_headers["x-request-id"])
    return status, received


CHAT = {"model": "chat-a", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {"model": "claude", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}

OPENAI_REQUESTS: dict[str, tuple[str, dict[str, Any], dict[str, str], int]] = {
    "chat": ("/v1/chat/completions", CHAT, {}, 200),
    "chat_stream": ("/v1/chat/completions", {**CHAT, "stream": True}, {}, 200),
    "responses": ("/v1/responses", {"model": "chat-a", "input": "hi"}, {}, 200),
    "responses_stream": ("/v1/responses", {"model": "chat-a", "input": "hi", "stream": True}, {}, 200),
    "embeddings": ("/v1/embeddings", {"model": "embed", "input": "hi"}, {}, 200),
    # A refused upstream credential is the gateway's problem: a 502 (lime.protocols.upstream_errors).
    "upstream_401": ("/v1/chat/completions", CHAT, {"x-mock-error-body": "openai-401-invalid-api-key"}, 502),
    "upstream_500": ("/v1/chat/completions", CHAT, {"x-mock-status": "500"}, 500),
    "stream_error_event": ("/v1/chat/completions", {**CHAT, "stream": True}, {"x-mock-error-after": "1"}, 200),
    "model_not_granted": ("/v1/chat/completions", {**CHAT, "model": "chat-b"}, {}, 404),
    "bad_body": ("/v1/chat/completions", {"messages": []}, {}, 400),
}
ANTHROPIC_REQUESTS: dict[str, tuple[str, dict[str, Any], dict[str, str], int]] = {
    "messages": ("/v1/messages", MESSAGES, {}, 200),
    "messages_stream": ("/v1/messages", {**MESSAGES, "stream": True}, {}, 200),
    "upstream_401": ("/v1/messages", MESSAGES, {"x-mock-error-body": "anthropic-401-authentication"}, 502),
    "upstream_529": ("/v1/messages", MESSAGES, {"x-mock-status": "529"}, 529),
    "stream_error_event": ("/v1/messages", {**MESSAGES, "stream": True}, {"x-mock-error-after": "1"}, 200),
}


@pytest.fixture(scope="module")
def traffic(gateway: Gateway, tenant: TenantAccess) -> dict[str, tuple[int, str]]:
    """Every request of this module, made once: by name, the status and what the client received (as text)."""
    made: dict[str, tuple[int, str]] = {}
    for name, (path, payload, extra, _) in OPENAI_REQUESTS.items():
        made[f"openai-{name}"] = send(gateway, "POST", path, openai_headers(tenant, **extra), payload)[0], RECEIVED[-1]
    for name, (path, payload, extra, _) in ANTHROPIC_REQUESTS.items():
        made[f"anthropic-{name}"] = (send(gateway, "POST", path, anthropic_headers(tenant, **extra), payload)[0],
                                     RECEIVED[-1])
    # Refusals and Envoy's own replies: a bad key is not echoed (unlike some providers' "Incorrect API key
    # provided: sk-..."), nor are the secrets in a refusal, a 404 of Envoy's, the directory, or a 413.
    bad = {**openai_headers(tenant), "authorization": f"Bearer {BAD_KEY}"}
    bad_anthropic = {**anthropic_headers(tenant), "x-api-key": BAD_KEY}
    refusals: dict[str, tuple[str, str, dict[str, str], dict[str, Any] | None]] = {
        "bad_key": ("POST", "/v1/chat/completions", bad, CHAT),
        "bad_key_anthropic": ("POST", "/v1/messages", bad_anthropic, MESSAGES),
        "models": ("GET", "/v1/models", openai_headers(tenant), None),
        "model_anthropic": ("GET", "/v1/models/claude", anthropic_headers(tenant), None),
        "admin_on_public": ("GET", "/admin/tenants", {"authorization": f"Bearer {ADMIN_TOKEN}"}, None),
    }
    for name, (method, path, headers, refusal_body) in refusals.items():
        made[name] = send(gateway, method, path, headers, refusal_body)[0], RECEIVED[-1]
    status, received = gateway.http("POST", "/v1/chat/completions", headers=openai_headers(tenant),
                                    body=b'{"model": "chat-a", "x": "' + b"a" * (33 * 1024 * 1024) + b'"}')
    RECEIVED.append(f"{status}\n{dict(gateway.last_headers)}\n{received}")
    made["too_large"] = status, RECEIVED[-1]
    return made


@pytest.mark.parametrize(("name", "status"), [(name, spec[3]) for name, spec in OPENAI_REQUESTS.items()],
                         ids=OPENAI_REQUESTS.keys())
def test_openai_answers_carry_no_secret(traffic: dict[str, tuple[int, str]], name: str, status: int) -> None:
    got, received = traffic[f"openai-{name}"]
    assert got == status, received
    assert_clean(received)


@pytest.mark.parametrize(("name", "status"), [(name, spec[3]) for name, spec in ANTHROPIC_REQUESTS.items()],
                         ids=ANTHROPIC_REQUESTS.keys())
def test_anthropic_answers_carry_no_secret(traffic: dict[str, tuple[int, str]], name: str, status: int) -> None:
    got, received = traffic[f"anthropic-{name}"]
    assert got == status, received
    assert_clean(received)


def test_refusals_and_envoys_own_replies_carry_no_secret(traffic: dict[str, tuple[int, str]]) -> None:
    expected = {"bad_key": 401, "bad_key_anthropic": 401, "models": 200, "model_anthropic": 200,
                "admin_on_public": 404, "too_large": 413}
    assert {name: traffic[name][0] for name in expected} == expected
    for name in expected:
        assert_clean(traffic[name][1])


def assert_clean(text: str) -> None:
    for secret in (*UPSTREAM_SECRETS, ADMIN_TOKEN, CATALOG_SECRET, *CLIENT_KEYS):
        assert secret not in text, f"{secret[:12]}... in a response: {text[:300]}"


def test_the_client_key_never_reaches_the_upstream(gateway: Gateway, tenant: TenantAccess,
                                                  traffic: dict[str, tuple[int, str]]) -> None:
    seen = [record for record in gateway.mock_requests() if record["request_id"] in REQUEST_IDS]
    assert len(seen) == len(OPENAI_REQUESTS) + len(ANTHROPIC_REQUESTS) - 2  # all but the two refused by authz
    for record in seen:
        text = json.dumps(record)
        for key in CLIENT_KEYS:
            assert key not in text, f"the client's key reached the upstream in {record['path']}"
        assert tenant.tenant_id not in json.dumps(record["headers"])  # nor its tenant header


def test_no_secret_in_any_log_line(gateway: Gateway, tenant: TenantAccess, postgres: EmbeddedPostgres,
                                   redis_server: EmbeddedRedis, traffic: dict[str, tuple[int, str]]) -> None:
    """Every file in the stack's log folder (each service's output, Envoy's access log in envoy.log) and the
    stores' logs, after every request above: no upstream credential, admin token or client key in any line.
    The mock upstream is the provider: it is given the credential by design, so only client keys are looked
    for in its log."""
    log_dir = Path(gateway.stack.log_dir)
    # Envoy writes its access log in batches: wait until this module's requests are in it.
    deadline = time.monotonic() + 20
    while True:
        access_log = (log_dir / "envoy.log").read_text(errors="replace")
        logged = sum(f"request_id={request_id}" in access_log for request_id in REQUEST_IDS)
        if logged == len(REQUEST_IDS) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert logged == len(REQUEST_IDS)  # the scan reads real traffic, not empty files
    logs = {path: path.read_text(errors="replace") for path in sorted(log_dir.glob("*.log"))}
    logs[postgres.log_path] = postgres.log_path.read_text(errors="replace")
    logs[redis_server.log_path] = redis_server.log_path.read_text(errors="replace")
    names = {path.name for path in logs}
    assert {f"{service}.log" for service in gateway.stack.services} <= names
    for path, text in logs.items():
        secrets = [*CLIENT_KEYS, CATALOG_SECRET] if path.name == "mock_upstream.log" else [
            *UPSTREAM_SECRETS, ADMIN_TOKEN, CATALOG_SECRET, *CLIENT_KEYS]
        for secret in secrets:
            lines = [line for line in text.splitlines() if secret in line]
            assert not lines, f"{secret[:12]}... logged in {path.name}: {lines[0][:300]}"
