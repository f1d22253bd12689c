"""The money path through the real stack: reserve in authz, settle from the tap, persist by the writer."""

from __future__ import annotations

import json
import time
from typing import Any

import anthropic
import openai
import psycopg
import pytest

from lime.catalog import Limits
from tests.e2e.conftest import ADMIN_TOKEN, RESERVATION_TTL_SECONDS, Gateway, TenantAccess, run_sync

# conftest prices: 1 point (1e6 micro) per M input, 2 per M output, 0.5 per M cached input
INPUT_PRICE, OUTPUT_PRICE = 1_000_000, 2_000_000


def record(gateway: Gateway, request_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """The usage record of one request, once the settlement writer has persisted it."""
    async def fetch() -> list[dict[str, Any]]:
        async with await psycopg.AsyncConnection.connect(gateway.database_url, autocommit=True) as conn:
            cursor = conn.cursor(row_factory=psycopg.rows.dict_row)
            await cursor.execute("SELECT * FROM usage_records WHERE request_id = %s", (request_id,))
            return list(await cursor.fetchall())

    deadline = time.monotonic() + timeout
    while True:
        rows = run_sync(fetch())
        if rows:
            assert len(rows) == 1
            return rows[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"request {request_id} was not settled within {timeout}s")
        time.sleep(0.05)


def ledger(gateway: Gateway, tenant_id: str) -> tuple[int, list[tuple[str, int, str | None]]]:
    async def fetch() -> tuple[int, list[tuple[str, int, str | None]]]:
        async with await psycopg.AsyncConnection.connect(gateway.database_url, autocommit=True) as conn:
            balance = await (await conn.execute(
                "SELECT points FROM balances WHERE tenant_id = %s", (tenant_id,))).fetchone()
            rows = await (await conn.execute(
                "SELECT kind, amount, request_id FROM ledger WHERE tenant_id = %s ORDER BY id", (tenant_id,)
            )).fetchall()
            return int(balance[0]) if balance else 0, [(r[0], int(r[1]), r[2]) for r in rows]

    return run_sync(fetch())


def expected_cost(input_tokens: int, output_tokens: int) -> int:
    return -(-(input_tokens * INPUT_PRICE + output_tokens * OUTPUT_PRICE) // 1_000_000)


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "claude", "embed"], points=50_000_000)


def assert_settled_once_by_the_report(gateway: Gateway, tenant: TenantAccess, request_id: str) -> None:
    """A chat request's record is complete, not estimated, the usage the mock reported at the model's prices, and
    has exactly one ledger entry."""
    reported = gateway.mock_request(request_id)["usage"]
    row = record(gateway, request_id)
    assert row["outcome"] == "complete" and not row["estimated"]
    assert (row["input_tokens"], row["output_tokens"]) == (reported["prompt_tokens"], reported["completion_tokens"])
    assert row["cost"] == expected_cost(reported["prompt_tokens"], reported["completion_tokens"])
    _, entries = ledger(gateway, tenant.tenant_id)
    assert [e for e in entries if e[2] == request_id] == [("usage", -row["cost"], request_id)]


def test_non_streamed_request_settles_once_with_the_upstreams_usage(gateway: Gateway, tenant: TenantAccess) -> None:
    raw = gateway.openai(tenant).chat.completions.with_raw_response.create(
        model="chat-a", messages=[{"role": "user", "content": "price me"}])
    assert_settled_once_by_the_report(gateway, tenant, raw.headers["x-request-id"])


def test_streamed_chat_settles_and_the_client_sees_no_usage_chunk_it_did_not_ask_for(
        gateway: Gateway, tenant: TenantAccess) -> None:
    raw = gateway.openai(tenant).chat.completions.with_raw_response.create(
        model="chat-a", messages=[{"role": "user", "content": "stream me"}], stream=True,
        extra_headers={"x-mock-chunks": "5"})
    request_id = raw.headers["x-request-id"]
    chunks = list(raw.parse())
    assert all(chunk.choices for chunk in chunks)  # no usage-only chunk
    assert all(chunk.usage is None for chunk in chunks)
    seen = gateway.mock_request(request_id)
    assert seen["body"]["stream_options"] == {"include_usage": True}  # the gateway asked for it
    row = record(gateway, request_id)
    assert row["outcome"] == "complete" and not row["estimated"]
    assert row["output_tokens"] == seen["usage"]["completion_tokens"] == 5


