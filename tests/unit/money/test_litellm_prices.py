"""What importing LiteLLM's cost map pins (tests/fixtures/litellm, verbatim entries): USD per token becomes integer
micro-points per million tokens at the rate and markup, rounded up; every part LiteLLM expresses lands in its part of
the sheet; an entry without token prices is refused."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from lime.money.litellm_prices import sheet_from_litellm
from lime.money.price_sheet import LongContext, Rates
from lime.protocols.errors import BadRequest

COST_MAP = json.loads((Path(__file__).resolve().parents[2] / "fixtures" / "litellm" / "model_prices_excerpt.json")
                      .read_text())
ONE = {"points_per_usd": Decimal(1), "markup_percent": Decimal(0)}


def test_every_part_of_an_anthropic_entry() -> None:
    sheet = sheet_from_litellm(COST_MAP["eu.anthropic.claude-sonnet-4-5-20250929-v1:0"], **ONE)
    # 3.3e-06 USD a token = 3.3 USD a million = 3,300,000 micro-points at 1 point per USD.
    assert sheet.base == Rates(3_300_000, 16_500_000, 330_000, cache_write_5m=4_125_000, cache_write_1h=6_600_000)
    assert sheet.long_context == LongContext(200_000, Rates(6_600_000, 24_750_000, 660_000, cache_write_5m=8_250_000,
                                                            cache_write_1h=13_200_000))
    assert sheet.tool_calls == (("web_search", 10_000),)  # 0.01 USD a search


def test_rate_and_markup_round_up() -> None:
    sheet = sheet_from_litellm(COST_MAP["azure_ai/Phi-4-multimodal-instruct"], points_per_usd=Decimal(7),
                               markup_percent=Decimal("12.5"))
    # 8e-08 USD a token * 7 * 1.125 = 0.63 points a million tokens.
    assert (sheet.base.input, sheet.base.audio_input) == (630_000, 31_500_000)
    assert sheet.base.cached_input == sheet.base.input  # no cache price: reads cost what input costs
    thirds = sheet_from_litellm({"input_cost_per_token": 1e-07, "output_cost_per_token": 1e-07},
                                points_per_usd=Decimal(1), markup_percent=Decimal(1) / 3)
    assert thirds.base.input == 100_334  # 100,333.33... rounded up, never down


def test_service_tiers() -> None:
    # Shaped as LiteLLM names the tier prices (gpt-5's list prices); not a vendored entry.
    entry = {"input_cost_per_token": 1.25e-06, "output_cost_per_token": 1e-05, "cache_read_input_token_cost": 1.25e-07,
             "input_cost_per_token_priority": 2.5e-06, "output_cost_per_token_priority": 2e-05,
             "cache_read_input_token_cost_priority": 2.5e-07, "input_cost_per_token_flex": 6.25e-07,
             "output_cost_per_token_flex": 5e-06, "cache_read_input_token_cost_flex": 6.25e-08,
             "file_search_cost_per_1k_calls": 0.0025}
    sheet = sheet_from_litellm(entry, **ONE)
    assert sheet.tier("priority") == Rates(2_500_000, 20_000_000, 250_000)
    assert sheet.tier("flex") == Rates(625_000, 5_000_000, 62_500)
    assert sheet.tool_price("file_search") == 3  # 0.0025 USD / 1000 calls = 2.5 micro-points, rounded up


def test_an_entry_without_token_prices_is_refused() -> None:
    with pytest.raises(BadRequest, match="no input_cost_per_token"):
        sheet_from_litellm(COST_MAP["azure/whisper-1"], **ONE)


def test_an_image_priced_apart_is_held_at_its_price_in_input_tokens() -> None:
    """Vertex's Gemini entries price an input image apart; OpenAI's have no image key (gpt-4o-mini: set by hand)."""
    entry = {"input_cost_per_token": 1.25e-06, "output_cost_per_token": 5e-06, "input_cost_per_image": 0.00032875}
    assert sheet_from_litellm(entry, **ONE).image_tokens == 263  # 0.00032875 / 0.00000125 = 263
    assert sheet_from_litellm({**entry, "input_cost_per_image": 0}, **ONE).image_tokens is None
    for key in COST_MAP:
        if "input_cost_per_token" in COST_MAP[key] and "input_cost_per_image" not in COST_MAP[key]:
            assert sheet_from_litellm(COST_MAP[key], **ONE).image_tokens is None
