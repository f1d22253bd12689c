"""Autoscaling and disruption: the HorizontalPodAutoscalers target workloads with CPU requests, and the
PodDisruptionBudgets cover each workload once."""

from __future__ import annotations

import pytest

from tests.kustomize import pod_spec
from tests.unit.k8s.manifests import GATEWAY, OVERLAYS, find, label_selector, long_running, objects, pods_selected


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
