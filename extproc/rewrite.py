"""How an allowed request is rewritten for its upstream: pure, bytes and dicts in, an edit out."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from lime.endpoints import ENDPOINTS, Protocol
from lime.errors import BadRequest, ServiceUnavailable
from lime.grant import TENANT_HEADER, UPSTREAM_HEADER, Grant

__all__ = ["RequestEdit", "rewrite_request"]

_PROTOCOL_BY_ENDPOINT = {endpoint.name: endpoint.protocol for endpoint in ENDPOINTS}
#: The client's credentials never travel further than Envoy.
CLIENT_HEADERS = ("authorization", "x-api-key", TENANT_HEADER)


@dataclass(frozen=True)
class RequestEdit:
    body: bytes
    set_headers: Mapping[str, str]
    remove_headers: tuple[str, ...]


def credential_headers(protocol: Protocol, credential: str) -> dict[str, str]:
    if protocol is Protocol.ANTHROPIC:
        return {"x-api-key": credential}
    return {"authorization": f"Bearer {credential}"}


def rewrite_request(grant: Grant, body: bytes, credentials: Mapping[str, str]) -> RequestEdit:
    credential = credentials.get(grant.upstream)
    if not credential:
        raise ServiceUnavailable(f"The upstream for `{grant.model}` is not configured on this gateway.")
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest("The request body is not valid JSON.") from None
    if not isinstance(parsed, dict):
        raise BadRequest("The request body must be a JSON object.")
    parsed["model"] = grant.upstream_model
    new_body = json.dumps(parsed, ensure_ascii=False, separators=(",", ":")).encode()
    protocol = _PROTOCOL_BY_ENDPOINT[grant.endpoint]
    # The credential header is set after the client's are removed: for Anthropic both are `x-api-key`.
    removed = tuple(h for h in CLIENT_HEADERS if h not in credential_headers(protocol, ""))
    return RequestEdit(
        body=new_body,
        set_headers={**credential_headers(protocol, credential), UPSTREAM_HEADER: grant.upstream},
        remove_headers=removed,
    )
