"""A model's price sheet: every part a provider bills, each optional but the three base prices. Pure.

Token prices are integer micro-points per million tokens; a server tool's price is micro-points per call. The
parts (docs/billing.md, "The price sheet"):

* ``base``: input, output, cached input, and optionally cache writes by lifetime (5 minutes, 1 hour) and audio
  input and output;
* ``tiers``: full rates for a service tier (``priority``, ``flex``), as LiteLLM's ``*_priority`` / ``*_flex``
  prices express them;
* ``long_context``: rates for a request whose input is above a number of tokens, which then price the whole
  request (Anthropic's and Gemini's above-200k rates);
* ``tool_calls``: a price per call of a provider's own tool (``web_search``, ``file_search``, ``web_fetch``);
* ``image_tokens``: the input tokens one image may count for this model, when its provider's formula tops out above
  the estimate's default (gpt-4o-mini multiplies its image tokens ~33x): not a price, but what the reservation
  holds an image at (:mod:`lime.protocols.input_estimate`).

The sheet has one dictionary form (the admin API's and the ``models.price_sheet`` column's, for the parts beyond
the three base columns) and one compact string form that a grant carries (:func:`encode_prices`), versioned so a
request reserved by an older authz is still priced by a newer extproc.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from lime.protocols.errors import BadRequest

__all__ = ["MAX_IMAGE_TOKENS", "PREMIUM_TIERS", "SERVICE_TIERS", "GrantPrices", "LongContext", "PriceSheet", "Rates",
           "decode_prices", "encode_prices", "model_sheet", "sheet_from_dict", "sheet_to_dict"]

#: The tiers a sheet may price. A premium tier served without its price is unpriced (charged at the model's
#: highest rate); flex served without its price is charged at the base rates, which are higher.
SERVICE_TIERS = ("priority", "flex")
PREMIUM_TIERS = frozenset({"priority", "scale"})
#: Names of per-call tools: lower-case words, as the providers name them.
_TOOL_NAME = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
#: A price above this is a typo, not a price (and would overflow PostgreSQL's bigint once multiplied).
MAX_PRICE = 10**15
#: More tokens than any context window holds: an image counted above this is a typo.
MAX_IMAGE_TOKENS = 10_000_000


@dataclass(frozen=True)
class Rates:
    """Token prices, micro-points per million tokens. ``None``: not priced (see :mod:`lime.money.pricing`)."""

    input: int = 0
    output: int = 0
    cached_input: int = 0
    cache_write_5m: int | None = None
    cache_write_1h: int | None = None
    audio_input: int | None = None
    audio_output: int | None = None

    def configured(self) -> list[int]:
        return [value for value in (getattr(self, name) for name in _RATE_NAMES) if value is not None]


_RATE_NAMES = tuple(f.name for f in fields(Rates))


@dataclass(frozen=True)
class LongContext:
    """Rates for a request with more than ``above`` input tokens. Unset parts are the base's."""

    above: int
    rates: Rates


@dataclass(frozen=True)
class PriceSheet:
    base: Rates = Rates()
    #: ``(tier, rates)``, sorted by tier.
    tiers: tuple[tuple[str, Rates], ...] = ()
    long_context: LongContext | None = None
    #: ``(tool, micro-points per call)``, sorted by tool.
    tool_calls: tuple[tuple[str, int], ...] = ()
    #: Input tokens an image is held at for this model; ``None``: the estimate's default.
    image_tokens: int | None = None

    def tier(self, name: str | None) -> Rates | None:
        return dict(self.tiers).get(name) if name and self.tiers else None

    def tool_price(self, name: str) -> int | None:
        return dict(self.tool_calls).get(name)

    def highest_rate(self) -> int:
        """The highest token price anywhere on the sheet: what an unpriced part is charged at."""
        rates = [self.base, *(rates for _, rates in self.tiers)]
        if self.long_context is not None:
            rates.append(self.long_context.rates)
        return max(value for r in rates for value in r.configured())


@functools.lru_cache(maxsize=4096)
def model_sheet(input_price: int, output_price: int, cached_input_price: int, price_parts: str = "") -> PriceSheet:
    """A catalog model's sheet (:class:`~lime.catalog.Model`'s prices and its ``price_parts``), built once per
    distinct sheet, not per request."""
    base = Rates(input_price, output_price, cached_input_price)
    return sheet_from_dict(base, json.loads(price_parts)) if price_parts else PriceSheet(base)


