"""deploy/k8s rendered offline (tests/kustomize.py), and the lookups the checks in this folder share.

The checks here read the rendered objects the way a cluster and a deployer would: every object against the
Kubernetes JSON schemas (test_schemas), then the references between objects (Services, ConfigMaps, Secrets), the
containers, the gateway pod, autoscaling and disruption, the NetworkPolicies and the PodMonitor, each in a module
named for it. The base and every overlay are rendered once, at import, into :data:`RENDERS`.
"""

from __future__ import annotations

import base64
from typing import Any

from tests.deploy_checks import ROOT
from tests.kustomize import pod_spec, render

__all__ = [
    "GATEWAY",
    "K8S",
    "MONITORING_NAMESPACE",
    "OVERLAYS",
    "RENDERS",
    "Object",
    "all_containers",
    "allowed_from",
    "container",
    "container_ports",
    "environment",
    "find",
    "gateway_spec",
    "label_selector",
    "long_running",
    "objects",
    "pods_selected",
    "policies_for",
    "rule_ports",
    "secret_data",
    "workloads",
]

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("production", "dev", "local-tcp")
RENDERS: dict[str, list[dict[str, Any]]] = {"base": render(K8S / "base")} | {
    name: render(K8S / "overlays" / name) for name in OVERLAYS}
#: The ports Prometheus scrapes (the PodMonitor's endpoints), which only the monitoring namespace may reach.
MONITORING_NAMESPACE = "monitoring"
GATEWAY = "lime-gateway"

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


# --- what the NetworkPolicies allow ------------------------------------------------------------------------------


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
