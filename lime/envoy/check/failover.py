"""Failover groups (aggregate clusters): every candidate exists and names itself, its credential and its model."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from lime.envoy.bootstrap import Problem

__all__ = ["aggregates"]

_CANDIDATE_KEYS = ("candidate", "credential_env", "model")


def aggregates(clusters: Mapping[str, Any]) -> Iterator[Problem]:
    """A failover group names its candidates; one that does not exist would leave a gap Envoy only finds live."""
    for name, cluster in clusters.items():
        kind = cluster.cluster_type
        if kind is None or kind.name != "envoy.clusters.aggregate" or kind.typed_config is None:
            continue
        for candidate in kind.typed_config.unpack().clusters:
            if candidate not in clusters:
                yield Problem(f"clusters[{name}]", f"failover candidate {candidate!r} is not defined: add a cluster "
                              "of that name to clusters.yaml or remove it from the group.")
                continue
            yield from _candidate_metadata(candidate, clusters[candidate])


def _candidate_metadata(name: str, cluster: Any) -> Iterator[Problem]:
    """Each endpoint of a candidate names itself, its credential's variable and its model id: an attempt inherits
    the headers and body of the one before, so a candidate that named none would send another's."""
    assignment = cluster.load_assignment
    for locality in assignment.endpoints if assignment else []:
        for index, endpoint in enumerate(locality.lb_endpoints):
            metadata = endpoint.metadata.to_dict().get("filterMetadata", {}) if endpoint.metadata else {}
            missing = [key for key in _CANDIDATE_KEYS if not metadata.get("lime", {}).get(key)]
            if missing:
                yield Problem(f"clusters[{name}].lb_endpoints[{index}]", f"a failover candidate's endpoint must name "
                              f"{', '.join(missing)} in metadata.filter_metadata.lime, e.g. {{candidate: {name}, "
                              "credential_env: LIME_UPSTREAM_KEY_<ID>, model: <its model id>}.")
