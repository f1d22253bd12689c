"""What the price sheet pins (lime.money.price_sheet, lime.money.pricing, lime.money.modifiers):

* each part at its own rate: 5-minute writes at their price (the input price when unset), 1-hour writes, audio in
  and out, tool calls per call, the tier served (or asked for), the long-context rates for the whole request;
* an unset part the usage shows is charged at the model's highest rate and named as unpriced;
* the cost is an integer, rounded up once, monotone in every part, never below the base price when a premium
  applies, and splitting a usage below the long-context line never makes it cheaper;
* the grant's compact form round-trips every sheet;
* a request asking for a premium tier or a provider tool the sheet does not price is refused before any hold, and
  one the sheet prices is reserved for;
* the hold is never below the likely cost: a request that marks ``cache_control`` holds its input at the dearest
  cache write it can trigger, audio input at the audio rate.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lime.money.modifiers import priced_modifiers
from lime.money.price_sheet import (
    GrantPrices,
    LongContext,
    PriceSheet,
    Rates,
    decode_prices,
    encode_prices,
    sheet_from_dict,
)
from lime.money.pricing import (
    DEFAULT_RESERVED_CALLS,
    PER_MILLION,
    UNPRICED_CALL_TOKENS,
    price_usage,
    reservation_estimate,
)
from lime.protocols.endpoints import Protocol
from lime.protocols.errors import BadRequest, UnpricedModifier
from lime.protocols.usage import Usage

M = PER_MILLION
# Claude Sonnet 4.5's list prices in points per million tokens (1 point = 1 USD here).
SONNET = sheet_from_dict(Rates(3 * M, 15 * M, M * 3 // 10), {
    "cache_write_5m": M * 375 // 100, "cache_write_1h": 6 * M,
    "long_context": {"above": 200_000, "input": 6 * M, "output": M * 45 // 2, "cached_input": M * 6 // 10,
                     "cache_write_5m": M * 75 // 10, "cache_write_1h": 12 * M},
    "tool_calls": {"web_search": 10_000},
})
GPT = sheet_from_dict(Rates(M * 5 // 4, 10 * M, M // 8), {
    "audio_input": 40 * M, "audio_output": 80 * M,
    "tiers": {"priority": {"input": M * 5 // 2, "output": 20 * M, "cached_input": M // 4},
              "flex": {"input": M * 5 // 8, "output": 5 * M, "cached_input": M // 16}},
})
PLAIN = PriceSheet(Rates(3 * M, 15 * M, M * 3 // 10))


@pytest.mark.parametrize(("usage", "sheet", "cost", "unpriced"), [
    # The recorded 1-hour write (anthropic-messages-cache-1h.json): 14 at 3.75, 2056 at 6, 3 in, 459 out.
    (Usage(input_tokens=3, cache_write_tokens=14, cache_write_1h_tokens=2056, output_tokens=459), SONNET,
     -(-(3 * 3 * M + 14 * 375 * M // 100 + 2056 * 6 * M + 459 * 15 * M) // M), set()),
    # Unset 5-minute price: the input price, as before. Unset 1-hour price: the highest rate, and unpriced.
    (Usage(cache_write_tokens=1000), PLAIN, 3000, set()),
    (Usage(cache_write_1h_tokens=1000), PLAIN, 15000, {"cache_write_1h"}),
    # Searches per call; one the sheet does not price: the highest per-call price, or 10,000 tokens at the top rate.
    (Usage(input_tokens=10, server_tool_calls=(("web_search", 3),)), SONNET, 30 + 30_000, set()),
    (Usage(server_tool_calls=(("web_fetch", 2),)), SONNET, 20_000, {"tool:web_fetch"}),
    (Usage(server_tool_calls=(("web_search", 1),)), PLAIN, UNPRICED_CALL_TOKENS * 15, {"tool:web_search"}),
    # Audio at its own rates, the rest of the totals at the text rates (openai-chat-audio-*-usage.json).
    (Usage(input_tokens=21, audio_input_tokens=2, output_tokens=1), GPT,
     -(-(19 * 5 * M // 4 + 2 * 40 * M + 10 * M) // M), set()),
    (Usage(input_tokens=22, output_tokens=18, audio_output_tokens=12), PLAIN, -(-(22 * 3 * M + 18 * 15 * M) // M),
     {"audio_output"}),
    # The tier served prices the request; a premium tier without a price is the highest rate for every part.
    (Usage(input_tokens=8, output_tokens=82, service_tier="priority"), GPT, -(-(8 * 5 * M // 2 + 82 * 20 * M) // M),
     set()),
    (Usage(input_tokens=8, output_tokens=82, service_tier="flex"), GPT, -(-(8 * 5 * M // 8 + 82 * 5 * M) // M), set()),
    (Usage(input_tokens=8, output_tokens=82, service_tier="priority"), PLAIN, 90 * 15, {"service_tier"}),
    (Usage(input_tokens=8, output_tokens=82, service_tier="flex"), PLAIN, 8 * 3 + 82 * 15, set()),
    # Above the line the whole request is at the long-context rates (201k input: 6 a token, 22.5 out).
    (Usage(input_tokens=201_000, output_tokens=10), SONNET, 201_000 * 6 + 225, set()),
    (Usage(input_tokens=200_000, output_tokens=10), SONNET, 200_000 * 3 + 150, set()),
])
def test_each_part_at_its_rate(usage: Usage, sheet: PriceSheet, cost: int, unpriced: set[str]) -> None:
    priced = price_usage(usage, sheet)
    assert (priced.cost, set(priced.unpriced)) == (cost, unpriced)


def test_a_tier_the_answer_does_not_report_is_the_one_asked_for() -> None:
    usage = Usage(input_tokens=8, output_tokens=82)
    assert price_usage(usage, GPT, requested_tier="priority").cost == price_usage(
        Usage(input_tokens=8, output_tokens=82, service_tier="priority"), GPT).cost


def test_server_tool_iterations_do_not_make_a_long_context_request() -> None:
    # Fact 26: 404,500 reported input tokens over 10 searches, from a 2,479-token prompt.
    usage = Usage(input_tokens=404_500, output_tokens=943, server_tool_calls=(("web_search", 10),))
    assert price_usage(usage, SONNET, context_tokens=2_479).cost == 404_500 * 3 + 943 * 15 + 10 * 10_000
    assert price_usage(usage, SONNET, context_tokens=250_000).cost == -(-(404_500 * 12 + 943 * 45 + 20 * 10_000) // 2)


def test_a_premium_below_the_base_is_refused() -> None:
    with pytest.raises(BadRequest, match="below the base"):
        sheet_from_dict(Rates(3 * M, 15 * M, 0), {"long_context": {"above": 10, "input": M, "output": 15 * M,
                                                                   "cached_input": 0}})
    with pytest.raises(BadRequest, match="unknown prices"):
        sheet_from_dict(Rates(), {"tiers": {"priority": {"input": 1, "output": 1, "cached_input": 0, "x": 1}}})
    with pytest.raises(BadRequest):
        sheet_from_dict(Rates(), {"tool_calls": {"Web Search": 1}})


# -- properties -------------------------------------------------------------------------------------------------

PRICE = st.integers(min_value=0, max_value=100 * M)
OPTIONAL = st.none() | PRICE
TOKENS = st.integers(min_value=0, max_value=5_000_000)


@st.composite
def sheets(draw: st.DrawFn) -> PriceSheet:
    base = Rates(draw(PRICE), draw(PRICE), 0, draw(OPTIONAL), draw(OPTIONAL), draw(OPTIONAL), draw(OPTIONAL))
    base = Rates(base.input, base.output, draw(st.integers(0, base.input)), *[
        getattr(base, n) for n in ("cache_write_5m", "cache_write_1h", "audio_input", "audio_output")])

    def premium() -> Rates:
        def above(value: int | None) -> int | None:
            return None if value is None else value + draw(st.integers(0, 10 * M))
        return Rates(base.input + draw(st.integers(0, M)), base.output + draw(st.integers(0, M)),
                     base.cached_input + draw(st.integers(0, M)), above(base.cache_write_5m),
                     above(base.cache_write_1h), above(base.audio_input), above(base.audio_output))

    tiers = (("priority", premium()),) if draw(st.booleans()) else ()
    long_context = LongContext(draw(st.integers(1, 1_000_000)), premium()) if draw(st.booleans()) else None
    tools = tuple(sorted(draw(st.dictionaries(st.sampled_from(["web_search", "file_search"]), PRICE)).items()))
    image_tokens = draw(st.none() | st.integers(1, 100_000))
    return PriceSheet(base, tiers, long_context, tools, image_tokens)


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    input_tokens, output = draw(TOKENS), draw(TOKENS)
    return Usage(input_tokens=input_tokens, cached_input_tokens=draw(TOKENS), cache_write_tokens=draw(TOKENS),
                 output_tokens=output, cache_write_1h_tokens=draw(TOKENS),
                 audio_input_tokens=draw(st.integers(0, input_tokens)),
                 audio_output_tokens=draw(st.integers(0, output)),
                 server_tool_calls=tuple(sorted(draw(st.dictionaries(
                     st.sampled_from(["web_search", "file_search", "web_fetch"]), st.integers(1, 50))).items())),
                 service_tier=draw(st.sampled_from([None, "default", "priority", "flex"])))


COUNTS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "cache_write_1h_tokens", "output_tokens")


def grown(usage: Usage, part: str, more: int) -> Usage:
    from dataclasses import replace
    if part == "calls":
        calls = dict(usage.server_tool_calls)
        calls["web_search"] = calls.get("web_search", 0) + more
        return replace(usage, server_tool_calls=tuple(sorted(calls.items())))
    return replace(usage, **{part: getattr(usage, part) + more})


@given(usages(), sheets(), st.sampled_from((*COUNTS, "calls")), st.integers(1, 1_000_000))
def test_cost_is_monotone_in_every_part(usage: Usage, sheet: PriceSheet, part: str, more: int) -> None:
    before, after = price_usage(usage, sheet), price_usage(grown(usage, part, more), sheet)
    assert type(after.cost) is int and after.cost >= before.cost >= 0


@given(usages(), sheets())
def test_a_premium_never_costs_less_than_the_base(usage: Usage, sheet: PriceSheet) -> None:
    from dataclasses import replace
    plain = PriceSheet(sheet.base, (), None, sheet.tool_calls)
    standard = replace(usage, service_tier=None if usage.service_tier == "priority" else usage.service_tier)
    assert price_usage(usage, sheet).cost >= price_usage(standard, plain).cost


@given(usages(), usages(), sheets())
def test_splitting_a_usage_never_makes_it_cheaper(a: Usage, b: Usage, sheet: PriceSheet) -> None:
    from dataclasses import replace
    sheet = replace(sheet, long_context=None)  # below the line: providers price the halves apart too
    b = replace(b, service_tier=a.service_tier)
    calls = dict(a.server_tool_calls)
    for tool, count in b.server_tool_calls:
        calls[tool] = calls.get(tool, 0) + count
    whole = Usage(**{name: getattr(a, name) + getattr(b, name) for name in (*COUNTS, "audio_input_tokens",
                                                                              "audio_output_tokens")},
                  server_tool_calls=tuple(sorted(calls.items())), service_tier=a.service_tier)
    assert price_usage(whole, sheet).cost <= price_usage(a, sheet).cost + price_usage(b, sheet).cost


@given(sheets(), st.sampled_from([None, "priority", "flex"]), st.booleans())
def test_the_grant_form_round_trips(sheet: PriceSheet, tier: str | None, server_tools: bool) -> None:
    prices = GrantPrices(sheet, tier, server_tools)
    assert decode_prices(encode_prices(prices)) == prices


def test_a_string_that_is_no_sheet_is_refused() -> None:
    for text in ("", "p2{}", "p1[", "p1{}"):
        with pytest.raises(ValueError):
            decode_prices(text)


# -- modifiers seen up front ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("protocol", "body", "param"), [
    (Protocol.OPENAI, {"service_tier": "priority"}, "service_tier"),
    (Protocol.OPENAI, {"service_tier": "flex"}, "service_tier"),
    (Protocol.OPENAI, {"service_tier": "scale"}, "service_tier"),
])
def test_an_unpriced_modifier_is_refused(protocol: Protocol, body: dict[str, object], param: str) -> None:
    with pytest.raises(UnpricedModifier) as refused:
        priced_modifiers(protocol, body, PLAIN, "m")
    assert refused.value.param == param and refused.value.status == 400 and not refused.value.retryable
    assert "`m` has no price" in refused.value.message


@pytest.mark.parametrize(("protocol", "body", "tool"), [
    (Protocol.OPENAI, {"tools": [{"type": "web_search"}]}, "web_search"),
    (Protocol.OPENAI, {"tools": [{"type": "web_search_preview"}]}, "web_search"),
    (Protocol.OPENAI, {"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "file_search"),
    (Protocol.OPENAI, {"web_search_options": {}}, "web_search"),
    (Protocol.ANTHROPIC, {"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]},
     "web_search"),
    (Protocol.ANTHROPIC, {"tools": [{"type": "web_fetch_20250910", "name": "web_fetch"}]}, "web_fetch"),
])
def test_an_unpriced_tool_is_offered_not_refused_and_one_call_is_held(
        protocol: Protocol, body: dict[str, object], tool: str) -> None:
    # Codex CLI offers web_search on every request: refusing the offer would refuse the agent.
    asked = priced_modifiers(protocol, body, PLAIN, "m")
    assert asked.tool_calls == ((tool, 1),)
    held = reservation_estimate(PLAIN, 1000, 100, tool_calls=asked.tool_calls).points
    assert held > reservation_estimate(PLAIN, 1000, 100).points


@pytest.mark.parametrize(("protocol", "body"), [
    (Protocol.OPENAI, {"service_tier": "auto"}),
    (Protocol.OPENAI, {"service_tier": "default"}),
    (Protocol.OPENAI, {"tools": [{"type": "function", "function": {"name": "f"}}]}),
    (Protocol.ANTHROPIC, {"service_tier": "auto", "tools": [{"name": "get_weather", "input_schema": {}}]}),
    (Protocol.ANTHROPIC, {"tools": [{"type": "bash_20250124", "name": "bash"}]}),  # run by the client
])
def test_what_costs_the_base_rates_passes(protocol: Protocol, body: dict[str, object]) -> None:
    assert priced_modifiers(protocol, body, PLAIN, "m").tier is None


def test_a_priced_modifier_is_reserved_for() -> None:
    asked = priced_modifiers(Protocol.OPENAI, {"service_tier": "priority"}, GPT, "m")
    assert asked.tier == "priority"
    assert reservation_estimate(GPT, 1000, 100, tier=asked.tier).points == 1000 * 5 // 2 + 100 * 20
    searches = priced_modifiers(Protocol.ANTHROPIC, {"tools": [
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]}, SONNET, "m")
    assert searches.tool_calls == (("web_search", 3),)
    assert reservation_estimate(SONNET, 1000, 100, tool_calls=searches.tool_calls).points == (
        1000 * 3 + 100 * 15 + 3 * 10_000)
    unbounded = priced_modifiers(Protocol.OPENAI, {"tools": [{"type": "web_search"}]}, SONNET, "m")
    assert unbounded.tool_calls == (("web_search", DEFAULT_RESERVED_CALLS),)


# -- the hold covers what the request can trigger ---------------------------------------------------------------


@pytest.mark.parametrize(("marks", "expected"), [
    ({"system": [{"type": "text", "text": "s"}]}, None),
    ({"system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}]}, "5m"),
    ({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "u", "cache_control": {"type": "ephemeral", "ttl": "5m"}}]}],
      "system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}, "1h"),
    ({"tools": [{"name": "f", "input_schema": {}, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}, "1h"),
    ({"cache_control": {"type": "ephemeral"}}, "5m"),  # automatic caching, at the top level
    ({"messages": [{"role": "user", "content": "cache_control"}]}, None),  # a word in the text is no mark
])
def test_the_longest_cache_lifetime_a_request_marks_is_found(marks: dict[str, object], expected: str | None) -> None:
    assert priced_modifiers(Protocol.ANTHROPIC, marks, PLAIN, "m").cache_write == expected


def test_a_request_that_marks_a_cache_write_holds_its_input_at_the_write_rate() -> None:
    plain = reservation_estimate(SONNET, 10_000, 100).points
    assert plain == 10_000 * 3 + 100 * 15
    assert reservation_estimate(SONNET, 10_000, 100, cache_write="5m").points == 10_000 * 375 // 100 + 100 * 15
    assert reservation_estimate(SONNET, 10_000, 100, cache_write="1h").points == 10_000 * 6 + 100 * 15
    # A 1-hour write the sheet does not price is charged at the highest rate: so it is held.
    assert reservation_estimate(PLAIN, 10_000, 100, cache_write="1h").points == 10_000 * 15 + 100 * 15


def test_audio_input_is_held_at_the_audio_rate() -> None:
    assert reservation_estimate(GPT, 1000, 100, audio_input_tokens=400).points == (
        600 * 5 // 4 + 400 * 40 + 100 * 10)
    # More audio than input is not possible: the audio share is at most the input.
    assert reservation_estimate(GPT, 10, 0, audio_input_tokens=400).points == 10 * 40


@given(sheets(), usages(), st.sampled_from([None, "5m", "1h"]), st.sampled_from([None, "priority"]))
def test_the_hold_covers_every_cache_write_the_request_can_trigger(
        sheet: PriceSheet, usage: Usage, cache_write: str | None, tier: str | None) -> None:
    """Whatever share of the estimated input the provider writes to the cache (with the lifetimes the marks allow)
    and the rest read uncached, the charge for exactly the estimated input and the cap is within the hold."""
    tokens = max(1, usage.input_tokens)
    hold = reservation_estimate(sheet, tokens, usage.output_tokens, tier=tier, cache_write=cache_write).points
    written = min(usage.cache_write_tokens, tokens)
    written_1h = min(usage.cache_write_1h_tokens, tokens - written) if cache_write == "1h" else 0
    if cache_write is None:
        written = 0
    charged = Usage(input_tokens=tokens - written - written_1h, cache_write_tokens=written,
                    cache_write_1h_tokens=written_1h, output_tokens=usage.output_tokens)
    assert price_usage(charged, sheet, requested_tier=tier).cost <= hold
