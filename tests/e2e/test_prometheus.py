"""A real Prometheus, with the project's own scrape config and rules, reading the real stack.

The fixture copies ``deploy/prometheus/`` and changes only what a deployment is meant to change there: the
addresses in ``targets/*.json`` and the global intervals (1 s, so the test need not wait for 15 s scrapes).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import psycopg
import pytest
import yaml

from lime.devstack.embedded import free_port
from lime.settings import Address
from tests.e2e.conftest import Gateway, TenantAccess, run_sync
from tests.e2e.test_billing import record
from tests.processes import stop_tree

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
JOBS = ("envoy", "authz", "extproc", "catalog_api", "settler")


class Prometheus:
    def __init__(self, address: Address) -> None:
        self.address = address

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"http://{self.address}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as response:
            reply = json.load(response)
        assert reply["status"] == "success", reply
        return list(reply["data"]["result"])

    def by(self, expr: str, label: str) -> dict[str, float]:
        return {series["metric"].get(label, ""): float(series["value"][1]) for series in self.query(expr)}

    def wait_for(self, expr: str, label: str, expected: dict[str, float], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while (got := self.by(expr, label)) != expected:
            assert time.monotonic() < deadline, f"{expr}: expected {expected}, Prometheus has {got}"
            time.sleep(0.5)


@pytest.fixture(scope="module")
def prometheus(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = shutil.which("prometheus")
    assert binary, "the prometheus server is missing: scripts/ensure-system-deps installs Debian's package"
    home = tmp_path_factory.mktemp("prometheus")
    config_dir = home / "config"
    shutil.copytree(DEPLOY, config_dir)
    settings = gateway.settings
    addresses = {"envoy": settings.envoy_stats, "authz": settings.authz_metrics, "extproc": settings.extproc_metrics,
                 "catalog_api": settings.admin, "settler": settings.settler}
    for job, address in addresses.items():
        (config_dir / "targets" / f"{job}.json").write_text(json.dumps([{"targets": [str(address)]}]))
    config_path = config_dir / "prometheus.yml"
    config = yaml.safe_load(config_path.read_text())
    config["global"].update({"scrape_interval": "1s", "evaluation_interval": "1s"})
    config_path.write_text(yaml.safe_dump(config))
    address = Address("127.0.0.1", free_port())
    with open(home / "prometheus.log", "wb") as log:
        process = subprocess.Popen(
            [binary, f"--config.file={config_path}", f"--storage.tsdb.path={home / 'data'}",
             f"--web.listen-address={address}"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://{address}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert process.poll() is None, (home / "prometheus.log").read_text()
            assert time.monotonic() < deadline, "Prometheus did not become ready"
            time.sleep(0.2)
        yield Prometheus(address)
    finally:
        stop_tree(process, signal.SIGTERM, 10)  # killed with its group if it does not stop in time


def test_envoy_and_every_service_are_up(prometheus: Prometheus) -> None:
    prometheus.wait_for("up", "job", dict.fromkeys(JOBS, 1.0))


def ledger_totals(gateway: Gateway, tenants: list[str]) -> dict[str, dict[str, float]]:
    """Per tenant, the tokens by kind and the micro-points PostgreSQL recorded."""
    async def fetch() -> list[tuple[Any, ...]]:
        async with await psycopg.AsyncConnection.connect(gateway.database_url, autocommit=True) as conn:
            cursor = await conn.execute(
                "SELECT r.tenant_id, sum(input_tokens), sum(cached_input_tokens), sum(cache_write_tokens),"
                " sum(output_tokens), (SELECT -sum(amount) FROM ledger l WHERE l.tenant_id = r.tenant_id"
                " AND kind = 'usage'), sum(reserved) FILTER (WHERE outcome <> 'reaped'),"
                " count(*) FILTER (WHERE estimated AND outcome <> 'reaped')"
                " FROM usage_records r WHERE r.tenant_id = ANY(%s) GROUP BY r.tenant_id",
                (tenants,))
            return list(await cursor.fetchall())

    totals: dict[str, dict[str, float]] = {}
    for tenant, input_tokens, cached, cache_write, output, points, reserved, estimated in run_sync(fetch()):
        totals[tenant] = {"input": float(input_tokens), "cached_input": float(cached),
                          "cache_write": float(cache_write), "output": float(output), "points": float(points or 0),
                          "reserved": float(reserved or 0), "estimated": float(estimated)}
    return totals


def drive(gateway: Gateway, tenant: TenantAccess, rounds: int) -> list[str]:
    """Mixed traffic on every endpoint, with failures; returns the ids of the requests that reached an upstream."""
    client, claude = gateway.openai(tenant), gateway.anthropic(tenant)
    messages: Any = [{"role": "user", "content": "tell me something"}]
    ids: list[str] = []
    for n in range(rounds):
        ids.append(client.chat.completions.with_raw_response.create(
            model="chat-a", messages=messages, extra_headers={"x-mock-cached-tokens": str(n)}).headers["x-request-id"])
        raw = client.chat.completions.with_raw_response.create(model="chat-a", messages=messages, stream=True)
        ids.append(raw.headers["x-request-id"])
        for _ in raw.parse():
            pass
        ids.append(claude.messages.with_raw_response.create(
            model="claude", max_tokens=64, messages=[{"role": "user", "content": "hi " * (n + 1)}],
        ).headers["x-request-id"])
        ids.append(client.embeddings.with_raw_response.create(model="embed", input="x" * (10 * n + 1))
                   .headers["x-request-id"])
        ids.append(client.responses.with_raw_response.create(model="chat-a", input="hello").headers["x-request-id"])
    with pytest.raises(openai.InternalServerError):  # settled as failed, charged nothing
        client.chat.completions.create(model="chat-a", messages=messages, extra_headers={"x-mock-status": "500"})
    cut = client.chat.completions.with_raw_response.create(
        model="chat-a", messages=messages, stream=True, extra_headers={"x-mock-chunks": "30", "x-mock-delay-ms": "30"})
    stream = cut.parse()
    assert isinstance(stream, openai.Stream)
    next(iter(stream))
    stream.close()  # a partial answer: charged for what was delivered
    ids.append(cut.headers["x-request-id"])
    return ids


def test_per_tenant_token_and_points_totals_in_prometheus_equal_the_ledger(
        gateway: Gateway, prometheus: Prometheus) -> None:
    tenants = [gateway.new_tenant(["chat-a", "claude", "embed"], points=50_000_000) for _ in range(2)]
    for tenant, rounds in zip(tenants, (3, 5), strict=True):
        for request_id in drive(gateway, tenant, rounds):
            record(gateway, request_id)
    ids = [tenant.tenant_id for tenant in tenants]
    ledger = ledger_totals(gateway, ids)
    assert set(ledger) == set(ids) and all(totals["points"] > 0 for totals in ledger.values())
    selector = "tenant=~\"" + "|".join(ids) + "\""
    for kind in ("input", "cached_input", "cache_write", "output"):
        prometheus.wait_for(f'sum by (tenant) (lime_tokens_total{{{selector}, kind="{kind}"}})', "tenant",
                            {t: ledger[t][kind] for t in ids if ledger[t][kind]})
    prometheus.wait_for(f"sum by (tenant) (lime_settled_micropoints_total{{{selector}}})", "tenant",
                        {t: ledger[t]["points"] for t in ids})
    # Billing drift: the holds and the estimated charges, as the records have them (the cut stream is estimated).
    assert all(ledger[t]["estimated"] >= 1 for t in ids)
    prometheus.wait_for(f"sum by (tenant) (lime_reserved_micropoints_total{{{selector}}})", "tenant",
                        {t: ledger[t]["reserved"] for t in ids})
    prometheus.wait_for(f"sum by (tenant) (lime_estimated_requests_total{{{selector}}})", "tenant",
                        {t: ledger[t]["estimated"] for t in ids})
    # The billing team's recording rule has picked the tenants up too.
    deadline = time.monotonic() + 15
    while set(prometheus.by(f"tenant_model:lime_settled_points:increase1d{{{selector}}}", "tenant")) != set(ids):
        assert time.monotonic() < deadline, "the daily points rule has no series for the new tenants"
        time.sleep(0.5)


def _dashboard_exprs(panel: dict[str, Any]) -> Iterator[str]:
    for target in panel.get("targets", []):
        if target.get("expr"):
            yield str(target["expr"])
    for inner in panel.get("panels", []):
        yield from _dashboard_exprs(inner)


GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h", "${__range}": "1h",
                     "$__auto": "1m", "$tenant": ".*", "${tenant}": ".*", "$model": ".*", "${model}": ".*"}


def test_every_rule_and_dashboard_expression_runs_on_this_prometheus(prometheus: Prometheus) -> None:
    exprs: list[str] = []
    for rules_file in (DEPLOY / "rules").glob("*.yml"):
        for group in yaml.safe_load(rules_file.read_text())["groups"]:
            exprs += [rule["expr"] for rule in group["rules"]]
    for dashboard in (DEPLOY / "grafana").glob("*.json"):
        for panel in json.loads(dashboard.read_text())["panels"]:
            exprs += list(_dashboard_exprs(panel))
    assert len(exprs) > 20
    for expr in exprs:
        for variable in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
            expr = expr.replace(variable, GRAFANA_VARIABLES[variable])
        assert "$" not in expr, f"a Grafana variable this test does not know: {expr}"
        prometheus.query(expr)  # asserts Prometheus accepted and evaluated it
