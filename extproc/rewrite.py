"""How an allowed request is rewritten for its upstream: pure, bytes and dicts in, an edit out."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from lime.money.grant import PINNED_CLUSTER_HEADER, TENANT_HEADER, UPSTREAM_HEADER, Grant
from lime.money.output_cap import CAP_FIELDS
from lime.protocols import fast_json
from lime.protocols.endpoints import Protocol, endpoint_named, endpoint_protocol
from lime.protocols.errors import BadRequest, ServiceUnavailable

__all__ = ["CredentialLookup", "RequestEdit", "headers_to_drop", "rewrite_headers", "rewrite_request"]

CredentialLookup = Callable[[str], "str | None"]

#: The client's credentials, and what only a browser or a proxy in front of Lime should see, never travel on.
CLIENT_ONLY_HEADERS = frozenset({"authorization", "x-api-key", TENANT_HEADER, "cookie", "proxy-authorization"})
#: Every Lime header is Lime's business: none reaches an upstream, whoever set it.
LIME_PREFIX = "x-lime-"


@dataclass(frozen=True)
class RequestEdit:
    body: bytes
    set_headers: dict[str, str]
    remove_headers: tuple[str, ...]
    #: The gateway asked a chat stream for usage the client did not ask for: hide that chunk again.
    hide_usage_chunk: bool = False


def ask_for_usage(grant: Grant, body: dict[str, Any]) -> bool:
    """Some streams report usage only when asked (chat: fact 7): ask, and say whether the client had not."""
    spec = endpoint_named(grant.endpoint)
    if spec is None or spec.stream_usage_option is None or body.get(spec.stream_field) is not True:
        return False
    option, switch = spec.stream_usage_option
    options = body.get(option)
    if isinstance(options, dict) and options.get(switch) is True:
        return False
    body[option] = {**(options if isinstance(options, dict) else {}), switch: True}
    return True


def credential_headers(protocol: Protocol, credential: str) -> dict[str, str]:
    if protocol is Protocol.ANTHROPIC:
        return {"x-api-key": credential}
    return {"authorization": f"Bearer {credential}"}


def headers_to_drop(request_headers: Iterable[str]) -> set[str]:
    """Of the headers the client sent (lower-case names), those that must not reach the upstream."""
    return {name for name in request_headers if name in CLIENT_ONLY_HEADERS or name.startswith(LIME_PREFIX)}


def _credential(grant: Grant, credential_for: CredentialLookup) -> str:
    credential = credential_for(grant.upstream)
    if not credential:
        raise ServiceUnavailable(f"The upstream for `{grant.model}` is not configured on this gateway.")
    return credential


def _upstream_headers(grant: Grant, credential: str) -> dict[str, str]:
    headers = {
        **credential_headers(endpoint_protocol(grant.endpoint), credential),
        UPSTREAM_HEADER: grant.upstream,
        # The response tap reads and rewrites the body: it must come uncompressed.
        "accept-encoding": "identity",
    }
    if grant.candidate:
        # The stored response lives on this candidate: no other may be tried (clusters.yaml names them so).
        headers[PINNED_CLUSTER_HEADER] = f"candidate_{grant.candidate}"
    return headers


def _dropped(request_headers: Iterable[str], set_headers: dict[str, str]) -> tuple[str, ...]:
    # What is set is not also removed: for Anthropic the client's and the upstream's key are both `x-api-key`.
    return tuple(sorted(headers_to_drop([*request_headers, *CLIENT_ONLY_HEADERS]) - set(set_headers)))


def rewrite_headers(grant: Grant, credential_for: CredentialLookup, request_headers: Iterable[str] = ()) -> RequestEdit:
    """The edit of a request without a body (the Responses lifecycle): credential and route only."""
    set_headers = _upstream_headers(grant, _credential(grant, credential_for))
    return RequestEdit(body=b"", set_headers=set_headers, remove_headers=_dropped(request_headers, set_headers))


def rewrite_request(grant: Grant, body: bytes, credential_for: CredentialLookup,
                    request_headers: Iterable[str] = ()) -> RequestEdit:
    credential = _credential(grant, credential_for)
    set_headers = _upstream_headers(grant, credential)
    remove_headers = _dropped(request_headers, set_headers)
    # orjson first, for the body is the request's size; the standard library wherever orjson would read or write
    # other bytes than it (lime.protocols.fast_json), and for every error.
    parsed = fast_json.parse(body)
    if isinstance(parsed, dict):
        edited, hide_usage_chunk = _edited(grant, parsed)
        serialised = fast_json.dumps(edited)
        if serialised is not None:
            return RequestEdit(serialised, set_headers, remove_headers, hide_usage_chunk)
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest("The request body is not valid JSON.") from None
    if not isinstance(parsed, dict):
        raise BadRequest("The request body must be a JSON object.")
    edited, hide_usage_chunk = _edited(grant, parsed)
    return RequestEdit(_serialise(edited), set_headers, remove_headers, hide_usage_chunk)


def _edited(grant: Grant, parsed: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The body the upstream gets, and whether the gateway asked for a usage chunk the client did not."""
    # The model goes first: a failover candidate renames it by that prefix alone (envoy/clusters.yaml).
    edited = {"model": grant.upstream_model, **{k: v for k, v in parsed.items() if k != "model"}}
    cap_fields = CAP_FIELDS.get(grant.endpoint)
    if grant.output_cap and cap_fields:
        edited[cap_fields[0]] = grant.output_cap
    return edited, ask_for_usage(grant, edited)


def _serialise(body: dict[str, Any]) -> bytes:
    try:
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        # 1e400 parses to inf, which JSON cannot carry; the upstream would receive `Infinity`.
        raise BadRequest("The request body holds a number out of range.") from None
    try:
        return text.encode()
    except UnicodeEncodeError:
        # A lone surrogate (`"\ud800"`) is valid JSON but not UTF-8: keep it escaped, as the client sent it.
        return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