# -- the dictionary form --------------------------------------------------------------------------------------

def _price(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PRICE:
        raise BadRequest(f"`{what}` must be a whole number of micro-points from 0 to {MAX_PRICE}.", param=what)
    return value


def _rates(data: Any, what: str, *, base: bool) -> Rates:
    if not isinstance(data, Mapping):
        raise BadRequest(f"`{what}` must be an object of prices.", param=what)
    unknown = set(data) - set(_RATE_NAMES)
    if unknown:
        raise BadRequest(f"`{what}` has unknown prices: {', '.join(sorted(map(str, unknown)))}; known: "
                         f"{', '.join(_RATE_NAMES)}.", param=what)
    values: dict[str, Any] = {}
    for name in _RATE_NAMES:
        value = data.get(name)
        required = name in _RATE_NAMES[:3]
        if value is None and required and not base:
            raise BadRequest(f"`{what}.{name}` is required.", param=what)
        values[name] = (0 if required else None) if value is None else _price(value, f"{what}.{name}")
    return Rates(**values)


def sheet_from_dict(base: Rates, extras: Mapping[str, Any] | None) -> PriceSheet:
    """A sheet from its base rates and the dictionary of its other parts; :class:`BadRequest` names what is wrong.

    ``extras`` may hold ``cache_write_5m``, ``cache_write_1h``, ``audio_input``, ``audio_output`` (base parts
    beyond the three columns), ``tiers`` ``{"priority": {rates}}``, ``long_context`` ``{"above": n, rates}`` and
    ``tool_calls`` ``{"web_search": price per call}`` and ``image_tokens`` (tokens per image).
    """
    extras = dict(extras or {})
    image_tokens = extras.pop("image_tokens", None)
    if image_tokens is not None and (isinstance(image_tokens, bool) or not isinstance(image_tokens, int)
                                     or not 1 <= image_tokens <= MAX_IMAGE_TOKENS):
        raise BadRequest(f"`image_tokens` must be a number of tokens from 1 to {MAX_IMAGE_TOKENS}.",
                         param="image_tokens")
    parts = {name: extras.pop(name) for name in _RATE_NAMES[3:] if name in extras}
    merged = _rates({**{n: getattr(base, n) for n in _RATE_NAMES[:3]}, **parts}, "prices", base=True)
    tiers_data = extras.pop("tiers", None) or {}
    long_data = extras.pop("long_context", None)
    tools_data = extras.pop("tool_calls", None) or {}
    if extras:
        raise BadRequest(f"Unknown price sheet parts: {', '.join(sorted(map(str, extras)))}.", param="prices")
    if not isinstance(tiers_data, Mapping) or not isinstance(tools_data, Mapping):
        raise BadRequest("`tiers` and `tool_calls` must be objects.", param="prices")
    tiers = []
    for name, data in sorted(tiers_data.items()):
        if name not in SERVICE_TIERS:
            raise BadRequest(f"`tiers` may price {', '.join(SERVICE_TIERS)}; got `{name}`.", param="tiers")
        tiers.append((name, _rates(data, f"tiers.{name}", base=False)))
    long_context = None
    if long_data is not None:
        if not isinstance(long_data, Mapping):
            raise BadRequest("`long_context` must be an object.", param="long_context")
        rates = dict(long_data)
        above = rates.pop("above", None)
        if isinstance(above, bool) or not isinstance(above, int) or above < 1:
            raise BadRequest("`long_context.above` must be a number of input tokens, at least 1.",
                             param="long_context")
        long_context = LongContext(above, _rates(rates, "long_context", base=False))
    tools = []
    for name, price in sorted(tools_data.items()):
        if not isinstance(name, str) or not name or not set(name) <= _TOOL_NAME:
            raise BadRequest(f"`tool_calls` names a tool like `web_search`; got `{name}`.", param="tool_calls")
        tools.append((name, _price(price, f"tool_calls.{name}")))
    sheet = PriceSheet(merged, tuple(tiers), long_context, tuple(tools), image_tokens)
    _check_premiums(sheet)
    return sheet


def _check_premiums(sheet: PriceSheet) -> None:
    """Premium rates are never below the base: a request that crosses the long-context line or asks for priority
    never costs less than at the base rates (and the cost stays monotone in every token count)."""
    premiums = [(f"tiers.{name}", rates) for name, rates in sheet.tiers if name in PREMIUM_TIERS]
    if sheet.long_context is not None:
        premiums.append(("long_context", sheet.long_context.rates))
    for what, rates in premiums:
        for name in _RATE_NAMES:
            value, floor = getattr(rates, name), getattr(sheet.base, name)
            if value is not None and floor is not None and value < floor:
                raise BadRequest(f"`{what}.{name}` ({value}) is below the base price ({floor}): a premium "
                                 "never costs less.", param=what.split(".")[0])
    if sheet.base.cached_input > sheet.base.input:
        raise BadRequest("The cached input price must not exceed the input price.", param="cached_input_price")


def _rates_dict(rates: Rates, *, skip_base: bool = False) -> dict[str, int]:
    names = _RATE_NAMES[3:] if skip_base else _RATE_NAMES
    return {name: value for name in names if (value := getattr(rates, name)) is not None}


def sheet_to_dict(sheet: PriceSheet) -> dict[str, Any]:
    """The parts beyond the three base prices, as :func:`sheet_from_dict` takes them (``{}``: none)."""
    out: dict[str, Any] = _rates_dict(sheet.base, skip_base=True)
    if sheet.tiers:
        out["tiers"] = {name: _rates_dict(rates) for name, rates in sheet.tiers}
    if sheet.long_context is not None:
        out["long_context"] = {"above": sheet.long_context.above, **_rates_dict(sheet.long_context.rates)}
    if sheet.tool_calls:
        out["tool_calls"] = dict(sheet.tool_calls)
    if sheet.image_tokens is not None:
        out["image_tokens"] = sheet.image_tokens
    return out


# -- the compact form a grant carries ---------------------------------------------------------------------------

_VERSION = "p1"
_SHORT = dict(zip(_RATE_NAMES, ("i", "o", "c", "w5", "w1", "ai", "ao"), strict=True))
_LONG = {short: name for name, short in _SHORT.items()}


def _short(rates: Rates) -> dict[str, int]:
    return {_SHORT[name]: value for name, value in _rates_dict(rates).items()}


def _unshort(data: Mapping[str, int]) -> Rates:
    return Rates(**{_LONG[key]: value for key, value in data.items()})


@dataclass(frozen=True)
class GrantPrices:
    """What a grant carries to price its answer: the sheet, the service tier the request asked for (it prices the
    answer when the answer does not say which tier it got), and whether the request offered the provider's own
    tools (then its reported input adds up the server's iterations, fact 26, and the long-context line is judged
    by the request's input estimate)."""

    sheet: PriceSheet
    tier: str | None = None
    server_tools: bool = False


@functools.lru_cache(maxsize=1024)
def encode_prices(prices: GrantPrices) -> str:
    """One short string: ``p1`` and a JSON object with one-letter keys."""
    sheet = prices.sheet
    data: dict[str, Any] = {"b": _short(sheet.base)}
    if sheet.tiers:
        data["t"] = {name: _short(rates) for name, rates in sheet.tiers}
    if sheet.long_context is not None:
        data["l"] = [sheet.long_context.above, _short(sheet.long_context.rates)]
    if sheet.tool_calls:
        data["c"] = dict(sheet.tool_calls)
    if sheet.image_tokens is not None:
        data["m"] = sheet.image_tokens
    if prices.tier:
        data["r"] = prices.tier
    if prices.server_tools:
        data["s"] = 1
    return _VERSION + json.dumps(data, separators=(",", ":"), sort_keys=True)


@functools.lru_cache(maxsize=1024)
def decode_prices(text: str) -> GrantPrices:
    """The inverse of :func:`encode_prices`; ``ValueError`` for a string it did not make."""
    if not text.startswith(_VERSION):
        raise ValueError(f"not a price sheet of version {_VERSION}: {text[:20]!r}")
    try:
        data = json.loads(text[len(_VERSION):])
        long_context = None
        if "l" in data:
            above, rates = data["l"]
            long_context = LongContext(int(above), _unshort(rates))
        sheet = PriceSheet(
            base=_unshort(data["b"]),
            tiers=tuple(sorted((name, _unshort(rates)) for name, rates in data.get("t", {}).items())),
            long_context=long_context,
            tool_calls=tuple(sorted((name, int(price)) for name, price in data.get("c", {}).items())),
            image_tokens=int(data["m"]) if "m" in data else None,
        )
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"a broken price sheet: {error}") from None
    return GrantPrices(sheet, data.get("r"), bool(data.get("s")))
