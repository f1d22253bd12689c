"""Every container: a real `lime` command, one pinned image, requests, limits and a locked-down context, probes on
its own ports, listening addresses it declares, and settings it reads."""

from __future__ import annotations

import re
import shlex

import pytest

from lime.settings import Settings, SettingsError
from tests.deploy_checks import lime_command_error
from tests.kustomize import pod_spec
from tests.unit.k8s.manifests import OVERLAYS, all_containers, environment, long_running, workloads


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
