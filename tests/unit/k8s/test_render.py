"""The offline renderer (tests/kustomize.py) refuses what it does not implement, the production overlay's patches
apply, and every file under deploy/k8s is part of a render."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.kustomize import Unsupported, render
from tests.unit.k8s.manifests import GATEWAY, K8S, container, environment, find


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
    assert "/ready" in envoy["readinessProbe"]["exec"]["command"][-1]
    assert environment("production", envoy)["LIME_PUBLIC_ADDR"] == "0.0.0.0:8080"
    assert find("production", "HorizontalPodAutoscaler", GATEWAY)["spec"]["minReplicas"] == 3


def test_every_manifest_file_is_used() -> None:
    used = set()
    for kustomization_file in K8S.rglob("kustomization.yaml"):
        directory = kustomization_file.parent
        used.add(kustomization_file.resolve())
        [kustomization] = yaml.safe_load_all(kustomization_file.read_text())
        entries = kustomization.get("resources", []) + [p["path"] for p in kustomization.get("patches", [])]
        used |= {(directory / entry).resolve() for entry in entries if not (directory / entry).is_dir()}
    assert {path.resolve() for path in K8S.rglob("*.yaml")} == used
