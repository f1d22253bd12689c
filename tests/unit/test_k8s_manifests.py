"""deploy/k8s rendered offline (tests/kustomize.py) and checked the way a cluster and a deployer would.

Every rendered object is validated against the Kubernetes JSON schemas that the kubernetes-validate package
bundles (strict: an unknown or misspelt field fails), for the oldest and newest versions Lime supports. Then the
references between objects are followed: Service selectors and target ports, ConfigMaps and Secrets, probe ports,
the HorizontalPodAutoscalers' targets, the PodDisruptionBudgets' selectors, the NetworkPolicies (only Envoy's
public port is open to anyone), the Unix sockets the gateway pod's containers share, and the PodMonitor's jobs.
Probes and the preStop hook are run here against loopback listeners.
"""

from __future__ import annotations

import base64
import re
import shlex
import time
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from lime.settings import Settings, SettingsError
from tests.deploy_checks import ROOT, http_server, lime_command_error, run_probe, tcp_listener, unix_listener
from tests.kustomize import Unsupported, pod_spec, render

K8S = ROOT / "deploy" / "k8s"
#: The oldest Kubernetes with native sidecars on by default, and the newest the bundled schemas know.
VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
#: Kinds of installed extensions (no bundled schema): checked by hand below.
NO_SCHEMA = {"PodMonitor"}
OVERLAYS = ("production", "dev", "local-tcp")
RENDERS: dict[str, list[dict[str, Any]]] = {"base": render(K8S / "base")} | {
    name: render(K8S / "overlays" / name) for name in OVERLAYS}
#: Secrets the operator creates (docs/deploy.md): never rendered from the repository in production.
OUT_OF_BAND_SECRETS = {"lime-stores", "lime-upstream-credentials", "lime-admin-token"}
#: The ports Prometheus scrapes (the PodMonitor's endpoints), which only the monitoring namespace may reach.
MONITORING_NAMESPACE = "monitoring"
GATEWAY = "lime-gateway"
SIDECARS = {"authz": "LIME_AUTHZ_ADDR", "extproc": "LIME_EXTPROC_ADDR"}

Object = dict[str, Any]


def objects(render_name: str, kind: str | None = None) -> list[Object]:
    return [obj for obj in RENDERS[render_name] if kind is None or obj["kind"] == kind]


def find(render_name: str, kind: str, name: str) -> Object:
    [obj] = [obj for obj in objects(render_name, kind) if obj["metadata"]["name"] == name]
    return obj


def workloads(render_name: str) -> list[Object]:
    return [obj for obj in RENDERS[render_name] if pod_spec(obj) is not None]


def long_running(spec: Object) -> list[Object]:
    """Containers that serve: the main ones and the native sidecars (init containers that keep running)."""
    sidecars = [c for c in spec.get("initContainers", []) if c.get("restartPolicy") == "Always"]
    return sidecars + list(spec["containers"])


def all_containers(spec: Object) -> list[Object]:
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def container(render_name: str, workload: str, name: str) -> Object:
    spec = pod_spec(find(render_name, "Deployment", workload))
    assert spec is not None
    [found] = [c for c in all_containers(spec) if c["name"] == name]
    return found


def template_labels(obj: Object) -> dict[str, str]:
    labels: dict[str, str] = obj["spec"]["template"]["metadata"].get("labels", {})
    return labels


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def label_selector(selector: Object) -> dict[str, str]:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are used (and checked)"
    labels: dict[str, str] = selector.get("matchLabels", {})
    return labels


def pods_selected(render_name: str, selector: dict[str, str]) -> list[Object]:
    return [obj for obj in workloads(render_name) if selects(selector, template_labels(obj))]


def container_ports(spec: Object) -> dict[str | int, int]:
    """Every port the pod's containers declare, by name and by number."""
    ports: dict[str | int, int] = {}
    for c in all_containers(spec):
        for port in c.get("ports", []):
            ports[port["containerPort"]] = port["containerPort"]
            if "name" in port:
                ports[port["name"]] = port["containerPort"]
    return ports


