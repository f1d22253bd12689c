"""Legacy ``POST /v1/completions`` through Envoy with the OpenAI SDK's ``completions.create``: reserved, settled
with the upstream's usage, streamed usage asked for and hidden from a client that did not ask for it, and held
to OpenAI's default of 16 output tokens when the client sets no ``max_tokens``."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Gateway, TenantAccess
from tests.e2e.test_billing import expected_cost, ledger, record


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a"], points=50_000_000)


def test_a_completion_is_answered_and_settled_once(gateway: Gateway, tenant: TenantAccess) -> None:
    raw = gateway.openai(tenant).completions.with_raw_response.create(
        model="chat-a", prompt="def add(a, b):", suffix="\n\nprint(add(1, 2))", max_tokens=5)
    completion = raw.parse()
    assert completion.object == "text_completion" and completion.model == "chat-a"
    assert completion.choices[0].text == "Hello from the mock upstream."
    request_id = raw.headers["x-request-id"]
    seen = gateway.mock_request(request_id)
    assert seen["path"] == "/v1/completions" and seen["body"]["suffix"] == "\n\nprint(add(1, 2))"
    row = record(gateway, request_id)
    assert (row["endpoint"], row["outcome"], row["estimated"]) == ("completions", "complete", False)
    assert completion.usage is not None
    assert (row["input_tokens"], row["output_tokens"]) == (completion.usage.prompt_tokens,
                                                           completion.usage.completion_tokens)
    assert row["cost"] == expected_cost(row["input_tokens"], row["output_tokens"]) > 0
    _, entries = ledger(gateway, tenant.tenant_id)
    assert [e for e in entries if e[2] == request_id] == [("usage", -row["cost"], request_id)]


def test_without_max_tokens_the_upstream_is_held_to_openais_default(gateway: Gateway, tenant: TenantAccess) -> None:
    raw = gateway.openai(tenant).completions.with_raw_response.create(
        model="chat-a", prompt=[[1, 2, 3], [4, 5]], extra_headers={"x-mock-chunks": "40"})
    completion = raw.parse()
    assert len(completion.choices) == 2 and completion.choices[0].finish_reason == "length"
    assert gateway.mock_request(raw.headers["x-request-id"])["body"]["max_tokens"] == 16
    row = record(gateway, raw.headers["x-request-id"])
    assert row["output_tokens"] == 2 * 16 and not row["estimated"]


def test_a_stream_settles_and_shows_no_usage_the_client_did_not_ask_for(gateway: Gateway,
                                                                         tenant: TenantAccess) -> None:
    raw = gateway.openai(tenant).completions.with_raw_response.create(
        model="chat-a", prompt="stream me", max_tokens=6, stream=True)
    request_id = raw.headers["x-request-id"]
    chunks = list(raw.parse())
    assert "".join(chunk.choices[0].text for chunk in chunks) == "Hello from the mock upstream. Hello"
    assert all(chunk.choices and chunk.usage is None for chunk in chunks)
    seen = gateway.mock_request(request_id)
    assert seen["body"]["stream_options"] == {"include_usage": True}  # Lime asked, to bill it
    row = record(gateway, request_id)
    assert (row["outcome"], row["estimated"], row["output_tokens"]) == ("complete", False, 6)
    assert row["cost"] == expected_cost(row["input_tokens"], 6)


def test_a_client_that_asked_for_streamed_usage_gets_it(gateway: Gateway, tenant: TenantAccess) -> None:
    chunks = list(gateway.openai(tenant).completions.create(
        model="chat-a", prompt="count me", max_tokens=3, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
