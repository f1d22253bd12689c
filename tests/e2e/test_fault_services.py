"""Lime's own processes killed outright (SIGKILL: no shutdown, no goodbye to Envoy) and started again.

* authz killed: new requests fail closed with a 503 in the client's protocol and reach no upstream; a stream
  that was already authorised is not on authz's path and finishes, settled in full; after the restart every
  request is served again.
* extproc killed mid-stream: the client's stream ends with an error (never a clean end), nobody settles the
  request, so the settler reaps its reservation once nobody vouched for it for ``LIME_RESERVATION_TTL_SECONDS``:
  charged 0, recorded ``reaped``, counted in ``lime_reservations_reaped_total``; the held points and the
  concurrency slot come back.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import openai
import pytest
import redis

from lime.catalog import Limits
from lime.money import quota
from tests.e2e.conftest import RESERVATION_TTL_SECONDS, Gateway, TenantAccess
from tests.e2e.test_billing import ledger, record
from tests.e2e.test_fail_closed import assert_refused_in_each_protocol, assert_served
from tests.e2e.test_metrics import scrape, value

MESSAGES: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "claude"], points=10**9)


def held_and_inflight(gateway: Gateway, tenant_id: str) -> tuple[int, int]:
    client = redis.Redis.from_url(gateway.redis_url)
    try:
        held = int(client.hget(quota.points_key(tenant_id), "held") or 0)
        inflight = int(client.get(quota.inflight_key(tenant_id)) or 0)
    finally:
        client.close()
    return held, inflight


@pytest.fixture
def killed(gateway: Gateway) -> Iterator[list[str]]:
    """Services a test SIGKILLs (``gateway.stack.stop_service(name, sig=SIGKILL)``), started again after it
    whatever happened."""
    names: list[str] = []
    yield names
    for name in names:
        gateway.stack.start_service(name)


def test_authz_killed_fails_closed_and_serves_again_after_its_restart(
        gateway: Gateway, tenant: TenantAccess, killed: list[str]) -> None:
    assert_served(gateway, tenant)
    # A stream authorised before the kill: authz is not on the path of its answer.
    raw = gateway.openai(tenant).chat.completions.with_raw_response.create(
        model="chat-a", messages=MESSAGES, stream=True, extra_headers={"x-mock-chunks": "8", "x-mock-delay-ms": "100"})
    request_id = raw.headers["x-request-id"]
    stream = iter(raw.parse())
    chunks = [next(stream)]
    killed.append("authz")
    gateway.stack.stop_service("authz", sig=signal.SIGKILL)
    assert_refused_in_each_protocol(gateway, tenant, "service_unavailable", upstream_up=True)
    chunks.extend(stream)
    assert len([chunk for chunk in chunks if chunk.choices and chunk.choices[0].delta.content]) == 8
    gateway.stack.start_service("authz")
    assert_served(gateway, tenant)
    row = record(gateway, request_id)
    assert row["outcome"] == "complete" and row["output_tokens"] == 8 and row["cost"] > 0


def test_extproc_killed_mid_stream_cuts_the_client_and_its_reservation_is_reaped(
        gateway: Gateway, killed: list[str]) -> None:
    limited = gateway.new_tenant(["chat-a"], points=10**9, limits=Limits(concurrency=1))
    reaped_before = value(scrape(gateway.settings.settler), "lime_reservations_reaped_total")
    raw = gateway.openai(limited).chat.completions.with_raw_response.create(
        model="chat-a", messages=MESSAGES, stream=True,
        extra_headers={"x-mock-chunks": "40", "x-mock-delay-ms": "100"})
    request_id = raw.headers["x-request-id"]
    stream = iter(raw.parse())
    received = [next(stream) for _ in range(4)]  # the role, then text
    assert all(chunk.choices[0].delta.content for chunk in received[1:])
    held, inflight = held_and_inflight(gateway, limited.tenant_id)
    assert held > 0 and inflight == 1
    killed.append("extproc")
    gateway.stack.stop_service("extproc", sig=signal.SIGKILL)
    # What the client sees: the stream breaks off with an error after what it already had, never a clean end
    # that would pass for a short answer.
    with pytest.raises(openai.APIConnectionError):
        for chunk in stream:
            received.append(chunk)
    assert len(received) < 40
    gateway.stack.start_service("extproc")

    # Nobody vouches for the request any more: the settler reaps it once its deadline has passed.
    row = record(gateway, request_id, timeout=RESERVATION_TTL_SECONDS + 30)
    assert row["outcome"] == "reaped" and row["cost"] == 0 and row["output_tokens"] == 0
    balance, entries = ledger(gateway, limited.tenant_id)
    assert balance == 10**9 and not [entry for entry in entries if entry[0] == "usage"]
    assert held_and_inflight(gateway, limited.tenant_id) == (0, 0)
    assert value(scrape(gateway.settings.settler), "lime_reservations_reaped_total") >= reaped_before + 1
    # The slot is back: a request under the concurrency limit of 1 is served, and settled normally.
    served = gateway.openai(limited).chat.completions.with_raw_response.create(model="chat-a", messages=MESSAGES)
    assert record(gateway, served.headers["x-request-id"])["outcome"] == "complete"

