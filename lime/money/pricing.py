"""Points for tokens: the price of a usage, and the estimate a request is reserved at. Pure integer math.

Prices are integer micro-points per million tokens, so a cost is ``tokens * price / 1_000_000`` micro-points,
summed over the parts of a usage and rounded **up** once per request (a request never costs 0 by rounding when it
used priced tokens, and rounding can never be gamed by splitting a usage into parts).

Each part has its own rate: uncached input at the input price, cache reads at the cached-input price, cache
writes (Anthropic) at the input price, output (reasoning included) at the output price.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from lime.protocols.usage import Usage

__all__ = ["Estimate", "PriceSheet", "cost_of", "reservation_estimate"]

PER_MILLION = 1_000_000


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


class PriceSheet(Protocol):
    """A model's prices, as a value: the catalog's :class:`~lime.catalog.Model` has them, and so does a grant, which
    carries the prices a request was reserved at so that a catalog change never reprices a request in flight."""

    @property
    def input_price(self) -> int: ...
    @property
    def output_price(self) -> int: ...
    @property
    def cached_input_price(self) -> int: ...


def cost_of(usage: Usage, prices: PriceSheet) -> int:
    """What ``usage`` costs at ``prices``, in micro-points."""
    total = (
        (usage.input_tokens + usage.cache_write_tokens) * prices.input_price
        + usage.cached_input_tokens * prices.cached_input_price
        + usage.output_tokens * prices.output_price
    )
    return _ceil_div(total, PER_MILLION)


@dataclass(frozen=True)
class Estimate:
    input_tokens: int
    output_tokens: int
    points: int

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def reservation_estimate(prices: PriceSheet, input_tokens: int, max_output_tokens: int) -> Estimate:
    """What to hold before a request leaves: its estimated input (:mod:`lime.protocols.input_estimate`), and its
    full output cap, at list prices.

    Input is priced as uncached (cache reads are cheaper), so the hold is never below the likely cost;
    embeddings have no output.
    """
    input_tokens = max(1, input_tokens)
    usage = Usage(input_tokens=input_tokens, output_tokens=max_output_tokens)
    return Estimate(input_tokens, max_output_tokens, cost_of(usage, prices))
