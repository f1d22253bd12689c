"""``lime envoy check``: verify that an SRE-edited Envoy config still keeps Lime's invariants.

``envoy --mode validate`` only proves that Envoy accepts a file; it cannot know that ext_authz must run before
ext_proc, that both must fail closed, or that a client must never be able to send ``x-lime-upstream``. This module
checks those rules on the typed ``Bootstrap`` that :mod:`lime.envoy.bootstrap` loads, then lets Envoy validate the
file too. Nothing on the request path imports it.

Every :class:`Problem` says what is wrong and how to fix it. ENVOY-NOTES.md explains the pitfalls behind the rules.
"""

from __future__ import annotations

import ipaddress
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from lime.envoy.bootstrap import Problem, load_bootstrap, validate_with_envoy
from lime.envoy.files import ConfigSetError, fold, read_config_set
from lime.money.grant import INTERNAL_HEADERS, UPSTREAM_HEADER
from lime.settings import CATALOG_SECRET_HEADER

__all__ = ["CheckReport", "Problem", "check", "load_bootstrap", "validate_with_envoy", "verify"]

HEADER_MUTATION = "envoy.filters.http.header_mutation"
EXT_AUTHZ = "envoy.filters.http.ext_authz"
EXT_PROC = "envoy.filters.http.ext_proc"
ANSWER_HEADERS_FILTER = "lime.answer_headers"
ANSWER_BODY_FILTER = "lime.answer_body"
STREAM_BYTES_FILTER = "lime.stream_bytes"
STREAM_TAP_FILTER = "lime.stream_tap"
#: How long Envoy keeps the observing tap's stream open after the request: ENVOY-NOTES pitfall 7 lost the end of a
#: stream at 1 s with a slow reader; below this, a backlog in extproc could cost a stream its final usage.
_MIN_DEFERRED_CLOSE = timedelta(seconds=5)
_ANSWER_NAMESPACE = "lime.answer"
_EXTPROC_NAMESPACE = "lime.extproc"
_AUTHZ_NAMESPACE = "envoy.filters.http.ext_authz"
ROUTER = "envoy.filters.http.router"
#: The typed_config class each of Lime's filters must carry (by name: per-route configs are keyed by filter name).
_FILTER_TYPES = {HEADER_MUTATION: "HeaderMutation", EXT_AUTHZ: "ExtAuthz", EXT_PROC: "ExternalProcessor",
                 ROUTER: "Router"}
_PUBLIC_LISTENER = "public"  # the listener lime up renders its address into (lime/envoy/render.py)
_HCM = "envoy.filters.network.http_connection_manager"
_UPSTREAM_PREFIX = "upstream_"
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_MIN_STREAM_TIMEOUT = timedelta(seconds=300)
_MIN_MESSAGE_TIMEOUT = timedelta(seconds=1)


@dataclass
class CheckReport:
    problems: list[Problem] = field(default_factory=list)
    envoy_output: str = ""  # the tail of `envoy --mode validate`, empty when it was not run

    @property
    def ok(self) -> bool:
        return not self.problems


def check(path: Path, upstream_ids: Iterable[str], *, run_envoy: bool = True) -> CheckReport:
    """Lime's invariants on the set whose bootstrap is ``path`` (its routes and clusters files included), then
    (unless ``run_envoy`` is false) Envoy's own validation of the whole set."""
    try:
        config = read_config_set(path)
    except ConfigSetError as error:
        return CheckReport([Problem(str(path), str(error))])
    with tempfile.TemporaryDirectory(prefix="lime-envoy-check-") as folder:
        # envoy --mode validate does not load xDS files: check and validate the set folded into one bootstrap.
        folded = Path(folder) / "envoy.yaml"
        folded.write_text(yaml.safe_dump(fold(config), sort_keys=False))
        bootstrap, problems = load_bootstrap(folded)
        if bootstrap is not None:
            problems += verify(bootstrap, upstream_ids)
        report = CheckReport(problems)
        if run_envoy:
            # Run even when the typed load failed: Envoy's own message can be the clearer one.
            envoy_ok, report.envoy_output = validate_with_envoy(folded)
            if not envoy_ok:
                problems.append(Problem("envoy --mode validate", "Envoy rejects this set; its output says why."))
    return report


