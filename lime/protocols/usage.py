"""Token usage as each protocol reports it, normalised into one :class:`Usage` that pricing can read.

The providers disagree on what their fields include (tests/fixtures/providers/README.md, facts 8, 9, 12-15):

* OpenAI ``prompt_tokens`` / ``input_tokens`` *include* the cached tokens (``*_details.cached_tokens``);
* Anthropic ``input_tokens`` *excludes* both cache reads and cache writes, which come as their own fields;
* reasoning tokens are part of the output count on both OpenAI APIs.

So :class:`Usage` keeps disjoint parts that add up to what was processed: ``input_tokens`` (not from the cache),
``cached_input_tokens`` (read from the cache), ``cache_write_tokens`` (written to it, Anthropic only) and
``output_tokens`` (reasoning included; ``reasoning_tokens`` says how many of them, for information only).

"Not reported" is not 0 (STYLE.md, idea 2): a usage object without its input or output count says so in
``unreported``, and settlement estimates that part instead of charging nothing for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Usage",
    "anthropic_usage",
    "chat_usage",
    "embeddings_usage",
    "responses_usage",
]


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    #: The parts the upstream's usage object left out (``"input"``, ``"output"``): their counts above are 0 for
    #: want of a number, not because nothing was used. Not part of equality: two usages are equal when their
    #: counts are.
    unreported: frozenset[str] = field(default=frozenset(), compare=False)

    @property
    def total_input_tokens(self) -> int:
        return self.input_tokens + self.cached_input_tokens + self.cache_write_tokens

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
    return Usage(
        input_tokens=total_input - cached,
        cached_input_tokens=cached,
        output_tokens=_count(usage, output_name),
        reasoning_tokens=_count(_details(usage, output_details), "reasoning_tokens"),
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

    return Usage(
        input_tokens=latest("input_tokens", base.input_tokens),
        cached_input_tokens=latest("cache_read_input_tokens", base.cached_input_tokens),
        cache_write_tokens=latest("cache_creation_input_tokens", base.cache_write_tokens),
        output_tokens=latest("output_tokens", base.output_tokens),
        # A part is reported once any event gave it (message_start gives input, every event gives output).
        unreported=_unreported(input=_reported(usage, "input_tokens") or "input" not in base.unreported,
                               output=_reported(usage, "output_tokens") or "output" not in base.unreported),
    )
