"""What a finished request costs: the tap's findings in, one :class:`~lime.money.usage_event.UsageEvent` out. Pure.

The rules, one per situation (README "Billing" repeats them for users):

* **nothing served** (no response, an upstream error status, or a 200 that carried no event): ``failed``, 0.
* **final usage reported**: priced from the upstream's own numbers, ``complete`` (or ``partial`` if the stream
  broke after them: the numbers are final all the same).
* **cut off** (client gone, stream broken, ``event: error``): ``partial``. Reported numbers are used where the
  upstream sent them (Anthropic reports input at the start); what is missing is counted by Lime from what the
  client actually received and the record is marked ``estimated``.
* **complete without usage** (an upstream that does not report it): ``complete``, counted, ``estimated``.

Lime's count: output tokens = the larger of the text events received (OpenAI streams about one token per
event) and the tokenizer's count of their text (:mod:`lime.protocols.output_count`); input tokens = the estimate the
reservation was made with.
"""

from __future__ import annotations

from lime.money.grant import Grant
from lime.money.pricing import cost_of
from lime.money.usage_event import UsageEvent
from lime.protocols.endpoints import endpoint_named
from lime.protocols.response_tap import Framing, ResponseTap
from lime.protocols.usage import Usage

__all__ = ["settlement_for"]


def settlement_for(grant: Grant, tap: ResponseTap | None) -> UsageEvent:
    usage, outcome, estimated = _usage_and_outcome(grant, tap)
    return UsageEvent(
        request_id=grant.request_id, tenant_id=grant.tenant_id, key_id=grant.key_id, endpoint=grant.endpoint,
        model=grant.model, upstream=grant.upstream, outcome=outcome, estimated=estimated,
        upstream_status=tap.status if tap else 0, input_tokens=usage.input_tokens,
        cached_input_tokens=usage.cached_input_tokens, cache_write_tokens=usage.cache_write_tokens,
        output_tokens=usage.output_tokens, reasoning_tokens=usage.reasoning_tokens, reserved=grant.reserved,
        cost=cost_of(usage, grant), started_at=grant.started_at,
    )


def _usage_and_outcome(grant: Grant, tap: ResponseTap | None) -> tuple[Usage, str, bool]:
    if tap is None or tap.framing is Framing.OPAQUE or tap.events == 0:
        return Usage(), "failed", False
    whole = tap.complete and not tap.failed
    reported = tap.usage
    if reported is not None and tap.usage_final:
        # The upstream's final numbers arrived; whatever followed (or did not) changes nothing.
        return reported, "complete" if whole else "partial", False
    outcome = "complete" if whole else "partial"
    counted_output = tap.output.tokens()
    if reported is None:
        spec = endpoint_named(grant.endpoint)
        output = counted_output if spec is not None and spec.texts is not None else 0  # no text: no output
        return Usage(input_tokens=grant.input_estimate, output_tokens=output), outcome, True
    # Cut off after provisional usage (Anthropic's message_start): keep its input side, count the output.
    return Usage(input_tokens=reported.input_tokens, cached_input_tokens=reported.cached_input_tokens,
                 cache_write_tokens=reported.cache_write_tokens,
                 output_tokens=max(reported.output_tokens, counted_output),
                 reasoning_tokens=reported.reasoning_tokens), outcome, True
