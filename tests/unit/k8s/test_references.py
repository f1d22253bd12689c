"""The references between objects: Service selectors and target ports, the stores' Services, the ConfigMaps and
Secrets the workloads name (production's Secrets are created by the operator, never rendered), and the dev
placeholders where Settings reads the credentials."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lime.settings import Settings
from tests.deploy_checks import ROOT
from tests.kustomize import pod_spec
from tests.unit.k8s.manifests import (
    GATEWAY,
    OVERLAYS,
    all_containers,
    container,
    container_ports,
    environment,
    find,
    objects,
    pods_selected,
    secret_data,
    workloads,
)

#: Secrets the operator creates (docs/deploy.md): never rendered from the repository in production.
OUT_OF_BAND_SECRETS = {"lime-stores", "lime-upstream-credentials", "lime-admin-token", "lime-catalog-secret"}


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
