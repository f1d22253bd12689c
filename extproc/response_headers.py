"""Which upstream response headers a client may see.

An allowlist, not a denylist: upstreams add headers over time (organisation and project ids, their own request
ids, their rate-limit windows, Cloudflare cookies), and none of them should reach a Lime client by default. What
passes is what describes the body and how to retry; Envoy adds ``x-request-id`` and ``server`` itself.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["PASSED_RESPONSE_HEADERS", "hidden_response_headers"]

PASSED_RESPONSE_HEADERS = frozenset({
    "content-type",
    "content-encoding",
    "cache-control",
    "date",
    "vary",
    # How and when to retry, as the SDKs read them.
    "retry-after",
    "retry-after-ms",
    "x-should-retry",
})


def hidden_response_headers(names: Iterable[str]) -> list[str]:
    """The upstream's headers (lower-case names) to remove; pseudo-headers such as ``:status`` stay."""
    return sorted({name for name in names if not name.startswith(":") and name not in PASSED_RESPONSE_HEADERS})
