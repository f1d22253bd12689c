"""What the settlement tests share: a real :class:`ResponseTap` fed with the recorded provider bodies
(``tests/fixtures/providers``), whole or cut mid-event, the grant it settles for, and what every event must show.

The modules in this folder pin what :mod:`lime.money.settlement` makes of a finished request, each case in a module
named for it: nothing served (test_nothing_served), complete with the upstream's own numbers (test_complete_with_usage),
complete without them (test_complete_without_usage) and cut off (test_cut_off). In every case the cost is
:func:`lime.money.pricing.cost_of` of the recorded tokens at the grant's prices, and the event carries the grant's
identity and reservation (:func:`assert_priced`). Where Lime counts the output itself, the tests expect
:func:`lime_count`, the rule written out; the rule itself is pinned in tests/unit/protocols/test_output_count_rule.py.
"""

from __future__ import annotations

from dataclasses import replace

from lime.money.grant import Grant
from lime.money.price_sheet import GrantPrices, PriceSheet, Rates, decode_prices, encode_prices
from lime.money.pricing import cost_of
from lime.money.quota import UsageEvent
from lime.protocols.response_tap import ResponseTap
from lime.protocols.sse import parse_event
from lime.protocols.token_count import count_tokens
from lime.protocols.usage import Usage
from tests.provider_fixtures import provider_fixture

__all__ = [
    "GRANT",
    "JSON",
    "SSE",
    "assert_priced",
    "data_of",
    "events_of",
    "grant",
    "lime_count",
    "prefix",
    "tap_of",
    "tokens",
]

SSE = "text/event-stream"
JSON = "application/json"

GRANT = Grant(request_id="req-1", tenant_id="tenant-1", key_id="key-1", endpoint="chat_completions",
              model="team-default", upstream="oai", upstream_model="gpt-4o", stream=True, reserved=123_456,
              reserved_tokens=5000, input_estimate=777, output_cap=4096,
              prices=encode_prices(GrantPrices(PriceSheet(Rates(3_000_000, 15_000_000, 1_500_000)))),
              started_at=1_700_000_000.5)


def grant(endpoint: str) -> Grant:
    return replace(GRANT, endpoint=endpoint)


def tap_of(endpoint: str, body: bytes, *, status: int = 200, content_type: str = SSE, finish: bool = True,
           hide_usage_chunk: bool = False, content_encoding: str = "") -> ResponseTap:
    tap = ResponseTap(endpoint, GRANT.model, hide_usage_chunk=hide_usage_chunk)
    tap.start(status, content_type, content_encoding)
    tap.feed(body)
    if finish:
        tap.finish()
    return tap


def events_of(raw: bytes) -> list[bytes]:
    """The raw events of a fixture stream, each with its blank line."""
    return [chunk + b"\n\n" for chunk in raw.split(b"\n\n") if chunk.strip()]


def prefix(name: str, events: int) -> bytes:
    """The first ``events`` whole events of a fixture stream, and half of the next one (a stream cut mid-event)."""
    raw_events = events_of(provider_fixture(name).read_bytes())
    assert events < len(raw_events)
    cut = raw_events[events]
    return b"".join(raw_events[:events]) + cut[: len(cut) // 2]


def assert_priced(event: UsageEvent, g: Grant) -> None:
    """The cost is the recorded tokens at the grant's prices; identity and reservation come from the grant."""
    usage = Usage(event.input_tokens, event.cached_input_tokens, event.cache_write_tokens, event.output_tokens,
                  event.reasoning_tokens)
    assert event.cost == cost_of(usage, decode_prices(g.prices).sheet)
    assert (event.request_id, event.tenant_id, event.key_id, event.endpoint, event.model, event.upstream) == (
        g.request_id, g.tenant_id, g.key_id, g.endpoint, g.model, g.upstream)
    assert (event.reserved, event.started_at) == (g.reserved, g.started_at)


def tokens(event: UsageEvent) -> tuple[int, int, int, int, int]:
    return (event.input_tokens, event.cached_input_tokens, event.cache_write_tokens, event.output_tokens,
            event.reasoning_tokens)


def data_of(raw: bytes) -> list[bytes]:  # the data of every event: what a client that got them all received
    return [data for e in events_of(raw) if (data := parse_event(e).data) is not None]


def lime_count(text_events: int, text: str) -> int:
    """The rule: the larger of the text events received and the tokenizer's count of their text."""
    return max(text_events, count_tokens(text))
