"""The doors that must stay shut: Envoy's admin is on loopback inside its container (Prometheus scrapes the stats
listener instead), and Envoy and catalog-api share the catalog secret, which comes from the environment."""

from __future__ import annotations

import json

import pytest

from lime.settings import Settings, is_loopback
from tests.deploy_checks import ROOT
from tests.unit.compose.stack import RUN_ENV, SERVICES, environment, is_lime, load, role


def test_envoy_admin_is_on_loopback_and_prometheus_scrapes_the_stats_listener() -> None:
    envoy = Settings.from_env(environment(SERVICES["envoy"]))
    assert is_loopback(envoy.envoy_admin), envoy.envoy_admin
    assert str(envoy.envoy_stats).startswith("0.0.0.0:")
    [group] = json.loads((ROOT / "deploy" / "prometheus" / "targets" / "envoy.json").read_text())
    assert group["targets"] == [f"envoy:{envoy.envoy_stats.port}"]
    assert envoy.envoy_admin.port != envoy.envoy_stats.port


def test_no_service_puts_an_envoy_admin_on_the_network() -> None:
    for name, service in SERVICES.items():
        if is_lime(service):
            assert is_loopback(Settings.from_env(environment(service)).envoy_admin), name


def test_the_envoy_healthcheck_reads_admin_on_loopback() -> None:
    envoy = Settings.from_env(environment(SERVICES["envoy"]))
    check = " ".join(SERVICES["envoy"]["healthcheck"]["test"])
    assert f"http://127.0.0.1:{envoy.envoy_admin.port}/ready" in check


def test_envoy_and_catalog_api_share_the_catalog_secret() -> None:
    holders = {name: environment(service).get("LIME_CATALOG_SECRET") for name, service in SERVICES.items()
               if is_lime(service) and role(name) in ("envoy", "catalog-api")}
    assert set(holders) == {"envoy", "catalog-api"}
    assert set(holders.values()) == {RUN_ENV["LIME_CATALOG_SECRET"]}


def test_compose_refuses_to_start_without_the_catalog_secret() -> None:
    with pytest.raises(ValueError, match="LIME_CATALOG_SECRET"):
        load({"LIME_ADMIN_TOKEN": "t"})