# --- Lime's invariants ---------------------------------------------------------------------------------------------

def verify(bootstrap: Any, upstream_ids: Iterable[str]) -> list[Problem]:
    """Lime's invariants on a typed ``Bootstrap``; every upstream id must have its cluster and route."""
    resources = bootstrap.static_resources
    listeners = resources.listeners if resources else []
    clusters = {cluster.name: cluster for cluster in (resources.clusters if resources else [])}
    hcm = _public_hcm(listeners)
    if hcm is None:
        return [Problem(f"listeners[{_PUBLIC_LISTENER}]", f"no listener named {_PUBLIC_LISTENER!r} with an {_HCM}: "
                        "Lime's traffic enters there (lime up renders its address by that name); restore it.")]
    filters = [(f.name, f.typed_config.unpack() if f.typed_config else None) for f in hcm.http_filters]
    routes = _routes(hcm)
    return [
        *_admin_off_the_network(bootstrap.admin),
        *_filter_order(filters),
        *_answer_filters(filters),
        *_request_ids(hcm),
        *_stripped_headers(filters),
        *(problem for name in _GRPC_FILTERS for problem in _grpc_filter(name, filters, clusters)),
        *([Problem("rds", "the public listener must load its routes from a file (rds with path_config_source) "
                   "or carry them inline, so that `lime envoy check` can verify them.")]
          if hcm.route_config is None else []),
        *_route_targets(routes, clusters),
        *_aggregates(clusters),
        *(problem for upstream in upstream_ids for problem in _upstream(upstream, routes, clusters)),
    ]


def _admin_off_the_network(admin: Any) -> Iterator[Problem]:
    """Whoever reaches Envoy's admin can stop it (/quitquitquit), change its runtime and dump its config, secrets
    included: it belongs on loopback or a Unix socket, with Prometheus on the stats listener."""
    address = admin.address if admin is not None else None
    if address is None or address.pipe is not None:
        return  # no admin at all, or a Unix socket: nothing on the network
    socket = address.socket_address
    host = socket.address if socket is not None else ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        yield Problem("admin.address", f"Envoy's admin listens on {host!r}, reachable from the network: anyone "
                      "there could stop Envoy (/quitquitquit) or change its runtime. Bind it to 127.0.0.1 (or a "
                      "pipe) and let Prometheus scrape the `stats` listener, which serves only /stats/prometheus.")


def _public_hcm(listeners: Iterable[Any]) -> Any | None:
    for listener in listeners:
        if listener.name != _PUBLIC_LISTENER:
            continue
        for chain in listener.filter_chains:
            for network_filter in chain.filters:
                if network_filter.name == _HCM and network_filter.typed_config:
                    return network_filter.typed_config.unpack()
    return None


def _request_ids(hcm: Any) -> Iterator[Problem]:
    """The request id keys a request's records: Envoy must make it, never take the client's."""
    internal = hcm.internal_address_config
    if not hcm.use_remote_address or hcm.preserve_external_request_id or internal is None \
            or not internal.cidr_ranges:
        yield Problem(_HCM, "a client could choose its own x-request-id, which keys its records: set "
                      "use_remote_address: true, preserve_external_request_id: false and internal_address_config "
                      "with a cidr_ranges list that holds no client (an empty list means Envoy's defaults, which "
                      "count loopback and private ranges as internal).")


def _where(name: str) -> str:
    return f"http_filters[{name}]"


def _first(filters: list[tuple[str, Any]], name: str) -> tuple[int, Any] | None:
    for index, (filter_name, config) in enumerate(filters):
        if filter_name == name:
            return index, config
    return None


