"""Upstream faults the provider's own error responses do not cover (those are in test_upstream_errors.py and
test_broken_streams.py): an upstream that refuses connections, one that hangs past the route's idle timeout,
and one that answers 200 with a body its protocol cannot read."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from tests.e2e.conftest import Gateway, TenantAccess
from tests.e2e.test_billing import ledger, record
from tests.e2e.test_fault_services import held_and_inflight

MESSAGES: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "claude"], points=10**9)


def assert_released_at_no_charge(gateway: Gateway, tenant: TenantAccess, request_id: str) -> dict[str, Any]:
    row = record(gateway, request_id)
    assert row["cost"] == 0 and row["output_tokens"] == 0, row
    _, entries = ledger(gateway, tenant.tenant_id)
    assert not [entry for entry in entries if entry[2] == request_id]
    assert held_and_inflight(gateway, tenant.tenant_id) == (0, 0)
    return row


def test_upstream_refusing_connections_is_a_503_in_each_protocol_and_charges_nothing(
        gateway: Gateway, tenant: TenantAccess) -> None:
    with gateway.stopped("mock_upstream"):  # its port is closed: connection refused
        with pytest.raises(openai.InternalServerError) as refused:
            gateway.openai(tenant).chat.completions.create(model="chat-a", messages=MESSAGES, stream=True)
        with pytest.raises(anthropic.InternalServerError) as anthropic_refused:
            gateway.anthropic(tenant).messages.create(model="claude", max_tokens=8, messages=MESSAGES)
    assert refused.value.status_code == 503
    assert refused.value.response.json()["error"]["code"] == "upstream_unavailable"
    assert anthropic_refused.value.status_code == 503
    body = anthropic_refused.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    for error in (refused.value, anthropic_refused.value):
        row = assert_released_at_no_charge(gateway, tenant, error.response.headers["x-request-id"])
        assert row["outcome"] == "failed"


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
def test_a_json_answer_the_client_cannot_read_reaches_it_as_sent_and_charges_nothing(
        gateway: Gateway, tenant: TenantAccess, protocol: str) -> None:
    invalid = {"x-mock-invalid-body": "40"}  # a 200 whose JSON stops after 40 bytes
    if protocol == "openai":
        raw: Any = gateway.openai(tenant).chat.completions.with_raw_response.create(
            model="chat-a", messages=MESSAGES, extra_headers=invalid)
    else:
        raw = gateway.anthropic(tenant).messages.with_raw_response.create(
            model="claude", max_tokens=8, messages=MESSAGES, extra_headers=invalid)
    # Lime does not make up an answer (the status and headers were sent before the body came): the upstream's
    # bytes pass as they came, and the SDK fails to read them.
    assert raw.status_code == 200 and len(raw.http_response.read()) == 40
    with pytest.raises(ValueError):
        raw.parse()
    row = assert_released_at_no_charge(gateway, tenant, raw.headers["x-request-id"])
    assert row["outcome"] == "failed" and row["upstream_status"] == 200


def test_a_stream_that_turns_to_garbage_is_an_error_after_what_came_and_is_billed_partial(
        gateway: Gateway, tenant: TenantAccess) -> None:
    raw = gateway.openai(tenant).chat.completions.with_raw_response.create(
        model="chat-a", messages=MESSAGES, stream=True, extra_headers={"x-mock-invalid-body": "4"})
    received: list[str] = []
    with pytest.raises(ValueError):  # the SDK cannot read the fifth event
        for chunk in raw.parse():
            received.extend(choice.delta.content or "" for choice in chunk.choices)
    texts = [text for text in received if text]
    assert len(texts) == 3  # the role, then three pieces of text, arrived before it
    row = record(gateway, raw.headers["x-request-id"])
    assert row["outcome"] == "partial" and row["estimated"]
    assert row["output_tokens"] == len(texts) and row["cost"] > 0
    assert held_and_inflight(gateway, tenant.tenant_id) == (0, 0)


def test_an_anthropic_stream_that_turns_to_garbage_ends_short_and_is_billed_partial(
        gateway: Gateway, tenant: TenantAccess) -> None:
    with gateway.anthropic(tenant).messages.stream(model="claude", max_tokens=50, messages=MESSAGES,
                                                   extra_headers={"x-mock-invalid-body": "4"}) as stream:
        request_id = stream.response.headers["x-request-id"]
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    # The SDK skips an event it cannot name and the connection ended cleanly: the client is left with a message
    # that never stopped (no message_stop, stop_reason None) rather than an exception.
    assert texts == ["Hello"] and final.stop_reason is None
    row = record(gateway, request_id)
    assert row["outcome"] == "partial" and row["estimated"]
    assert row["output_tokens"] >= 1 and row["cost"] > 0
