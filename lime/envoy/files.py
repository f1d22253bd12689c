"""Lime's Envoy config is a set of three files: the bootstrap, and the routes and clusters it loads from watched
files (Envoy's filesystem xDS). This module reads the set, writes it, and folds it into one static bootstrap.

The folded form is what `lime envoy check` verifies: ``envoy --mode validate`` does not load xDS files, so the
routes and clusters are put inline (``route_config``, ``static_resources.clusters``) where both Envoy's validation
and Lime's invariants see them. Paths in the bootstrap are relative to the bootstrap's own folder; a written set
has absolute paths, and each file is replaced atomically, which is what makes Envoy (watching the folder) reload it.
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ConfigSet", "ConfigSetError", "fold", "load_yaml", "read_config_set", "replace_file", "write_config_set"]

_HCM = "envoy.filters.network.http_connection_manager"


class ConfigSetError(ValueError):
    """The set cannot be read: a file is missing, is not YAML, or is not shaped as Envoy expects."""


@dataclass
class ConfigSet:
    bootstrap: dict[str, Any]
    #: The Cluster resources of the CDS file, or ``[]`` when the bootstrap has no file-based CDS.
    clusters: list[dict[str, Any]]
    #: The RouteConfiguration of the public listener's RDS file, or ``None`` when its routes are inline.
    routes: dict[str, Any] | None
    folder: Path


#: libyaml's safe loader where PyYAML was built with it (its wheels are): the same documents as ``yaml.safe_load``,
#: several times faster on Envoy's long files (``lime envoy check`` reads them more than once).
_SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load``, with libyaml when there is one."""
    return yaml.load(text, Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader, C or Python


def _load(path: Path) -> Any:
    try:
        return load_yaml(path.read_text())
    except OSError as error:
        raise ConfigSetError(f"{path}: cannot read it ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise ConfigSetError(f"{path}: not valid YAML ({error})") from None


def _resources(path: Path, kind: str) -> list[dict[str, Any]]:
    document = _load(path)
    resources = document.get("resources") if isinstance(document, dict) else None
    if not isinstance(resources, list) or not all(isinstance(r, dict) for r in resources):
        raise ConfigSetError(f"{path}: expected a `resources:` list of {kind} objects (an xDS DiscoveryResponse)")
    return resources


def _hcms(bootstrap: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for listener in (bootstrap.get("static_resources") or {}).get("listeners") or []:
        for chain in listener.get("filter_chains") or []:
            for network_filter in chain.get("filters") or []:
                if network_filter.get("name") == _HCM and isinstance(network_filter.get("typed_config"), dict):
                    yield network_filter["typed_config"]


def _file_source(source: Any) -> dict[str, Any] | None:
    """The ``path_config_source`` of a config source, if it is file-based."""
    return source.get("path_config_source") if isinstance(source, dict) else None


def _cds(bootstrap: dict[str, Any]) -> dict[str, Any] | None:
    return _file_source((bootstrap.get("dynamic_resources") or {}).get("cds_config"))


def _rds(hcm: dict[str, Any]) -> dict[str, Any] | None:
    rds = hcm.get("rds")
    return _file_source(rds.get("config_source")) if isinstance(rds, dict) else None


def _resolve(folder: Path, path: str) -> Path:
    return Path(path) if os.path.isabs(path) else folder / path


def read_config_set(path: Path) -> ConfigSet:
    bootstrap = _load(path)
    if not isinstance(bootstrap, dict):
        raise ConfigSetError(f"{path}: not an Envoy bootstrap (a YAML mapping)")
    folder = path.resolve().parent
    cds = _cds(bootstrap)
    clusters = _resources(_resolve(folder, cds["path"]), "Cluster") if cds else []
    routes = None
    for hcm in _hcms(bootstrap):
        rds = _rds(hcm)
        if rds is not None:
            found = _resources(_resolve(folder, rds["path"]), "RouteConfiguration")
            if len(found) != 1:
                raise ConfigSetError(f"{rds['path']}: expected exactly one RouteConfiguration, found {len(found)}")
            routes = found[0]
    return ConfigSet(bootstrap, clusters, routes, folder)


def _without_type(resource: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in resource.items() if key != "@type"}


def fold(config: ConfigSet) -> dict[str, Any]:
    """One static bootstrap holding the whole set: what Envoy would run, in a form it can validate offline."""
    bootstrap = copy.deepcopy(config.bootstrap)
    static = bootstrap.setdefault("static_resources", {})
    if _cds(bootstrap) is not None:
        static["clusters"] = [*(static.get("clusters") or []), *(_without_type(c) for c in config.clusters)]
        dynamic = bootstrap["dynamic_resources"]
        del dynamic["cds_config"]
        if not dynamic:
            del bootstrap["dynamic_resources"]
    for hcm in _hcms(bootstrap):
        if _rds(hcm) is not None and config.routes is not None:
            del hcm["rds"]
            hcm["route_config"] = _without_type(config.routes)
    return bootstrap


def replace_file(path: Path, text: str) -> None:
    """Write then rename: Envoy watches the folder for files moved into it, and never sees half a file."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_config_set(config: ConfigSet, bootstrap_path: Path, *, header: str = "") -> Path:
    """Write the set next to ``bootstrap_path`` (``clusters.yaml``, ``routes.yaml``), the bootstrap pointing at
    them by absolute path with the folder watched, so that a later rewrite of either applies without a restart."""
    folder = bootstrap_path.resolve().parent
    folder.mkdir(parents=True, exist_ok=True)
    bootstrap = copy.deepcopy(config.bootstrap)
    watched = {"path": str(folder)}
    if _cds(bootstrap) is not None:
        target = folder / "clusters.yaml"
        replace_file(target, header + yaml.safe_dump(
            {"version_info": "1", "resources": config.clusters}, sort_keys=False))
        bootstrap["dynamic_resources"]["cds_config"]["path_config_source"] = {
            "path": str(target), "watched_directory": watched}
    for hcm in _hcms(bootstrap):
        if _rds(hcm) is not None and config.routes is not None:
            target = folder / "routes.yaml"
            replace_file(target, header + yaml.safe_dump(
                {"version_info": "1", "resources": [config.routes]}, sort_keys=False))
            hcm["rds"]["config_source"]["path_config_source"] = {"path": str(target), "watched_directory": watched}
    replace_file(bootstrap_path, header + yaml.safe_dump(bootstrap, sort_keys=False))
    return bootstrap_path
