"""Lime's invariants on a typed ``Bootstrap``: every rule of the package, in the order it reports them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lime.envoy.bootstrap import Problem
from lime.envoy.check.answer_filters import answer_filters
from lime.envoy.check.authz_filter import authz_filter
from lime.envoy.check.failover import aggregates
from lime.envoy.check.filters import filter_order, stripped_headers
from lime.envoy.check.grpc_filters import grpc_filters
from lime.envoy.check.listener import HCM, PUBLIC_LISTENER, admin_off_the_network, public_hcm, request_ids
from lime.envoy.check.routes import route_targets, routes_of, upstream_routes

__all__ = ["verify"]


def verify(bootstrap: Any, upstream_ids: Iterable[str]) -> list[Problem]:
    """Lime's invariants on a typed ``Bootstrap``; every upstream id must have its cluster and route."""
    resources = bootstrap.static_resources
    listeners = resources.listeners if resources else []
    clusters = {cluster.name: cluster for cluster in (resources.clusters if resources else [])}
    hcm = public_hcm(listeners)
    if hcm is None:
        return [Problem(f"listeners[{PUBLIC_LISTENER}]", f"no listener named {PUBLIC_LISTENER!r} with an {HCM}: "
                        "Lime's traffic enters there (lime up renders its address by that name); restore it.")]
    filters = [(f.name, f.typed_config.unpack() if f.typed_config else None) for f in hcm.http_filters]
    routes = routes_of(hcm)
    return [
        *admin_off_the_network(bootstrap.admin),
        *filter_order(filters),
        *answer_filters(filters),
        *request_ids(hcm),
        *stripped_headers(filters),
        *authz_filter(filters, clusters, hcm),
        *grpc_filters(filters, clusters),
        *([Problem("rds", "the public listener must load its routes from a file (rds with path_config_source) "
                   "or carry them inline, so that `lime envoy check` can verify them.")]
          if hcm.route_config is None else []),
        *route_targets(routes, clusters),
        *aggregates(clusters),
        *(problem for upstream in upstream_ids for problem in upstream_routes(upstream, routes, clusters)),
    ]
