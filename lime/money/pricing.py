"""Points for tokens: the price of a usage, and the estimate a request is reserved at. Pure integer math.

Prices are integer micro-points per million tokens (a server tool's, micro-points per call), so a cost is
``tokens * price / 1_000_000`` micro-points, summed over the parts of a usage and rounded **up** once per request
(a request never costs 0 by rounding when it used priced tokens, and rounding can never be gamed by splitting a
usage into parts).

Which rates apply (docs/billing.md, "How each part is priced"):

* the **service tier** the provider reports (or, when it does not say, the one the request asked for) picks the
  tier's rates; a part the tier leaves unset is the base's;
* a request whose **input is above the long-context line** is priced whole at the long-context rates (with a
  premium tier, the higher of the two for each part). The input is the reported total (uncached, cache reads and
  writes) unless the request offered the provider's own tools: then the reported input adds up the server-side
  iterations (fact 26) and the request's own input estimate decides (``context_tokens``);
* each part at its own rate: uncached input (less its audio share) at input, audio input at audio input, cache
  reads at cached input, 5-minute cache writes at their price or, unset, the input price (today's rule), 1-hour
  writes at theirs, output (less its audio share) at output, audio output at audio output, each tool call at its
  tool's price.

**Unpriced**: a part the usage shows but the sheet has no price for (a 1-hour write, audio, a premium tier served
without its rates) is charged at the model's highest token rate, and a tool call without its price at the highest
per-call price or, if the sheet has none, :data:`UNPRICED_CALL_TOKENS` tokens at the highest token rate. Each such
part is named in :attr:`Priced.unpriced` (counted in ``lime_unpriced_usage_total``): someone should price it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lime.money.price_sheet import PREMIUM_TIERS, PriceSheet, Rates
from lime.protocols.usage import Usage

__all__ = ["PER_MILLION", "UNPRICED_CALL_TOKENS", "Estimate", "Priced", "cost_of", "price_usage",
           "reservation_estimate"]

PER_MILLION = 1_000_000
#: An unpriced tool call with no per-call price on the sheet to fall back to costs this many tokens at the
#: model's highest rate: a web search at $10 a thousand is $0.01, about 3,000 tokens at $3 a million.
UNPRICED_CALL_TOKENS = 10_000
#: Tool calls reserved per provider tool a request offers, when it sets no ``max_uses`` (Anthropic pause_turn
#: answers run up to 10 searches, fact 25).
DEFAULT_RESERVED_CALLS = 10


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


@dataclass(frozen=True)
class Priced:
    cost: int
    #: The parts charged at the highest rate for want of a price (``cache_write_1h``, ``audio_input``,
    #: ``service_tier``, ``tool:web_search``...).
    unpriced: frozenset[str] = frozenset()


def _pick(name: str, *candidates: Rates | None) -> int | None:
    """The highest of the candidates' prices for a part (a premium tier and the long-context rates both apply),
    ``None`` when none sets it."""
    values = [v for rates in candidates if rates is not None and (v := getattr(rates, name)) is not None]
    return max(values) if values else None


def effective_rates(sheet: PriceSheet, tier: str | None, context_tokens: int) -> tuple[Rates, bool]:
    """The rates a request is priced at, and whether its tier is a premium the sheet does not price.

    A part neither the tier nor the long-context rates set is the base's; ``None`` stays ``None`` (unpriced)."""
    tier_rates = sheet.tier(tier)
    unpriced_tier = tier in PREMIUM_TIERS and tier_rates is None
    long_rates = (sheet.long_context.rates
                  if sheet.long_context is not None and context_tokens > sheet.long_context.above else None)
    if tier_rates is None and long_rates is None:
        return sheet.base, unpriced_tier
    chosen = {}
    for name in ("input", "output", "cached_input", "cache_write_5m", "cache_write_1h", "audio_input",
                 "audio_output"):
        value = _pick(name, tier_rates, long_rates)
        chosen[name] = getattr(sheet.base, name) if value is None else value
    return Rates(**chosen), unpriced_tier


