"""The Envoy config a running stack uses: the SRE's set of files with Lime's own addresses filled in.

Only these are replaced, by name: the ``public`` and ``stats`` listeners' addresses, the admin address, and the
endpoints of the clusters that point at Lime's processes (one endpoint per process of authz's and extproc's
pools) and at Envoy's admin (and at the demo's mock upstream: ``upstream_mock*`` and ``candidate_mock*``). One thing
is added: every route to the ``catalog_api`` cluster sets the header :data:`~lime.settings.CATALOG_SECRET_HEADER` to
the deployment's catalog secret, which is how catalog_api knows a request came through Envoy. Everything else,
routes and upstream clusters included, is used exactly as the SRE wrote it.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from lime.envoy.files import ConfigSet, read_config_set, write_config_set
from lime.settings import CATALOG_SECRET_HEADER, Address, Settings, SettingsError

__all__ = ["RenderedConfig", "render_config_set", "write_envoy_config"]

_MOCK_PREFIXES = ("upstream_mock", "candidate_mock")
_CATALOG_CLUSTER = "catalog_api"
_HCM = "envoy.filters.network.http_connection_manager"


def _socket(address: Address) -> dict[str, Any]:
    if address.path is not None:
        return {"pipe": {"path": address.path}}
    return {"socket_address": {"address": address.host, "port_value": address.port}}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _point(cluster: dict[str, Any], address: Address) -> None:
    if "load_assignment" not in cluster:
        return  # an aggregate cluster: its candidates carry the endpoints
    # Only the addresses: an endpoint's metadata (a failover candidate's) and priority stay as written.
    lb_endpoints = [lb for locality in cluster["load_assignment"].get("endpoints") or []
                    for lb in locality.get("lb_endpoints") or []]
    if not lb_endpoints:
        cluster["load_assignment"]["endpoints"] = [{"lb_endpoints": [{"endpoint": {"address": _socket(address)}}]}]
    for lb in lb_endpoints:
        lb.setdefault("endpoint", {})["address"] = _socket(address)
    if address.is_unix:
        cluster["type"] = "STATIC"  # a pipe is not resolved
        cluster.pop("dns_lookup_family", None)
    if not address.is_unix and not _is_ip(address.host):
        # A service name (docker-compose, Kubernetes) must be resolved: STATIC clusters take only IPs.
        cluster["type"] = "STRICT_DNS"
        cluster["dns_lookup_family"] = "V4_PREFERRED"


def _point_pool(cluster: dict[str, Any], addresses: tuple[Address, ...]) -> None:
    """Lime's own gRPC clusters: one endpoint per process of the service's pool (``LIME_PROCESSES``), so Envoy
    balances calls over them."""
    _point(cluster, addresses[0])
    cluster["load_assignment"]["endpoints"] = [{"lb_endpoints": [
        {"endpoint": {"address": _socket(address)}} for address in addresses]}]


def _route_configs(config: ConfigSet) -> list[dict[str, Any]]:
    """The RDS file's RouteConfiguration and every listener's inline one."""
    found = [config.routes] if config.routes is not None else []
    for listener in config.bootstrap["static_resources"].get("listeners") or []:
        for chain in listener.get("filter_chains") or []:
            for network_filter in chain.get("filters") or []:
                typed = network_filter.get("typed_config") or {}
                if network_filter.get("name") == _HCM and isinstance(typed.get("route_config"), dict):
                    found.append(typed["route_config"])
    return found


def _present_catalog_secret(config: ConfigSet, secret: str | None) -> None:
    """Every route to catalog_api presents the secret, overwriting whatever a client sent under that name."""
    for route_config in _route_configs(config):
        for vhost in route_config.get("virtual_hosts") or []:
            for route in vhost.get("routes") or []:
                if (route.get("route") or {}).get("cluster") != _CATALOG_CLUSTER:
                    continue
                if not secret:
                    raise SettingsError("LIME_CATALOG_SECRET is not set (nor catalog_secret in LIME_SECRETS_DIR): "
                                        f"Envoy must present it on route {route.get('name')!r} to catalog_api")
                added = [h for h in route.get("request_headers_to_add") or []
                         if (h.get("header") or {}).get("key", "").lower() != CATALOG_SECRET_HEADER]
                # Header values are Envoy format strings: a `%` in the secret must be written `%%`.
                added.append({"header": {"key": CATALOG_SECRET_HEADER, "value": secret.replace("%", "%%")},
                              "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"})
                route["request_headers_to_add"] = added


def render_config_set(config: ConfigSet, settings: Settings) -> ConfigSet:
    bootstrap = config.bootstrap
    bootstrap["admin"]["address"] = _socket(settings.envoy_admin)
    listeners = {"public": settings.public, "stats": settings.envoy_stats}
    for listener in bootstrap["static_resources"]["listeners"]:
        if listener["name"] in listeners:
            listener["address"] = _socket(listeners[listener["name"]])
    own = {_CATALOG_CLUSTER: settings.catalog, "envoy_admin": settings.envoy_admin}
    pools = {"lime_authz": settings.pool(settings.authz), "lime_extproc": settings.pool(settings.extproc)}
    for cluster in bootstrap["static_resources"].get("clusters") or []:
        if cluster["name"] in own:
            _point(cluster, own[cluster["name"]])
        elif cluster["name"] in pools:
            _point_pool(cluster, pools[cluster["name"]])
    for cluster in [*(bootstrap["static_resources"].get("clusters") or []), *config.clusters]:
        if cluster["name"].startswith(_MOCK_PREFIXES):
            # Every demo upstream and candidate is the one mock process.
            _point(cluster, settings.mock_upstream)
    _present_catalog_secret(config, settings.catalog_secret)
    return config


def write_envoy_config(settings: Settings, target: Path) -> Path:
    """Render the set at ``settings.envoy_config`` into ``target``'s folder; run again after an edit, and the
    running Envoy picks up the routes and clusters."""
    config = render_config_set(read_config_set(settings.envoy_config), settings)
    header = f"# Rendered by Lime from {settings.envoy_config.parent}; edit those files, not this one.\n"
    return write_config_set(config, target, header=header)


class RenderedConfig:
    """A rendered set kept in step with its sources: :meth:`refresh` renders again when the SRE's files changed,
    and Envoy, watching the rendered folder, applies the new routes and clusters (a changed bootstrap waits for
    a restart)."""

    def __init__(self, settings: Settings, target: Path) -> None:
        self.settings = settings
        self.target = target
        self._seen: dict[Path, float] = {}

    def _sources(self) -> dict[Path, float]:
        folder = self.settings.envoy_config.parent
        paths = (self.settings.envoy_config, folder / "routes.yaml", folder / "clusters.yaml")
        return {path: path.stat().st_mtime for path in paths if path.exists()}

    def render(self) -> Path:
        self._seen = self._sources()
        return write_envoy_config(self.settings, self.target)

    def refresh(self) -> bool:
        """Render again if a source changed; a set that no longer renders is left as it was (and said)."""
        if self._sources() == self._seen:
            return False
        try:
            self.render()
        except (ValueError, OSError, KeyError, TypeError) as error:  # SettingsError is a ValueError
            self._seen = self._sources()
            print(f"lime: the Envoy config no longer renders ({error}); run `lime envoy check`", flush=True)
            return False
        print(f"lime: Envoy config re-rendered from {self.settings.envoy_config.parent}", flush=True)
        return True
