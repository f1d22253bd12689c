"""A stream handed to the observing tap (Envoy's lime.stream_tap, ext_proc in observability mode;
extproc/stream_modes.py) settles exactly as before: from the upstream's final usage, even when that usage and the end
arrive late, after the client has had everything else (the mock's x-mock-tail-delay-ms)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Gateway, TenantAccess
from tests.e2e.test_billing import assert_settled_once_by_the_report, expected_cost, record

MESSAGES: Any = [{"role": "user", "content": "Take your time at the end"}]
LATE_TAIL = {"x-mock-chunks": "3", "x-mock-tail-delay-ms": "1500"}


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "claude"], points=50_000_000)


def test_a_chat_stream_whose_usage_and_end_arrive_late_settles_from_that_usage(gateway: Gateway,
                                                                               tenant: TenantAccess) -> None:
    raw = gateway.openai(tenant).chat.completions.with_raw_response.create(
        model="chat-a", messages=MESSAGES, stream=True, extra_headers=LATE_TAIL)
    request_id = raw.headers["x-request-id"]
    chunks = list(raw.parse())
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 3
    assert all(chunk.usage is None for chunk in chunks)  # the usage chunk the client did not ask for stays hidden
    assert_settled_once_by_the_report(gateway, tenant, request_id)


def test_an_anthropic_stream_whose_final_usage_arrives_late_settles_from_it(gateway: Gateway,
                                                                            tenant: TenantAccess) -> None:
    client = gateway.anthropic(tenant)
    with client.messages.with_streaming_response.create(
            model="claude", max_tokens=64, messages=MESSAGES, stream=True, extra_headers=LATE_TAIL) as response:
        received = response.read()
        request_id = response.headers["x-request-id"]
    assert received.rstrip().endswith(b'{"type":"message_stop"}')
    reported = gateway.mock_request(request_id)["usage"]
    row = record(gateway, request_id)
    assert row["outcome"] == "complete" and not row["estimated"]
    assert row["output_tokens"] == reported["output_tokens"]


def test_a_stream_cut_before_its_first_chunk_still_pays_for_its_prompt(gateway: Gateway,
                                                                       tenant: TenantAccess) -> None:
    # The upstream answers its headers, then thinks: the client leaves before any event. The tap's stream opened at
    # the headers, so Envoy's cut report settles it by the cut-off rule (the provider bills the prompt), promptly.
    raw = gateway.openai(tenant).chat.completions.with_raw_response.create(
        model="chat-a", messages=MESSAGES, stream=True, extra_headers={"x-mock-stall-after": "0"})
    request_id = raw.headers["x-request-id"]
    raw.http_response.close()
    row = record(gateway, request_id)
    assert row["outcome"] == "partial" and row["estimated"]
    assert row["input_tokens"] > 0 and row["output_tokens"] == 0
    assert row["cost"] == expected_cost(row["input_tokens"], 0) > 0
