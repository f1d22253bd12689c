"""A price sheet from LiteLLM's cost map (``model_prices_and_context_window.json``, MIT). Pure.

LiteLLM prices in USD per token (per call for search); Lime in integer micro-points per million tokens (per call).
A price converts at ``points_per_usd`` with a ``markup`` in percent, **rounded up** to the micro-point, so an
imported price is never below the provider's. The keys read:

=====================================================  ==========================================
``input_cost_per_token``, ``output_cost_per_token``     input, output
``cache_read_input_token_cost``                         cached input (unset: the input price)
``cache_creation_input_token_cost`` / ``…_above_1hr``   cache writes, 5 minutes / 1 hour
``input_cost_per_audio_token``, ``output_…``            audio input, audio output
``…_priority``, ``…_flex``                              the tier's input, output, cached input
``…_above_<N>k_tokens``                                 the long-context rates above N thousand input tokens
``search_context_cost_per_query``                       web search, per call (the highest context size)
``file_search_cost_per_1k_calls``                       file search, per call
``input_cost_per_image`` / ``input_cost_per_token``     ``image_tokens``, rounded up (what an image is held at)
=====================================================  ==========================================

LiteLLM's map states no image formula for OpenAI's models (gpt-4o-mini's ~33x image tokens are billed as input
tokens, so the map has nothing to say): their ``image_tokens`` is set by hand (``lime model update
--image-tokens``). Where it prices an input image apart (``input_cost_per_image``, Vertex's Gemini models), that
price over the input token price is the tokens an image is held at.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any

from lime.money.price_sheet import MAX_IMAGE_TOKENS, PriceSheet, Rates, sheet_from_dict
from lime.protocols.errors import BadRequest

__all__ = ["sheet_from_litellm"]

_LONG = re.compile(r"^input_cost_per_token_above_(\d+)k_tokens$")


def _usd(entry: Mapping[str, Any], key: str) -> Decimal | None:
    value = entry.get(key)
    if value is None or isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = Decimal(str(value))  # str(): the decimal LiteLLM wrote, not the float's binary expansion
    except InvalidOperation:
        return None
    return number if number.is_finite() and number >= 0 else None


def sheet_from_litellm(entry: Mapping[str, Any], *, points_per_usd: Decimal, markup_percent: Decimal) -> PriceSheet:
    """The sheet for one entry of the cost map; :class:`BadRequest` when it has no token prices."""
    factor = points_per_usd * (1 + markup_percent / 100)

    def per_million(key: str) -> int | None:
        usd = _usd(entry, key)
        return None if usd is None else int((usd * factor * 10**12).to_integral_value(ROUND_CEILING))

    def per_call(usd: Decimal | None) -> int | None:
        return None if usd is None else int((usd * factor * 10**6).to_integral_value(ROUND_CEILING))

    base_in, base_out = per_million("input_cost_per_token"), per_million("output_cost_per_token")
    if base_in is None or base_out is None:
        raise BadRequest("This cost map entry has no input_cost_per_token / output_cost_per_token.")
    cached = per_million("cache_read_input_token_cost")
    extras: dict[str, Any] = {name: value for name, value in (
        ("cache_write_5m", per_million("cache_creation_input_token_cost")),
        ("cache_write_1h", per_million("cache_creation_input_token_cost_above_1hr")),
        ("audio_input", per_million("input_cost_per_audio_token")),
        ("audio_output", per_million("output_cost_per_audio_token")),
    ) if value is not None}
    tiers = {}
    for tier in ("priority", "flex"):
        tier_in, tier_out = per_million(f"input_cost_per_token_{tier}"), per_million(f"output_cost_per_token_{tier}")
        if tier_in is not None and tier_out is not None:
            tier_cached = per_million(f"cache_read_input_token_cost_{tier}")
            tiers[tier] = {"input": tier_in, "output": tier_out,
                           "cached_input": tier_in if tier_cached is None else min(tier_cached, tier_in)}
    if tiers:
        extras["tiers"] = tiers
    lines = sorted(int(m.group(1)) for key in entry if isinstance(key, str) and (m := _LONG.match(key)))
    if lines:
        n = lines[0]
        long_in = per_million(f"input_cost_per_token_above_{n}k_tokens")
        long_out = per_million(f"output_cost_per_token_above_{n}k_tokens")
        long_cached = per_million(f"cache_read_input_token_cost_above_{n}k_tokens")
        long_context = {"above": n * 1000, "input": long_in, "output": base_out if long_out is None else long_out,
                        "cached_input": (cached or 0) if long_cached is None else long_cached}
        for name, key in (("cache_write_5m", f"cache_creation_input_token_cost_above_{n}k_tokens"),
                          ("cache_write_1h", f"cache_creation_input_token_cost_above_1hr_above_{n}k_tokens")):
            if (value := per_million(key)) is not None:
                long_context[name] = value
        extras["long_context"] = long_context
    tools = {}
    search = entry.get("search_context_cost_per_query")
    if isinstance(search, Mapping):
        prices = [usd for key in search if (usd := _usd(search, key)) is not None]
        if prices:
            tools["web_search"] = per_call(max(prices))
    file_search = _usd(entry, "file_search_cost_per_1k_calls")
    if file_search is not None:
        tools["file_search"] = per_call(file_search / 1000)
    if tools:
        extras["tool_calls"] = tools
    per_image, per_token = _usd(entry, "input_cost_per_image"), _usd(entry, "input_cost_per_token")
    if per_image and per_token:
        extras["image_tokens"] = min(MAX_IMAGE_TOKENS, int((per_image / per_token).to_integral_value(ROUND_CEILING)))
    return sheet_from_dict(Rates(base_in, base_out, base_in if cached is None else min(cached, base_in)), extras)
