"""The model directory: each tenant sees what its package grants, narrowed by its brand."""

from __future__ import annotations

import anthropic
import openai
import pytest

from tests.e2e.conftest import Gateway, TenantAccess


def client(gateway: Gateway, access: TenantAccess) -> openai.OpenAI:
    return gateway.openai(access)


def test_list_shows_exactly_the_package(gateway: Gateway) -> None:
    small = gateway.new_tenant(["chat-a"])
    large = gateway.new_tenant(["chat-a", "chat-b", "embed"])
    assert [m.id for m in client(gateway, small).models.list()] == ["chat-a"]
    listed = client(gateway, large).models.list()
    assert [m.id for m in listed] == ["chat-a", "chat-b", "embed"]
    assert all(m.object == "model" and m.owned_by and m.created > 0 for m in listed)


def test_brand_narrows_the_package(gateway: Gateway) -> None:
    branded = gateway.new_tenant(["chat-a", "chat-b", "embed"], brand_models=["chat-b", "claude"])
    assert [m.id for m in client(gateway, branded).models.list()] == ["chat-b"]
    with pytest.raises(openai.NotFoundError):
        client(gateway, branded).chat.completions.create(model="chat-a", messages=[{"role": "user", "content": "x"}])


def test_retrieve(gateway: Gateway) -> None:
    access = gateway.new_tenant(["chat-a"])
    assert client(gateway, access).models.retrieve("chat-a").id == "chat-a"
    with pytest.raises(openai.NotFoundError) as caught:
        client(gateway, access).models.retrieve("chat-b")
    assert caught.value.body["code"] == "model_not_found"  # type: ignore[index]


def test_anthropic_format_when_anthropic_version_is_sent(gateway: Gateway) -> None:
    access = gateway.new_tenant(["chat-a", "claude"])
    sdk = gateway.anthropic(access)
    page = sdk.models.list()
    assert [m.id for m in page.data] == ["chat-a", "claude"]
    assert all(m.type == "model" and m.display_name for m in page.data)
    assert sdk.models.retrieve("claude").id == "claude"
    first = sdk.models.list(limit=1)
    assert [m.id for m in first.data] == ["chat-a"] and first.has_more
    with pytest.raises(anthropic.NotFoundError):
        sdk.models.retrieve("chat-b")


def test_directory_needs_a_valid_key(gateway: Gateway) -> None:
    access = gateway.new_tenant(["chat-a"])
    status, body = gateway.http("GET", "/v1/models", headers={"x-lime-tenant-id": access.tenant_id,
                                                              "authorization": "Bearer nope"})
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
