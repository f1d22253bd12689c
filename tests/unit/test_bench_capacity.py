"""The capacity arithmetic of the bench's pinned phase (bench/capacity.py): requests per core-second, the split of an
N-core gateway pod, and the summary the report and docs/deploy.md's table are made of."""

from __future__ import annotations

import math
from typing import Any

import pytest

from bench import capacity

#: Envoy + authz + extproc = 2 ms of CPU per request: 500 req/s per core.
MS = {"envoy": 0.5, "authz": 0.7, "extproc": 0.8, "settler": 0.2, "redis": 0.1, "postgres": 0.05}


def test_requests_per_core_second_is_the_inverse_of_the_cpu_per_request() -> None:
    assert capacity.per_core_second(0.5) == 2000.0
    assert capacity.per_core_second(2.0) == 500.0
    for unknown in (None, 0.0, -1.0, math.nan):
        assert capacity.per_core_second(unknown) is None


def test_core_share_and_whole_cores() -> None:
    assert capacity.core_share(1000, 0.8) == pytest.approx(0.8)
    assert capacity.cores_needed(1000, 0.8) == 1
    assert capacity.cores_needed(2500, 0.8) == 2  # exactly 2.0 cores, not 3
    assert capacity.cores_needed(2501, 0.8) == 3
    assert capacity.cores_needed(0, 0.8) == 1


def test_a_one_core_pod_serves_what_the_one_core_run_measured() -> None:
    plan = capacity.pod_plan(1, MS)
    assert (plan.envoy_concurrency, plan.lime_processes) == (1, 1)
    assert plan.rps == pytest.approx(500.0)
    assert plan.limited_by == "cores"


@pytest.mark.parametrize(("cores", "envoy_concurrency", "lime_processes"),
                         [(2, 1, 1), (4, 1, 2), (5, 2, 2), (8, 2, 4), (16, 4, 7)])
def test_the_split_gives_each_kind_the_whole_cores_its_share_rounds_up_to(
        cores: int, envoy_concurrency: int, lime_processes: int) -> None:
    # Shares of the 2 ms: Envoy 0.25, authz 0.35, extproc 0.4; LIME_PROCESSES covers extproc, the costlier.
    plan = capacity.pod_plan(cores, MS)
    assert (plan.envoy_concurrency, plan.lime_processes) == (envoy_concurrency, lime_processes)
    assert plan.rps == pytest.approx(cores * 500.0)
    assert plan.limited_by == "cores"
    assert sum(plan.busy_cores.values()) == pytest.approx(cores)
    assert plan.busy_cores["extproc"] <= plan.lime_processes
    assert plan.busy_cores["envoy"] <= plan.envoy_concurrency


def test_too_few_processes_are_the_limit_before_the_cores() -> None:
    # 8 cores would serve 4,000 req/s, but one extproc process does 1,250 at most.
    for envoy_concurrency, lime_processes, rps, limit in ((4, 1, 1250.0, "extproc"), (1, 4, 2000.0, "envoy"),
                                                          (2, 4, 4000.0, "cores")):
        got, by = capacity.pod_rps(8, envoy_concurrency, lime_processes, MS)
        assert got == pytest.approx(rps)
        assert by == limit


def test_a_plan_needs_the_cpu_of_every_gateway_process() -> None:
    with pytest.raises(ValueError, match="extproc"):
        capacity.pod_plan(4, {"envoy": 0.5, "authz": 0.7})
    with pytest.raises(ValueError, match="one core"):
        capacity.pod_plan(0, MS)


def _request_record(layout: str, rps: float, seconds: float, busy: dict[str, float]) -> dict[str, Any]:
    """A pinned run as bench/pinned.py records it: CPU per request from each process's busy share and the rate."""
    requests = round(rps * seconds)
    return {
        "layout": layout, "kind": "request", "core": 0, "rest": [1],
        "result": {"achieved_rps": rps, "connections": 32, "errors": 0, "requests": requests},
        "wall_seconds": seconds,
        "cpu_ms_per_request": {name: share * seconds * 1000 / requests for name, share in busy.items()},
        "utilisation": busy,
    }


def test_the_summary_checks_the_one_core_run_and_plans_the_pods() -> None:
    # A saturated core 0: 0.25 + 0.35 + 0.38 busy at 490 req/s -> ~2 ms per request, ~500 predicted.
    gateway = _request_record("gateway", 490.0, 10.0, {"envoy": 0.245, "authz": 0.343, "extproc": 0.392,
                                                       "settler": 0.098, "redis": 0.049, "postgres": 0.0245})
    alone = _request_record("extproc", 450.0, 10.0, {"extproc": 0.4, "envoy": 0.25})
    streams = {"layout": "gateway", "kind": "event", "core": 0, "rest": [1], "wall_seconds": 10.0,
               "result": {"concurrency": 100, "streams": 400, "failed": 0, "events": 20_000},
               "cpu_ms_per_event": {"envoy": 0.05, "extproc": 0.08}, "cpu_ms_per_stream": {"envoy": 2.5},
               "utilisation": {"envoy": 0.1, "authz": 0.05, "extproc": 0.16}}
    summary = capacity.summarise_pinned([gateway, alone, streams])

    check = summary["gateway"]
    assert check["cpu_ms_per_request"] == pytest.approx(2.0)
    assert check["predicted_rps"] == pytest.approx(500.0)
    assert check["core_utilisation"] == pytest.approx(0.98)
    assert check["measured_over_predicted"] == pytest.approx(0.98)
    assert check["saturated"]

    rows = {row["process"]: row for row in summary["processes"]}
    assert list(rows) == ["envoy", "authz", "extproc", "settler", "redis", "postgres"]
    assert rows["extproc"]["requests_per_core_second"] == pytest.approx(1250.0)
    assert rows["extproc"]["on_core"] and not rows["redis"]["on_core"]
    assert rows["extproc"]["alone"]["cpu_ms_per_request"] == pytest.approx(0.4 * 10_000 / 4500)
    assert not rows["extproc"]["alone"]["saturated"]
    assert rows["authz"]["alone"] is None
    assert rows["envoy"]["events_per_core_second"] == pytest.approx(20_000.0)
    assert summary["streams"]["events_per_second"] == pytest.approx(2000.0)

    pods = {pod["cores"]: pod for pod in summary["pods"]}
    assert list(pods) == list(capacity.POD_CORES)
    assert pods[1]["rps"] == pytest.approx(check["predicted_rps"])
    assert pods[8]["rps"] == pytest.approx(4000.0)
    assert pods[8]["behind_cores"]["settler"] == pytest.approx(0.8)


def test_no_pinned_run_no_summary() -> None:
    assert capacity.summarise_pinned([]) == {}
