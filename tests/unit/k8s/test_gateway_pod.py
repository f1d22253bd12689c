"""The gateway pod: authz and extproc as native sidecars of Envoy, sharing Unix sockets (or loopback ports) with
it; their probes, and Envoy's preStop hook, run here against loopback listeners; a grace period that covers the
drain; Envoy's admin and public addresses; its clusters reached through Services the NetworkPolicies allow."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from lime.settings import Settings, is_loopback
from tests.deploy_checks import ROOT, http_server, run_probe, tcp_listener, unix_listener
from tests.unit.k8s.manifests import (
    GATEWAY,
    OVERLAYS,
    Object,
    allowed_from,
    container,
    environment,
    find,
    gateway_spec,
    pods_selected,
)

SIDECARS = {"authz": "LIME_AUTHZ_ADDR", "extproc": "LIME_EXTPROC_ADDR"}


def test_authz_and_extproc_are_native_sidecars_started_before_envoy() -> None:
    for render_name in ("base", *OVERLAYS):
        spec = gateway_spec(render_name)
        sidecars = {c["name"]: c for c in spec["initContainers"]}
        assert set(sidecars) == set(SIDECARS)
        for c in sidecars.values():
            assert c["restartPolicy"] == "Always" and "startupProbe" in c
        assert [c["name"] for c in spec["containers"]] == ["envoy"]


@pytest.mark.parametrize("render_name", ["base", *OVERLAYS])
def test_envoy_and_the_sidecars_agree_on_their_sockets(render_name: str) -> None:
    spec = gateway_spec(render_name)
    envoy = environment(render_name, spec["containers"][0])
    for name, variable in SIDECARS.items():
        [sidecar] = [c for c in spec["initContainers"] if c["name"] == name]
        address = environment(render_name, sidecar)[variable]
        assert envoy[variable] == address, f"{render_name}: envoy and {name} disagree on {variable}"
        if address.startswith("unix:"):
            path = Path(address.removeprefix("unix:"))
            for c in (sidecar, spec["containers"][0]):
                volumes = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
                assert str(path.parent) in volumes, f"{c['name']} does not mount {path.parent}"
                [volume] = [v for v in spec["volumes"] if v["name"] == volumes[str(path.parent)]]
                assert "emptyDir" in volume, "the sockets live in a volume the pod's containers share"
        else:
            assert address.startswith("127.0.0.1:"), f"{render_name}: {variable}={address} leaves the pod"
    expected = "tcp" if render_name == "local-tcp" else "unix"
    assert all(envoy[v].startswith("unix:") == (expected == "unix") for v in SIDECARS.values())


def sidecar_probe(c: Object, kind: str) -> list[str]:
    command: list[str] = c[kind]["exec"]["command"]
    return command


def test_the_sidecar_probes_pass_when_serving_and_fail_when_not(tmp_path: Path) -> None:
    for render_name in ("dev", "local-tcp"):
        for name, variable in SIDECARS.items():
            c = container(render_name, GATEWAY, name)
            for kind in ("startupProbe",):
                probe = sidecar_probe(c, kind)
                address = environment(render_name, c)[variable]
                if address.startswith("unix:"):
                    path = tmp_path / f"{name}.sock"
                    with unix_listener(path):
                        assert run_probe(probe, {variable: f"unix:{path}"}) == 0, f"{name} {kind}"
                    path.unlink()
                    assert run_probe(probe, {variable: f"unix:{path}"}) != 0, f"{name} {kind} with nothing there"
                else:
                    with tcp_listener() as port:
                        assert run_probe(probe, {variable: f"127.0.0.1:{port}"}) == 0, f"{name} {kind}"
                    assert run_probe(probe, {variable: f"127.0.0.1:{port}"}) != 0, f"{name} {kind} with nothing there"


@pytest.mark.parametrize("render_name", ["base", *OVERLAYS])
def test_the_sidecars_are_ready_by_their_own_word(render_name: str) -> None:
    """Readiness is the service's /ready on its metrics port: 503 while it drains, and, with LIME_PROCESSES above
    1, while a process of its pool is down (a socket that accepts says neither)."""
    for name in SIDECARS:
        c = container(render_name, GATEWAY, name)
        probe = c["readinessProbe"]["httpGet"]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        metrics = environment(render_name, c)[f"LIME_{name.upper()}_METRICS_ADDR"]
        assert probe["path"] == "/ready"
        assert ports[probe["port"]] == int(metrics.rpartition(":")[2]), f"{render_name}: {name} probes elsewhere"


def envoy_idle_timeout_seconds() -> int:
    """The longest silence Envoy's routes allow a stream (``idle_timeout`` of every route action in envoy/)."""
    found: list[int] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "idle_timeout" in node and ({"cluster", "cluster_header", "weighted_clusters"} & set(node)):
                found.append(int(str(node["idle_timeout"]).rstrip("s")))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in sorted((ROOT / "envoy").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            walk(document)
    assert found, "no route with an idle_timeout in envoy/"
    return max(found)


@pytest.mark.parametrize("render_name", ["base", *OVERLAYS])
def test_the_grace_period_covers_the_drain(render_name: str) -> None:
    spec = gateway_spec(render_name)
    envoy = spec["containers"][0]
    drain = int(environment(render_name, envoy)["LIME_DRAIN_SECONDS"])
    # After Envoy, the sidecars drain their own calls (10 s, lime/grpc_server.py): leave them that and a margin.
    assert spec["terminationGracePeriodSeconds"] >= drain + 20
    assert "preStop" in envoy["lifecycle"]
    if render_name in ("base", "production"):
        assert drain >= envoy_idle_timeout_seconds(), "a stream may stay silent this long: let it finish"


def prestop(tmp_path: Path, active: int, drain_seconds: str) -> tuple[float, list[tuple[str, str]]]:
    command = container("production", GATEWAY, "envoy")["lifecycle"]["preStop"]["exec"]["command"]
    stats = b'{"stats": [{"name": "http.public.downstream_rq_active", "value": %d}]}' % active
    with http_server({"/drain_listeners?graceful": b"OK",
                      "/stats?format=json&filter=downstream_rq_active": stats}) as admin:
        started = time.monotonic()
        code = run_probe(command, {"LIME_ENVOY_ADMIN_ADDR": f"0.0.0.0:{admin.port}",
                                   "LIME_DRAIN_SECONDS": drain_seconds, "LIME_DRAIN_MIN_SECONDS": "0"})
        assert code == 0
        return time.monotonic() - started, admin.requests


def test_the_prestop_hook_drains_envoy_and_returns_when_idle(tmp_path: Path) -> None:
    elapsed, requests = prestop(tmp_path, active=0, drain_seconds="30")
    assert requests[0] == ("POST", "/drain_listeners?graceful")
    assert ("GET", "/stats?format=json&filter=downstream_rq_active") in requests
    assert elapsed < 10


def test_the_prestop_hook_waits_for_active_streams_up_to_its_limit(tmp_path: Path) -> None:
    elapsed, requests = prestop(tmp_path, active=1, drain_seconds="3")
    assert 3 <= elapsed < 15
    assert len([r for r in requests if r[0] == "GET"]) >= 2


@pytest.mark.parametrize("render_name", ["base", *OVERLAYS])
def test_envoy_admin_is_on_loopback_and_only_the_stats_listener_is_a_port(render_name: str) -> None:
    envoy = gateway_spec(render_name)["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in envoy["ports"]}
    env = environment(render_name, envoy)
    settings = Settings.from_env(env)
    assert is_loopback(settings.envoy_admin), settings.envoy_admin
    assert settings.envoy_admin.port not in ports.values(), "admin must not be a container port"
    assert ports == {"http": settings.public.port, "envoy-stats": settings.envoy_stats.port}
    assert env["LIME_PUBLIC_ADDR"] == f"0.0.0.0:{ports['http']}"
    assert env["LIME_ENVOY_STATS_ADDR"] == f"0.0.0.0:{ports['envoy-stats']}"
    for kind in ("readinessProbe", "livenessProbe"):
        assert "exec" in envoy[kind], f"{kind}: the kubelet cannot reach a loopback admin; probe from inside"


@pytest.mark.parametrize("kind", ["readinessProbe", "livenessProbe"])
def test_the_envoy_probes_ask_admin_on_loopback(kind: str) -> None:
    command = container("production", GATEWAY, "envoy")[kind]["exec"]["command"]
    with http_server({"/ready": b"LIVE"}) as admin:
        assert run_probe(command, {"LIME_ENVOY_ADMIN_ADDR": f"127.0.0.1:{admin.port}"}) == 0
    with tcp_listener() as closed:
        pass
    assert run_probe(command, {"LIME_ENVOY_ADMIN_ADDR": f"127.0.0.1:{closed}"}) != 0
    if kind == "readinessProbe":
        with http_server({}) as not_ready:  # /ready answers 404 here: not ready
            assert run_probe(command, {"LIME_ENVOY_ADMIN_ADDR": f"127.0.0.1:{not_ready.port}"}) != 0


@pytest.mark.parametrize("render_name", ["base", *OVERLAYS])
def test_envoy_and_catalog_api_share_the_catalog_secret(render_name: str) -> None:
    envoy = container(render_name, GATEWAY, "envoy")
    catalog = container(render_name, "catalog-api", "catalog-api")
    refs = [next(v["valueFrom"]["secretKeyRef"] for v in c["env"] if v["name"] == "LIME_CATALOG_SECRET")
            for c in (envoy, catalog)]
    assert refs[0] == refs[1] == {"name": "lime-catalog-secret", "key": "catalog_secret"}
    if render_name != "production" and render_name != "base":
        assert Settings.from_env(environment(render_name, catalog)).catalog_secret


@pytest.mark.parametrize("render_name", OVERLAYS)
def test_envoy_reaches_its_clusters_through_services(render_name: str) -> None:
    env = environment(render_name, gateway_spec(render_name)["containers"][0])
    wanted = ["LIME_CATALOG_ADDR"] + (["LIME_MOCK_UPSTREAM_ADDR"] if render_name != "production" else [])
    for variable in wanted:
        host, _, port = env[variable].rpartition(":")
        service = find(render_name, "Service", host)
        [target] = [p.get("targetPort", p["port"]) for p in service["spec"]["ports"] if p["port"] == int(port)]
        pods = pods_selected(render_name, service["spec"]["selector"])
        assert pods
        assert allowed_from(render_name, pods[0], target, peer=find(render_name, "Deployment", GATEWAY)), (
            f"{render_name}: the NetworkPolicies keep Envoy from {host}:{port}")
