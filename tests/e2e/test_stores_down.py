"""The stores fail as DESIGN.md says: Redis down fails closed; PostgreSQL down keeps serving from caches while
settlements wait, and nothing is lost or counted twice when it returns."""

from __future__ import annotations

import time
from typing import Any, cast

import anthropic
import openai
import pytest

from lime.devstack.embedded import EmbeddedPostgres, EmbeddedRedis
from tests.e2e.conftest import Gateway, TenantAccess
from tests.e2e.test_billing import ledger, record

MESSAGES: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture
def tenant(gateway: Gateway) -> TenantAccess:
    access = gateway.new_tenant(["chat-a", "claude"], points=10**9)
    gateway.openai(access).chat.completions.create(model="chat-a", messages=MESSAGES)  # warm: key and balance
    return access


def test_postgres_down_keeps_serving_and_settles_when_it_returns(
        gateway: Gateway, tenant: TenantAccess, postgres: EmbeddedPostgres) -> None:
    served: list[str] = []
    postgres.stop()
    try:
        for _ in range(3):
            raw = gateway.openai(tenant).chat.completions.with_raw_response.create(model="chat-a", messages=MESSAGES)
            served.append(raw.headers["x-request-id"])
    finally:
        postgres.start()
    rows = [record(gateway, request_id, timeout=30) for request_id in served]  # the settler caught up
    assert all(row["outcome"] == "complete" and row["cost"] > 0 for row in rows)
    balance, entries = ledger(gateway, tenant.tenant_id)
    charged = [entry for entry in entries if entry[0] == "usage"]
    assert len(charged) == len({entry[2] for entry in charged}) == 4  # the warm-up and the three, once each
    assert balance == 10**9 + sum(amount for _, amount, _ in charged)


AUTHZ_OUTAGE_MESSAGES = ("The gateway cannot verify keys right now; please retry.",
                         "The gateway cannot reserve quota right now; nothing was charged. Please retry shortly.")


def test_redis_down_fails_closed_and_recovers(gateway: Gateway, tenant: TenantAccess,
                                              redis_server: EmbeddedRedis) -> None:
    redis_server.stop()
    try:
        with pytest.raises(openai.InternalServerError) as refused:
            gateway.openai(tenant).chat.completions.create(model="chat-a", messages=MESSAGES)
        assert refused.value.status_code == 503
        # authz's own words (its 503 travels to Envoy under a carrier status), not Envoy's "cannot authorize".
        assert cast(dict[str, Any], refused.value.body)["message"] in AUTHZ_OUTAGE_MESSAGES
        with pytest.raises(anthropic.InternalServerError) as refused_anthropic:
            gateway.anthropic(tenant).messages.create(model="claude", max_tokens=8, messages=MESSAGES)
        assert refused_anthropic.value.status_code == 503
        assert cast(dict[str, Any], refused_anthropic.value.body)["error"]["message"] in AUTHZ_OUTAGE_MESSAGES
    finally:
        redis_server.start()
    # Redis came back empty: keys, balances and the usage stream are rebuilt or recreated as they are needed.
    raw = gateway.openai(tenant).chat.completions.with_raw_response.create(model="chat-a", messages=MESSAGES)
    assert record(gateway, raw.headers["x-request-id"], timeout=30)["outcome"] == "complete"


def test_a_settlement_waits_out_a_redis_outage(gateway: Gateway, tenant: TenantAccess,
                                               redis_server: EmbeddedRedis) -> None:
    raw = gateway.openai(tenant).chat.completions.with_raw_response.create(
        model="chat-a", messages=MESSAGES, stream=True,
        extra_headers={"x-mock-chunks": "8", "x-mock-delay-ms": "150"})
    request_id = raw.headers["x-request-id"]
    stream = iter(raw.parse())
    next(stream)
    redis_server.stop()  # a failover, while the answer is still flowing ...
    try:
        rest = list(stream)  # ... which Redis is not on the path of
        assert rest
        time.sleep(1.0)  # the answer is over and extproc keeps trying to settle it
    finally:
        redis_server.start()
    row = record(gateway, request_id, timeout=30)
    assert row["outcome"] == "complete" and row["output_tokens"] == 8 and row["cost"] > 0
