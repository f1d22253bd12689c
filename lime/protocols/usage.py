"""Token usage as each protocol reports it, normalised into one :class:`Usage` that pricing can read.

The providers disagree on what their fields include (tests/fixtures/providers/README.md, facts 8, 9, 12-15):

* OpenAI ``prompt_tokens`` / ``input_tokens`` *include* the cached tokens (``*_details.cached_tokens``);
* Anthropic ``input_tokens`` *excludes* both cache reads and cache writes, which come as their own fields;
* reasoning tokens are part of the output count on both OpenAI APIs.

So :class:`Usage` keeps disjoint parts that add up to what was processed: ``input_tokens`` (not from the cache),
``cached_input_tokens`` (read from the cache), ``cache_write_tokens`` and ``cache_write_1h_tokens`` (written to it
with a 5-minute or a 1-hour lifetime, Anthropic only) and ``output_tokens`` (reasoning included;
``reasoning_tokens`` says how many of them, for information only).

Some parts are priced apart although the providers count them inside a total (facts 21-31): ``audio_input_tokens``
is the audio share of ``input_tokens``, ``audio_output_tokens`` the audio share of ``output_tokens`` (OpenAI's
``*_details.audio_tokens``). ``server_tool_calls`` counts the calls the provider ran itself (Anthropic's
``server_tool_use.*_requests``, Responses' ``web_search_call`` / ``file_search_call`` items), billed per call, and
``service_tier`` is the tier the provider says it served (final only at the end of a stream).

"Not reported" is not 0 (STYLE.md, idea 2): a usage object without its input or output count says so in
``unreported``, and settlement estimates that part instead of charging nothing for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "Usage",
    "anthropic_usage",
    "chat_usage",
    "embeddings_usage",
    "responses_usage",
    "with_body_facts",
]


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    cached_input_tokens: int = 0
    #: Written to the cache for 5 minutes, or with no lifetime in the answer (5 minutes is Anthropic's default).
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_1h_tokens: int = 0
    #: Of ``input_tokens`` / ``output_tokens``: the audio share, which has its own price.
    audio_input_tokens: int = 0
    audio_output_tokens: int = 0
    #: Calls of the provider's own tools, by tool (``web_search``, ``web_fetch``, ``file_search``), sorted by name.
    server_tool_calls: tuple[tuple[str, int], ...] = ()
    #: The tier the provider served at (``default``, ``priority``, ``flex``, Anthropic's ``standard``); ``None``:
    #: not reported. Not part of equality, like ``unreported``: two usages are equal when their counts are.
    service_tier: str | None = field(default=None, compare=False)
    #: The parts the upstream's usage object left out (``"input"``, ``"output"``): their counts above are 0 for
    #: want of a number, not because nothing was used. Not part of equality: two usages are equal when their
    #: counts are.
    unreported: frozenset[str] = field(default=frozenset(), compare=False)

    @property
    def total_input_tokens(self) -> int:
        return self.input_tokens + self.cached_input_tokens + self.cache_write_tokens + self.cache_write_1h_tokens

    @property
    def total_tokens(self) -> int:
        return self.total_input_tokens + self.output_tokens


def _count(source: Mapping[str, Any] | None, name: str) -> int:
    """A token count, or 0 when it is absent, null or not a count (a parser must not break on odd input)."""
    if not isinstance(source, Mapping):
        return 0
    value = source.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return value


def _reported(source: Mapping[str, Any], name: str) -> bool:
    value = source.get(name)
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _unreported(**present: bool) -> frozenset[str]:
    return frozenset(part for part, there in present.items() if not there)


def _details(source: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    value = source.get(name)
    return value if isinstance(value, Mapping) else None


def _openai_usage(usage: Any, names: tuple[str, str, str, str]) -> Usage | None:
    if not isinstance(usage, Mapping):
        return None
    input_name, input_details, output_name, output_details = names
    total_input = _count(usage, input_name)
    cached = min(_count(_details(usage, input_details), "cached_tokens"), total_input)
    output = _count(usage, output_name)
    return Usage(
        input_tokens=total_input - cached,
        cached_input_tokens=cached,
        output_tokens=output,
        reasoning_tokens=_count(_details(usage, output_details), "reasoning_tokens"),
        # Audio is inside the totals (fact 31); it can only be a share of what was not read from the cache.
        audio_input_tokens=min(_count(_details(usage, input_details), "audio_tokens"), total_input - cached),
        audio_output_tokens=min(_count(_details(usage, output_details), "audio_tokens"), output),
        unreported=_unreported(input=_reported(usage, input_name), output=_reported(usage, output_name)),
    )


def chat_usage(usage: Any) -> Usage | None:
    """The ``usage`` object of a Chat Completions body or of a stream's final chunk."""
    return _openai_usage(usage, ("prompt_tokens", "prompt_tokens_details", "completion_tokens",
                                 "completion_tokens_details"))


def responses_usage(usage: Any) -> Usage | None:
    """The ``usage`` object of a Responses body (or of ``response.completed`` in a stream): the same shape as
    chat's under other names."""
    return _openai_usage(usage, ("input_tokens", "input_tokens_details", "output_tokens", "output_tokens_details"))


