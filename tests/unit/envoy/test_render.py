"""Rendering the SRE's set of Envoy files for a running stack: only Lime's addresses change, and the result is
a set Envoy accepts whose routes and clusters it watches."""

import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from lime.envoy.check import check
from lime.envoy.files import fold, read_config_set
from lime.envoy.render import RenderedConfig, render_config_set, write_envoy_config
from lime.settings import Settings, SettingsError

SHIPPED = Path(__file__).resolve().parents[3] / "envoy" / "envoy.yaml"


def endpoint(clusters: list[dict[str, Any]], name: str) -> tuple[str, int]:
    [found] = [c for c in clusters if c["name"] == name]
    socket = found["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    return socket["address"], socket["port_value"]


def test_only_lime_addresses_change() -> None:
    settings = Settings.from_env({"LIME_PUBLIC_ADDR": "127.0.0.2:18080", "LIME_AUTHZ_ADDR": "127.0.0.3:1",
                                  "LIME_MOCK_UPSTREAM_ADDR": "127.0.0.4:2", "LIME_ENVOY_ADMIN_ADDR": "127.0.0.5:3",
                                  "LIME_ENVOY_STATS_ADDR": "127.0.0.6:4", "LIME_CATALOG_SECRET": "s"})
    original = read_config_set(SHIPPED)
    rendered = render_config_set(read_config_set(SHIPPED), settings)
    listener = rendered.bootstrap["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"] == {"address": "127.0.0.2", "port_value": 18080}
    assert rendered.bootstrap["admin"]["address"]["socket_address"] == {"address": "127.0.0.5", "port_value": 3}
    [stats] = [x for x in rendered.bootstrap["static_resources"]["listeners"] if x["name"] == "stats"]
    assert stats["address"]["socket_address"] == {"address": "127.0.0.6", "port_value": 4}
    assert endpoint(rendered.bootstrap["static_resources"]["clusters"], "envoy_admin") == ("127.0.0.5", 3)
    assert endpoint(rendered.bootstrap["static_resources"]["clusters"], "lime_authz") == ("127.0.0.3", 1)
    for mock in ("upstream_mock", "upstream_mock_anthropic", "candidate_mock_primary", "candidate_mock_backup"):
        assert endpoint(rendered.clusters, mock) == ("127.0.0.4", 2)
    # routes, filters, production upstreams and everything else as the SRE wrote them
    assert listener["filter_chains"] == original.bootstrap["static_resources"]["listeners"][0]["filter_chains"]
    assert rendered.routes is not None
    [models] = [r for r in rendered.routes["virtual_hosts"][0]["routes"] if r["name"] == "models"]
    assert models.pop("request_headers_to_add") == [{"header": {"key": "x-lime-catalog-secret", "value": "s"},
                                                     "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]
    assert rendered.routes == original.routes
    assert endpoint(rendered.clusters, "upstream_new_api") == endpoint(original.clusters, "upstream_new_api")


def test_service_names_become_dns_clusters(tmp_path: Path) -> None:
    settings = Settings.from_env({"LIME_AUTHZ_ADDR": "authz:9001", "LIME_EXTPROC_ADDR": "10.0.0.7:9002",
                                  "LIME_MOCK_UPSTREAM_ADDR": "mock-upstream:9100", "LIME_ENVOY_CONFIG": str(SHIPPED),
                                  "LIME_CATALOG_SECRET": "s3cret%with%percents",
                                  "LIME_ENVOY_STATS_ADDR": "0.0.0.0:9902"})
    rendered = render_config_set(read_config_set(SHIPPED), settings)
    clusters = {c["name"]: c for c in rendered.bootstrap["static_resources"]["clusters"] + rendered.clusters}
    assert clusters["lime_authz"]["type"] == "STRICT_DNS"
    assert clusters["lime_extproc"]["type"] == "STATIC"
    assert clusters["candidate_mock_backup"]["type"] == "STRICT_DNS"
    assert "type" not in clusters["upstream_mock_failover"]  # an aggregate has no endpoints to point
    # and the written set passes the whole check, Envoy's validation included
    written = write_envoy_config(settings, tmp_path / "envoy.yaml")
    report = check(written, ["mock", "mock_failover"])
    assert report.ok, (report.problems, report.envoy_output)


def test_the_written_set_points_envoy_at_watched_files_of_its_own(tmp_path: Path) -> None:
    settings = Settings.from_env({"LIME_ENVOY_CONFIG": str(SHIPPED), "LIME_CATALOG_SECRET": "x"})
    written = write_envoy_config(settings, tmp_path / "out" / "envoy.yaml")
    bootstrap = yaml.safe_load(written.read_text())
    cds = bootstrap["dynamic_resources"]["cds_config"]["path_config_source"]
    out = tmp_path / "out"
    assert cds == {"path": str(out / "clusters.yaml"), "watched_directory": {"path": str(out)}}
    hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["rds"]["config_source"]["path_config_source"]["path"] == str(tmp_path / "out" / "routes.yaml")
    # Reading the written set back gives the same routes and clusters: nothing lost on the way.
    again = read_config_set(written)
    assert again.routes == render_config_set(read_config_set(SHIPPED), settings).routes
    assert [c["name"] for c in again.clusters] == [c["name"] for c in read_config_set(SHIPPED).clusters]
    assert fold(again)["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "route_config"]["name"] == "public"
    assert not [p for p in tmp_path.joinpath("out").iterdir() if p.name.startswith(".")]  # no temporary left


def test_unix_socket_services_become_pipes() -> None:
    settings = Settings.from_env({"LIME_AUTHZ_ADDR": "unix:/run/lime/authz.sock", "LIME_ENVOY_CONFIG": str(SHIPPED),
                                  "LIME_CATALOG_SECRET": "x"})
    rendered = render_config_set(read_config_set(SHIPPED), settings)
    [authz] = [c for c in rendered.bootstrap["static_resources"]["clusters"] if c["name"] == "lime_authz"]
    address = authz["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert address == {"pipe": {"path": "/run/lime/authz.sock"}} and authz["type"] == "STATIC"


def test_an_edited_source_is_rendered_again_and_a_broken_one_is_not(tmp_path: Path) -> None:
    source = tmp_path / "envoy"
    source.mkdir()
    for name in ("envoy.yaml", "routes.yaml", "clusters.yaml"):
        (source / name).write_text((SHIPPED.parent / name).read_text())
    rendered = RenderedConfig(Settings.from_env({"LIME_ENVOY_CONFIG": str(source / "envoy.yaml"),
                                                 "LIME_CATALOG_SECRET": "x"}),
                              tmp_path / "out" / "envoy.yaml")
    rendered.render()
    assert not rendered.refresh()  # nothing changed
    routes = (source / "routes.yaml").read_text()
    (source / "routes.yaml").write_text(routes.replace("idle_timeout: 300s", "idle_timeout: 301s", 1))
    os.utime(source / "routes.yaml", (time.time() + 5, time.time() + 5))  # a later mtime, whatever the clock
    assert rendered.refresh()
    assert "301s" in (tmp_path / "out" / "routes.yaml").read_text()
    (source / "clusters.yaml").write_text("resources: [")
    os.utime(source / "clusters.yaml", (time.time() + 10, time.time() + 10))
    assert not rendered.refresh()  # left as it was: Envoy keeps running on the last good set
    assert "upstream_mock" in (tmp_path / "out" / "clusters.yaml").read_text()


def test_the_catalog_secret_is_escaped_for_envoy_and_required(tmp_path: Path) -> None:
    settings = Settings.from_env({"LIME_CATALOG_SECRET": "a%b"})
    rendered = render_config_set(read_config_set(SHIPPED), settings)
    assert rendered.routes is not None
    [models] = [r for r in rendered.routes["virtual_hosts"][0]["routes"] if r["name"] == "models"]
    assert models["request_headers_to_add"][0]["header"]["value"] == "a%%b"
    with pytest.raises(SettingsError, match="LIME_CATALOG_SECRET"):
        render_config_set(read_config_set(SHIPPED), Settings.from_env({}))


def test_the_rendered_files_are_for_envoy_alone(tmp_path: Path) -> None:
    """They hold the catalog secret: readable by the owner only (Envoy runs as the renderer's user)."""
    written = write_envoy_config(Settings.from_env({"LIME_CATALOG_SECRET": "x"}), tmp_path / "envoy.yaml")
    for path in written.parent.iterdir():
        assert path.stat().st_mode & 0o077 == 0, path