def test_a_client_that_asked_for_usage_gets_it(gateway: Gateway, tenant: TenantAccess) -> None:
    chunks = list(gateway.openai(tenant).chat.completions.create(
        model="chat-a", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None and chunks[-1].choices == []


def test_anthropic_stream_settles_with_message_delta_usage(gateway: Gateway, tenant: TenantAccess) -> None:
    client = gateway.anthropic(tenant)
    with client.messages.stream(model="claude", max_tokens=50,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        request_id = stream.response.headers["x-request-id"]
        final = stream.get_final_message()
    row = record(gateway, request_id)
    assert row["output_tokens"] == final.usage.output_tokens
    assert row["outcome"] == "complete"


@pytest.mark.parametrize(("extra", "upstream_status", "client_status"), [
    ({"x-mock-status": "500"}, 500, 500),
    # Rewritten into Lime's words (lime.protocols.upstream_errors): still free, and the record keeps what the
    # upstream answered, not what the client was told.
    ({"x-mock-error-body": "openai-401-invalid-api-key"}, 401, 502),
    ({"x-mock-error-body": "openai-400-context-length-exceeded"}, 400, 400),
    ({"x-mock-error-body": "openai-429-rate-limit-exceeded"}, 429, 429),
], ids=["500", "401", "400", "429"])
def test_upstream_error_charges_nothing(gateway: Gateway, tenant: TenantAccess, extra: dict[str, str],
                                        upstream_status: int, client_status: int) -> None:
    with pytest.raises(openai.APIStatusError) as raised:
        gateway.openai(tenant).chat.completions.create(
            model="chat-a", messages=[{"role": "user", "content": "fail"}], extra_headers=extra)
    assert raised.value.status_code == client_status
    request_id = raised.value.response.headers["x-request-id"]
    row = record(gateway, request_id)
    assert row["outcome"] == "failed" and row["cost"] == 0 and row["upstream_status"] == upstream_status
    _, entries = ledger(gateway, tenant.tenant_id)
    assert not [e for e in entries if e[2] == request_id]


def test_too_few_points_is_refused_before_any_upstream_call(gateway: Gateway) -> None:
    poor = gateway.new_tenant(["chat-a", "claude"], points=10)
    before = gateway.mock_request_count()
    with pytest.raises(openai.RateLimitError) as raised:
        gateway.openai(poor).chat.completions.create(model="chat-a", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.code == "insufficient_quota"
    with pytest.raises(anthropic.APIStatusError) as refused:
        gateway.anthropic(poor).messages.create(model="claude", max_tokens=10,
                                                 messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 402
    assert gateway.mock_request_count() == before


def test_rpm_limit_bites_with_retry_after(gateway: Gateway) -> None:
    limited = gateway.new_tenant(["chat-a"], limits=Limits(rpm=2))
    client = gateway.openai(limited)
    for _ in range(2):
        client.chat.completions.create(model="chat-a", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="chat-a", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.code == "rate_limit_exceeded"
    assert 1 <= int(raised.value.response.headers["retry-after"]) <= 60


def test_concurrency_limit_bites(gateway: Gateway) -> None:
    limited = gateway.new_tenant(["chat-a"], limits=Limits(concurrency=1))
    client = gateway.openai(limited)
    slow = client.chat.completions.create(model="chat-a", messages=[{"role": "user", "content": "hi"}], stream=True,
                                          extra_headers={"x-mock-chunks": "10", "x-mock-delay-ms": "100"})
    next(iter(slow))  # the first request is in flight
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="chat-a", messages=[{"role": "user", "content": "hi"}])
    list(slow)
    slow.close()
    deadline = time.monotonic() + 5
    while True:  # settled: the slot is free again
        try:
            client.chat.completions.create(model="chat-a", messages=[{"role": "user", "content": "hi"}])
            break
        except openai.RateLimitError:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_a_client_that_leaves_mid_stream_pays_for_what_it_got(gateway: Gateway, tenant: TenantAccess) -> None:
    raw = gateway.openai(tenant).chat.completions.with_raw_response.create(
        model="chat-a", messages=[{"role": "user", "content": "long story"}], stream=True,
        extra_headers={"x-mock-chunks": "40", "x-mock-delay-ms": "50"})
    request_id = raw.headers["x-request-id"]
    stream = raw.parse()
    received = [chunk for _, chunk in zip(range(4), stream, strict=False)]
    assert len(received) == 4
    stream.close()  # the client goes away; the upstream had more to say
    row = record(gateway, request_id)
    assert row["outcome"] == "partial" and row["estimated"]
    # Every text chunk the client received is one mock token: at least those, never the 40 of the full answer.
    assert 3 <= row["output_tokens"] < 40
    assert row["cost"] == expected_cost(row["input_tokens"], row["output_tokens"]) > 0
    _, entries = ledger(gateway, tenant.tenant_id)
    assert [e for e in entries if e[2] == request_id] == [("usage", -row["cost"], request_id)]


def test_an_answer_longer_than_the_reservation_ttl_is_not_reaped(gateway: Gateway, tenant: TenantAccess) -> None:
    # 12 chunks 600 ms apart: over twice the suite's reservation TTL; extproc vouches for it all along.
    assert RESERVATION_TTL_SECONDS * 2 < 12 * 0.6
    raw = gateway.openai(tenant).chat.completions.with_raw_response.create(
        model="chat-a", messages=[{"role": "user", "content": "take your time"}], stream=True,
        extra_headers={"x-mock-chunks": "12", "x-mock-delay-ms": "600"})
    request_id = raw.headers["x-request-id"]
    assert len([c for c in raw.parse() if c.choices and c.choices[0].delta.content]) == 12
    row = record(gateway, request_id)
    assert row["outcome"] == "complete" and row["output_tokens"] == 12 and row["cost"] > 0


def test_a_request_extproc_never_saw_gives_its_hold_and_slot_back(gateway: Gateway) -> None:
    limited = gateway.new_tenant(["chat-a"], limits=Limits(concurrency=1))
    client = gateway.openai(limited)
    with gateway.stopped("extproc"), pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model="chat-a", messages=[{"role": "user", "content": "hi"}])
    assert failed.value.status_code == 503  # authz had reserved: the slot is taken until the reaper frees it
    request_id = failed.value.response.headers["x-request-id"]
    row = record(gateway, request_id, timeout=RESERVATION_TTL_SECONDS + 15)
    assert row["outcome"] == "reaped" and row["cost"] == 0
    client.chat.completions.create(model="chat-a", messages=[{"role": "user", "content": "hi"}])  # the slot is back


CACHED_PRICE = 500_000


@pytest.mark.parametrize("endpoint", ["chat_completions", "responses", "messages"])
def test_cached_input_is_priced_at_its_own_rate(gateway: Gateway, tenant: TenantAccess, endpoint: str) -> None:
    prompt = "a long shared prefix " * 40  # about 210 mock tokens, 120 of them from the cache
    cached = {"x-mock-cached-tokens": "120"}
    if endpoint == "chat_completions":
        request_id = gateway.openai(tenant).chat.completions.with_raw_response.create(
            model="chat-a", messages=[{"role": "user", "content": prompt}], extra_headers=cached,
        ).headers["x-request-id"]
    elif endpoint == "responses":
        request_id = gateway.openai(tenant).responses.with_raw_response.create(
            model="chat-a", input=prompt, extra_headers=cached).headers["x-request-id"]
    else:
        request_id = gateway.anthropic(tenant).messages.with_raw_response.create(
            model="claude", max_tokens=32, messages=[{"role": "user", "content": prompt}], extra_headers=cached,
        ).headers["x-request-id"]
    row = record(gateway, request_id)
    usage = gateway.mock_request(request_id)["usage"]
    total_input = usage.get("prompt_tokens") or usage["input_tokens"] + usage.get("cache_read_input_tokens", 0)
    output = usage.get("completion_tokens") or usage["output_tokens"]
    assert row["cached_input_tokens"] == 120
    assert row["input_tokens"] == total_input - 120  # cached tokens are not billed twice
    assert row["cost"] == -(-((total_input - 120) * INPUT_PRICE + 120 * CACHED_PRICE + output * OUTPUT_PRICE)
                            // 1_000_000)


def test_the_admin_api_grants_points_and_reports_balance_and_usage(gateway: Gateway) -> None:
    access = gateway.new_tenant(["chat-a"], points=0)
    admin = f"http://{gateway.settings.admin}"
    auth = {"authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/json"}
    with pytest.raises(openai.RateLimitError):  # nothing to spend yet
        gateway.openai(access).chat.completions.create(model="chat-a", messages=[{"role": "user", "content": "hi"}])
    status, granted = gateway.http("POST", f"/admin/tenants/{access.tenant_id}/points", origin=admin, headers=auth,
                                   body=json.dumps({"amount": 5_000_000, "note": "trial"}).encode())
    assert status == 200 and granted["balance"] == 5_000_000
    raw = gateway.openai(access).chat.completions.with_raw_response.create(
        model="chat-a", messages=[{"role": "user", "content": "hi"}])
    cost = record(gateway, raw.headers["x-request-id"])["cost"]
    status, balance = gateway.http("GET", f"/admin/tenants/{access.tenant_id}/balance", origin=admin, headers=auth)
    assert status == 200 and (balance["balance"], balance["held"]) == (5_000_000 - cost, 0)
    status, usage = gateway.http("GET", f"/admin/usage?tenant={access.tenant_id}&since=1h", origin=admin,
                                 headers=auth)
    assert status == 200 and [(r["model"], r["requests"], r["cost"]) for r in usage["data"]] == [("chat-a", 1, cost)]
    status, refused = gateway.http("POST", f"/admin/tenants/{access.tenant_id}/points", origin=admin, headers=auth,
                                   body=b'{"amount": "lots"}')
    assert status == 400 and refused["error"]["param"] == "amount"


def refusals(gateway: Gateway, tenant_id: str, outcome: str) -> float:
    from tests.e2e.test_metrics import scrape, value  # here: test_metrics imports this module

    return value(scrape(gateway.settings.authz_metrics), "lime_requests_total", tenant=tenant_id, outcome=outcome)


def test_refusals_that_waiting_cannot_cure_tell_the_sdks_not_to_retry(gateway: Gateway) -> None:
    # The SDKs retry a 429 twice by default; a request that can never be served must be refused once.
    poor = gateway.new_tenant(["chat-a", "claude"], points=10)
    small = gateway.new_tenant(["chat-a"], limits=Limits(tpm=500))
    with pytest.raises(openai.RateLimitError) as no_points:
        gateway.openai(poor).with_options(max_retries=2).chat.completions.create(
            model="chat-a", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.APIStatusError) as no_points_anthropic:
        gateway.anthropic(poor).with_options(max_retries=2).messages.create(
            model="claude", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError) as too_large:
        gateway.openai(small).with_options(max_retries=2).chat.completions.create(
            model="chat-a", max_tokens=1000, messages=[{"role": "user", "content": "hi"}])
    for error in (no_points.value, no_points_anthropic.value, too_large.value):
        assert error.response.headers["x-should-retry"] == "false"
    assert "retry-after" not in too_large.value.response.headers
    assert too_large.value.code == "rate_limit_exceeded" and "can never be served" in too_large.value.message
    assert refusals(gateway, poor.tenant_id, "rejected_quota") == 2  # one each, no retry
    assert refusals(gateway, small.tenant_id, "rejected_rate_limit") == 1
