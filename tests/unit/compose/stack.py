"""docker-compose.yml as ``docker compose`` reads it, and the lookups into its services the checks here share.

The file is interpolated the way Compose does it (only the required secret set, :data:`RUN_ENV`), once, at
import, into :data:`COMPOSE` and :data:`SERVICES`. The checks then follow every name in it, without a Docker
engine, each subject in a module of this folder named for it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

import yaml

from tests.deploy_checks import ROOT

__all__ = [
    "COMPOSE",
    "COMPOSE_FILE",
    "LIME_IMAGE",
    "LISTENS",
    "RUN_ENV",
    "SERVICES",
    "InterpolationError",
    "environment",
    "is_lime",
    "lime_argv",
    "listening_ports",
    "load",
    "role",
]

COMPOSE_FILE = ROOT / "docker-compose.yml"
#: What `docker compose` would be run with: only the required secret is set, everything else takes its default.
RUN_ENV = {"LIME_ADMIN_TOKEN": "admin-token-from-the-environment",
           "LIME_CATALOG_SECRET": "catalog-secret-from-the-environment"}
LIME_IMAGE = "lime-gateway"
#: The addresses each `lime` command listens on for other services, by its LIME_*_ADDR variable (lime/settings.py);
#: Envoy's admin (LIME_ENVOY_ADMIN_ADDR) is on loopback, for its own container alone.
LISTENS = {
    "authz": ("LIME_AUTHZ_ADDR", "LIME_AUTHZ_METRICS_ADDR"),
    "extproc": ("LIME_EXTPROC_ADDR", "LIME_EXTPROC_METRICS_ADDR"),
    "catalog-api": ("LIME_CATALOG_ADDR", "LIME_ADMIN_ADDR"),
    "settler": ("LIME_SETTLER_ADDR",),
    "mock-upstream": ("LIME_MOCK_UPSTREAM_ADDR",),
    "envoy": ("LIME_PUBLIC_ADDR", "LIME_ENVOY_STATS_ADDR"),
}
#: The addresses a command listens on for its own container alone (health checks reach them; nothing else can).
LOOPBACK_LISTENS = {"envoy": ("LIME_ENVOY_ADMIN_ADDR",)}

_VARIABLE = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
                       r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


class InterpolationError(ValueError):
    pass


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's variable substitution: ``${X}``, ``${X:-default}``, ``${X-default}``, ``${X:?error}``, ``$$``."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        current = env.get(name)
        missing = current is None or (current == "" and op is not None and op.startswith(":"))
        if op in (":-", "-"):
            return arg if missing else str(current)
        if op in (":?", "?"):
            if missing:
                raise InterpolationError(f"{name}: {arg}")
            return str(current)
        if op in (":+", "+"):
            return "" if missing else arg
        return current or ""

    return _VARIABLE.sub(substitute, value)


def load(env: Mapping[str, str] = RUN_ENV) -> dict[str, Any]:
    # PyYAML resolves the anchors and `<<` merge keys the file uses, as Compose does.
    document: dict[str, Any] = interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), env)
    return document


COMPOSE = load()
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def is_lime(service: Mapping[str, Any]) -> bool:
    return str(service.get("image", "")).split(":")[0] == LIME_IMAGE or "build" in service


def lime_argv(name: str) -> list[str]:
    """The arguments `lime` gets in this service (the image's entrypoint is `lime`)."""
    service = SERVICES[name]
    if "entrypoint" in service:
        entry = service["entrypoint"]
        assert entry[:2] == ["sh", "-c"], f"{name}: only `sh -c` entrypoints are understood here"
        [first, *_] = [shlex.split(part) for part in entry[2].split("&&")]
        assert first[0] == "lime", f"{name}: the shell command should start with lime, got {first}"
        return first[1:]
    return list(service.get("command", []))


def role(name: str) -> str:
    """Which `lime` process a service runs: its command, or `envoy` for the rendered-config shell."""
    argv = lime_argv(name)
    return "envoy" if argv[:2] == ["envoy", "render"] else argv[0]


def listening_ports(name: str, *, loopback: bool = False) -> set[int]:
    """The ports other services can reach; with ``loopback``, also those only the container itself can."""
    service = SERVICES[name]
    if not is_lime(service):
        return {9090} if name == "prometheus" else set()
    env = environment(service)
    ports = set()
    for variable in (*LISTENS.get(role(name), ()), *(LOOPBACK_LISTENS.get(role(name), ()) if loopback else ())):
        ports.add(int(env[variable].rpartition(":")[2]))
    return ports
