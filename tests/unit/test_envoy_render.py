from __future__ import annotations

from pathlib import Path

import yaml

from lime.envoy_check import validate_with_envoy
from lime.envoy_render import render_envoy_config
from lime.settings import Settings

SHIPPED = (Path(__file__).resolve().parents[2] / "envoy" / "envoy.yaml").read_text()


def endpoint(config: dict, cluster: str) -> tuple[str, int]:  # type: ignore[type-arg]
    [found] = [c for c in config["static_resources"]["clusters"] if c["name"] == cluster]
    socket = found["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    return socket["address"], socket["port_value"]


def test_only_lime_addresses_change() -> None:
    settings = Settings.from_env({"LIME_PUBLIC_ADDR": "127.0.0.2:18080", "LIME_AUTHZ_ADDR": "127.0.0.3:1",
                                  "LIME_MOCK_UPSTREAM_ADDR": "127.0.0.4:2", "LIME_ENVOY_ADMIN_ADDR": "127.0.0.5:3"})
    rendered = render_envoy_config(SHIPPED, settings)
    original = yaml.safe_load(SHIPPED)
    listener = rendered["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"] == {"address": "127.0.0.2", "port_value": 18080}
    assert rendered["admin"]["address"]["socket_address"] == {"address": "127.0.0.5", "port_value": 3}
    assert endpoint(rendered, "lime_authz") == ("127.0.0.3", 1)
    assert endpoint(rendered, "upstream_mock") == endpoint(rendered, "upstream_mock_anthropic") == ("127.0.0.4", 2)
    # routes, filters and everything else as the SRE wrote them
    assert listener["filter_chains"] == original["static_resources"]["listeners"][0]["filter_chains"]


def test_service_names_become_dns_clusters(tmp_path: Path) -> None:
    settings = Settings.from_env({"LIME_AUTHZ_ADDR": "authz:9001", "LIME_EXTPROC_ADDR": "10.0.0.7:9002",
                                  "LIME_ENVOY_CONFIG": str(tmp_path / "envoy.yaml")})
    rendered = render_envoy_config(SHIPPED, settings)
    clusters = {c["name"]: c for c in rendered["static_resources"]["clusters"]}
    assert clusters["lime_authz"]["type"] == "STRICT_DNS"
    assert clusters["lime_extproc"]["type"] == "STATIC"
    # and Envoy accepts the result
    (tmp_path / "envoy.yaml").write_text(yaml.safe_dump(rendered))
    ok, output = validate_with_envoy(tmp_path / "envoy.yaml")
    assert ok, output