def secret_data(secret: Object) -> dict[str, str]:
    data = {key: base64.b64decode(value).decode() for key, value in secret.get("data", {}).items()}
    plain: dict[str, str] = secret.get("stringData", {})
    return data | plain


def environment(render_name: str, c: Object) -> dict[str, str]:
    """The container's environment as the kubelet would build it (a Secret not rendered gives a placeholder)."""
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        env |= find(render_name, "ConfigMap", source["configMapRef"]["name"])["data"]
    for variable in c.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
            continue
        ref = variable["valueFrom"]
        if "configMapKeyRef" in ref:
            env[variable["name"]] = find(render_name, "ConfigMap", ref["configMapKeyRef"]["name"])["data"][
                ref["configMapKeyRef"]["key"]]
        else:
            key = ref["secretKeyRef"]
            secrets = [s for s in objects(render_name, "Secret") if s["metadata"]["name"] == key["name"]]
            env[variable["name"]] = secret_data(secrets[0])[key["key"]] if secrets else f"<{key['name']}/{key['key']}>"
    return env


def gateway_spec(render_name: str) -> Object:
    spec = pod_spec(find(render_name, "Deployment", GATEWAY))
    assert spec is not None
    return spec


# --- the renderer -------------------------------------------------------------------------------------------


def test_the_renderer_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nconfigMapGenerator: [{name: x, literals: [a=b]}]\n")
    with pytest.raises(Unsupported, match="configMapGenerator"):
        render(tmp_path)


def test_a_patch_that_matches_nothing_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [{K8S / 'base'}]\n"
        "patches: [{patch: '{apiVersion: apps/v1, kind: Deployment, metadata: {name: nope}}'}]\n")
    with pytest.raises(ValueError, match="matches no object"):
        render(tmp_path)


