"""The stores failing with requests in flight, and the bound on serving without PostgreSQL.

test_stores_down.py has the basics (one refusal, one stream settling after a Redis outage, three requests during a
PostgreSQL outage). Here: streams of both protocols in flight through a Redis outage, refusals that reach no
upstream, the books agreeing to the micro-point afterwards; and what ends serving when PostgreSQL stays down.
"""

from __future__ import annotations

import time
from typing import Any

import anthropic
import openai
import pytest
import redis

from lime.devstack.embedded import EmbeddedPostgres, EmbeddedRedis
from lime.directory import KEY_MEMORY_SECONDS, key_cache_name
from lime.keys import hash_key
from lime.money import quota
from tests.e2e.conftest import Gateway, TenantAccess
from tests.e2e.test_billing import ledger, record
from tests.e2e.test_fail_closed import assert_refused_in_each_protocol, assert_served

MESSAGES: Any = [{"role": "user", "content": "hi"}]
POINTS = 10**9
SLOW = {"x-mock-chunks": "8", "x-mock-delay-ms": "150"}


@pytest.fixture
def tenant(gateway: Gateway) -> TenantAccess:
    access = gateway.new_tenant(["chat-a", "claude"], points=POINTS)
    assert_served(gateway, access)  # its key and balance are cached in Redis
    return access


def redis_client(gateway: Gateway) -> redis.Redis:
    return redis.Redis.from_url(gateway.redis_url)


def test_streams_in_flight_through_a_redis_outage_finish_and_settle_once_and_nothing_is_served_meanwhile(
        gateway: Gateway, tenant: TenantAccess, redis_server: EmbeddedRedis) -> None:
    chat = gateway.openai(tenant).chat.completions.with_raw_response.create(
        model="chat-a", messages=MESSAGES, stream=True, extra_headers=SLOW)
    chat_stream = iter(chat.parse())
    pieces = [next(chat_stream)]
    with gateway.anthropic(tenant).messages.stream(model="claude", max_tokens=50, messages=MESSAGES,
                                                   extra_headers=SLOW) as claude:
        texts = [next(iter(claude.text_stream))]
        redis_server.stop()
        try:
            # New requests are refused in the client's protocol, and none reaches the upstream unreserved.
            assert_refused_in_each_protocol(gateway, tenant, "service_unavailable", upstream_up=True)
            # The answers already under way do not need Redis: they arrive whole.
            texts.extend(claude.text_stream)
            pieces.extend(chat_stream)
            time.sleep(1.0)  # both are over; their settlements wait for Redis
        finally:
            redis_server.start()
        claude_id = claude.response.headers["x-request-id"]
    assert len(texts) == 8
    assert len([p for p in pieces if p.choices and p.choices[0].delta.content]) == 8
    rows = [record(gateway, request_id, timeout=60) for request_id in (chat.headers["x-request-id"], claude_id)]
    assert [(row["outcome"], row["output_tokens"]) for row in rows] == [("complete", 8), ("complete", 8)]

    # Once each in the ledger, and the balance is the grant minus exactly those (and the warm-up request).
    balance, entries = ledger(gateway, tenant.tenant_id)
    charged = [entry for entry in entries if entry[0] == "usage"]
    assert len(charged) == len({entry[2] for entry in charged}) == 3
    assert balance == POINTS + sum(amount for _, amount, _ in charged)
    # Redis came back empty; the next request loads the tenant from PostgreSQL, and the two agree.
    after = gateway.openai(tenant).chat.completions.with_raw_response.create(model="chat-a", messages=MESSAGES)
    cost = record(gateway, after.headers["x-request-id"])["cost"]
    client = redis_client(gateway)
    try:
        live = client.hgetall(quota.points_key(tenant.tenant_id))
    finally:
        client.close()
    assert int(live[b"balance"]) == balance - cost and int(live[b"held"]) == 0


def test_postgres_down_serves_cached_keys_only_until_their_cache_expires(
        gateway: Gateway, tenant: TenantAccess, postgres: EmbeddedPostgres) -> None:
    cached = key_cache_name(hash_key(tenant.key))
    client = redis_client(gateway)
    try:
        # The bound: a key is trusted from Redis for LIME_KEY_CACHE_SECONDS (60 s) after it was read.
        assert 0 < client.ttl(cached) <= 60
        postgres.stop()
        try:
            assert_served(gateway, tenant)  # the key, the catalog and the balance come from the caches
            client.delete(cached)  # as when its 60 s are up
            time.sleep(KEY_MEMORY_SECONDS)  # and authz's own second of memory
            before = gateway.mock_request_count()
            with pytest.raises(openai.InternalServerError) as refused:
                gateway.openai(tenant).chat.completions.create(model="chat-a", messages=MESSAGES)
            assert refused.value.status_code == 503
            assert refused.value.response.json()["error"]["code"] == "service_unavailable"
            with pytest.raises(anthropic.InternalServerError) as anthropic_refused:
                gateway.anthropic(tenant).messages.create(model="claude", max_tokens=8, messages=MESSAGES)
            assert anthropic_refused.value.response.json()["error"]["type"] == "api_error"
            assert gateway.mock_request_count() == before
        finally:
            postgres.start()
    finally:
        client.close()
    assert_served(gateway, tenant)
