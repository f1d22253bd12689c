"""Who gets in: every refusal has the right status and an error body in the client's own protocol, and
nothing refused reaches the upstream."""

from __future__ import annotations

import time
from typing import Any

import anthropic
import openai
import pytest

from lime.directory import KEY_MEMORY_SECONDS
from tests.e2e.conftest import Gateway, TenantAccess

MESSAGES: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "claude"])


@pytest.fixture(scope="module")
def other_tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a"])


def openai_client(gateway: Gateway, key: str, tenant_id: str | None) -> openai.OpenAI:
    headers = {"X-Lime-Tenant-ID": tenant_id} if tenant_id else {}
    return openai.OpenAI(base_url=gateway.base_url, api_key=key, default_headers=headers, max_retries=0)


def assert_openai_error(error: openai.APIStatusError, status: int, code: str) -> None:
    assert error.status_code == status
    body = error.response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert error.response.headers["content-type"].startswith("application/json")
    assert error.response.headers.get("x-request-id")


def assert_never_forwarded(gateway: Gateway, error: openai.APIStatusError | anthropic.APIStatusError) -> None:
    request_id = error.response.headers["x-request-id"]
    assert not gateway.mock_requests(request_id)


def test_bad_key_is_401(gateway: Gateway, tenant: TenantAccess) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        openai_client(gateway, "lime-sk-not-a-real-key", tenant.tenant_id).chat.completions.create(
            model="chat-a", messages=MESSAGES)
    assert_openai_error(caught.value, 401, "invalid_api_key")
    assert_never_forwarded(gateway, caught.value)


def test_missing_tenant_header_is_401(gateway: Gateway, tenant: TenantAccess) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        openai_client(gateway, tenant.key, None).chat.completions.create(model="chat-a", messages=MESSAGES)
    assert_openai_error(caught.value, 401, "missing_tenant")
    assert "X-Lime-Tenant-ID" in caught.value.message


def test_key_of_another_tenant_is_403(gateway: Gateway, tenant: TenantAccess, other_tenant: TenantAccess) -> None:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        openai_client(gateway, other_tenant.key, tenant.tenant_id).chat.completions.create(
            model="chat-a", messages=MESSAGES)
    assert_openai_error(caught.value, 403, "tenant_mismatch")
    assert_never_forwarded(gateway, caught.value)


def test_revoked_key_is_401_within_a_second(gateway: Gateway) -> None:
    access = gateway.new_tenant(["chat-a"])
    client = openai_client(gateway, access.key, access.tenant_id)
    client.chat.completions.create(model="chat-a", messages=MESSAGES)  # works, and authz now remembers the key
    gateway.revoke(access.key_id)
    time.sleep(KEY_MEMORY_SECONDS)  # the longest authz trusts a key it looked up before the revocation
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="chat-a", messages=MESSAGES)
    assert_openai_error(caught.value, 401, "revoked_api_key")
    assert_never_forwarded(gateway, caught.value)


def test_a_suspended_tenant_is_403_within_a_second(gateway: Gateway) -> None:
    access = gateway.new_tenant(["chat-a"])
    client = openai_client(gateway, access.key, access.tenant_id)
    client.chat.completions.create(model="chat-a", messages=MESSAGES)
    gateway.suspend(access.tenant_id)
    # The catalog reaches authz by NOTIFY, in milliseconds; a loaded machine gets a few seconds of grace.
    deadline = time.monotonic() + 5
    while True:
        try:
            client.chat.completions.create(model="chat-a", messages=MESSAGES)
        except openai.PermissionDeniedError as refused:
            assert_openai_error(refused, 403, "tenant_suspended")
            break
        assert time.monotonic() < deadline, "a suspended tenant was still served"
        time.sleep(0.05)


def test_model_outside_the_package_is_404(gateway: Gateway, tenant: TenantAccess) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client(gateway, tenant.key, tenant.tenant_id).chat.completions.create(
            model="chat-b", messages=MESSAGES)
    assert_openai_error(caught.value, 404, "model_not_found")
    assert caught.value.body["param"] == "model"  # type: ignore[index]
    assert_never_forwarded(gateway, caught.value)


def test_unknown_model_looks_like_an_ungranted_one(gateway: Gateway, tenant: TenantAccess) -> None:
    client = openai_client(gateway, tenant.key, tenant.tenant_id)
    messages = []
    for model in ("chat-b", "no-such-model"):
        with pytest.raises(openai.NotFoundError) as caught:
            client.chat.completions.create(model=model, messages=MESSAGES)
        messages.append(caught.value.message.replace(model, "M"))
    assert messages[0] == messages[1]


def test_anthropic_errors_use_the_anthropic_shape(gateway: Gateway, tenant: TenantAccess) -> None:
    bad = gateway.anthropic(tenant, key="lime-sk-wrong")
    with pytest.raises(anthropic.AuthenticationError) as caught:
        bad.messages.create(model="claude", max_tokens=16, messages=MESSAGES)
    body = caught.value.response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "authentication_error"
    assert body["request_id"] == caught.value.response.headers["x-request-id"]

    good = gateway.anthropic(tenant)
    with pytest.raises(anthropic.NotFoundError) as not_found:
        good.messages.create(model="chat-b", max_tokens=16, messages=MESSAGES)
    assert not_found.value.response.json()["error"]["type"] == "not_found_error"


def test_openai_model_on_the_anthropic_endpoint_is_400(gateway: Gateway, tenant: TenantAccess) -> None:
    client = gateway.anthropic(tenant)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model="chat-a", max_tokens=16, messages=MESSAGES)
    assert "openai" in caught.value.message


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", "invalid_request"),
        (b"[1, 2]", "invalid_request"),
        (b'{"messages": []}', "missing_model"),
        (b'{"model": 42, "messages": []}', "invalid_type"),
        (b'{"model": "chat-a", "model": "chat-b", "messages": []}', "invalid_request"),
        (b'{"model": "chat-a", "stream": "yes", "messages": []}', "invalid_type"),
    ],
)
def test_bad_bodies_are_400_and_never_forwarded(gateway: Gateway, tenant: TenantAccess, body: bytes,
                                                code: str) -> None:
    before = gateway.mock_request_count()
    status, payload = gateway.http("POST", "/v1/chat/completions", body=body, headers={
        "authorization": f"Bearer {tenant.key}", "x-lime-tenant-id": tenant.tenant_id,
        "content-type": "application/json"})
    assert status == 400
    assert payload["error"]["code"] == code
    assert gateway.mock_request_count() == before


def test_unknown_path_and_wrong_method(gateway: Gateway, tenant: TenantAccess) -> None:
    auth = {"authorization": f"Bearer {tenant.key}", "x-lime-tenant-id": tenant.tenant_id}
    status, payload = gateway.http("POST", "/v1/nope", body=b"{}", headers=auth)
    assert status == 404 and payload["error"]["code"] == "unknown_url"
    status, payload = gateway.http("GET", "/v1/chat/completions", headers=auth)
    assert status == 405 and payload["error"]["code"] == "method_not_allowed"
