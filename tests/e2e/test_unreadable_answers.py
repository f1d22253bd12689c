"""No free answers (docs/billing.md), through Envoy with the official SDKs: an upstream that ignores
``accept-encoding: identity`` is decoded and billed by its own numbers; an answer Lime cannot read reaches the
client as sent, is billed by the fallback rule (input estimate + output from the body's size) and counted in
``lime_unreadable_answers_total``; a client that leaves before the upstream's answer pays the input estimate."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import openai
import psycopg
import pytest

from tests.e2e.conftest import Gateway, TenantAccess, run_sync
from tests.e2e.test_billing import record
from tests.e2e.test_fault_services import held_and_inflight
from tests.e2e.test_metrics import scrape, value

MESSAGES: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "claude"], points=10**9)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
def test_a_compressed_json_answer_is_read_and_billed_by_its_usage(
        gateway: Gateway, tenant: TenantAccess, encoding: str) -> None:
    raw = gateway.openai(tenant).chat.completions.with_raw_response.create(
        model="chat-a", messages=MESSAGES, extra_headers={"x-mock-content-encoding": encoding})
    completion = raw.parse()
    assert completion.model == "chat-a" and completion.choices[0].message.content
    assert "content-encoding" not in raw.headers  # decoded by Lime, so not marked compressed any more
    row = record(gateway, raw.headers["x-request-id"])
    assert completion.usage is not None
    assert (row["outcome"], row["estimated"]) == ("complete", False)
    assert (row["input_tokens"], row["output_tokens"]) == (completion.usage.prompt_tokens,
                                                          completion.usage.completion_tokens)


@pytest.mark.parametrize("encoding", ["gzip", "br"])
def test_a_compressed_anthropic_stream_arrives_whole_and_is_billed_by_its_usage(
        gateway: Gateway, tenant: TenantAccess, encoding: str) -> None:
    with gateway.anthropic(tenant).messages.stream(
            model="claude", max_tokens=64, messages=MESSAGES,
            extra_headers={"x-mock-content-encoding": encoding}) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
        request_id = stream.response.headers["x-request-id"]
    assert text and final.usage.output_tokens > 0
    row = record(gateway, request_id)
    assert (row["outcome"], row["estimated"]) == ("complete", False)
    assert row["output_tokens"] == final.usage.output_tokens


def unreadable_count(gateway: Gateway, reason: str) -> float:
    return value(scrape(gateway.settings.extproc_metrics), "lime_unreadable_answers_total", reason=reason)


def assert_billed_by_the_fallback(gateway: Gateway, tenant: TenantAccess, request_id: str, body_bytes: int,
                                  outcome: str) -> None:
    row = record(gateway, request_id)
    assert (row["outcome"], row["estimated"], row["upstream_status"]) == (outcome, True, 200)
    assert row["input_tokens"] > 0
    assert row["output_tokens"] == -(-body_bytes // 4)
    assert row["cost"] > 0
    assert held_and_inflight(gateway, tenant.tenant_id) == (0, 0)


def test_an_answer_under_an_unknown_encoding_passes_as_sent_and_is_billed_by_size(
        gateway: Gateway, tenant: TenantAccess) -> None:
    before = unreadable_count(gateway, "encoding")
    request = urllib.request.Request(f"{gateway.base_url}/chat/completions", method="POST", headers={
        "authorization": f"Bearer {tenant.key}", **tenant.headers, "content-type": "application/json",
        "x-mock-content-encoding": "compress", "accept-encoding": "compress"},
        data=json.dumps({"model": "chat-a", "messages": MESSAGES}).encode())
    with urllib.request.urlopen(request, timeout=10) as response:  # urllib decodes nothing: the bytes as sent
        status, headers, content = response.status, response.headers, response.read()
    assert status == 200 and headers["content-encoding"] == "compress"
    assert b'"chat-a"' not in content  # not read, so not rewritten: the upstream's bytes as they came
    assert_billed_by_the_fallback(gateway, tenant, headers["x-request-id"], len(content), "complete")
    assert unreadable_count(gateway, "encoding") == before + 1


def test_an_answer_of_another_content_type_passes_as_sent_and_is_billed_by_size(
        gateway: Gateway, tenant: TenantAccess) -> None:
    before = unreadable_count(gateway, "content_type")
    raw = gateway.openai(tenant).chat.completions.with_raw_response.create(
        model="chat-a", messages=MESSAGES, extra_headers={"x-mock-content-type": "text/plain"})
    assert raw.headers["content-type"] == "text/plain"
    body = raw.http_response.read()
    assert_billed_by_the_fallback(gateway, tenant, raw.headers["x-request-id"], len(body), "complete")
    assert unreadable_count(gateway, "content_type") == before + 1


def test_a_json_answer_that_is_not_json_is_billed_by_size(gateway: Gateway, tenant: TenantAccess) -> None:
    raw = gateway.openai(tenant).chat.completions.with_raw_response.create(
        model="chat-a", messages=MESSAGES, extra_headers={"x-mock-invalid-body": "40"})
    assert len(raw.http_response.read()) == 40
    with pytest.raises(ValueError):
        raw.parse()
    assert_billed_by_the_fallback(gateway, tenant, raw.headers["x-request-id"], 40, "partial")


def records_of(gateway: Gateway, tenant_id: str) -> list[dict[str, Any]]:
    async def fetch() -> list[dict[str, Any]]:
        async with await psycopg.AsyncConnection.connect(gateway.database_url, autocommit=True) as conn:
            cursor = conn.cursor(row_factory=psycopg.rows.dict_row)
            await cursor.execute("SELECT * FROM usage_records WHERE tenant_id = %s", (tenant_id,))
            return list(await cursor.fetchall())

    return run_sync(fetch())


def test_a_client_that_leaves_before_the_answer_pays_its_input_estimate(gateway: Gateway) -> None:
    # The upstream has the prompt (and bills it) but has not answered yet when the client gives up.
    alone = gateway.new_tenant(["chat-a"], points=10**9)
    client = gateway.openai(alone).with_options(timeout=1.0, max_retries=0)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="chat-a", messages=MESSAGES, extra_headers={"x-mock-stall-after": "0"})
    deadline = time.monotonic() + 15
    while not (rows := records_of(gateway, alone.tenant_id)):
        assert time.monotonic() < deadline, "no usage record"
        time.sleep(0.2)
    [row] = rows
    assert (row["outcome"], row["estimated"], row["upstream_status"]) == ("partial", True, 0)
    assert row["input_tokens"] > 0 and row["output_tokens"] == 0 and row["cost"] > 0
    assert held_and_inflight(gateway, alone.tenant_id) == (0, 0)
