"""What :mod:`lime.money.pricing` pins: integer micro-points, each usage part at its own rate, rounded up once.

* each part of a usage is priced at its own rate: uncached input and cache writes at the input price, cache reads
  at the cached-input price, output at the output price; reasoning tokens are part of the output and are not
  charged a second time;
* the sum over the parts is rounded **up**, once per request: exact when it is a whole number of micro-points,
  never 0 when a priced token was used, and splitting a usage into parts can never make it cheaper (it can add at
  most one micro-point per extra part);
* a cost is an ``int``, never negative, and monotone in every token count and every price;
* the reservation estimate covers the cost of any usage that stays within it (input up to the estimated input,
  part of it possibly read from the cache at a price not above the input price, output up to the cap, no cache
  writes).
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lime.catalog import Model
from lime.money.price_sheet import PriceSheet, model_sheet
from lime.money.pricing import PER_MILLION, cost_of, reservation_estimate
from lime.protocols.endpoints import ModelKind
from lime.protocols.usage import Usage

PRICES = st.integers(min_value=0, max_value=100 * PER_MILLION)
TOKENS = st.integers(min_value=0, max_value=10_000_000)
PARTS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens")


def model(input_price: int = 0, output_price: int = 0, cached_input_price: int = 0) -> Model:
    return Model(id="m", upstream_id="u", upstream_model="um", kind=ModelKind.CHAT, input_price=input_price,
                 output_price=output_price, cached_input_price=cached_input_price)


models = st.builds(model, PRICES, PRICES, PRICES)
usages = st.builds(Usage, TOKENS, TOKENS, TOKENS, TOKENS, TOKENS)


def sheet(m: Model) -> PriceSheet:
    return model_sheet(m.input_price, m.output_price, m.cached_input_price, m.price_parts)


def cost_at(usage: Usage, m: Model) -> int:
    return cost_of(usage, sheet(m))


def exact(usage: Usage, m: Model) -> Fraction:
    """The cost before rounding, computed independently with fractions."""
    return (Fraction(usage.input_tokens * m.input_price, PER_MILLION)
            + Fraction(usage.cache_write_tokens * m.input_price, PER_MILLION)
            + Fraction(usage.cached_input_tokens * m.cached_input_price, PER_MILLION)
            + Fraction(usage.output_tokens * m.output_price, PER_MILLION))


def plus(a: Usage, b: Usage) -> Usage:
    return Usage(*(getattr(a, name) + getattr(b, name) for name in (*PARTS, "reasoning_tokens")))


# -- each part at its own rate ----------------------------------------------------------------------------------

PRICED = model(input_price=3 * PER_MILLION, output_price=15 * PER_MILLION, cached_input_price=PER_MILLION // 2)


@pytest.mark.parametrize(("usage", "expected"), [
    (Usage(input_tokens=1_000_000), 3 * PER_MILLION),
    (Usage(cached_input_tokens=1_000_000), PER_MILLION // 2),
    (Usage(cache_write_tokens=1_000_000), 3 * PER_MILLION),  # written to the cache: the input price
    (Usage(output_tokens=1_000_000), 15 * PER_MILLION),
    (Usage(output_tokens=1_000_000, reasoning_tokens=400_000), 15 * PER_MILLION),  # reasoning is in the output
    (Usage(reasoning_tokens=1_000_000), 0),  # information only, never charged on its own
    (Usage(input_tokens=10, cached_input_tokens=20, cache_write_tokens=30, output_tokens=40),
     (10 + 30) * 3 + 20 // 2 + 40 * 15),  # input and cache writes at 3, cache reads at 0.5, output at 15
    (Usage(), 0),
])
def test_each_part_at_its_own_rate(usage: Usage, expected: int) -> None:
    assert cost_at(usage, PRICED) == expected


def test_rounding_is_up_and_once_per_request() -> None:
    cheap = model(input_price=1, output_price=1, cached_input_price=1)
    # One priced token costs a millionth of a micro-point: rounded up to 1, never to 0.
    assert cost_at(Usage(input_tokens=1), cheap) == 1
    # Four parts of one token each are rounded once (4 millionths -> 1), not once per part (-> 4).
    assert cost_at(Usage(input_tokens=1, cached_input_tokens=1, cache_write_tokens=1, output_tokens=1), cheap) == 1
    assert cost_at(Usage(input_tokens=PER_MILLION), cheap) == 1
    assert cost_at(Usage(input_tokens=PER_MILLION + 1), cheap) == 2
    # A free model is free, whatever the usage.
    assert cost_at(Usage(input_tokens=10**9, output_tokens=10**9), model()) == 0


def test_large_amounts_stay_exact_integers() -> None:
    # Integer math, no floats: a price and token count whose product exceeds 2**53 is still exact.
    m = model(input_price=999_999_999_999, output_price=1)
    usage = Usage(input_tokens=123_456_789_012, output_tokens=1)
    expected = -(-(123_456_789_012 * 999_999_999_999 + 1) // PER_MILLION)
    assert cost_at(usage, m) == expected
    assert isinstance(cost_at(usage, m), int)


# -- properties -------------------------------------------------------------------------------------------------


@given(usages, models)
def test_cost_is_the_exact_price_rounded_up_once(usage: Usage, m: Model) -> None:
    cost = cost_at(usage, m)
    assert type(cost) is int
    assert cost >= 0
    assert cost - 1 < exact(usage, m) <= cost  # the ceiling of the exact value


@given(usages, models)
def test_cost_is_exact_when_divisible(usage: Usage, m: Model) -> None:
    # Prices that are whole points per token: nothing to round.
    whole = model(m.input_price // PER_MILLION * PER_MILLION, m.output_price // PER_MILLION * PER_MILLION,
                  m.cached_input_price // PER_MILLION * PER_MILLION)
    assert cost_at(usage, whole) == exact(usage, whole)
    # Token counts in whole millions: nothing to round either.
    millions = Usage(*(getattr(usage, name) // PER_MILLION * PER_MILLION for name in PARTS))
    assert cost_at(millions, m) == exact(millions, m)


@given(usages, models, st.sampled_from(PARTS), st.integers(min_value=1, max_value=10_000_000))
def test_cost_is_monotone_in_every_token_count(usage: Usage, m: Model, part: str, more: int) -> None:
    bigger = Usage(**{name: getattr(usage, name) + (more if name == part else 0)
                      for name in (*PARTS, "reasoning_tokens")})
    assert cost_at(bigger, m) >= cost_at(usage, m)


@given(usages, models, st.sampled_from(("input_price", "output_price", "cached_input_price")),
       st.integers(min_value=1, max_value=PER_MILLION))
def test_cost_is_monotone_in_every_price(usage: Usage, m: Model, price: str, more: int) -> None:
    prices = {name: getattr(m, name) for name in ("input_price", "output_price", "cached_input_price")}
    prices[price] += more
    assert cost_at(usage, model(**prices)) >= cost_at(usage, m)


@given(usages, models)
def test_priced_usage_never_costs_zero(usage: Usage, m: Model) -> None:
    if exact(usage, m) > 0:
        assert cost_at(usage, m) >= 1


@given(usages, usages, models)
def test_splitting_a_usage_never_makes_it_cheaper(a: Usage, b: Usage, m: Model) -> None:
    whole = cost_at(plus(a, b), m)
    split = cost_at(a, m) + cost_at(b, m)
    assert whole <= split <= whole + 1


# -- the reservation --------------------------------------------------------------------------------------------


def test_estimate_is_input_plus_cap_at_list_prices() -> None:
    estimate = reservation_estimate(sheet(PRICED), input_tokens=1000, max_output_tokens=1000)
    assert (estimate.input_tokens, estimate.output_tokens, estimate.tokens) == (1000, 1000, 2000)
    assert estimate.points == 1000 * 3 + 1000 * 15
    embeddings = reservation_estimate(sheet(PRICED), input_tokens=3, max_output_tokens=0)
    assert (embeddings.input_tokens, embeddings.output_tokens, embeddings.points) == (3, 0, 9)
    assert reservation_estimate(sheet(PRICED), input_tokens=0, max_output_tokens=0).input_tokens == 1  # never nothing


@st.composite
def within_estimate(draw: st.DrawFn) -> tuple[Model, int, int, Usage]:
    """A model whose cache reads are not dearer than its input, a reservation, and a usage that fits in it."""
    input_price = draw(PRICES)
    m = model(input_price, draw(PRICES), draw(st.integers(min_value=0, max_value=input_price)))
    input_tokens = draw(st.integers(min_value=1, max_value=1_000_000))
    cap = draw(st.integers(min_value=0, max_value=1_000_000))
    total_input = draw(st.integers(min_value=0, max_value=input_tokens))
    cached = draw(st.integers(min_value=0, max_value=total_input))
    output = draw(st.integers(min_value=0, max_value=cap))
    reasoning = draw(st.integers(min_value=0, max_value=output))
    usage = Usage(input_tokens=total_input - cached, cached_input_tokens=cached, output_tokens=output,
                  reasoning_tokens=reasoning)
    return m, input_tokens, cap, usage


@given(within_estimate())
def test_reservation_covers_any_usage_within_it(case: tuple[Model, int, int, Usage]) -> None:
    m, input_tokens, cap, usage = case
    estimate = reservation_estimate(sheet(m), input_tokens, cap)
    assert usage.total_input_tokens <= estimate.input_tokens
    assert usage.output_tokens <= estimate.output_tokens
    assert cost_at(usage, m) <= estimate.points
    assert estimate.points == cost_at(Usage(input_tokens=estimate.input_tokens, output_tokens=cap), m)
