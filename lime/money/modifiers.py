"""What a request asks for that the provider bills apart, read before anything is held. Pure.

A request says up front when it **will** use a premium service tier (OpenAI's ``service_tier: "priority"`` or
``"flex"``): on a model whose price sheet has no rates for that tier, Lime would pay the provider what it cannot
charge, so such a request is refused (:class:`~lime.protocols.errors.UnpricedModifier`, 400, not retryable);
otherwise the reservation is at the tier's rates.

A provider's own tool (Anthropic's ``web_search_20250305``-type tools, Responses' ``{"type": "web_search"}`` /
``web_search_preview`` / ``file_search``, chat's ``web_search_options``) is only **offered**: the model may never
call it, and coding agents offer one on every request (Codex CLI sends ``web_search``), so refusing it would refuse
the agent. A priced tool is reserved for, per its ``max_uses`` or :data:`~lime.money.pricing.DEFAULT_RESERVED_CALLS`
calls; an unpriced one for one call at the unpriced rule, and the calls the answer reports are charged by that rule
and counted in ``lime_unpriced_usage_total`` (docs/billing.md).

Anthropic's request ``service_tier`` (``auto``, ``standard_only``) asks for no premium: priority capacity is a
contract of the organisation, and an answer served at it without a price is charged by the unpriced rule.

An Anthropic request that marks ``cache_control`` may have its prompt written to the cache, at 1.25x the input price
for 5 minutes or 2x for an hour (``"ttl": "1h"``): no refusal (an unpriced write is charged by the unpriced rule),
but the reservation holds the input at the dearest write the marks can trigger (:attr:`Modifiers.cache_write`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lime.money.price_sheet import SERVICE_TIERS, PriceSheet
from lime.money.pricing import DEFAULT_RESERVED_CALLS
from lime.protocols.endpoints import Protocol
from lime.protocols.errors import UnpricedModifier

__all__ = ["Modifiers", "priced_modifiers"]

#: OpenAI tiers that cost what the base rates say.
_STANDARD_TIERS = frozenset({"auto", "default"})
#: Responses tool types run by the provider and billed per call, by the tool name a sheet prices.
_OPENAI_TOOLS = {"web_search": "web_search", "web_search_preview": "web_search",
                 "web_search_preview_2025_03_11": "web_search", "web_search_2025_08_26": "web_search",
                 "file_search": "file_search"}
#: Anthropic server tools (``web_search_20250305``, ``web_fetch_20250910``...): the name before the date.
_ANTHROPIC_TOOL = re.compile(r"^(web_search|web_fetch|code_execution)_\d{8}$")


@dataclass(frozen=True)
class Modifiers:
    """The tier to reserve at (``None``: the base rates), the tool calls to reserve for, and the longest cache
    lifetime the request marks (``"5m"``, ``"1h"``; ``None``: it writes nothing to the cache)."""

    tier: str | None = None
    tool_calls: tuple[tuple[str, int], ...] = ()
    cache_write: str | None = None


def priced_modifiers(protocol: Protocol, body: Mapping[str, Any], sheet: PriceSheet, model_id: str) -> Modifiers:
    """The modifiers ``body`` asks for, or :class:`UnpricedModifier` for a service tier without rates."""
    tier = _openai_tier(body, sheet, model_id) if protocol is Protocol.OPENAI else None
    calls: dict[str, int] = {}
    for tool, uses in _server_tools(protocol, body):
        if sheet.tool_price(tool) is None:
            uses = 1  # offered, maybe never called: one call held, any call charged by the unpriced rule
        calls[tool] = calls.get(tool, 0) + uses
    cache_write = _cache_write(body) if protocol is Protocol.ANTHROPIC else None
    return Modifiers(tier, tuple(sorted(calls.items())), cache_write)


def _cache_write(body: Mapping[str, Any]) -> str | None:
    """``"1h"`` if any ``cache_control`` asks for an hour, ``"5m"`` if any asks for the default, else ``None``.

    Walks objects and lists only (strings are the bulk of a body and never hold a mark); a mark sits on a system,
    message, content or tool block, or at the top level (automatic caching)."""
    found: str | None = None
    stack: list[Any] = [body]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            mark = node.get("cache_control")
            if isinstance(mark, Mapping):
                if mark.get("ttl") == "1h":
                    return "1h"
                found = "5m"
            stack.extend(value for value in node.values() if type(value) in (dict, list))
        elif type(node) is list:
            stack.extend(value for value in node if type(value) in (dict, list))
    return found


def _openai_tier(body: Mapping[str, Any], sheet: PriceSheet, model_id: str) -> str | None:
    tier = body.get("service_tier")
    if tier is None or tier in _STANDARD_TIERS:
        return None
    if not isinstance(tier, str) or tier not in SERVICE_TIERS or sheet.tier(tier) is None:
        shown = tier if isinstance(tier, str) else type(tier).__name__
        raise UnpricedModifier(
            f"The model `{model_id}` has no price for `service_tier: {shown[:40]}`, so it cannot be served at "
            "that tier. Leave `service_tier` out (or send `auto` / `default`).", param="service_tier")
    return tier


def _server_tools(protocol: Protocol, body: Mapping[str, Any]) -> list[tuple[str, int]]:
    """``(tool, calls to reserve)`` for each provider-run tool the request offers."""
    found: list[tuple[str, int]] = []
    if protocol is Protocol.OPENAI and isinstance(body.get("web_search_options"), Mapping):
        found.append(("web_search", DEFAULT_RESERVED_CALLS))  # chat's search models search on every request
    tools = body.get("tools")
    if not isinstance(tools, list):
        return found
    for tool in tools:
        kind = tool.get("type") if isinstance(tool, Mapping) else None
        if not isinstance(kind, str):
            continue
        if protocol is Protocol.OPENAI:
            name = _OPENAI_TOOLS.get(kind)
        else:
            match = _ANTHROPIC_TOOL.match(kind)
            name = match.group(1) if match else None
        if name is None:
            continue
        uses = tool.get("max_uses")
        bounded = isinstance(uses, int) and not isinstance(uses, bool) and 0 < uses <= 1000
        found.append((name, uses if bounded else DEFAULT_RESERVED_CALLS))
    return found
