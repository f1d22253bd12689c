"""ext_proc: the filter that calls Lime's gRPC service, so it must fail closed and reach it over HTTP/2; then its
own settings. (ext_authz calls authz in Envoy's HTTP mode: authz_filter.py.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from lime.envoy.bootstrap import Problem
from lime.envoy.check.filters import (
    ANSWER_HEADERS_FILTER,
    ANSWER_NAMESPACE,
    EXT_AUTHZ,
    EXT_PROC,
    EXTPROC_NAMESPACE,
    FILTER_TYPES,
    Filters,
    fails_closed,
    filter_path,
    first,
)

__all__ = ["cluster_speaks_http2", "grpc_filters"]

_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_MIN_MESSAGE_TIMEOUT = timedelta(seconds=1)


@dataclass(frozen=True)
class _GrpcFilter:
    """A filter that calls one of Lime's gRPC services (ext_proc), so it must fail closed."""

    service: str  # the Lime service behind it, as the messages name it
    when_down: str  # what requests would do if the filter failed open while the service is down
    grpc_service: str  # the grpc_service value to suggest
    rules: Callable[[str, Any], Iterator[Problem]]  # the filter's own rules, given its path and typed config


def grpc_filters(filters: Filters, clusters: Mapping[str, Any]) -> Iterator[Problem]:
    for name in _GRPC_FILTERS:
        yield from _grpc_filter(name, filters, clusters)


def _grpc_filter(name: str, filters: Filters, clusters: Mapping[str, Any]) -> Iterator[Problem]:
    """Filter ``name`` fails closed and reaches its service over gRPC on an HTTP/2 cluster; then its own rules."""
    hit = first(filters, name)
    if hit is None or type(hit[1]).__name__ != FILTER_TYPES[name]:
        return  # reported by filter_order
    spec, config, where = _GRPC_FILTERS[name], hit[1], filter_path(name)
    yield from fails_closed(where, config, spec.service, spec.when_down)
    if config.grpc_service is None:
        yield Problem(where, f"no grpc_service: Lime's {spec.service} speaks gRPC; set grpc_service: "
                      f"{spec.grpc_service}.")
    else:
        yield from _grpc_cluster(where, config.grpc_service, clusters)
    yield from spec.rules(where, config)


def _ext_proc(where: str, config: Any) -> Iterator[Problem]:
    timeout = config.message_timeout
    if timeout is None or timeout < _MIN_MESSAGE_TIMEOUT:
        now = "not set (Envoy's default is 200 ms)" if timeout is None else f"{timeout.total_seconds():g} s"
        yield Problem(where, f"message_timeout is {now}: a GC pause or a slow Redis call would turn into a 500 "
                      "(ENVOY-NOTES pitfall 6); set message_timeout: 2s (at least 1s).")
    mode = config.processing_mode
    if mode is None or mode.request_body_mode.name != "BUFFERED":
        yield Problem(where, "processing_mode.request_body_mode must be BUFFERED: extproc rewrites the whole body "
                      "(the model id) and its content-length in one response.")
    options = config.metadata_options
    namespaces = options.forwarding_namespaces if options else None
    if namespaces is None or EXT_AUTHZ not in namespaces.untyped:
        yield Problem(where, f"metadata_options.forwarding_namespaces.untyped must include {EXT_AUTHZ}: that is how "
                      "extproc receives the grant authz wrote; without it every request fails.")
    if not config.allow_mode_override:
        yield Problem(where, "allow_mode_override must be true: extproc reads a non-streamed answer whole (response "
                      "headers SKIP, body BUFFERED, one message instead of two or more) by overriding the mode per "
                      "request; without it those answers reach the client unread.")
    if namespaces is None or ANSWER_NAMESPACE not in namespaces.untyped:
        yield Problem(where, f"metadata_options.forwarding_namespaces.untyped must include {ANSWER_NAMESPACE}: "
                      "the headers of an answer read whole reach extproc that way.")
    receiving = options.receiving_namespaces if options else None
    if receiving is None or EXTPROC_NAMESPACE not in receiving.untyped:
        yield Problem(where, f"metadata_options.receiving_namespaces.untyped must include {EXTPROC_NAMESPACE}: "
                      f"extproc's header edit for an answer read whole reaches {ANSWER_HEADERS_FILTER} that way.")


# In the order their problems are reported.
_GRPC_FILTERS = {
    EXT_PROC: _GrpcFilter("extproc", "requests would reach upstreams unrewritten and unbilled",
                          "{envoy_grpc: {cluster_name: lime_extproc}}", _ext_proc),
}


def _grpc_cluster(where: str, grpc_service: Any, clusters: Mapping[str, Any]) -> Iterator[Problem]:
    if grpc_service.envoy_grpc is None:
        return  # google_grpc dials its own target; there is no cluster to check
    name = grpc_service.envoy_grpc.cluster_name
    cluster = clusters.get(name)
    if cluster is None:
        yield Problem(where, f"grpc_service names cluster {name!r}, which is not defined: add it to "
                      "static_resources.clusters or fix the name.")
        return
    if not cluster_speaks_http2(cluster):
        yield Problem(f"clusters[{name}]", f"gRPC needs HTTP/2 but this cluster (used by {where}) speaks HTTP/1.1: "
                      f"add typed_extension_protocol_options: {{{_HTTP_OPTIONS}: {{'@type': type.googleapis.com/"
                      f"{_HTTP_OPTIONS}, explicit_http_config: {{http2_protocol_options: {{}}}}}}}}.")


def cluster_speaks_http2(cluster: Any) -> bool:
    options = cluster.typed_extension_protocol_options.get(_HTTP_OPTIONS)
    http = options.unpack() if options is not None else None
    explicit = http.explicit_http_config if http is not None else None
    return explicit is not None and explicit.http2_protocol_options is not None