def embeddings_usage(usage: Any) -> Usage | None:
    """Embeddings report the input side only."""
    if not isinstance(usage, Mapping):
        return None
    return Usage(input_tokens=_count(usage, "prompt_tokens"),
                 unreported=_unreported(input=_reported(usage, "prompt_tokens")))


def anthropic_usage(usage: Any, earlier: Usage | None = None) -> Usage | None:
    """An Anthropic ``usage`` object, merged over what ``message_start`` said when this is a ``message_delta``.

    ``output_tokens`` is cumulative in every event, so the latest value wins, never a sum (fact 14). The input
    side comes from this object when it has it (current API versions repeat it), else from ``earlier``.
    """
    if not isinstance(usage, Mapping):
        return earlier
    base = earlier or Usage(unreported=frozenset({"input", "output"}))

    def latest(name: str, fallback: int) -> int:
        return _count(usage, name) if name in usage and usage[name] is not None else fallback

    write_5m, write_1h = _cache_writes(usage, base)
    tier = usage.get("service_tier")
    return Usage(
        input_tokens=latest("input_tokens", base.input_tokens),
        cached_input_tokens=latest("cache_read_input_tokens", base.cached_input_tokens),
        cache_write_tokens=write_5m,
        cache_write_1h_tokens=write_1h,
        output_tokens=latest("output_tokens", base.output_tokens),
        server_tool_calls=_anthropic_tool_calls(usage.get("server_tool_use")) or base.server_tool_calls,
        service_tier=tier if isinstance(tier, str) else base.service_tier,
        # A part is reported once any event gave it (message_start gives input, every event gives output).
        unreported=_unreported(input=_reported(usage, "input_tokens") or "input" not in base.unreported,
                               output=_reported(usage, "output_tokens") or "output" not in base.unreported),
    )


def _cache_writes(usage: Mapping[str, Any], base: Usage) -> tuple[int, int]:
    """Cache writes split by lifetime: ``(5 minutes, 1 hour)``.

    ``cache_creation_input_tokens`` is the total and ``cache_creation.ephemeral_{5m,1h}_input_tokens`` its split
    (fact 21). A stream's ``message_delta`` repeats the total without the split, and the total can grow past the
    split ``message_start`` gave (search results written behind the request's breakpoints, fact 22): the 1-hour part
    is what some event labelled so, and everything else is 5 minutes, the default lifetime.
    """
    split = _details(usage, "cache_creation")
    one_hour = _count(split, "ephemeral_1h_input_tokens") if split is not None else base.cache_write_1h_tokens
    if "cache_creation_input_tokens" in usage and usage["cache_creation_input_tokens"] is not None:
        total = _count(usage, "cache_creation_input_tokens")
    elif split is not None:
        total = _count(split, "ephemeral_5m_input_tokens") + one_hour
    else:
        total = base.cache_write_tokens + base.cache_write_1h_tokens
    one_hour = min(one_hour, total)
    return total - one_hour, one_hour


def _anthropic_tool_calls(server_tool_use: Any) -> tuple[tuple[str, int], ...]:
    """``server_tool_use: {"web_search_requests": 10, "web_fetch_requests": 0}``: the calls run during this HTTP
    response (fact 25); counters an older body lacks are simply absent."""
    if not isinstance(server_tool_use, Mapping):
        return ()
    calls = {name.removesuffix("_requests"): _count(server_tool_use, name)
             for name in server_tool_use if isinstance(name, str) and name.endswith("_requests")}
    return tuple(sorted((name, count) for name, count in calls.items() if count))


#: Responses output items that are a call of one of the provider's own tools, billed per call (fact 28).
_TOOL_CALL_ITEMS = {"web_search_call": "web_search", "file_search_call": "file_search"}


def with_body_facts(usage: Usage | None, body: Mapping[str, Any]) -> Usage | None:
    """``usage`` with what an OpenAI answer says outside its ``usage`` object: the ``service_tier`` served (top level
    in chat, on the response object in Responses, fact 30) and the provider's tool calls (one ``web_search_call`` /
    ``file_search_call`` output item per call, or ``tool_usage.web_search.num_requests`` where newer bodies count them,
    whichever is larger). Anthropic's answers carry both inside ``usage``: nothing here applies to them."""
    if usage is None or ("service_tier" not in body and "output" not in body):
        return usage
    tier = body.get("service_tier")
    if not isinstance(body.get("output"), list):  # chat: only the tier is outside usage
        return usage if tier == usage.service_tier or not isinstance(tier, str) else replace(usage, service_tier=tier)
    calls = dict(usage.server_tool_calls)
    output = body.get("output")
    if isinstance(output, list):
        counted: dict[str, int] = {}
        for item in output:
            kind = item.get("type") if isinstance(item, Mapping) else None
            tool = _TOOL_CALL_ITEMS.get(kind) if isinstance(kind, str) else None
            if tool is not None:
                counted[tool] = counted.get(tool, 0) + 1
        tool_usage = _details(body, "tool_usage")
        searches = _count(_details(tool_usage, "web_search") if tool_usage else None, "num_requests")
        if searches:
            counted["web_search"] = max(counted.get("web_search", 0), searches)
        for tool, count in counted.items():
            calls[tool] = max(calls.get(tool, 0), count)
    return replace(usage, service_tier=tier if isinstance(tier, str) else usage.service_tier,
                   server_tool_calls=tuple(sorted((name, count) for name, count in calls.items() if count)))
