"""``lime model update`` and ``lime model import-prices``: a model's price sheet, typed or imported.

Prices are integer micro-points per million tokens (per call for tools). ``import-prices`` reads LiteLLM's cost map
from a path or, without one, from the installed ``litellm`` package (not a dependency of Lime), shows the sheet
before and after, and writes it only with ``--apply``, recording where it came from.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import psycopg

from lime import admin
from lime.money.litellm_prices import sheet_from_litellm
from lime.money.price_sheet import PriceSheet, Rates, sheet_from_dict, sheet_to_dict
from lime.protocols.errors import BadRequest, NotFound

__all__ = ["add_price_flags", "import_prices", "sheet_with_flags", "update_prices"]

Conn = psycopg.AsyncConnection[Any]
COST_MAP = "model_prices_and_context_window_backup.json"
_OPTIONAL = ("cache_write_5m", "cache_write_1h", "audio_input", "audio_output")


def add_price_flags(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    default = 0 if defaults else None
    for price in ("input", "output", "cached-input"):
        parser.add_argument(f"--{price}-price", type=int, default=default, help="micro-points per million tokens")
    for part in _OPTIONAL:
        parser.add_argument(f"--{part.replace('_', '-')}-price", type=int,
                            help="micro-points per million tokens (unset: see docs/billing.md)")
    parser.add_argument("--tool-call-price", action="append", default=[], metavar="TOOL=PRICE",
                        help="micro-points per call of a provider tool, e.g. web_search=10000 (repeatable)")
    parser.add_argument("--tier-price", action="append", default=[], metavar="TIER=IN,OUT,CACHED",
                        help="a service tier's prices, e.g. priority=2500000,20000000,250000 (repeatable)")
    parser.add_argument("--long-context", metavar="ABOVE=IN,OUT,CACHED",
                        help="prices for a request above ABOVE input tokens, e.g. 200000=6000000,22500000,600000")
    parser.add_argument("--image-tokens", type=int, metavar="N",
                        help="input tokens an image is held at for this model (unset: 4000; gpt-4o-mini ~48000)")


def _triple(text: str, what: str) -> tuple[str, dict[str, int]]:
    name, sep, values = text.partition("=")
    try:
        numbers = [int(part) for part in values.split(",")]
    except ValueError:
        numbers = []
    if not sep or len(numbers) != 3:
        raise BadRequest(f"{what} takes NAME=INPUT,OUTPUT,CACHED_INPUT; got {text!r}")
    return name, dict(zip(("input", "output", "cached_input"), numbers, strict=True))


def sheet_with_flags(current: PriceSheet, args: argparse.Namespace) -> PriceSheet:
    """``current`` with every price flag given applied over it."""
    extras = sheet_to_dict(current)
    base = current.base
    base = Rates(*(getattr(args, f"{name}_price") if getattr(args, f"{name}_price") is not None
                   else getattr(base, name) for name in ("input", "output", "cached_input")))
    for part in _OPTIONAL:
        if (value := getattr(args, f"{part}_price")) is not None:
            extras[part] = value
    for text in args.tool_call_price:
        tool, sep, price = text.partition("=")
        if not sep or not price.isdigit():
            raise BadRequest(f"--tool-call-price takes TOOL=PRICE; got {text!r}")
        extras.setdefault("tool_calls", {})[tool] = int(price)
    for text in args.tier_price:
        tier, rates = _triple(text, "--tier-price")
        extras.setdefault("tiers", {})[tier] = rates
    if args.long_context:
        above, rates = _triple(args.long_context, "--long-context")
        if not above.isdigit():
            raise BadRequest(f"--long-context takes ABOVE=INPUT,OUTPUT,CACHED_INPUT; got {args.long_context!r}")
        extras["long_context"] = {"above": int(above), **rates}
    if args.image_tokens is not None:
        extras["image_tokens"] = args.image_tokens
    return sheet_from_dict(base, extras)


def _lines(sheet: PriceSheet) -> dict[str, str]:
    flat = {"input": sheet.base.input, "output": sheet.base.output, "cached_input": sheet.base.cached_input}
    for key, value in sheet_to_dict(sheet).items():
        if isinstance(value, dict):
            for sub, inner in value.items():
                flat[f"{key}.{sub}"] = inner
        else:
            flat[key] = value
    return {key: json.dumps(value, sort_keys=True) for key, value in flat.items()}


def diff(old: PriceSheet, new: PriceSheet) -> list[str]:
    """One line per part that changes: ``part: old -> new`` (``-``: unset)."""
    before, after = _lines(old), _lines(new)
    return [f"  {key}: {before.get(key, '-')} -> {after.get(key, '-')}"
            for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]


async def update_prices(args: argparse.Namespace, conn: Conn) -> None:
    current, _ = await admin.model_prices(conn, args.id)
    new = sheet_with_flags(current, args)
    await admin.set_prices(conn, args.id, new, None)  # typed by hand: no imported source any more
    print("\n".join([f"model {args.id} prices updated", *diff(current, new)]) if diff(current, new)
          else f"model {args.id}: no price changed")


def _cost_map(path: str | None) -> tuple[Path, str | None]:
    """The file to read, and the litellm version when it comes from the installed package."""
    if path:
        return Path(path), None
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        raise NotFound("No cost map given and the `litellm` package is not installed: pass --file PATH (LiteLLM's "
                       f"model_prices_and_context_window.json), or `pip install litellm` to read its {COST_MAP}.")
    from importlib.metadata import version

    return Path(next(iter(spec.submodule_search_locations))) / COST_MAP, version("litellm")


async def import_prices(args: argparse.Namespace, conn: Conn) -> None:
    path, litellm_version = _cost_map(args.file)
    try:
        raw = path.read_bytes()
        cost_map = json.loads(raw)
    except (OSError, ValueError) as error:
        raise BadRequest(f"Cannot read the cost map {path}: {error}") from None
    entry = cost_map.get(args.source_key) if isinstance(cost_map, dict) else None
    if not isinstance(entry, dict):
        raise NotFound(f"The cost map {path} has no entry `{args.source_key}`.")
    try:
        rate, markup = Decimal(args.points_per_usd), Decimal(args.markup)
    except InvalidOperation:
        raise BadRequest("--points-per-usd and --markup take numbers.") from None
    if rate <= 0 or markup < 0:
        raise BadRequest("--points-per-usd must be above 0 and --markup at least 0.")
    new = sheet_from_litellm(entry, points_per_usd=rate, markup_percent=markup)
    current, old_source = await admin.model_prices(conn, args.id)
    changes = diff(current, new)
    print(f"model {args.id} from `{args.source_key}` in {path} at {rate} points per USD, markup {markup} %:")
    print("\n".join(changes) if changes else "  no price changes")
    if not args.apply:
        print("(not applied: run again with --apply to write these prices)")
        return
    source = {"file": str(path), "key": args.source_key, "sha256": hashlib.sha256(raw).hexdigest(),
              "litellm_version": litellm_version, "imported_at": datetime.now(UTC).isoformat(timespec="seconds"),
              "points_per_usd": str(rate), "markup_percent": str(markup)}
    await admin.set_prices(conn, args.id, replace(new), source)
    print(f"applied; source recorded (previous: {json.dumps(old_source) if old_source else 'typed by hand'})")
