"""The PodMonitor scrapes every Lime pod under the jobs deploy/prometheus's rules use, through ports the
NetworkPolicies open to the monitoring namespace."""

from __future__ import annotations

import yaml

from tests.deploy_checks import ROOT
from tests.kustomize import pod_spec
from tests.unit.k8s.manifests import (
    GATEWAY,
    MONITORING_NAMESPACE,
    allowed_from,
    container_ports,
    label_selector,
    objects,
    pods_selected,
)


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
