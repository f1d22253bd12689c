"""Each part of the price sheet, through Envoy with the official SDKs, on real providers' answers: the mock replays
the vendored recordings (x-mock-replay, tests/fixtures/providers, facts 21-31) and each request is charged the
recording's reported usage priced by its model's sheet (conftest.SHEETS), to the micro-point. The expected costs
are worked out here by hand from the recordings' numbers, not by Lime's pricing code.

Prices, in micro-points per million tokens: every model 1,000,000 input, 2,000,000 output, 500,000 cached input;
claude-priced writes 5 m at 1,250,000 and 1 h at 2,000,000; gpt-priced audio at 8,000,000 in and 16,000,000 out,
priority at 2,000,000 / 4,000,000 / 1,000,000; a web search 10,000 a call; claude-long above 2,000 input tokens at
2,000,000 / 3,000,000 / 1,000,000 and writes at 2,500,000 (5 m) / 4,000,000 (1 h).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import openai
import pytest

from lime.catalog import Limits
from tests.e2e.conftest import ADMIN_TOKEN, Gateway, TenantAccess
from tests.e2e.test_billing import record
from tests.provider_fixtures import PROVIDERS

M = 1_000_000
#: About 2,200 tokens (one per " word"): a prompt the size of the recorded cache-write requests' (2,073 tokens).
LONG_PROMPT = "word " * 2_200
CACHE_1H: Any = [{"type": "text", "text": LONG_PROMPT, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
WEB_SEARCH_TOOL = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}


def replay(name: str) -> dict[str, str]:
    return {"x-mock-replay": name}


def recorded_usage(name: str) -> dict[str, Any]:
    usage: dict[str, Any] = json.loads((PROVIDERS / name).read_bytes())["usage"]
    return usage


def micro(total: float | int) -> int:
    """A sum of tokens times points per million, in micro-points, rounded up once (docs/billing.md)."""
    return -(-round(total * M) // M)


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["claude-priced", "claude-long", "gpt-priced", "chat-a", "chat-images", "claude"],
                              points=10**10)


def balance(gateway: Gateway, tenant: TenantAccess) -> dict[str, Any]:
    status, view = gateway.http("GET", f"/admin/tenants/{tenant.tenant_id}/balance",
                                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                                origin=f"http://{gateway.settings.admin}")
    assert status == 200, view
    return dict(view)


# -- cache writes by lifetime ---------------------------------------------------------------------------------------


def test_a_one_hour_cache_write_is_charged_at_the_one_hour_price_and_was_held(
        gateway: Gateway, tenant: TenantAccess) -> None:
    name = "anthropic-messages-cache-1h.json"  # 3 input, 14 written for 5 m, 2,056 for 1 h, 459 output
    raw = gateway.anthropic(tenant).messages.with_raw_response.create(
        model="claude-priced", max_tokens=500, system=CACHE_1H, extra_headers=replay(name),
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "Summarise.", "cache_control": {"type": "ephemeral", "ttl": "5m"}}]}])
    message = raw.parse()
    assert message.model == "claude-priced"
    assert message.usage.cache_creation_input_tokens == 2070
    row = record(gateway, raw.headers["x-request-id"])
    assert (row["input_tokens"], row["cache_write_tokens"], row["cache_write_1h_tokens"], row["output_tokens"]) == (
        3, 14, 2056, 459)
    assert row["cost"] == micro(3 * 1 + 14 * 1.25 + 2056 * 2 + 459 * 2) == 5051
    assert not row["estimated"] and row["unpriced"] == []
    # The hold covered it: the prompt's ~2,200 tokens at the 1-hour write price, not at the input price (which would
    # have held about 2,200 + 1,000 and been short by a third).
    assert row["reserved"] >= row["cost"]
    assert row["reserved"] >= 2 * 2_200 + 500 * 2


def test_a_five_minute_cache_write_is_charged_at_its_price(gateway: Gateway, tenant: TenantAccess) -> None:
    name = "anthropic-messages-cache.json"  # 3 input, 403 written for 5 m, 1,111 read, 33 output
    raw = gateway.anthropic(tenant).messages.with_raw_response.create(
        model="claude-priced", max_tokens=100, extra_headers=replay(name),
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "Hi"}])
    row = record(gateway, raw.headers["x-request-id"])
    assert (row["cache_write_tokens"], row["cache_write_1h_tokens"], row["cached_input_tokens"]) == (403, 0, 1111)
    assert row["cost"] == micro(3 * 1 + 403 * 1.25 + 1111 * 0.5 + 33 * 2) == 1129


# -- server tools, per call -----------------------------------------------------------------------------------------


def test_an_anthropic_web_search_is_charged_per_call(gateway: Gateway, tenant: TenantAccess) -> None:
    name = "anthropic-messages-web-search.json"  # 1 search; 4 input, 11,107 written, 2,836 read, 155 output
    raw = gateway.anthropic(tenant).messages.with_raw_response.create(
        model="claude-priced", max_tokens=1000, tools=[WEB_SEARCH_TOOL],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "What happened today?"}], extra_headers=replay(name))
    assert [block.type for block in raw.parse().content][:3] == ["thinking", "server_tool_use",
                                                                  "web_search_tool_result"]
    row = record(gateway, raw.headers["x-request-id"])
    assert row["server_tool_calls"] == {"web_search": 1}
    assert row["cost"] == micro(4 * 1 + 11107 * 1.25 + 2836 * 0.5 + 155 * 2) + 10_000 == 25_616


def test_an_unpriced_web_search_is_served_and_charged_by_the_unpriced_rule(gateway: Gateway,
                                                                          tenant: TenantAccess) -> None:
    # Offered, not refused (Codex CLI offers web_search on every request); used once on a model without its price:
    # the call costs 10,000 tokens at the model's highest rate (output, 2 a token), the 5 m write is at the input
    # price (unset), and the record names the unpriced part for the billing team.
    name = "anthropic-messages-web-search.json"  # 1 search; 4 input, 11,107 written, 2,836 read, 155 output
    raw = gateway.anthropic(tenant).messages.with_raw_response.create(
        model="claude", max_tokens=1000, tools=[WEB_SEARCH_TOOL],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "What happened today?"}], extra_headers=replay(name))
    row = record(gateway, raw.headers["x-request-id"])
    assert row["server_tool_calls"] == {"web_search": 1} and row["unpriced"] == ["tool:web_search"]
    assert row["cost"] == micro(4 * 1 + 11107 * 1 + 2836 * 0.5 + 155 * 2) + 10_000 * 2 == 32_839


def test_an_anthropic_web_search_stream_is_charged_per_call(gateway: Gateway, tenant: TenantAccess) -> None:
    # message_delta: 2,254 input, 17,269 written with no lifetime in the answer (fact 22: 5 m), 110 output, 1 search
    with gateway.anthropic(tenant).messages.stream(
            model="claude-priced", max_tokens=1000, tools=[WEB_SEARCH_TOOL],  # type: ignore[list-item]
            messages=[{"role": "user", "content": "Search."}],
            extra_headers=replay("anthropic-messages-stream-web-search.sse")) as stream:
        request_id = stream.response.headers["x-request-id"]
        final = stream.get_final_message()
    assert final.usage.output_tokens == 110
    row = record(gateway, request_id)
    assert (row["input_tokens"], row["cache_write_tokens"], row["output_tokens"]) == (2254, 17269, 110)
    assert row["server_tool_calls"] == {"web_search": 1}
    assert row["cost"] == micro(2254 * 1 + 17269 * 1.25 + 110 * 2) + 10_000 == 34_061


def test_a_responses_web_search_is_charged_per_call(gateway: Gateway, tenant: TenantAccess) -> None:
    name = "openai-responses-web-search.json"  # a web_search_call item; 17,391 input, 45 output; tier default
    raw = gateway.openai(tenant).responses.with_raw_response.create(
        model="gpt-priced", input="What happened today?", tools=[{"type": "web_search"}], extra_headers=replay(name))
    assert [item.type for item in raw.parse().output] == ["web_search_call", "message"]
    row = record(gateway, raw.headers["x-request-id"])
    assert row["server_tool_calls"] == {"web_search": 1} and row["service_tier"] == "default"
    assert row["cost"] == micro(17391 * 1 + 45 * 2) + 10_000 == 27_481


def test_a_streamed_responses_web_search_is_charged_at_the_tier_of_response_completed(
        gateway: Gateway, tenant: TenantAccess) -> None:
    """The request asks for priority and the stream says `auto` until `response.completed` reports `default`
    (fact 30): the final word prices it, at the base rates."""
    stream = gateway.openai(tenant).responses.with_raw_response.create(
        model="gpt-priced", input="Search.", tools=[{"type": "web_search"}], service_tier="priority", stream=True,
        extra_headers=replay("openai-responses-stream-web-search.sse"))
    request_id = stream.headers["x-request-id"]
    events = list(stream.parse())
    first, last = events[0], events[-1]
    assert first.type == "response.created" and last.type == "response.completed"
    assert (first.response.service_tier, last.response.service_tier) == ("auto", "default")
    row = record(gateway, request_id)
    assert row["service_tier"] == "default" and row["server_tool_calls"] == {"web_search": 1}
    assert row["cost"] == micro(17508 * 1 + 201 * 2) + 10_000 == 27_910


# -- service tiers --------------------------------------------------------------------------------------------------


def test_priority_on_a_model_without_its_price_is_refused_before_anything_happens(
        gateway: Gateway, tenant: TenantAccess) -> None:
    before, seen = balance(gateway, tenant), gateway.mock_request_count()
    client = openai.OpenAI(base_url=gateway.base_url, api_key=tenant.key, max_retries=2,
                           default_headers=tenant.headers)  # the SDK's default retries: none is made
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="chat-a", service_tier="priority",
                                       messages=[{"role": "user", "content": "fast, please"}])
    assert refused.value.status_code == 400
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert (refused.value.code, refused.value.param) == ("unsupported_parameter", "service_tier")
    assert gateway.mock_request_count() == seen
    after = balance(gateway, tenant)
    assert (after["balance"], after["held"]) == (before["balance"], before["held"])


def test_priority_on_a_model_with_its_price_is_charged_at_it(gateway: Gateway, tenant: TenantAccess) -> None:
    name = "openai-chat-service-tier-priority.json"  # 8 prompt, 82 completion; "service_tier": "priority"
    raw = gateway.openai(tenant).chat.completions.with_raw_response.create(
        model="gpt-priced", service_tier="priority", messages=[{"role": "user", "content": "fast"}],
        extra_headers=replay(name))
    assert raw.parse().service_tier == "priority"
    row = record(gateway, raw.headers["x-request-id"])
    assert row["service_tier"] == "priority"
    assert row["cost"] == micro(8 * 2 + 82 * 4) == 344


# -- audio ----------------------------------------------------------------------------------------------------------


def test_audio_input_is_charged_at_the_audio_price(gateway: Gateway, tenant: TenantAccess) -> None:
    name = "openai-chat-audio-input-usage.json"  # 21 prompt of which 2 audio, 1 completion
    wav = base64.b64encode(b"RIFF" + bytes(4000)).decode()
    raw = gateway.openai(tenant).chat.completions.with_raw_response.create(
        model="gpt-priced", extra_headers=replay(name), messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is said?"},
            {"type": "input_audio", "input_audio": {"data": wav, "format": "wav"}}]}])
    row = record(gateway, raw.headers["x-request-id"])
    assert (row["input_tokens"], row["audio_input_tokens"]) == (21, 2)
    assert row["cost"] == micro(19 * 1 + 2 * 8 + 1 * 2) == 37


def test_audio_output_is_charged_at_the_audio_price(gateway: Gateway, tenant: TenantAccess) -> None:
    name = "openai-chat-audio-output-usage.json"  # 22 prompt, 18 completion of which 12 audio
    raw = gateway.openai(tenant).chat.completions.with_raw_response.create(
        model="gpt-priced", modalities=["text", "audio"], audio={"voice": "alloy", "format": "opus"},
        messages=[{"role": "user", "content": "Say beep."}], extra_headers=replay(name))
    assert raw.parse().choices[0].message.audio is not None
    row = record(gateway, raw.headers["x-request-id"])
    assert (row["output_tokens"], row["audio_output_tokens"]) == (18, 12)
    assert row["cost"] == micro(22 * 1 + 6 * 2 + 12 * 16) == 226


# -- long context ---------------------------------------------------------------------------------------------------


def test_a_request_above_the_long_context_line_is_priced_whole_at_its_rates(
        gateway: Gateway, tenant: TenantAccess) -> None:
    """2,073 input tokens in all, above claude-long's line of 2,000: every part at the long-context rates."""
    raw = gateway.anthropic(tenant).messages.with_raw_response.create(
        model="claude-long", max_tokens=500, system=CACHE_1H, messages=[{"role": "user", "content": "Summarise."}],
        extra_headers=replay("anthropic-messages-cache-1h.json"))
    row = record(gateway, raw.headers["x-request-id"])
    assert row["cost"] == micro(3 * 2 + 14 * 2.5 + 2056 * 4 + 459 * 3) == 9642
    assert row["reserved"] >= row["cost"]  # the prompt is above the line too: held at those rates


# -- images at the model's own count ----------------------------------------------------------------------------------


def test_a_model_that_counts_images_higher_holds_them_higher(gateway: Gateway) -> None:
    """With 20,000 tokens a minute, one image fits on a model that counts it at 4,000 tokens, and can never fit on
    one whose sheet says 48,000 (gpt-4o-mini's formula): refused for good, and nothing reaches the upstream."""
    access = gateway.new_tenant(["chat-a", "chat-images"], limits=Limits(tpm=20_000))
    messages: Any = [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]
    client = gateway.openai(access)
    client.chat.completions.create(model="chat-a", max_tokens=50, messages=messages)
    seen = gateway.mock_request_count()
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="chat-images", max_tokens=50, messages=messages)
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert "over your package's tokens per minute" in refused.value.message
    assert gateway.mock_request_count() == seen
