"""What a client can never do: choose its tenant, route or credential by headers, or reach the admin API."""

from __future__ import annotations

from tests.e2e.conftest import ADMIN_TOKEN, UPSTREAM_SECRET, UPSTREAM_SECRET_ANTHROPIC, Gateway


def test_spoofed_internal_headers_never_reach_the_upstream(gateway: Gateway) -> None:
    access = gateway.new_tenant(["chat-a"])
    client = gateway.openai(access, headers={
        "x-lime-upstream": "mock_anthropic",          # try to pick another route
        "x-lime-verified-tenant": "someone-else",      # try to pose as verified
        "x-lime-reservation-id": "evil",               # any other Lime-looking header
        "cookie": "session=abc",
        "proxy-authorization": "Basic abc",
    })
    raw = client.chat.completions.with_raw_response.create(model="chat-a", messages=[{"role": "user", "content": "x"}])
    seen = gateway.mock_request(raw.headers["x-request-id"])
    assert seen["model"] == "gpt-4o-mini"
    assert seen["headers"]["authorization"] == f"Bearer {UPSTREAM_SECRET}"
    assert not [name for name in seen["headers"] if name.startswith("x-lime-")]
    assert "cookie" not in seen["headers"] and "proxy-authorization" not in seen["headers"]


def test_verified_tenant_header_cannot_open_another_directory(gateway: Gateway) -> None:
    mine = gateway.new_tenant(["chat-a"])
    theirs = gateway.new_tenant(["chat-b", "embed"])
    status, body = gateway.http("GET", "/v1/models", headers={
        "authorization": f"Bearer {mine.key}", "x-lime-tenant-id": mine.tenant_id,
        "x-lime-verified-tenant": theirs.tenant_id})
    assert status == 200
    assert [m["id"] for m in body["data"]] == ["chat-a"]


def test_upstream_credential_never_reaches_the_client(gateway: Gateway) -> None:
    access = gateway.new_tenant(["chat-a"])
    status, body = gateway.http("POST", "/v1/chat/completions", headers={
        "authorization": f"Bearer {access.key}", "x-lime-tenant-id": access.tenant_id,
        "content-type": "application/json"}, body=b'{"model":"chat-a","messages":[]}')
    assert status == 200
    everything = str(body) + str(dict(gateway.last_headers))
    assert UPSTREAM_SECRET not in everything


def test_the_client_cannot_choose_its_request_id(gateway: Gateway) -> None:
    access = gateway.new_tenant(["chat-a"])
    client = gateway.openai(access, headers={"x-request-id": "fixed-id"})
    ids = {client.chat.completions.with_raw_response.create(
        model="chat-a", messages=[{"role": "user", "content": "x"}]).headers["x-request-id"] for _ in range(2)}
    assert len(ids) == 2 and "fixed-id" not in ids
    for request_id in ids:
        assert gateway.mock_request(request_id)["request_id"] == request_id


def test_request_id_is_the_same_at_the_client_and_the_upstream(gateway: Gateway) -> None:
    access = gateway.new_tenant(["chat-a"])
    client = gateway.openai(access)
    raw = client.chat.completions.with_raw_response.create(model="chat-a", messages=[{"role": "user", "content": "x"}])
    request_id = raw.headers["x-request-id"]
    assert request_id
    assert gateway.mock_request(request_id)["headers"]["x-request-id"] == request_id


def test_anthropic_messages_reach_the_upstream_with_its_own_key(gateway: Gateway) -> None:
    access = gateway.new_tenant(["claude"])
    # The client may present its key as x-api-key (the Anthropic API's way) ...
    status, _ = gateway.http("POST", "/v1/messages", headers={
        "x-api-key": access.key, "x-lime-tenant-id": access.tenant_id, "anthropic-version": "2023-06-01",
        "content-type": "application/json"},
        body=b'{"model":"claude","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}')
    assert status == 200
    seen = gateway.mock_request(gateway.last_headers["x-request-id"])
    assert seen["headers"]["x-api-key"] == UPSTREAM_SECRET_ANTHROPIC and access.key not in str(seen["headers"])
    # ... or as Bearer, which is what the anthropic SDK sends.
    client = gateway.anthropic(access)
    raw = client.messages.with_raw_response.create(
        model="claude", max_tokens=64, messages=[{"role": "user", "content": "hi"}],
        extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"})
    message = raw.parse()
    assert message.content[0].type == "text" and message.content[0].text
    seen = gateway.mock_request(raw.headers["x-request-id"])
    assert seen["model"] == "claude-sonnet-4-5"
    assert seen["headers"]["x-api-key"] == UPSTREAM_SECRET_ANTHROPIC
    assert "authorization" not in seen["headers"]
    assert seen["headers"]["anthropic-version"]
    assert seen["headers"]["anthropic-beta"] == "prompt-caching-2024-07-31"

    with client.messages.stream(model="claude", max_tokens=64,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.usage.output_tokens > 0


def test_admin_api_is_not_routed_from_the_public_listener(gateway: Gateway) -> None:
    access = gateway.new_tenant(["chat-a"])
    auth = {"authorization": f"Bearer {access.key}", "x-lime-tenant-id": access.tenant_id}
    for path in ("/admin/tenants", "/v1/admin/tenants", "/healthz"):
        status, _ = gateway.http("GET", path, headers=auth)
        assert status == 404, path
    admin_origin = f"http://{gateway.settings.admin}"
    status, body = gateway.http("GET", "/admin/tenants", origin=admin_origin)
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    status, body = gateway.http("GET", "/admin/tenants", origin=admin_origin,
                                headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert status == 200 and access.tenant_id in [t["id"] for t in body["data"]]
