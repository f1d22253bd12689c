"""`lime points`, `lime usage` and `lime reconcile`, run as the billing team runs them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import psycopg
import pytest
import redis

from lime.devstack.embedded import EmbeddedRedis
from lime.money import quota
from lime.money.quota import UsageEvent
from lime.money.settlement_writer import persist
from tests.integration.conftest import uid
from tests.integration.test_cli import Lime, as_json, ok, refused
from tests.integration.test_cli import lime as lime  # the fixture: `lime` on this module's own database


@pytest.fixture
def tenant(lime: Lime) -> str:
    upstream, model, package, tenant_id = f"up_{uid('b').replace('-', '_')}", uid("m"), uid("p"), uid("t")
    ok(lime("upstream", "add", upstream, "--protocol", "openai"))
    ok(lime("model", "add", model, "--upstream", upstream, "--input-price", "1000000", "--output-price", "2000000"))
    ok(lime("package", "create", package, "--models", model, "--rpm", "60", "--concurrency", "4"))
    ok(lime("tenant", "create", tenant_id, "--package", package))
    return tenant_id


def test_points_grant_and_balance(lime: Lime, tenant: str, fresh_database: str) -> None:
    assert as_json(lime("points", "grant", tenant, "5000000", "--note", "welcome", "--json")) == {
        "tenant": tenant, "granted": 5_000_000, "balance": 5_000_000}
    assert "balance 4000000" in ok(lime("points", "grant", tenant, "-1000000")).stdout
    balance = as_json(lime("points", "balance", tenant, "--json"))
    assert (balance["balance"], balance["held"], balance["available"]) == (4_000_000, 0, 4_000_000)
    with psycopg.connect(fresh_database) as conn:
        rows = conn.execute("SELECT kind, amount, balance_after, note FROM ledger WHERE tenant_id = %s ORDER BY id",
                            (tenant,)).fetchall()
    assert rows == [("grant", 5_000_000, 5_000_000, "welcome"), ("adjustment", -1_000_000, 4_000_000, "")]


def test_points_for_an_unknown_tenant_is_a_clear_error(lime: Lime) -> None:
    refused(lime("points", "grant", "nobody-here", "10"), "does not exist")


def test_usage_sums_per_tenant_and_model(lime: Lime, tenant: str, fresh_database: str) -> None:
    async def record(n: int) -> None:
        async with await psycopg.AsyncConnection.connect(fresh_database, autocommit=True) as conn:
            await persist(conn, UsageEvent(
                request_id=uid("req"), tenant_id=tenant, key_id="k", endpoint="chat_completions", model="m1",
                upstream="u", outcome="complete", estimated=False, upstream_status=200, input_tokens=10 * n,
                cached_input_tokens=0, cache_write_tokens=0, output_tokens=n, reasoning_tokens=0, reserved=0,
                cost=100 * n, started_at=time.time()))

    for n in (1, 2, 3):
        asyncio.run(record(n))
    [row] = as_json(lime("usage", "--tenant", tenant, "--since", "1h", "--json"))
    assert (row["model"], row["requests"], row["input_tokens"], row["output_tokens"], row["cost"]) == (
        "m1", 3, 60, 6, 600)
    assert as_json(lime("usage", "--tenant", tenant, "--since", "2999-01-01T00:00:00", "--json")) == []
    refused(lime("usage", "--since", "yesterday"), "--since takes")


def test_reconcile_rebuilds_a_lost_redis_balance(lime: Lime, tenant: str, redis_server: EmbeddedRedis) -> None:
    ok(lime("points", "grant", tenant, "7000000"))
    client = redis.Redis.from_url(redis_server.url)
    client.hset(quota.points_key(tenant), mapping={"balance": 1, "held": 0})  # Redis lost or garbled it
    result = as_json(lime("reconcile", "--tenant", tenant, "--json"))
    assert result[tenant] == {"balance": 7_000_000, "held": 0, "in_flight": 0}
    assert int(client.hget(quota.points_key(tenant), "balance") or 0) == 7_000_000
    client.close()


def test_package_limits_reach_the_catalog(lime: Lime, tenant: str, fresh_database: str, tmp_path: Path) -> None:
    with psycopg.connect(fresh_database) as conn:
        limits = conn.execute("SELECT p.rpm_limit, p.tpm_limit, p.concurrency_limit, p.default_max_output_tokens"
                              " FROM packages p JOIN tenants t ON t.package_id = p.id WHERE t.id = %s",
                              (tenant,)).fetchone()
    assert limits == (60, None, 4, 4096)
    refused(lime("package", "create", uid("bad"), "--models", "x", "--rpm", "0"), "limits must be positive")
