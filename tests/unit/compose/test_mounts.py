"""Files the stack needs: mounts and named volumes exist, and Prometheus reads the config mounted for it and
scrapes the services where they serve metrics."""

from __future__ import annotations

import json

from tests.deploy_checks import ROOT
from tests.unit.compose.stack import COMPOSE, SERVICES, listening_ports


def test_mounts_and_named_volumes_exist() -> None:
    for name, service in SERVICES.items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in COMPOSE.get("volumes", {}), f"{name}: volume {source} is not declared"


def test_prometheus_reads_the_config_mounted_for_it() -> None:
    service = SERVICES["prometheus"]
    mounts = {target: source for source, target, *_ in (m.split(":") for m in service["volumes"])}
    [config] = [arg.split("=", 1)[1] for arg in service["command"] if arg.startswith("--config.file=")]
    [(target, source)] = [(t, s) for t, s in mounts.items() if config.startswith(t + "/")]
    assert (ROOT / source / config.removeprefix(target + "/")).is_file()


def test_prometheus_scrapes_services_where_they_serve_metrics() -> None:
    targets = sorted((ROOT / "deploy" / "prometheus" / "targets").glob("*.json"))
    assert len(targets) >= 5
    scraped = set()
    for path in targets:
        for group in json.loads(path.read_text()):
            for target in group["targets"]:
                host, _, port = target.rpartition(":")
                assert host in SERVICES, f"{path.name}: {host} is no compose service"
                assert int(port) in listening_ports(host), f"{path.name}: {host} does not listen on {port}"
                scraped.add(host)
    assert scraped >= {"envoy", "authz", "extproc", "catalog-api", "settler"}