def _answer_filters(filters: list[tuple[str, Any]]) -> Iterator[Problem]:
    """The two Lua filters around ext_proc that carry an answer read whole (envoy/envoy.yaml says what each does)."""
    ext_proc, headers, body = _first(filters, EXT_PROC), _first(filters, ANSWER_HEADERS_FILTER), \
        _first(filters, ANSWER_BODY_FILTER)
    if ext_proc is None:
        return  # reported by _filter_order
    if headers is None or headers[0] > ext_proc[0]:
        yield Problem("http_filters", f"{ANSWER_HEADERS_FILTER} must come before {EXT_PROC} (it runs after it on the "
                      "way out): without it, a non-streamed answer keeps the upstream's headers.")
    if body is None or body[0] < ext_proc[0]:
        yield Problem("http_filters", f"{ANSWER_BODY_FILTER} must come after {EXT_PROC}: without it, a non-streamed "
                      "answer without a body never reaches extproc.")
    stream = _first(filters, STREAM_BYTES_FILTER)
    if stream is None or stream[0] > ext_proc[0]:
        yield Problem("http_filters", f"{STREAM_BYTES_FILTER} must come before {EXT_PROC} (it runs after it on the "
                      "way out): without it, a streamed answer keeps the upstream's model id and the usage chunk "
                      "the client did not ask for (extproc/stream_modes.py).")
    tap = _first(filters, STREAM_TAP_FILTER)
    if tap is None or tap[0] > ext_proc[0] or (stream is not None and tap[0] < stream[0] < ext_proc[0]):
        yield Problem("http_filters", f"{STREAM_TAP_FILTER} must come after {STREAM_BYTES_FILTER} and before "
                      f"{EXT_PROC} (on the way out it reads what ext_proc passed, before {STREAM_BYTES_FILTER} "
                      "edits it and removes the x-lime-observe mark): without it, a stream extproc hands off is "
                      "never read, and the reaper settles it at no charge (extproc/stream_modes.py).")
    else:
        yield from _stream_tap(_where(STREAM_TAP_FILTER), tap[1])


def _stream_tap(where: str, config: Any) -> Iterator[Problem]:
    """The observing tap: ext_proc in observability mode behind a matcher on extproc's mark."""
    extension = getattr(config, "extension_config", None)
    inner: Any = extension.typed_config.unpack() if extension is not None and extension.typed_config else None
    if type(inner).__name__ != "ExternalProcessor" or config.xds_matcher is None:
        yield Problem(where, "must be an ExtensionWithMatcher around an ExternalProcessor, skipped unless the "
                      "response carries x-lime-observe: 1 (see envoy/envoy.yaml): otherwise it reads every answer.")
        return
    mode = inner.processing_mode
    if not inner.observability_mode or mode is None or mode.response_body_mode.name != "STREAMED":
        yield Problem(where, "observability_mode: true with response_body_mode: STREAMED is required: the tap reads "
                      "each chunk without the chunk waiting for extproc.")
    forwarded = set(inner.metadata_options.forwarding_namespaces.untyped) if inner.metadata_options and \
        inner.metadata_options.forwarding_namespaces else set()
    if not {_AUTHZ_NAMESPACE, _EXTPROC_NAMESPACE} <= forwarded:
        yield Problem(where, f"metadata_options.forwarding_namespaces.untyped must hold {_AUTHZ_NAMESPACE} and "
                      f"{_EXTPROC_NAMESPACE}: the tap settles from authz's grant and extproc's word.")
    timeout = inner.deferred_close_timeout
    if timeout is None or timeout < _MIN_DEFERRED_CLOSE:
        yield Problem(where, f"deferred_close_timeout must be at least {_MIN_DEFERRED_CLOSE.total_seconds():g} s "
                      "(Envoy's default is 5 s): Envoy closes the tap's stream that long after the request, and "
                      "a backlog in extproc would lose the end of a stream, its usage with it.")


