"""What a finished request costs: the tap's findings in, one :class:`~lime.money.usage_event.UsageEvent` out. Pure.

The rules, one per situation (docs/billing.md repeats them for users). A gateway that sells prepaid points must
never serve for free: whatever reached the upstream was billed by the provider, so it is charged, by the
upstream's numbers where it gave them and by Lime's estimate (flagged ``estimated``) where it did not.

* **refused before it left** (extproc refused it): ``failed``, 0.
* **an endpoint the provider does not charge** (count_tokens): ``complete``, 0.
* **an upstream error status** (or Envoy's own reply: upstream unreachable, timed out), or a 2xx JSON body that is
  an error object (a relay's way of failing): ``failed``, 0.
* **reached the upstream, nothing came back**: cut before any response, or a 2xx of which the client got no
  whole event: ``partial``, ``estimated``, the reservation's input estimate (the provider bills the prompt).
* **final usage reported**: priced from the upstream's own numbers, ``complete`` (or ``partial`` if the stream
  broke after them: the numbers are final all the same). A part the upstream left out (no ``prompt_tokens``, no
  ``output_tokens``) is not 0: it is estimated as below and the record is ``estimated``.
* **unreadable 2xx** (a content type or encoding the tap does not read, a JSON body that is not JSON, a tap that
  gave up) without final usage: the input estimate plus the output counted from the body's size (one token per
  four bytes, at most the output the request was reserved for), ``estimated``; ``complete`` if the body ended.
* **cut off** (client gone, stream broken, ``event: error``): ``partial``. Reported numbers are used where the
  upstream sent them (Anthropic reports input at the start); what is missing is counted by Lime from what the
  client actually received and the record is marked ``estimated``.
* **complete without usage** (an upstream that does not report it): ``complete``, counted, ``estimated``.

Lime's count: output tokens = the larger of the text events received (OpenAI streams about one token per
event) and the tokenizer's count of their text (:mod:`lime.protocols.output_count`); input tokens = the estimate the
reservation was made with.
"""

from __future__ import annotations

from dataclasses import replace

from lime.money.grant import Grant
from lime.money.price_sheet import GrantPrices, PriceSheet, decode_prices
from lime.money.pricing import price_usage
from lime.money.usage_event import UsageEvent
from lime.protocols.endpoints import endpoint_named
from lime.protocols.response_tap import ResponseTap
from lime.protocols.usage import Usage

__all__ = ["settlement_for"]


def settlement_for(grant: Grant, tap: ResponseTap | None, *, forwarded: bool = True) -> UsageEvent:
    """``forwarded``: the request left for the upstream (extproc did not refuse it)."""
    usage, outcome, estimated = _usage_and_outcome(grant, tap, forwarded)
    prices = decode_prices(grant.prices) if grant.prices else GrantPrices(PriceSheet())
    priced = price_usage(usage, prices.sheet, requested_tier=prices.tier,
                         context_tokens=grant.input_estimate if prices.server_tools else None)
    return UsageEvent(
        request_id=grant.request_id, tenant_id=grant.tenant_id, key_id=grant.key_id, endpoint=grant.endpoint,
        model=grant.model, upstream=grant.upstream, outcome=outcome, estimated=estimated,
        upstream_status=tap.status if tap else 0, input_tokens=usage.input_tokens,
        cached_input_tokens=usage.cached_input_tokens, cache_write_tokens=usage.cache_write_tokens,
        output_tokens=usage.output_tokens, reasoning_tokens=usage.reasoning_tokens, reserved=grant.reserved,
        cost=priced.cost, started_at=grant.started_at, cache_write_1h_tokens=usage.cache_write_1h_tokens,
        audio_input_tokens=usage.audio_input_tokens, audio_output_tokens=usage.audio_output_tokens,
        server_tool_calls=dict(usage.server_tool_calls), service_tier=usage.service_tier,
        unpriced=sorted(priced.unpriced),
    )


#: Bytes of an unreadable answer per output token: the same upper-leaning ratio as the input estimate's.
_BYTES_PER_TOKEN = 4


def _usage_and_outcome(grant: Grant, tap: ResponseTap | None, forwarded: bool) -> tuple[Usage, str, bool]:
    if tap is None:
        if not forwarded:
            return Usage(), "failed", False
        # Cut before any response (the client left while the upstream worked): the provider bills the prompt.
        return Usage(input_tokens=grant.input_estimate), "partial", True
    if not 200 <= tap.status < 300 or tap.error_body:
        return Usage(), "failed", False
    whole = tap.complete and not tap.failed
    outcome = "complete" if whole else "partial"
    spec = endpoint_named(grant.endpoint)
    if spec is not None and not spec.billed:
        return Usage(), outcome, False  # the provider charges nothing for it (count_tokens)
    reported = tap.usage
    has_text = _has_text(grant)
    if reported is not None and tap.usage_final:
        # The upstream's final numbers arrived; whatever followed (or did not) changes nothing.
        if not reported.unreported:
            return reported, outcome, False
        return _filled(reported, grant, tap.output.tokens() if has_text else 0), outcome, True
    if tap.unreadable is not None:
        output = min(-(-tap.body_bytes // _BYTES_PER_TOKEN), _reserved_output(grant)) if has_text else 0
        # A body that ended is whole, unless it is a JSON body that is not JSON (cut, or broken by a relay).
        whole = tap.ended and tap.unreadable != "body"
        return Usage(input_tokens=grant.input_estimate, output_tokens=output), "complete" if whole else "partial", True
    if tap.events == 0:
        # A 2xx of which the client got no whole event: the upstream had the prompt all the same.
        return Usage(input_tokens=grant.input_estimate), "partial", True
    counted_output = tap.output.tokens() if has_text else 0
    if reported is None:
        return Usage(input_tokens=grant.input_estimate, output_tokens=counted_output), outcome, True
    # Cut off after provisional usage (Anthropic's message_start): keep its input side, count the output.
    return _filled(reported, grant, counted_output, at_least_reported=True), outcome, True


def _has_text(grant: Grant) -> bool:
    """Whether the endpoint's answers carry text to count (embeddings do not: no output)."""
    spec = endpoint_named(grant.endpoint)
    return spec is not None and spec.texts is not None


def _reserved_output(grant: Grant) -> int:
    return max(0, grant.reserved_tokens - grant.input_estimate)


def _filled(reported: Usage, grant: Grant, counted_output: int, *, at_least_reported: bool = False) -> Usage:
    """The reported usage, with each part the upstream left out estimated: input by the reservation's estimate,
    output by Lime's count."""
    input_tokens = grant.input_estimate if "input" in reported.unreported else reported.input_tokens
    if "output" in reported.unreported:
        output_tokens = counted_output
    elif at_least_reported:
        output_tokens = max(reported.output_tokens, counted_output)
    else:
        output_tokens = reported.output_tokens
    return replace(reported, input_tokens=input_tokens, output_tokens=output_tokens, unreported=frozenset())
