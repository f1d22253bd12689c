"""Every rendered object is validated against the Kubernetes JSON schemas that the kubernetes-validate package
bundles (strict: an unknown or misspelt field fails), for the oldest and newest versions Lime supports; names are
unique and in the overlay's namespace."""

from __future__ import annotations

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from tests.unit.k8s.manifests import GATEWAY, OVERLAYS, RENDERS, find

#: The oldest Kubernetes with native sidecars on by default, and the newest the bundled schemas know.
VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
#: Kinds of installed extensions (no bundled schema): checked by hand (test_podmonitor.py).
NO_SCHEMA = {"PodMonitor"}


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