def _filter_order(filters: list[tuple[str, Any]]) -> Iterator[Problem]:
    found = {name: _first(filters, name) for name in _FILTER_TYPES}
    for name, expected in _FILTER_TYPES.items():
        hit = found[name]
        if hit is None:
            yield Problem("http_filters", f"{name} is missing: add it (order: {HEADER_MUTATION}, {EXT_AUTHZ}, "
                          f"{EXT_PROC}, ..., {ROUTER} last).")
        elif type(hit[1]).__name__ != expected:
            yield Problem(_where(name), f"its typed_config is {type(hit[1]).__name__}, not {expected}: give the "
                          f"filter named {name} the {expected} config.")
    # Relative order: the strip must happen before authz reads headers, authz must admit before extproc rewrites.
    for before, after, why in (
        (HEADER_MUTATION, EXT_AUTHZ, "clients could forge Lime's internal headers for authz"),
        (EXT_AUTHZ, EXT_PROC, "extproc would rewrite and route requests nobody authorised, without a grant"),
    ):
        first, second = found[before], found[after]
        if first is not None and second is not None and first[0] > second[0]:
            yield Problem("http_filters", f"{after} runs before {before}: move {before} above {after}, or {why}.")
    if found[ROUTER] is not None and filters[-1][0] != ROUTER:
        yield Problem("http_filters", f"{filters[-1][0]} comes after the router, so it never runs: "
                      f"{ROUTER} must be the last filter.")


def _stripped_headers(filters: list[tuple[str, Any]]) -> Iterator[Problem]:
    authz = _first(filters, EXT_AUTHZ)
    before_authz = filters[: authz[0]] if authz else filters
    removed = {
        mutation.remove.lower()
        for name, config in before_authz if name == HEADER_MUTATION and config is not None and config.mutations
        for mutation in config.mutations.request_mutations if mutation.remove
    }
    for header in (*INTERNAL_HEADERS, CATALOG_SECRET_HEADER):
        if header not in removed:
            yield Problem(_where(HEADER_MUTATION), f"{header} is not stripped from client requests: add "
                          f"`- remove: {header}` to mutations.request_mutations of {HEADER_MUTATION} (before "
                          f"{EXT_AUTHZ}); only Lime may set it, a client could otherwise forge it.")


@dataclass(frozen=True)
class _GrpcFilter:
    """ext_authz or ext_proc: a filter that calls one of Lime's gRPC services, so it must fail closed."""

    service: str  # the Lime service behind it, as the messages name it
    when_down: str  # what requests would do if the filter failed open while the service is down
    grpc_service: str  # the grpc_service value to suggest
    rules: Callable[[str, Any], Iterator[Problem]]  # the filter's own rules, given its path and typed config


def _grpc_filter(name: str, filters: list[tuple[str, Any]], clusters: Mapping[str, Any]) -> Iterator[Problem]:
    """Filter ``name`` fails closed and reaches its service over gRPC on an HTTP/2 cluster; then its own rules."""
    hit = _first(filters, name)
    if hit is None or type(hit[1]).__name__ != _FILTER_TYPES[name]:
        return  # reported by _filter_order
    spec, config, where = _GRPC_FILTERS[name], hit[1], _where(name)
    if config.failure_mode_allow:
        yield Problem(where, f"failure_mode_allow is true: when {spec.service} is down {spec.when_down}; set "
                      "failure_mode_allow: false (fail closed).")
    if config.grpc_service is None:
        yield Problem(where, f"no grpc_service: Lime's {spec.service} speaks gRPC; set grpc_service: "
                      f"{spec.grpc_service}.")
    else:
        yield from _grpc_cluster(where, config.grpc_service, clusters)
    yield from spec.rules(where, config)


