"""How far below zero a tenant can go, and why: the part of a request's cost its reservation cannot see. Pure.

A reservation holds the input estimate and the full output cap (which Lime sets on the upstream request), so a
request's cost exceeds its hold only by input the body does not show. Lime names that part per request, its
**exposure**, and the reserve script admits a request only while every request in flight could cost its hold plus
its exposure and the tenant would still stand at or above minus the package's ``overdraft_limit``
(docs/billing.md, "The overdraft bound")::

    balance - held - exposure_in_flight - hold - exposure >= -overdraft_limit     (and balance - held >= hold)

What the estimate cannot see, part by part:

* a **file the upstream fetches** (by URL or file id): the estimate counts
  :data:`~lime.protocols.input_estimate.FILE_REFERENCE_TOKENS`; the file may fill the context window, so each
  adds :data:`UNSEEN_FILE_TOKENS` more at the input price.
* everything else is seen: text by the tokenizer (leaning high), inline media by per-part bounds at or above the
  providers' formulas, a referenced image at :data:`~lime.protocols.input_estimate.IMAGE_TOKENS` (above every
  provider's maximum), output by the cap the upstream is held to.

A cost beyond hold plus exposure is still charged (the provider billed it) and counted in
``lime_overdraft_micropoints_total``; a negative balance refuses every new request until it is topped up.
"""

from __future__ import annotations

from lime.money.price_sheet import PriceSheet
from lime.money.pricing import PER_MILLION, effective_rates
from lime.protocols.input_estimate import InputEstimate

__all__ = ["UNSEEN_FILE_TOKENS", "exposure_of"]

#: Input a fetched file may add beyond its estimate: with the estimate's 50,000, a 200k-token context window.
UNSEEN_FILE_TOKENS = 150_000


def exposure_of(estimate: InputEstimate, sheet: PriceSheet, tier: str | None = None) -> int:
    """Micro-points the request may cost beyond its hold, by what its body does not show: the unseen tokens at the
    input price, and, when they may carry the request into the sheet's long-context rates, its seen input repriced
    there too."""
    unseen = estimate.file_references * UNSEEN_FILE_TOKENS
    if not unseen:
        return 0
    held_at = effective_rates(sheet, tier, estimate.tokens)[0].input
    worst_at = max(held_at, effective_rates(sheet, tier, estimate.tokens + unseen)[0].input)
    return -(-((estimate.tokens + unseen) * worst_at - estimate.tokens * held_at) // PER_MILLION)
