"""`lime envoy check` as an SRE runs it: against the catalog in the database, with Envoy's own validation."""

from __future__ import annotations

import subprocess
import sys

import psycopg

from tests.e2e.conftest import Gateway


def lime(gateway: Gateway, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lime.cli", *args], env=gateway.env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_the_shipped_config_routes_every_catalog_upstream(gateway: Gateway) -> None:
    result = lime(gateway, "envoy", "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout and "mock, mock_anthropic" in result.stdout


def test_an_upstream_without_a_route_fails_the_check(gateway: Gateway) -> None:
    with psycopg.connect(gateway.database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO upstreams (id, protocol) VALUES ('ghost', 'openai')")
    try:
        result = lime(gateway, "envoy", "check", "--skip-validate")
        assert result.returncode == 1
        assert "upstream_ghost" in result.stdout and "FAILED" in result.stdout
    finally:
        with psycopg.connect(gateway.database_url, autocommit=True) as conn:
            conn.execute("DELETE FROM upstreams WHERE id = 'ghost'")
