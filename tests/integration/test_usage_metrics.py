"""The settler's metrics: backlog gauges read from a real Redis at scrape time, billing counters per record."""

from __future__ import annotations

import time
import uuid

import redis
from prometheus_client import REGISTRY, CollectorRegistry

from lime.devstack.embedded import EmbeddedRedis
from lime.money.quota import DEAD_LETTER_STREAM, RESERVATIONS, USAGE_STREAM, UsageEvent
from lime.money.usage_metrics import SettlementBacklog, count_persisted

REDIS_DB = 5


def gauges(client: redis.Redis) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(SettlementBacklog(client))
    return {sample.name: sample.value for family in registry.collect() for sample in family.samples}


def test_the_backlog_is_what_redis_holds_now(redis_server: EmbeddedRedis) -> None:
    client = redis.Redis(host=redis_server.host, port=redis_server.port, db=REDIS_DB)
    client.flushdb()
    try:
        assert gauges(client) == {"lime_reservations_open": 0, "lime_settlement_queue_depth": 0,
                                  "lime_settlement_lag_seconds": 0, "lime_settlement_dead_letter_depth": 0}
        thirty_seconds_ago = int(time.time() * 1000) - 30_000
        client.xadd(USAGE_STREAM, {"event": "{}"}, id=f"{thirty_seconds_ago}-0")
        client.xadd(USAGE_STREAM, {"event": "{}"})
        client.xadd(DEAD_LETTER_STREAM, {"event": "{}", "error": "x"})
        client.zadd(RESERVATIONS, {"r1": time.time() + 60, "r2": time.time() + 60, "r3": time.time() + 60})
        now = gauges(client)
        assert now["lime_settlement_queue_depth"] == 2
        assert 30 <= now["lime_settlement_lag_seconds"] < 40  # the oldest event's age, not the newest's
        assert now["lime_settlement_dead_letter_depth"] == 1
        assert now["lime_reservations_open"] == 3
    finally:
        client.flushdb()
        client.close()


def test_a_scrape_without_redis_reports_no_backlog_rather_than_zero() -> None:
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    assert gauges(client) == {}


def test_a_record_counts_its_tokens_by_kind_and_its_points() -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    event = UsageEvent(
        request_id="r", tenant_id=tenant, key_id="k", endpoint="messages", model="claude", upstream="u",
        outcome="complete", estimated=False, upstream_status=200, input_tokens=10, cached_input_tokens=0,
        cache_write_tokens=7, output_tokens=5, reasoning_tokens=2, reserved=100, cost=42, started_at=time.time())
    count_persisted(event)
    count_persisted(event)

    def sample(name: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"tenant": tenant, "model": "claude", **labels})

    assert sample("lime_tokens_total", endpoint="messages", kind="input") == 20
    assert sample("lime_tokens_total", endpoint="messages", kind="cache_write") == 14
    assert sample("lime_tokens_total", endpoint="messages", kind="output") == 10
    assert sample("lime_tokens_total", endpoint="messages", kind="cached_input") is None  # none: no series
    assert sample("lime_settled_micropoints_total") == 84
    assert sample("lime_settled_requests_total", endpoint="messages", outcome="complete") == 2


def test_the_drift_between_holds_and_charges_is_counted() -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    model = f"m-{uuid.uuid4().hex[:8]}"

    def event(outcome: str, *, estimated: bool, reserved: int, cost: int) -> UsageEvent:
        return UsageEvent(
            request_id=uuid.uuid4().hex, tenant_id=tenant, key_id="k", endpoint="chat_completions", model=model,
            upstream="u", outcome=outcome, estimated=estimated, upstream_status=200, input_tokens=1,
            cached_input_tokens=0, cache_write_tokens=0, output_tokens=1, reasoning_tokens=0, reserved=reserved,
            cost=cost, started_at=time.time())

    count_persisted(event("complete", estimated=False, reserved=1000, cost=100))  # a short answer to a big cap
    count_persisted(event("partial", estimated=True, reserved=1000, cost=1300))  # the input estimate was short
    count_persisted(event("reaped", estimated=False, reserved=1000, cost=0))  # released by rule: no drift

    def sample(name: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"model": model, **labels})

    assert sample("lime_reserved_micropoints_total", tenant=tenant) == 2000
    assert sample("lime_settled_micropoints_total", tenant=tenant) == 1400
    assert sample("lime_estimated_requests_total", tenant=tenant, endpoint="chat_completions") == 1
    assert sample("lime_overdraft_micropoints_total", tenant=tenant) == 300
    assert sample("lime_settled_to_reserved_ratio_count") == 2
    assert sample("lime_settled_to_reserved_ratio_bucket", le="0.1") == 1
    assert sample("lime_settled_to_reserved_ratio_bucket", le="1.1") == 1
    assert sample("lime_settled_to_reserved_ratio_bucket", le="1.5") == 2
