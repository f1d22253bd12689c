"""The capacity of a gateway pod on paper, from the CPU one request costs each of its processes.

Pure arithmetic (no I/O), for :mod:`bench.pinned` and the report, tested in ``tests/unit/test_bench_capacity.py``.

A process that costs ``ms`` of CPU per request serves ``1000 / ms`` requests per core-second. A pod of N cores that
runs Envoy, authz and extproc serves about ``N * 1000 / (envoy + authz + extproc)`` requests a second, provided no
single process is the limit first: one authz or extproc process uses at most one core (Python runs one thread of
work), and so does one Envoy worker thread. ``LIME_PROCESSES`` sets the process count of authz and of extproc alike
(Envoy's config has one endpoint per process of each, rendered from the same setting), so the count must cover the
costlier of the two; ``ENVOY_CONCURRENCY`` is Envoy's worker threads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["GATEWAY", "POD_CORES", "SATURATED", "PodPlan", "core_share", "cores_needed", "per_core_second", "pod_plan",
           "pod_rps", "summarise_pinned"]

#: The processes of one gateway pod, on the request path.
GATEWAY = ("envoy", "authz", "extproc")
#: Outside the pod, per request: the settler and the stores (their cores scale with the whole deployment's rate).
BEHIND = ("settler", "redis", "postgres")
#: The pod sizes the report plans.
POD_CORES = (1, 2, 4, 8, 16)
#: A core busy this share of the time or more is saturated: the process(es) on it are the bottleneck.
SATURATED = 0.9
#: Rounding slack: a share of 2.0000000001 cores is 2 cores.
_EPSILON = 1e-9


def per_core_second(cpu_ms: float | None) -> float | None:
    """Requests (or events) one core serves in a second at ``cpu_ms`` of CPU each."""
    if cpu_ms is None or cpu_ms <= 0 or math.isnan(cpu_ms):
        return None
    return 1000.0 / cpu_ms


def core_share(rps: float, cpu_ms: float) -> float:
    """Cores a process keeps busy at ``rps`` requests a second of ``cpu_ms`` each (its utilisation: 1.0 = a core)."""
    return rps * cpu_ms / 1000.0


def cores_needed(rps: float, cpu_ms: float) -> int:
    """Whole cores (processes of one thread of work) that carry ``rps`` at ``cpu_ms`` per request; at least 1."""
    return max(1, math.ceil(core_share(rps, cpu_ms) - _EPSILON))


def _gateway_ms(cpu_ms: Mapping[str, float]) -> tuple[float, float, float]:
    missing = [name for name in GATEWAY if not cpu_ms.get(name)]
    if missing:
        raise ValueError(f"no CPU per request for {', '.join(missing)}")
    return cpu_ms["envoy"], cpu_ms["authz"], cpu_ms["extproc"]


def pod_rps(cores: int, envoy_concurrency: int, lime_processes: int,
            cpu_ms: Mapping[str, float]) -> tuple[float, str]:
    """Requests a second a pod of ``cores`` serves with this many Envoy workers and authz and extproc processes
    each, and what limits it: ``cores`` (all of them busy) or the process kind whose processes are all busy."""
    envoy, authz, extproc = _gateway_ms(cpu_ms)
    limits = {
        "cores": cores * 1000.0 / (envoy + authz + extproc),
        "envoy": envoy_concurrency * 1000.0 / envoy,
        "authz": lime_processes * 1000.0 / authz,
        "extproc": lime_processes * 1000.0 / extproc,
    }
    limit = min(limits, key=lambda name: limits[name])
    return limits[limit], limit


@dataclass(frozen=True)
class PodPlan:
    """The suggested split of an N-core gateway pod and what it serves on paper."""

    cores: int
    envoy_concurrency: int
    #: authz and extproc processes each.
    lime_processes: int
    rps: float
    limited_by: str
    #: The cores each kind keeps busy at ``rps`` (they add up to ``cores`` when the cores are the limit).
    busy_cores: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def pod_plan(cores: int, cpu_ms: Mapping[str, float]) -> PodPlan:
    """The fewest Envoy workers and authz/extproc processes with which ``cores`` cores, not a process count, are the
    limit: each kind gets the whole cores its share of the CPU rounds up to (a process or a worker thread uses at
    most one core), and LIME_PROCESSES covers the costlier of authz and extproc. More processes than cores is fine:
    they share the cores, and a process that is not busy costs memory, not CPU."""
    if cores < 1:
        raise ValueError("a pod has at least one core")
    envoy, authz, extproc = _gateway_ms(cpu_ms)
    total = envoy + authz + extproc
    concurrency = max(1, math.ceil(cores * envoy / total - _EPSILON))
    processes = max(1, math.ceil(cores * max(authz, extproc) / total - _EPSILON))
    rps, limit = pod_rps(cores, concurrency, processes, cpu_ms)
    return PodPlan(cores, concurrency, processes, rps, limit,
                   {name: core_share(rps, cpu_ms[name]) for name in GATEWAY})


def _utilisation(record: Mapping[str, Any], names: tuple[str, ...]) -> float:
    return sum(record["utilisation"].get(name) or 0.0 for name in names)


def summarise_pinned(records: list[dict[str, Any]], pod_cores: tuple[int, ...] = POD_CORES) -> dict[str, Any]:
    """The pinned phase's records (:mod:`bench.pinned`) -> the per-process table, the check of the one-core run and
    the N-core pod plans. Empty when the phase did not run."""
    requests = {r["layout"]: r for r in records if r["kind"] == "request"}
    events = next((r for r in records if r["kind"] == "event"), None)
    gateway = requests.get("gateway")
    if gateway is None:
        return {}
    per_request: dict[str, float] = {name: gateway["cpu_ms_per_request"].get(name) or 0.0
                                     for name in (*GATEWAY, *BEHIND)}
    rps = gateway["result"]["achieved_rps"]
    gateway_ms = sum(per_request[name] for name in GATEWAY)
    predicted = per_core_second(gateway_ms)
    busy = _utilisation(gateway, GATEWAY)
    rows: list[dict[str, Any]] = []
    for name, ms in per_request.items():
        alone = requests.get(name)
        row: dict[str, Any] = {
            "process": name, "on_core": name in GATEWAY, "cpu_ms_per_request": ms,
            "requests_per_core_second": per_core_second(ms),
            "utilisation": gateway["utilisation"].get(name),
            "alone": None if alone is None else {
                "cpu_ms_per_request": alone["cpu_ms_per_request"].get(name),
                "requests_per_core_second": per_core_second(alone["cpu_ms_per_request"].get(name)),
                "utilisation": alone["utilisation"].get(name),
                "rps": alone["result"]["achieved_rps"],
                "saturated": (alone["utilisation"].get(name) or 0.0) >= SATURATED,
            },
            "cpu_ms_per_event": None, "events_per_core_second": None, "cpu_ms_per_stream": None,
        }
        if events is not None:
            row["cpu_ms_per_event"] = events["cpu_ms_per_event"].get(name)
            row["events_per_core_second"] = per_core_second(row["cpu_ms_per_event"])
            row["cpu_ms_per_stream"] = events["cpu_ms_per_stream"].get(name)
        rows.append(row)
    pods = []
    if all(per_request[name] > 0 for name in GATEWAY):
        for cores in pod_cores:
            plan = pod_plan(cores, per_request).to_json()
            # Behind the pods, per pod at that rate: settler and Redis cores (they serve every pod of the deployment).
            plan["behind_cores"] = {name: core_share(plan["rps"], per_request[name]) for name in BEHIND}
            pods.append(plan)
    return {
        "core": gateway["core"], "rest": gateway["rest"], "connections": gateway["result"]["connections"],
        "processes": rows,
        "gateway": {
            "rps": rps, "errors": gateway["result"]["errors"], "cpu_ms_per_request": gateway_ms,
            "predicted_rps": predicted, "core_utilisation": busy,
            "measured_over_predicted": rps / predicted if predicted else None,
            "saturated": busy >= SATURATED,
        },
        "streams": None if events is None else {
            "concurrency": events["result"]["concurrency"], "streams": events["result"]["streams"],
            "failed": events["result"]["failed"], "events": events["result"]["events"],
            "events_per_second": (events["result"]["events"] / events["wall_seconds"]) if events["wall_seconds"]
            else None,
            "core_utilisation": _utilisation(events, GATEWAY),
        },
        "pods": pods,
    }
