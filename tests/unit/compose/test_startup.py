"""Health and start order: health checks probe a port their service listens on (and are run here against a
loopback listener), and start order is a graph without cycles whose conditions can be met."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tests.deploy_checks import http_server, run_probe, tcp_listener
from tests.unit.compose.stack import SERVICES, is_lime, listening_ports, role


def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def closure(name: str) -> dict[str, str]:
    """Every service `name` waits for, directly or not, with the condition of the first edge reaching it."""
    seen: dict[str, str] = {}
    todo = list(depends_on(SERVICES[name]).items())
    while todo:
        target, condition = todo.pop()
        if target in seen:
            continue
        seen[target] = condition
        todo.extend(depends_on(SERVICES[target]).items())
    return seen


def test_every_long_running_service_has_a_health_check() -> None:
    for name, service in SERVICES.items():
        if service.get("restart") == "no":
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] == "CMD", f"{name} needs a health check"


def probe_ports(test: list[str]) -> set[int]:
    return {int(port) for port in re.findall(r"127\.0\.0\.1(?:', |:)(\d+)", " ".join(test))}


def test_health_checks_probe_a_port_their_service_listens_on() -> None:
    for name, service in SERVICES.items():
        if (is_lime(service) and service.get("restart") != "no") or name == "prometheus":
            ports, listens = probe_ports(service["healthcheck"]["test"]), listening_ports(name, loopback=True)
            assert ports and ports <= listens, f"{name}: probes {ports}, listens on {listens}"


def test_the_python_health_checks_pass_when_serving_and_fail_when_not() -> None:
    checked = 0
    for name, service in SERVICES.items():
        test = service.get("healthcheck", {}).get("test", [])
        if test[1:2] != ["python"]:
            continue
        [port] = probe_ports(test)
        path = re.search(rf":{port}(/[^'\"]*)", " ".join(test))
        if path:
            with http_server({path.group(1): b"ok"}) as server:
                argv = [arg.replace(f":{port}/", f":{server.port}/") for arg in test[1:]]
                assert run_probe(argv) == 0, f"{name}: the check fails against a healthy server"
        else:
            with tcp_listener() as free:
                argv = [arg.replace(f"'127.0.0.1', {port}", f"'127.0.0.1', {free}") for arg in test[1:]]
                assert run_probe(argv) == 0, f"{name}: the check fails against a listening port"
        # Nothing listening (the service is down): the same check must fail.
        with tcp_listener() as closed:
            pass
        down = [arg.replace(str(port), str(closed)) for arg in test[1:]]
        assert run_probe(down) != 0, f"{name}: the check passes with nothing listening"
        checked += 1
    assert checked >= 6


def test_start_order_has_no_cycle_and_names_real_services() -> None:
    for name, service in SERVICES.items():
        for target in depends_on(service):
            assert target in SERVICES, f"{name} depends on unknown {target}"
        assert name not in closure(name), f"{name} waits for itself"


def test_start_conditions_can_be_met() -> None:
    for name, service in SERVICES.items():
        for target, condition in depends_on(service).items():
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[target], f"{name} waits for {target} to be healthy: it has no check"
            if condition == "service_completed_successfully":
                assert SERVICES[target].get("restart") == "no", f"{name} waits for {target} to finish: it restarts"


def test_services_start_after_what_they_need() -> None:
    for name, service in SERVICES.items():
        if not is_lime(service) or role(name) in ("mock-upstream", "envoy"):
            continue
        waits = closure(name)
        if role(name) == "migrate":
            assert waits.get("postgres") == "service_healthy"
            continue
        assert waits.get("migrate") == "service_completed_successfully", f"{name}: migrations first"
        assert waits.get("redis") == "service_healthy", f"{name}: Redis first"
    envoy = depends_on(SERVICES["envoy"])
    for sidecar in ("authz", "extproc", "catalog-api"):
        assert envoy.get(sidecar) == "service_healthy", f"envoy must wait for {sidecar} to be healthy"
