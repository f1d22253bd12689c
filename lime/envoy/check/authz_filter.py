"""ext_authz: fails closed, calls authz in Envoy's HTTP mode over HTTP/1.1, with the header lists authz's answers are
written for (lime/envoy/authz_http.py), and turns authz's carrier statuses back into its 5xx refusals."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from lime.envoy.authz_http import (
    CARRIED_STATUSES,
    CLIENT_HEADERS,
    METADATA_HEADERS,
    REQUEST_HEADERS,
    UPSTREAM_HEADERS,
)
from lime.envoy.bootstrap import Problem
from lime.envoy.check.filters import EXT_AUTHZ, FILTER_TYPES, Filters, fails_closed, filter_path, first
from lime.envoy.check.grpc_filters import cluster_speaks_http2

__all__ = ["authz_filter"]

#: What Envoy sends authz whatever allowed_headers says.
_ALWAYS_SENT = frozenset({"authorization", ":method", ":path", "host"})
_SUGGESTED = "{server_uri: {uri: 'http://lime-authz', cluster: lime_authz, timeout: 2s}, authorization_response: ...}"


def authz_filter(filters: Filters, clusters: Mapping[str, Any], hcm: Any) -> Iterator[Problem]:
    hit = first(filters, EXT_AUTHZ)
    if hit is None or type(hit[1]).__name__ != FILTER_TYPES[EXT_AUTHZ]:
        return  # reported by filter_order
    config, where = hit[1], filter_path(EXT_AUTHZ)
    yield from fails_closed(where, config, "authz", "requests would pass unauthenticated and unreserved")
    service = config.http_service
    if service is None:
        yield Problem(where, f"no http_service: Lime's authz speaks Envoy's HTTP ext_authz mode (docs/performance.md,"
                      f" \"authz's transport\"); set http_service: {_SUGGESTED} as envoy/envoy.yaml ships it.")
        return
    yield from _cluster(where, service, clusters)
    yield from _headers(where, config, service)
    body = config.with_request_body
    if body is None or body.pack_as_bytes:
        # In the HTTP mode Envoy sends the body only from the field pack_as_bytes leaves empty.
        yield Problem(where, "with_request_body without pack_as_bytes is required: authz reads the model and stream "
                      "flag from the body, and with pack_as_bytes Envoy's HTTP mode sends no body; set "
                      "with_request_body: {max_request_bytes: 33554432, allow_partial_message: false}.")
    yield from _carriers(hcm)


def _cluster(where: str, service: Any, clusters: Mapping[str, Any]) -> Iterator[Problem]:
    name = service.server_uri.cluster if service.server_uri else ""
    cluster = clusters.get(name)
    if cluster is None:
        yield Problem(where, f"http_service names cluster {name!r}, which is not defined: add it to "
                      "static_resources.clusters or fix the name.")
    elif cluster_speaks_http2(cluster):
        yield Problem(f"clusters[{name}]", f"authz serves HTTP/1.1 but this cluster (used by {where}) speaks HTTP/2: "
                      "remove its explicit_http_config.")


def _headers(where: str, config: Any, service: Any) -> Iterator[Problem]:
    response = service.authorization_response
    lists = {
        "allowed_headers": (config.allowed_headers, set(REQUEST_HEADERS) - _ALWAYS_SENT,
                            "authz could not read the client's key, tenant, request id or protocol"),
        "authorization_response.dynamic_metadata_from_headers": (
            response.dynamic_metadata_from_headers if response else None, set(METADATA_HEADERS),
            "the grant would not reach extproc, and every request would fail"),
        "authorization_response.allowed_upstream_headers": (
            response.allowed_upstream_headers if response else None, set(UPSTREAM_HEADERS),
            "catalog_api would not learn which tenant asks for its model directory"),
        "authorization_response.allowed_client_headers": (
            response.allowed_client_headers if response else None, set(CLIENT_HEADERS),
            "a refusal would reach the client without its content type or retry advice"),
    }
    for field, (matcher, wanted, harm) in lists.items():
        missing = sorted(wanted - _exact_names(matcher.patterns if matcher else []))
        if missing:
            yield Problem(where, f"{field} lacks {', '.join(missing)}: {harm}. List them as exact patterns "
                          "(lime/envoy/authz_http.py names them).")
    upstream = response.allowed_upstream_headers if response else None
    extra = [pattern for pattern in (upstream.patterns if upstream else [])
             if not pattern.exact or pattern.exact.lower() not in UPSTREAM_HEADERS]
    if extra:
        yield Problem(where, "authorization_response.allowed_upstream_headers may list only "
                      f"{', '.join(UPSTREAM_HEADERS)} (exact): a wider pattern would send authz's other answer "
                      "headers, the grant with its key id, reservation and prices among them, to the upstream.")


def _exact_names(patterns: Iterable[Any]) -> set[str]:
    return {pattern.exact.lower() for pattern in patterns if pattern.exact}


def _carriers(hcm: Any) -> Iterator[Problem]:
    """Each carrier status needs the mapper that gives authz's refusal its real status back, before any other
    mapper that would take it."""
    mappers = hcm.local_reply_config.mappers if hcm.local_reply_config else []
    for status, carrier in sorted(CARRIED_STATUSES.items()):
        taken = next((mapper for mapper in mappers if _matches_status(mapper.filter, carrier)), None)
        if taken is None or _status_of(taken) != status:
            yield Problem("local_reply_config.mappers", f"authz's {status} refusals reach Envoy as {carrier} "
                          f"(lime/envoy/authz_http.py): the first mapper matching a UAEX {carrier} must set "
                          f"status_code: {status}, or clients get a {carrier}.")


def _matches_status(access_filter: Any, status: int) -> bool:
    """Whether an access-log filter lets a UAEX local reply of ``status`` through (the shapes envoy.yaml uses)."""
    if access_filter is None:
        return True
    if access_filter.and_filter is not None:
        return all(_matches_status(inner, status) for inner in access_filter.and_filter.filters)
    if access_filter.or_filter is not None:
        return any(_matches_status(inner, status) for inner in access_filter.or_filter.filters)
    if access_filter.status_code_filter is not None:
        comparison = access_filter.status_code_filter.comparison
        value = int(comparison.value.default_value)
        outcomes = {"EQ": status == value, "GE": status >= value, "LE": status <= value}
        return outcomes[comparison.op.name]
    if access_filter.response_flag_filter is not None:
        flags = access_filter.response_flag_filter.flags
        return bool(not flags or "UAEX" in flags)
    return False  # a header or other filter: not a mapper for every UAEX reply of this status


def _status_of(mapper: Any) -> int | None:
    code = mapper.status_code
    return None if code is None else int(code)