def _ext_authz(where: str, config: Any) -> Iterator[Problem]:
    body = config.with_request_body
    if body is None or not body.pack_as_bytes:
        yield Problem(where, "with_request_body with pack_as_bytes: true is required: authz reads the model and "
                      "stream flag from the body, and without pack_as_bytes a non-UTF-8 body is mangled; set "
                      "with_request_body: {max_request_bytes: 33554432, allow_partial_message: false, "
                      "pack_as_bytes: true}.")


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
    if namespaces is None or _ANSWER_NAMESPACE not in namespaces.untyped:
        yield Problem(where, f"metadata_options.forwarding_namespaces.untyped must include {_ANSWER_NAMESPACE}: "
                      "the headers of an answer read whole reach extproc that way.")
    receiving = options.receiving_namespaces if options else None
    if receiving is None or _EXTPROC_NAMESPACE not in receiving.untyped:
        yield Problem(where, f"metadata_options.receiving_namespaces.untyped must include {_EXTPROC_NAMESPACE}: "
                      f"extproc's header edit for an answer read whole reaches {ANSWER_HEADERS_FILTER} that way.")


_GRPC_FILTERS = {
    EXT_AUTHZ: _GrpcFilter("authz", "requests would pass unauthenticated and unreserved",
                           "{envoy_grpc: {cluster_name: lime_authz}, timeout: 2s}", _ext_authz),
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
    options = cluster.typed_extension_protocol_options.get(_HTTP_OPTIONS)
    http = options.unpack() if options is not None else None
    explicit = http.explicit_http_config if http is not None else None
    if explicit is None or explicit.http2_protocol_options is None:
        yield Problem(f"clusters[{name}]", f"gRPC needs HTTP/2 but this cluster (used by {where}) speaks HTTP/1.1: "
                      f"add typed_extension_protocol_options: {{{_HTTP_OPTIONS}: {{'@type': type.googleapis.com/"
                      f"{_HTTP_OPTIONS}, explicit_http_config: {{http2_protocol_options: {{}}}}}}}}.")


@dataclass(frozen=True)
class _Route:
    where: str
    route: Any  # envoy.config.route.v3.Route
    previous: tuple[Any, ...]  # the routes before it in its virtual host, which Envoy tries first
    vhost_filter_configs: Mapping[str, Any]

    @property
    def clusters(self) -> list[str]:
        action = self.route.route
        if action is None:
            return []  # direct_response or redirect
        if action.weighted_clusters is not None:
            return [weighted.name for weighted in action.weighted_clusters.clusters]
        return [action.cluster] if action.cluster else []  # cluster_header: chosen at run time


def _routes(hcm: Any) -> list[_Route]:
    found = []
    for vhost in hcm.route_config.virtual_hosts if hcm.route_config else []:
        for index, route in enumerate(vhost.routes):
            found.append(_Route(f"virtual_hosts[{vhost.name}].routes[{route.name or index}]", route,
                                tuple(vhost.routes[:index]), vhost.typed_per_filter_config))
    return found


def _route_targets(routes: list[_Route], clusters: Mapping[str, Any]) -> Iterator[Problem]:
    for route in routes:
        targets = route.clusters
        for name in targets:
            if name not in clusters:
                yield Problem(route.where, f"routes to cluster {name!r}, which is not defined: add it to "
                              "static_resources.clusters or fix the name.")
        # A cluster chosen by a header (the `pinned` route: a failover candidate) is an upstream all the same.
        by_header = route.route.route is not None and bool(route.route.route.cluster_header)
        if not by_header and not any(name.startswith(_UPSTREAM_PREFIX) for name in targets):
            if targets:
                yield from _filters_disabled(route, (HEADER_MUTATION, EXT_AUTHZ))
            continue
        yield from _filters_disabled(route, (HEADER_MUTATION, EXT_AUTHZ, EXT_PROC))
        timeout = route.route.route.timeout
        if timeout is None or timedelta(0) < timeout < _MIN_STREAM_TIMEOUT:
            now = "not set (Envoy's default is 15 s)" if timeout is None else f"{timeout.total_seconds():g} s"
            yield Problem(route.where, f"timeout is {now}: long LLM streams would be cut off; set timeout: 0s and "
                          "bound a silent upstream with idle_timeout: 300s.")


def _aggregates(clusters: Mapping[str, Any]) -> Iterator[Problem]:
    """A failover group names its candidates; one that does not exist would leave a gap Envoy only finds live."""
    for name, cluster in clusters.items():
        kind = cluster.cluster_type
        if kind is None or kind.name != "envoy.clusters.aggregate" or kind.typed_config is None:
            continue
        for candidate in kind.typed_config.unpack().clusters:
            if candidate not in clusters:
                yield Problem(f"clusters[{name}]", f"failover candidate {candidate!r} is not defined: add a cluster "
                              "of that name to clusters.yaml or remove it from the group.")
                continue
            yield from _candidate_metadata(candidate, clusters[candidate])


_CANDIDATE_KEYS = ("candidate", "credential_env", "model")


def _candidate_metadata(name: str, cluster: Any) -> Iterator[Problem]:
    """Each endpoint of a candidate names itself, its credential's variable and its model id: an attempt inherits
    the headers and body of the one before, so a candidate that named none would send another's."""
    assignment = cluster.load_assignment
    for locality in assignment.endpoints if assignment else []:
        for index, endpoint in enumerate(locality.lb_endpoints):
            metadata = endpoint.metadata.to_dict().get("filterMetadata", {}) if endpoint.metadata else {}
            missing = [key for key in _CANDIDATE_KEYS if not metadata.get("lime", {}).get(key)]
            if missing:
                yield Problem(f"clusters[{name}].lb_endpoints[{index}]", f"a failover candidate's endpoint must name "
                              f"{', '.join(missing)} in metadata.filter_metadata.lime, e.g. {{candidate: {name}, "
                              "credential_env: LIME_UPSTREAM_KEY_<ID>, model: <its model id>}.")


def _filters_disabled(route: _Route, names: Iterable[str]) -> Iterator[Problem]:
    """A per-route config may switch a filter off; on a forwarded route that would bypass Lime."""
    configs = {**route.vhost_filter_configs, **route.route.typed_per_filter_config}
    for name in names:
        config = configs.get(name)
        # ExtAuthzPerRoute, ExtProcPerRoute and the generic FilterConfig all spell it `disabled`.
        if config is not None and getattr(config.unpack(), "disabled", False):
            yield Problem(route.where, f"typed_per_filter_config disables {name} on a route that forwards "
                          "requests: remove that entry, or they would bypass Lime there.")


def _matches_upstream(route: Any, upstream: str) -> bool:
    return any(
        header.name.lower() == UPSTREAM_HEADER and not header.invert_match
        and header.string_match is not None and header.string_match.exact == upstream
        for header in route.match.headers
    )


def _shadows(earlier: Any, later: Any) -> bool:
    """Whether ``earlier`` catches every request ``later`` would (only the common case: a bare prefix match)."""
    first, second = earlier.match, later.match
    bare = set(first.to_dict()) <= {"prefix", "caseSensitive"}  # no header, query, metadata... conditions
    return bool(bare and first.prefix is not None and second.prefix is not None
                and second.prefix.startswith(first.prefix))


def _upstream(upstream: str, routes: list[_Route], clusters: Mapping[str, Any]) -> Iterator[Problem]:
    cluster = f"{_UPSTREAM_PREFIX}{upstream}"
    if cluster not in clusters:
        yield Problem(f"clusters[{cluster}]", f"upstream {upstream!r} has no cluster: add a cluster named "
                      f"{cluster} with the upstream's endpoints.")
    matching = [r for r in routes if _matches_upstream(r.route, upstream)]
    if not any(cluster in r.clusters for r in matching):
        yield Problem(f"routes[{cluster}]", f"upstream {upstream!r} has no route: before the catch-all route, add "
                      f"{{name: {cluster}, match: {{prefix: /v1/, headers: [{{name: {UPSTREAM_HEADER}, string_match: "
                      f"{{exact: {upstream}}}}}]}}, route: {{cluster: {cluster}, timeout: 0s, idle_timeout: 300s}}}}.")
        return
    for route in matching:
        shadow = next((earlier for earlier in route.previous if _shadows(earlier, route.route)), None)
        if shadow is not None:
            yield Problem(route.where, f"never matches: the earlier route {shadow.name or shadow.match.prefix!r} "
                          "catches the same requests first; move this route above it.")
