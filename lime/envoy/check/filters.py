"""The public listener's HTTP filter chain: the names of Lime's filters, their order, and the header strip."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from lime.envoy.bootstrap import Problem
from lime.money.grant import INTERNAL_HEADERS
from lime.settings import CATALOG_SECRET_HEADER

__all__ = [
    "ANSWER_BODY_FILTER",
    "ANSWER_HEADERS_FILTER",
    "ANSWER_NAMESPACE",
    "AUTHZ_NAMESPACE",
    "EXTPROC_NAMESPACE",
    "EXT_AUTHZ",
    "EXT_PROC",
    "FILTER_TYPES",
    "HEADER_MUTATION",
    "ROUTER",
    "STREAM_BYTES_FILTER",
    "STREAM_TAP_FILTER",
    "Filters",
    "fails_closed",
    "filter_order",
    "filter_path",
    "first",
    "stripped_headers",
]

HEADER_MUTATION = "envoy.filters.http.header_mutation"
EXT_AUTHZ = "envoy.filters.http.ext_authz"
EXT_PROC = "envoy.filters.http.ext_proc"
ANSWER_HEADERS_FILTER = "lime.answer_headers"
ANSWER_BODY_FILTER = "lime.answer_body"
STREAM_BYTES_FILTER = "lime.stream_bytes"
STREAM_TAP_FILTER = "lime.stream_tap"
ROUTER = "envoy.filters.http.router"
ANSWER_NAMESPACE = "lime.answer"
EXTPROC_NAMESPACE = "lime.extproc"
AUTHZ_NAMESPACE = "envoy.filters.http.ext_authz"
#: The typed_config class each of Lime's filters must carry (by name: per-route configs are keyed by filter name).
FILTER_TYPES = {HEADER_MUTATION: "HeaderMutation", EXT_AUTHZ: "ExtAuthz", EXT_PROC: "ExternalProcessor",
                ROUTER: "Router"}

#: The chain as (name, unpacked typed_config or None), in Envoy's order.
Filters = list[tuple[str, Any]]


def filter_path(name: str) -> str:
    return f"http_filters[{name}]"


def first(filters: Filters, name: str) -> tuple[int, Any] | None:
    for index, (filter_name, config) in enumerate(filters):
        if filter_name == name:
            return index, config
    return None


def filter_order(filters: Filters) -> Iterator[Problem]:
    found = {name: first(filters, name) for name in FILTER_TYPES}
    for name, expected in FILTER_TYPES.items():
        hit = found[name]
        if hit is None:
            yield Problem("http_filters", f"{name} is missing: add it (order: {HEADER_MUTATION}, {EXT_AUTHZ}, "
                          f"{EXT_PROC}, ..., {ROUTER} last).")
        elif type(hit[1]).__name__ != expected:
            yield Problem(filter_path(name), f"its typed_config is {type(hit[1]).__name__}, not {expected}: give "
                          f"the filter named {name} the {expected} config.")
    # Relative order: the strip must happen before authz reads headers, authz must admit before extproc rewrites.
    for before, after, why in (
        (HEADER_MUTATION, EXT_AUTHZ, "clients could forge Lime's internal headers for authz"),
        (EXT_AUTHZ, EXT_PROC, "extproc would rewrite and route requests nobody authorised, without a grant"),
    ):
        earlier, later = found[before], found[after]
        if earlier is not None and later is not None and earlier[0] > later[0]:
            yield Problem("http_filters", f"{after} runs before {before}: move {before} above {after}, or {why}.")
    if found[ROUTER] is not None and filters[-1][0] != ROUTER:
        yield Problem("http_filters", f"{filters[-1][0]} comes after the router, so it never runs: "
                      f"{ROUTER} must be the last filter.")


def stripped_headers(filters: Filters) -> Iterator[Problem]:
    authz = first(filters, EXT_AUTHZ)
    before_authz = filters[: authz[0]] if authz else filters
    removed = {
        mutation.remove.lower()
        for name, config in before_authz if name == HEADER_MUTATION and config is not None and config.mutations
        for mutation in config.mutations.request_mutations if mutation.remove
    }
    for header in (*INTERNAL_HEADERS, CATALOG_SECRET_HEADER):
        if header not in removed:
            yield Problem(filter_path(HEADER_MUTATION), f"{header} is not stripped from client requests: "
                          f"add `- remove: {header}` to mutations.request_mutations of {HEADER_MUTATION} (before "
                          f"{EXT_AUTHZ}); only Lime may set it, a client could otherwise forge it.")


def fails_closed(where: str, config: Any, service: str, when_down: str) -> Iterator[Problem]:
    """A filter that asks one of Lime's services must not let requests through when that service is down."""
    if config.failure_mode_allow:
        yield Problem(where, f"failure_mode_allow is true: when {service} is down {when_down}; set "
                      "failure_mode_allow: false (fail closed).")