def price_usage(usage: Usage, sheet: PriceSheet, *, requested_tier: str | None = None,
                context_tokens: int | None = None) -> Priced:
    """What ``usage`` costs at ``sheet``, in micro-points, and which of its parts had no price.

    ``context_tokens``: the input that decides the long-context line, when not the usage's own total (a request
    that offered the provider's tools: its input estimate)."""
    calls = dict(usage.server_tool_calls) if usage.server_tool_calls else {}
    context = usage.total_input_tokens if context_tokens is None else context_tokens
    rates, unpriced_tier = effective_rates(sheet, usage.service_tier or requested_tier, context)
    unpriced: set[str] = set()

    def rate(name: str, value: int | None) -> int:
        if value is not None and not unpriced_tier:
            return value
        unpriced.add("service_tier" if unpriced_tier else name)
        return sheet.highest_rate()

    audio_in = min(usage.audio_input_tokens, usage.input_tokens)
    audio_out = min(usage.audio_output_tokens, usage.output_tokens)
    write_5m = rates.cache_write_5m if rates.cache_write_5m is not None else rates.input
    parts = (
        ("input", rates.input, usage.input_tokens - audio_in),
        ("audio_input", rates.audio_input, audio_in),
        ("cached_input", rates.cached_input, usage.cached_input_tokens),
        ("cache_write_5m", write_5m, usage.cache_write_tokens),
        ("cache_write_1h", rates.cache_write_1h, usage.cache_write_1h_tokens),
        ("output", rates.output, usage.output_tokens - audio_out),
        ("audio_output", rates.audio_output, audio_out),
    )
    total = sum(tokens * rate(name, value) for name, value, tokens in parts if tokens)
    for tool, count in calls.items():
        price = sheet.tool_price(tool)
        if price is None:
            unpriced.add(f"tool:{tool}")
            call_prices = [price for _, price in sheet.tool_calls]
            total += count * (max(call_prices) * PER_MILLION if call_prices
                              else UNPRICED_CALL_TOKENS * sheet.highest_rate())
        else:
            total += count * price * PER_MILLION
    return Priced(_ceil_div(total, PER_MILLION), frozenset(unpriced))


def cost_of(usage: Usage, sheet: PriceSheet, *, requested_tier: str | None = None,
            context_tokens: int | None = None) -> int:
    """What ``usage`` costs at ``sheet``, in micro-points."""
    return price_usage(usage, sheet, requested_tier=requested_tier, context_tokens=context_tokens).cost


@dataclass(frozen=True)
class Estimate:
    input_tokens: int
    output_tokens: int
    points: int

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def reservation_estimate(sheet: PriceSheet, input_tokens: int, max_output_tokens: int, *,
                         tier: str | None = None, tool_calls: tuple[tuple[str, int], ...] = (),
                         cache_write: str | None = None, audio_input_tokens: int = 0) -> Estimate:
    """What to hold before a request leaves: its estimated input (:mod:`lime.protocols.input_estimate`), its
    full output cap, and the provider tool calls it may make (:mod:`lime.money.modifiers`), at the rates of the
    tier it asks for and, above the long-context line, the long-context rates.

    The hold is never below the likely cost: input is priced as uncached (cache reads are cheaper), its audio share
    (``audio_input_tokens``) at the audio input rate, and, when the request marks a cache lifetime
    (``cache_write``: ``"5m"`` or ``"1h"``, which may also write 5-minute marks), at the dearest of the input price
    and the write rates it can trigger, each as the settlement would charge it (an unpriced 1-hour write: the
    highest rate). Embeddings have no output.
    """
    input_tokens = max(1, input_tokens)
    audio = min(audio_input_tokens, input_tokens)
    text = input_tokens - audio
    plain = Usage(input_tokens=input_tokens, output_tokens=max_output_tokens, server_tool_calls=tool_calls,
                  audio_input_tokens=audio)
    candidates = [plain]
    if cache_write is not None:
        candidates.append(replace(plain, input_tokens=audio, cache_write_tokens=text))
    if cache_write == "1h":
        candidates.append(replace(plain, input_tokens=audio, cache_write_1h_tokens=text))
    return Estimate(input_tokens, max_output_tokens,
                    max(cost_of(usage, sheet, requested_tier=tier) for usage in candidates))
