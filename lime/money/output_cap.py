"""How many output tokens a request may cost: the cap it is reserved for, and the field that sets it upstream.

Each endpoint reads only its own cap fields (a `max_output_tokens` sent to chat is not chat's cap: an upstream
that drops unknown fields would never honour it). When the client sets none of them, the package's default is
reserved and written into the endpoint's field on the upstream request, so no answer can run past its hold.
"""

from __future__ import annotations

from collections.abc import Mapping

from lime.protocols.endpoints import ENDPOINTS

__all__ = ["CAP_FIELDS", "default_cap", "requested_cap", "reserved_output_tokens", "upstream_cap"]

#: The cap fields of each endpoint with output (its spec's ``cap_fields``); the first is where Lime writes a
#: default. Chat has two names for one cap.
CAP_FIELDS: Mapping[str, tuple[str, ...]] = {
    endpoint.name: endpoint.cap_fields for endpoint in ENDPOINTS if endpoint.cap_fields
}

#: The provider's own default where it is small (legacy completions' 16): a request without a cap is held to it.
_PROVIDER_DEFAULTS: Mapping[str, int] = {
    endpoint.name: endpoint.default_cap for endpoint in ENDPOINTS if endpoint.default_cap is not None
}


def default_cap(endpoint: str, package_default: int) -> int:
    """The cap of a request that sets none: the package's default, or the provider's own when that is smaller."""
    return min(package_default, _PROVIDER_DEFAULTS.get(endpoint, package_default))


def requested_cap(endpoint: str, caps: Mapping[str, int]) -> int | None:
    """The client's cap for this endpoint: the largest of its own fields that it set (the upstream may honour
    either), or ``None``."""
    own = [caps[name] for name in CAP_FIELDS.get(endpoint, ()) if name in caps]
    return max(own) if own else None


def reserved_output_tokens(endpoint: str, caps: Mapping[str, int], choices: int, default: int) -> int:
    """Output tokens to reserve: the cap (the client's or ``default``) for each of ``choices`` answers; 0 for an
    endpoint without output (embeddings)."""
    if endpoint not in CAP_FIELDS:
        return 0
    return (requested_cap(endpoint, caps) or default_cap(endpoint, default)) * choices


def upstream_cap(endpoint: str, caps: Mapping[str, int], default: int) -> int:
    """The cap Lime must set on the upstream request (``default``), or 0 when the client's own stands."""
    if endpoint not in CAP_FIELDS or requested_cap(endpoint, caps) is not None:
        return 0
    return default_cap(endpoint, default)
