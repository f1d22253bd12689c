"""The Envoy config a running stack uses: the SRE's file with Lime's own addresses filled in.

Only these are replaced, by name: the ``public`` listener's address, the admin address, and the endpoints of
the clusters that point at Lime's processes (and at the demo mock upstream, ``upstream_mock*``). Everything
else, routes and upstream clusters included, is used exactly as the SRE wrote it.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import yaml

from lime.settings import Address, Settings

__all__ = ["render_envoy_config", "write_envoy_config"]


def _socket(address: Address) -> dict[str, Any]:
    return {"socket_address": {"address": address.host, "port_value": address.port}}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def render_envoy_config(text: str, settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(text)
    config["admin"]["address"] = _socket(settings.envoy_admin)
    for listener in config["static_resources"]["listeners"]:
        if listener["name"] == "public":
            listener["address"] = _socket(settings.public)
    own = {
        "lime_authz": settings.authz,
        "lime_extproc": settings.extproc,
        "catalog_api": settings.catalog,
    }
    for cluster in config["static_resources"]["clusters"]:
        name = cluster["name"]
        # Every demo upstream (upstream_mock, upstream_mock_anthropic, ...) is the one mock process.
        address = settings.mock_upstream if name.startswith("upstream_mock") else own.get(name)
        if address is not None:
            cluster["load_assignment"]["endpoints"] = [{"lb_endpoints": [{"endpoint": {"address": _socket(address)}}]}]
            if not _is_ip(address.host):
                # A service name (docker-compose, Kubernetes) must be resolved: STATIC clusters take only IPs.
                cluster["type"] = "STRICT_DNS"
                cluster["dns_lookup_family"] = "V4_PREFERRED"
    return config


def write_envoy_config(settings: Settings, target: Path) -> Path:
    config = render_envoy_config(settings.envoy_config.read_text(), settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("# Rendered by Lime from " + str(settings.envoy_config) + "; edit that file, not this one.\n"
                      + yaml.safe_dump(config, sort_keys=False))
    return target
