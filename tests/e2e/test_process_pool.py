"""Several processes per service (LIME_PROCESSES, lime/cli/process_pool.py), through a second gateway of two authz and
two extproc processes on the same stores: Envoy spreads calls over every process, /metrics adds up all of them,
a process that dies is started again, SIGTERM lets each process finish its streams in flight, and a stream its client
cuts settles at once whichever process Envoy tells (extproc/cut_relay.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from lime.settings import Address, Settings
from tests.e2e.conftest import Gateway, TenantAccess, started_gateway
from tests.e2e.test_billing import expected_cost, ledger, record
from tests.e2e.test_graceful_stop import ready
from tests.e2e.test_metrics import scrape, value

PROCESSES = 2
#: A cut stream settles once Envoy's report reached its process (its access log is flushed every 100 ms), read 0.5 s
#: more, and the settler wrote it: well under the 30 s it takes when the report went to another process unrelayed.
CUT_SETTLES_WITHIN = 5.0
MESSAGES: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def pooled(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    env = {**gateway.env, "LIME_PROCESSES": str(PROCESSES), "LIME_DRAIN_SECONDS": "10"}
    with started_gateway(env, tmp_path_factory, gateway.database_url, gateway.redis_url) as pooled:
        yield pooled


@pytest.fixture(scope="module")
def tenant(gateway: Gateway, pooled: Gateway) -> TenantAccess:
    access = gateway.new_tenant(["chat-a"], points=10**10)
    pooled.wait_until_served(access)
    return access


def children(parent: subprocess.Popen[bytes]) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent.pid:
            found.append(int(status.parent.name))
    return sorted(found)


def calls_per_endpoint(pooled: Gateway, cluster: str) -> dict[str, int]:
    """Envoy's count of calls to each endpoint of one of Lime's clusters (its admin's /clusters)."""
    with urllib.request.urlopen(f"http://{pooled.settings.envoy_admin}/clusters", timeout=5) as reply:
        lines = reply.read().decode().splitlines()
    counts: dict[str, int] = {}
    for line in lines:
        parts = line.split("::")
        if len(parts) == 4 and parts[0] == cluster and parts[2] == "rq_total":
            counts[parts[1]] = int(parts[3])
    return counts


def test_calls_are_spread_over_every_process_and_metrics_add_up(pooled: Gateway, tenant: TenantAccess) -> None:
    sockets = {f"{address.path}" for address in pooled.settings.pool(pooled.settings.authz)}
    assert len(sockets) == PROCESSES
    before = value(scrape(pooled.settings.authz_metrics), "lime_authz_decision_seconds_count")
    client = pooled.openai(tenant)
    ids = [client.chat.completions.with_raw_response.create(model="chat-a", messages=MESSAGES).headers["x-request-id"]
           for _ in range(20)]
    for service in ("lime_authz", "lime_extproc"):
        counts = calls_per_endpoint(pooled, service)
        assert len(counts) == PROCESSES and all(count > 0 for count in counts.values()), (service, counts)
    after = value(scrape(pooled.settings.authz_metrics), "lime_authz_decision_seconds_count")
    assert after - before == 20  # one /metrics for the pool: every process's decisions, added up
    assert all(record(pooled, request_id)["outcome"] == "complete" for request_id in ids)


def test_a_process_that_dies_is_started_again(pooled: Gateway, tenant: TenantAccess) -> None:
    parent = pooled.stack.services["extproc"].process
    assert parent is not None
    first = children(parent)
    assert len(first) == PROCESSES
    os.kill(first[0], signal.SIGKILL)
    deadline = time.monotonic() + 15
    while not (len(now := children(parent)) == PROCESSES and first[0] not in now
               and ready(pooled.settings.extproc_metrics) == 200):
        assert time.monotonic() < deadline, "the dead process was not replaced"
        time.sleep(0.1)
    client = pooled.openai(tenant)
    for _ in range(6):
        completion = client.chat.completions.create(model="chat-a", messages=MESSAGES)
        assert completion.choices[0].message.content


def test_sigterm_lets_every_process_finish_its_streams(pooled: Gateway, tenant: TenantAccess) -> None:
    client = pooled.openai(tenant)
    streams: list[tuple[str, Any]] = []
    for _ in range(2 * PROCESSES):  # round robin: every extproc process has a stream in flight
        raw = client.chat.completions.with_raw_response.create(
            model="chat-a", messages=MESSAGES, stream=True,
            extra_headers={"x-mock-chunks": "20", "x-mock-delay-ms": "100"})
        streams.append((raw.headers["x-request-id"], iter(raw.parse())))
        next(streams[-1][1])
    service = pooled.stack.services["extproc"]
    assert service.process is not None
    os.killpg(service.process.pid, signal.SIGTERM)  # as a pod's stop does: the parent and its processes
    time.sleep(0.3)
    assert ready(pooled.settings.extproc_metrics) == 503
    for request_id, stream in streams:
        pieces = [chunk for chunk in stream if chunk.choices]
        assert pieces, request_id
        assert record(pooled, request_id)["outcome"] == "complete"
    assert service.process.wait(20) == 0
    with pytest.raises(openai.APIStatusError):  # extproc is gone: fail closed
        client.with_options(max_retries=0).chat.completions.create(model="chat-a", messages=MESSAGES)
    pooled.stack.start_service("extproc")
    assert client.chat.completions.create(model="chat-a", messages=MESSAGES).choices


def test_each_process_has_an_address_of_its_own() -> None:
    assert [str(a) for a in Settings(processes=3).pool(Address("", 0, "/run/lime/authz.sock"))] == [
        "unix:/run/lime/authz.sock", "unix:/run/lime/authz-1.sock", "unix:/run/lime/authz-2.sock"]


def test_streams_cut_by_their_clients_settle_at_once_whichever_process_envoy_tells(
        pooled: Gateway, tenant: TenantAccess) -> None:
    # Envoy reports a cut on its access log to one process, and the observing tap's stream may be another's: without
    # the relay that one would settle only when Envoy closes its stream (deferred_close_timeout, 30 s).
    client = pooled.openai(tenant)
    ids = []
    for _ in range(4 * PROCESSES):  # round robin: the streams are spread over the processes, and so are the reports
        raw = client.chat.completions.with_raw_response.create(
            model="chat-a", messages=MESSAGES, stream=True, extra_headers={"x-mock-stall-after": "2"})
        ids.append(raw.headers["x-request-id"])
        next(iter(raw.parse()))
        raw.http_response.close()
    cut_at = time.monotonic()
    rows = [record(pooled, request_id, timeout=CUT_SETTLES_WITHIN) for request_id in ids]
    assert time.monotonic() - cut_at < CUT_SETTLES_WITHIN
    _, entries = ledger(pooled, tenant.tenant_id)
    for request_id, row in zip(ids, rows, strict=True):
        assert row["outcome"] == "partial" and row["estimated"], row
        assert row["cost"] == expected_cost(row["input_tokens"], row["output_tokens"]) > 0
        assert [e for e in entries if e[2] == request_id] == [("usage", -row["cost"], request_id)]
