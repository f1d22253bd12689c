"""The public listener's routes: each names a defined cluster, keeps Lime's filters on where it forwards, does not
cut long streams off, and every upstream has a route that is not shadowed by an earlier one."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from lime.envoy.bootstrap import Problem
from lime.envoy.check.filters import EXT_AUTHZ, EXT_PROC, HEADER_MUTATION
from lime.money.grant import UPSTREAM_HEADER

__all__ = ["Route", "route_targets", "routes_of", "upstream_routes"]

_UPSTREAM_PREFIX = "upstream_"
_MIN_STREAM_TIMEOUT = timedelta(seconds=300)


@dataclass(frozen=True)
class Route:
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


def routes_of(hcm: Any) -> list[Route]:
    found = []
    for vhost in hcm.route_config.virtual_hosts if hcm.route_config else []:
        for index, route in enumerate(vhost.routes):
            found.append(Route(f"virtual_hosts[{vhost.name}].routes[{route.name or index}]", route,
                               tuple(vhost.routes[:index]), vhost.typed_per_filter_config))
    return found


def route_targets(routes: list[Route], clusters: Mapping[str, Any]) -> Iterator[Problem]:
    for route in routes:
        if route.route.match is None:
            yield Problem(route.where, "no match: Envoy requires one on every route (a catch-all is "
                          "{prefix: /}); add it.")
            continue
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


def _filters_disabled(route: Route, names: Iterable[str]) -> Iterator[Problem]:
    """A per-route config may switch a filter off; on a forwarded route that would bypass Lime."""
    configs = {**route.vhost_filter_configs, **route.route.typed_per_filter_config}
    for name in names:
        config = configs.get(name)
        # ExtAuthzPerRoute, ExtProcPerRoute and the generic FilterConfig all spell it `disabled`.
        if config is not None and getattr(config.unpack(), "disabled", False):
            yield Problem(route.where, f"typed_per_filter_config disables {name} on a route that forwards "
                          "requests: remove that entry, or they would bypass Lime there.")


def _matches_upstream(route: Any, upstream: str) -> bool:
    if route.match is None:
        return False  # reported by route_targets
    return any(
        header.name.lower() == UPSTREAM_HEADER and not header.invert_match
        and header.string_match is not None and header.string_match.exact == upstream
        for header in route.match.headers
    )


def _shadows(earlier: Any, later: Any) -> bool:
    """Whether ``earlier`` catches every request ``later`` would (only the common case: a bare prefix match)."""
    first, second = earlier.match, later.match
    if first is None or second is None:
        return False  # reported by route_targets
    bare = set(first.to_dict()) <= {"prefix", "caseSensitive"}  # no header, query, metadata... conditions
    return bool(bare and first.prefix is not None and second.prefix is not None
                and second.prefix.startswith(first.prefix))


def upstream_routes(upstream: str, routes: list[Route], clusters: Mapping[str, Any]) -> Iterator[Problem]:
    """Upstream ``upstream`` has its cluster and a route to it that no earlier route shadows."""
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
