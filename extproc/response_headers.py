"""Which upstream response headers a client may see.

An allowlist, not a denylist: upstreams add headers over time (organisation and project ids, their own request
ids, their rate-limit windows, Cloudflare cookies), and none of them should reach a Lime client by default. What
passes is what describes the body and how to retry; Envoy adds ``x-request-id`` and ``server`` itself.
"""

from __future__ import annotations

from collections.abc import Iterable

from lime.protocols.endpoints import PASSED_RESPONSE_HEADERS

__all__ = ["PASSED_RESPONSE_HEADERS", "hidden_response_headers"]

def hidden_response_headers(names: Iterable[str], passed: frozenset[str] = PASSED_RESPONSE_HEADERS) -> list[str]:
    """The upstream's headers (lower-case names) to remove, of all but ``passed`` (the endpoint's spec says which);
    pseudo-headers such as ``:status`` stay."""
    return sorted({name for name in names if not name.startswith(":") and name not in passed})
