"""The NetworkPolicies: ingress is denied unless allowed, only Envoy's public port is open to anyone, and every
peer and port a policy names exists."""

from __future__ import annotations

import pytest

from tests.kustomize import pod_spec
from tests.unit.k8s.manifests import (
    GATEWAY,
    MONITORING_NAMESPACE,
    OVERLAYS,
    container_ports,
    environment,
    gateway_spec,
    label_selector,
    objects,
    pods_selected,
    policies_for,
    rule_ports,
    workloads,
)


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
