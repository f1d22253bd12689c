"""The public listener Lime's traffic enters by, its request ids, and Envoy's admin kept off the network."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from typing import Any

from lime.envoy.bootstrap import Problem

__all__ = ["HCM", "PUBLIC_LISTENER", "admin_off_the_network", "public_hcm", "request_ids"]

PUBLIC_LISTENER = "public"  # the listener lime up renders its address into (lime/envoy/render.py)
HCM = "envoy.filters.network.http_connection_manager"


def admin_off_the_network(admin: Any) -> Iterator[Problem]:
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


def public_hcm(listeners: Iterable[Any]) -> Any | None:
    for listener in listeners:
        if listener.name != PUBLIC_LISTENER:
            continue
        for chain in listener.filter_chains:
            for network_filter in chain.filters:
                if network_filter.name == HCM and network_filter.typed_config:
                    return network_filter.typed_config.unpack()
    return None


def request_ids(hcm: Any) -> Iterator[Problem]:
    """The request id keys a request's records: Envoy must make it, never take the client's."""
    internal = hcm.internal_address_config
    if not hcm.use_remote_address or hcm.preserve_external_request_id or internal is None \
            or not internal.cidr_ranges:
        yield Problem(HCM, "a client could choose its own x-request-id, which keys its records: set "
                      "use_remote_address: true, preserve_external_request_id: false and internal_address_config "
                      "with a cidr_ranges list that holds no client (an empty list means Envoy's defaults, which "
                      "count loopback and private ranges as internal).")