def test_the_production_overlay_applies_its_patches() -> None:
    gateway = find("production", "Deployment", GATEWAY)
    assert gateway["spec"]["replicas"] == 3
    envoy = container("production", GATEWAY, "envoy")
    assert environment("production", envoy)["ENVOY_CONCURRENCY"] == "4"
    assert envoy["image"].startswith("registry.example.com/lime/lime-gateway:")
    # The merge kept what the patch does not mention.
    assert envoy["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert environment("production", envoy)["LIME_PUBLIC_ADDR"] == "0.0.0.0:8080"
    assert find("production", "HorizontalPodAutoscaler", GATEWAY)["spec"]["minReplicas"] == 3


# --- schemas ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("render_name", ["base", *OVERLAYS])
@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_matches_the_kubernetes_schema(render_name: str, version: str) -> None:
    problems = []
    for obj in RENDERS[render_name]:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{where}: {'.'.join(map(str, error.path))}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError:
            if obj["kind"] not in NO_SCHEMA:
                problems.append(f"{where}: no schema for {obj['apiVersion']} {obj['kind']}")
    assert problems == []


def test_the_schema_catches_a_misspelt_field() -> None:
    gateway = yaml.safe_load(yaml.safe_dump(find("production", "Deployment", GATEWAY)))
    gateway["spec"]["template"]["spec"]["initContainers"][0]["restartPolcy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(gateway, VERSIONS[0], strict=True)


@pytest.mark.parametrize("render_name", OVERLAYS)
def test_names_are_unique_and_in_the_overlays_namespace(render_name: str) -> None:
    namespace = {"production": "lime", "dev": "lime-dev", "local-tcp": "lime-dev"}[render_name]  # docs/deploy.md
    keys = [(obj["kind"], obj["metadata"]["name"]) for obj in RENDERS[render_name]]
    assert len(keys) == len(set(keys))
    assert {obj["metadata"].get("namespace") for obj in RENDERS[render_name]} == {namespace}


# --- references between objects ---------------------------------------------------------------------------------


@pytest.mark.parametrize("render_name", ["base", *OVERLAYS])
def test_services_select_pods_and_target_their_ports(render_name: str) -> None:
    for service in objects(render_name, "Service"):
        name = service["metadata"]["name"]
        if service["spec"].get("type") == "ExternalName":
            continue
        pods = pods_selected(render_name, service["spec"]["selector"])
        assert pods, f"Service {name} selects no pod"
        for port in service["spec"]["ports"]:
            for pod in pods:
                spec = pod_spec(pod)
                assert spec is not None
                assert port.get("targetPort", port["port"]) in container_ports(spec), f"Service {name}: {port}"


@pytest.mark.parametrize("render_name", OVERLAYS)
def test_the_stores_point_somewhere_real(render_name: str) -> None:
    for name in ("postgres", "redis"):
        service = find(render_name, "Service", name)
        assert service["spec"]["type"] == "ExternalName"
        assert not service["spec"]["externalName"].endswith(".invalid"), f"{render_name}: set where {name} is"


@pytest.mark.parametrize("render_name", OVERLAYS)
def test_configmaps_and_secrets_referenced_exist(render_name: str) -> None:
    configmaps = {obj["metadata"]["name"]: obj for obj in objects(render_name, "ConfigMap")}
    secrets = {obj["metadata"]["name"]: obj for obj in objects(render_name, "Secret")}
    claims = {obj["metadata"]["name"] for obj in objects(render_name, "PersistentVolumeClaim")}
    missing_secrets: set[str] = set()

    def secret(name: str, key: str | None = None) -> None:
        if name not in secrets:
            missing_secrets.add(name)
        elif key is not None:
            assert key in secret_data(secrets[name]), f"Secret {name} has no key {key}"

    for workload in workloads(render_name):
        spec = pod_spec(workload)
        assert spec is not None
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps
            if "secret" in volume:
                secret(volume["secret"]["secretName"])
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
        for c in all_containers(spec):
            for source in c.get("envFrom", []):
                assert source["configMapRef"]["name"] in configmaps
            for variable in c.get("env", []):
                ref = variable.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    assert ref["configMapKeyRef"]["key"] in configmaps[ref["configMapKeyRef"]["name"]]["data"]
                if "secretKeyRef" in ref:
                    secret(ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"])
            mounts = {mount["name"] for mount in c.get("volumeMounts", [])}
            assert mounts <= {volume["name"] for volume in spec.get("volumes", [])}, c["name"]
    if render_name == "production":
        assert missing_secrets <= OUT_OF_BAND_SECRETS
    else:
        assert missing_secrets == set(), f"{render_name} needs Secrets it does not render"


def test_no_secret_is_in_the_repository_for_production() -> None:
    assert objects("production", "Secret") == []
    assert objects("base", "Secret") == []
    guide = (ROOT / "docs" / "deploy.md").read_text()
    for name in OUT_OF_BAND_SECRETS:
        assert re.search(rf"kubectl[^\n]* create secret generic {name}\b", guide), f"docs/deploy.md: create {name}"


def test_the_dev_placeholders_are_where_lime_reads_credentials(tmp_path: Path) -> None:
    """Mounted as files, the upstream credentials and the admin token are found by Settings under their names."""
    extproc = container("dev", GATEWAY, "extproc")
    catalog = container("dev", "catalog-api", "catalog-api")
    for c, workload, secret_name in ((extproc, GATEWAY, "lime-upstream-credentials"),
                                     (catalog, "catalog-api", "lime-admin-token")):
        spec = pod_spec(find("dev", "Deployment", workload))
        assert spec is not None
        [volume] = [v["name"] for v in spec["volumes"] if v.get("secret", {}).get("secretName") == secret_name]
        [mount] = [m["mountPath"] for m in c["volumeMounts"] if m["name"] == volume]
        assert environment("dev", c)["LIME_SECRETS_DIR"] == mount
        files = tmp_path / secret_name
        files.mkdir()
        for key, value in secret_data(find("dev", "Secret", secret_name)).items():
            (files / key).write_text(value)
        settings = Settings.from_env({"LIME_SECRETS_DIR": str(files)})
        if secret_name == "lime-admin-token":
            assert settings.admin_token
        else:
            assert settings.upstream_credential("mock") and settings.upstream_credential("mock_anthropic")


# --- containers ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("render_name", ["base", *OVERLAYS])
def test_containers_run_real_lime_commands(render_name: str) -> None:
    for workload in workloads(render_name):
        spec = pod_spec(workload)
        assert spec is not None
        for c in all_containers(spec):
            if "command" in c:
                assert c["command"][:2] == ["sh", "-c"], c["name"]
                render_step, watch, run = (shlex.split(part) for part in c["command"][2].split("&&"))
                assert render_step[:3] == ["lime", "envoy", "render"]
                assert lime_command_error(render_step[1:]) is None
                output = render_step[render_step.index("--output") + 1]
                # the watcher renders again, to the same place, when the (mounted) sources change
                assert watch[:4] == ["{", "lime", "envoy", "render"] and watch[-1] == "}"
                assert lime_command_error(watch[2:watch.index(">/dev/null")]) is None and "--watch" in watch
                assert watch[watch.index("--output") + 1] == output
                assert run[:2] == ["exec", "envoy"] and run[run.index("-c") + 1] == output
                env = environment(render_name, c)
                for variable in re.findall(r"\$\{?([A-Z_]+)", c["command"][2]):
                    assert variable in env, f"{c['name']}: ${variable} is not set"
            else:
                assert lime_command_error(c["args"]) is None, f"{c['name']}: lime {c['args']}"


@pytest.mark.parametrize("render_name", OVERLAYS)
def test_one_image_everywhere_and_pinned(render_name: str) -> None:
    images = {c["image"] for w in workloads(render_name) for c in all_containers(pod_spec(w) or {"containers": []})}
    assert len(images) == 1, images
    [image] = images
    assert re.search(r"(:[\w.-]+|@sha256:[0-9a-f]{64})$", image) and not image.endswith(":latest"), image
    if render_name == "production":
        assert "/" in image.split(":")[0], "production pulls from a registry"


@pytest.mark.parametrize("render_name", ["base", *OVERLAYS])
def test_every_container_has_requests_limits_and_a_locked_down_context(render_name: str) -> None:
    for workload in workloads(render_name):
        spec = pod_spec(workload)
        assert spec is not None
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec.get("automountServiceAccountToken") is False
        for c in all_containers(spec):
            where = f"{workload['metadata']['name']}/{c['name']}"
            resources = c["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), where
            assert "memory" in resources["limits"], where
            context = c["securityContext"]
            assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False, where
            if any("/tmp/" in part for part in c.get("command", [])):
                assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}, f"{where} writes /tmp"


@pytest.mark.parametrize("render_name", ["base", *OVERLAYS])
def test_every_serving_container_has_probes_on_its_own_ports(render_name: str) -> None:
    for workload in workloads(render_name):
        spec = pod_spec(workload)
        assert spec is not None
        for c in long_running(spec):
            where = f"{workload['metadata']['name']}/{c['name']}"
            own = {p["containerPort"] for p in c.get("ports", [])} | {p["name"] for p in c.get("ports", [])}
            assert "readinessProbe" in c and "livenessProbe" in c, where
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = c.get(kind, {})
                for handler in ("httpGet", "tcpSocket"):
                    if handler in probe:
                        assert probe[handler]["port"] in own, f"{where} {kind} probes a port it does not declare"


def test_listening_addresses_match_the_declared_ports() -> None:
    for render_name in OVERLAYS:
        for workload in workloads(render_name):
            spec = pod_spec(workload)
            assert spec is not None
            for c in long_running(spec):
                env = environment(render_name, c)
                declared = {p["containerPort"] for p in c.get("ports", [])}
                for variable, value in env.items():
                    if variable.endswith("_ADDR") and value.startswith("0.0.0.0:"):
                        assert int(value.rpartition(":")[2]) in declared, f"{c['name']}: {variable}={value}"


@pytest.mark.parametrize("render_name", OVERLAYS)
def test_every_container_reads_its_settings(render_name: str) -> None:
    for workload in workloads(render_name):
        spec = pod_spec(workload)
        assert spec is not None
        for c in all_containers(spec):
            env = environment(render_name, c)
            try:
                Settings.from_env(env)
            except SettingsError as error:
                pytest.fail(f"{workload['metadata']['name']}/{c['name']}: {error}")


# --- the gateway pod ------------------------------------------------------------------------------------------------


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
            for kind in ("startupProbe", "readinessProbe"):
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


def test_the_envoy_admin_address_is_the_declared_admin_port() -> None:
    for render_name in OVERLAYS:
        envoy = gateway_spec(render_name)["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in envoy["ports"]}
        env = environment(render_name, envoy)
        assert env["LIME_ENVOY_ADMIN_ADDR"] == f"0.0.0.0:{ports['envoy-admin']}"
        assert env["LIME_PUBLIC_ADDR"] == f"0.0.0.0:{ports['http']}"


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


# --- autoscaling and disruption -----------------------------------------------------------------------------------


@pytest.mark.parametrize("render_name", ["base", *OVERLAYS])
def test_autoscalers_target_workloads_with_cpu_requests(render_name: str) -> None:
    for hpa in objects(render_name, "HorizontalPodAutoscaler"):
        spec = hpa["spec"]
        target = find(render_name, spec["scaleTargetRef"]["kind"], spec["scaleTargetRef"]["name"])
        assert 1 <= spec["minReplicas"] <= spec["maxReplicas"]
        pod = pod_spec(target)
        assert pod is not None
        for c in long_running(pod):
            assert "cpu" in c["resources"]["requests"], f"{c['name']}: CPU utilisation needs a CPU request"
    if render_name == "production":
        for hpa in objects(render_name, "HorizontalPodAutoscaler"):
            assert hpa["spec"]["minReplicas"] >= 2, "production keeps a spare of everything"


@pytest.mark.parametrize("render_name", ["base", *OVERLAYS])
def test_disruption_budgets_cover_each_workload_once(render_name: str) -> None:
    budgets = objects(render_name, "PodDisruptionBudget")
    for budget in budgets:
        assert len(pods_selected(render_name, label_selector(budget["spec"]["selector"]))) == 1
    covered = {w["metadata"]["name"] for b in budgets
               for w in pods_selected(render_name, label_selector(b["spec"]["selector"]))}
    assert {GATEWAY, "catalog-api", "settler"} <= covered


# --- network policies ----------------------------------------------------------------------------------------------


def policies_for(render_name: str, pod: Object) -> list[Object]:
    return [policy for policy in objects(render_name, "NetworkPolicy")
            if selects(label_selector(policy["spec"]["podSelector"]), template_labels(pod))
            and "Ingress" in policy["spec"]["policyTypes"]]


def rule_ports(rule: Object, spec: Object) -> set[int] | None:
    """The container ports an ingress rule opens on a pod (``None``: every port)."""
    if "ports" not in rule:
        return None
    ports = container_ports(spec)
    return {ports[p["port"]] for p in rule["ports"] if p["port"] in ports}


def allowed_from(render_name: str, pod: Object, port: int | str, *, peer: Object | None = None,
                 namespace: str | None = None) -> bool:
    """Whether some policy lets `peer` (a workload here) or any pod of `namespace` reach `port` of `pod`."""
    spec = pod_spec(pod)
    assert spec is not None
    number = container_ports(spec)[port]
    for policy in policies_for(render_name, pod):
        for rule in policy["spec"].get("ingress", []):
            opened = rule_ports(rule, spec)
            if opened is not None and number not in opened:
                continue
            if "from" not in rule:
                return True
            for source in rule["from"]:
                if peer is not None and "podSelector" in source and "namespaceSelector" not in source and selects(
                        label_selector(source["podSelector"]), template_labels(peer)):
                    return True
                if namespace is not None and "namespaceSelector" in source and "podSelector" not in source and (
                        label_selector(source["namespaceSelector"]) == {"kubernetes.io/metadata.name": namespace}):
                    return True
    return False


@pytest.mark.parametrize("render_name", ["base", *OVERLAYS])
def test_ingress_is_denied_unless_allowed(render_name: str) -> None:
    denials = [p for p in objects(render_name, "NetworkPolicy")
               if p["spec"]["podSelector"] == {} and "ingress" not in p["spec"]
               and p["spec"]["policyTypes"] == ["Ingress"]]
    assert denials, "a default-deny ingress policy for the namespace"


@pytest.mark.parametrize("render_name", ["base", *OVERLAYS])
def test_only_envoy_is_public(render_name: str) -> None:
    open_to_all: set[tuple[str, int]] = set()
    for workload in workloads(render_name):
        spec = pod_spec(workload)
        assert spec is not None
        for policy in policies_for(render_name, workload):
            for rule in policy["spec"].get("ingress", []):
                sources = rule.get("from")
                anyone = sources is None or any(
                    source.get("ipBlock", {}).get("cidr") in ("0.0.0.0/0", "::/0") or source == {}
                    or (source.get("namespaceSelector") == {} and "podSelector" not in source)
                    for source in sources)
                if anyone:
                    opened = rule_ports(rule, spec)
                    assert opened is not None, f"{policy['metadata']['name']} opens every port to anyone"
                    open_to_all |= {(workload["metadata"]["name"], port) for port in opened}
    public = int(environment(render_name, gateway_spec(render_name)["containers"][0])["LIME_PUBLIC_ADDR"]
                 .rpartition(":")[2])
    assert open_to_all == {(GATEWAY, public)}


@pytest.mark.parametrize("render_name", ["base", *OVERLAYS])
def test_policy_peers_and_ports_exist(render_name: str) -> None:
    for policy in objects(render_name, "NetworkPolicy"):
        selected = pods_selected(render_name, label_selector(policy["spec"]["podSelector"]))
        assert selected, f"{policy['metadata']['name']} selects no pod"
        for rule in policy["spec"].get("ingress", []):
            for port in rule.get("ports", []):
                for pod in selected:
                    spec = pod_spec(pod)
                    assert spec is not None
                    assert port["port"] in container_ports(spec), f"{policy['metadata']['name']}: {port}"
            for source in rule.get("from", []):
                if "podSelector" in source and "namespaceSelector" not in source:
                    assert pods_selected(render_name, label_selector(source["podSelector"])), source
                if "namespaceSelector" in source:
                    assert label_selector(source["namespaceSelector"]) == {
                        "kubernetes.io/metadata.name": MONITORING_NAMESPACE}, "only monitoring comes from outside"


# --- Prometheus ---------------------------------------------------------------------------------------------------


def prometheus_jobs() -> dict[str, str]:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    return {job["job_name"]: job.get("metrics_path", "/metrics") for job in config["scrape_configs"]}


def test_the_podmonitor_scrapes_every_service_under_the_jobs_the_rules_use() -> None:
    [monitor] = objects("production", "PodMonitor")
    pods = pods_selected("production", label_selector(monitor["spec"]["selector"]))
    assert {pod["metadata"]["name"] for pod in pods} >= {GATEWAY, "catalog-api", "settler"}
    jobs = {}
    for endpoint in monitor["spec"]["podMetricsEndpoints"]:
        [job] = [r["replacement"] for r in endpoint["relabelings"] if r["targetLabel"] == "job"]
        jobs[job] = endpoint["path"]
        owners = [pod for pod in pods if endpoint["port"] in container_ports(pod_spec(pod) or {"containers": []})]
        assert owners, f"no Lime pod has a port named {endpoint['port']}"
        for pod in owners:
            assert allowed_from("production", pod, endpoint["port"], namespace=MONITORING_NAMESPACE), (
                f"the NetworkPolicies keep Prometheus from {pod['metadata']['name']}:{endpoint['port']}")
    assert jobs == prometheus_jobs()


# --- every file is part of a render ---------------------------------------------------------------------------


def test_every_manifest_file_is_used() -> None:
    used = set()
    for kustomization_file in K8S.rglob("kustomization.yaml"):
        directory = kustomization_file.parent
        used.add(kustomization_file.resolve())
        [kustomization] = yaml.safe_load_all(kustomization_file.read_text())
        entries = kustomization.get("resources", []) + [p["path"] for p in kustomization.get("patches", [])]
        used |= {(directory / entry).resolve() for entry in entries if not (directory / entry).is_dir()}
    assert {path.resolve() for path in K8S.rglob("*.yaml")} == used
