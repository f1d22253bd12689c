"""Each service's /metrics, read the way Prometheus reads it, after traffic through the real stack.

Every test uses a tenant of its own, so the series it reads start at zero whatever else the suite sent.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from typing import TypeVar

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lime.settings import Address
from tests.e2e.conftest import Gateway, TenantAccess
from tests.e2e.test_billing import record

T = TypeVar("T")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(address: Address, path: str = "/metrics") -> Samples:
    with urllib.request.urlopen(f"http://{address}{path}", timeout=5) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, sample_labels), v in samples.items() if n == name and wanted <= sample_labels)


def eventually(read: Callable[[], T], expected: T, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (got := read()) != expected:
        assert time.monotonic() < deadline, f"expected {expected}, still {got}"
        time.sleep(0.1)


@pytest.fixture
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "claude", "embed"], points=50_000_000)


def outcomes(gateway: Gateway, tenant_id: str) -> dict[str, float]:
    samples = scrape(gateway.settings.extproc_metrics)
    samples.update(scrape(gateway.settings.authz_metrics))
    found: dict[str, float] = {}
    for (name, labels), v in samples.items():
        label = dict(labels)
        if name == "lime_requests_total" and label["tenant"] == tenant_id:
            found[label["outcome"]] = found.get(label["outcome"], 0) + v
    return found


def extproc_counts(gateway: Gateway) -> dict[str, float]:
    """The extproc series with no tenant label: a test reads what its own requests added to them."""
    extproc = scrape(gateway.settings.extproc_metrics)
    return {
        "500": value(extproc, "lime_upstream_errors_total", upstream="mock", endpoint="chat_completions",
                     reason="500"),
        "stream_cut": value(extproc, "lime_upstream_errors_total", upstream="mock", reason="stream_cut"),
        "ttft": value(extproc, "lime_time_to_first_token_seconds_count", model="chat-a", endpoint="chat_completions"),
        "response_body": value(extproc, "lime_extproc_message_seconds_count", phase="response_body"),
    }


def test_every_request_is_counted_once_under_how_it_ended(gateway: Gateway, tenant: TenantAccess) -> None:
    before = extproc_counts(gateway)
    client = gateway.openai(tenant)
    messages = [{"role": "user", "content": "hi"}]
    client.chat.completions.create(model="chat-a", messages=messages)  # type: ignore[arg-type]
    for _ in client.chat.completions.create(model="chat-a", messages=messages, stream=True):  # type: ignore[arg-type]
        pass
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="chat-a", messages=messages,  # type: ignore[arg-type]
                                       extra_headers={"x-mock-status": "500"})
    with pytest.raises(openai.APIConnectionError):
        for _ in client.chat.completions.create(
                model="chat-a", messages=messages, stream=True,  # type: ignore[arg-type]
                extra_headers={"x-mock-chunks": "10", "x-mock-drop-after": "4", "x-mock-delay-ms": "20"}):
            pass
    raw = client.chat.completions.with_raw_response.create(
        model="chat-a", messages=messages, stream=True,  # type: ignore[arg-type]
        extra_headers={"x-mock-chunks": "40", "x-mock-delay-ms": "50"})
    stream = raw.parse()
    assert isinstance(stream, openai.Stream)
    next(iter(stream))
    stream.close()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=messages)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="chat-a", input="wrong endpoint for this model")
    # Who cut the last two streams is Envoy's to say (its access log reaches extproc within a second or so):
    # the upstream that died mid-answer is an upstream error, the client that left is not.
    eventually(lambda: outcomes(gateway, tenant.tenant_id),
               {"ok": 2.0, "upstream_error": 2.0, "client_cancelled": 1.0, "rejected_bad_request": 2.0})
    after = extproc_counts(gateway)
    added = {name: after[name] - before[name] for name in after}
    # The 500 and the stream the upstream cut, not the one the client left.
    assert (added["500"], added["stream_cut"]) == (1, 1)
    # Each of the three streams has a time to first token; its histogram counts it by the catalog's model id.
    assert added["ttft"] == 3
    assert added["response_body"] > 0


def test_refusals_are_counted_by_authz_with_labels_only_from_the_catalog(gateway: Gateway) -> None:
    denials_before = value(scrape(gateway.settings.authz_metrics), "lime_authz_decision_seconds_count",
                           decision="deny")
    poor = gateway.new_tenant(["chat-a"], points=1)
    client = gateway.openai(poor)
    with pytest.raises(openai.RateLimitError):  # 429 insufficient_quota
        client.chat.completions.create(model="chat-a", messages=[{"role": "user", "content": "hi"}])
    before = value(scrape(gateway.settings.authz_metrics), "lime_requests_total", tenant="", model="",
                   outcome="rejected_auth")
    stranger = gateway.openai(poor, key="lime_sk_" + "x" * 40)
    with pytest.raises(openai.AuthenticationError):
        stranger.chat.completions.create(model="made-up-model-" + "y" * 30, messages=[{"role": "user", "content": "x"}])
    authz = scrape(gateway.settings.authz_metrics)

    assert outcomes(gateway, poor.tenant_id) == {"rejected_quota": 1}
    assert value(authz, "lime_requests_total", tenant=poor.tenant_id, model="chat-a", endpoint="chat_completions",
                 outcome="rejected_quota") == 1
    # The unknown key's request is counted without a tenant, and the model it named never becomes a label.
    assert value(authz, "lime_requests_total", tenant="", model="", outcome="rejected_auth") == before + 1
    assert not any("made-up-model" in dict(labels).get("model", "") for _, labels in authz)
    assert value(authz, "lime_authz_decision_seconds_count", decision="deny") == denials_before + 2


def test_the_settler_counts_tokens_and_points_as_the_ledger_records_them(gateway: Gateway,
                                                                        tenant: TenantAccess) -> None:
    client = gateway.openai(tenant)
    ids = [client.chat.completions.with_raw_response.create(
        model="chat-a", messages=[{"role": "user", "content": "hello " * n}],
        extra_headers={"x-mock-cached-tokens": "2"}).headers["x-request-id"] for n in (1, 5)]
    ids.append(gateway.anthropic(tenant).messages.with_raw_response.create(
        model="claude", max_tokens=50, messages=[{"role": "user", "content": "hi"}]).headers["x-request-id"])
    rows = [record(gateway, request_id) for request_id in ids]

    def settled(name: str, **labels: str) -> float:
        return value(scrape(gateway.settings.settler), name, tenant=tenant.tenant_id, **labels)

    eventually(lambda: settled("lime_settled_requests_total", outcome="complete"), 3.0)
    assert settled("lime_settled_micropoints_total") == sum(row["cost"] for row in rows) > 0
    for kind, column in (("input", "input_tokens"), ("cached_input", "cached_input_tokens"),
                         ("cache_write", "cache_write_tokens"), ("output", "output_tokens")):
        assert settled("lime_tokens_total", kind=kind) == sum(row[column] for row in rows), kind
    assert settled("lime_tokens_total", model="claude", endpoint="messages") == sum(
        rows[2][c] for c in ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens"))
    backlog = scrape(gateway.settings.settler)
    assert value(backlog, "lime_settlement_queue_depth") == 0
    assert value(backlog, "lime_settlement_lag_seconds") == 0


def test_catalog_api_counts_by_route_template_and_serves_metrics_without_the_admin_token(
        gateway: Gateway, tenant: TenantAccess) -> None:
    def directory_requests() -> tuple[float, float]:
        samples = scrape(gateway.settings.admin)
        return (value(samples, "lime_http_requests_total", app="directory", route="/v1/models", status="200"),
                value(samples, "lime_http_requests_total", app="directory", route="/v1/models/{model_id}",
                      status="404"))

    listed, missing = directory_requests()
    client = gateway.openai(tenant)
    client.models.list()
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nothing-like-this-" + "z" * 20)
    eventually(directory_requests, (listed + 1, missing + 1))
    samples = scrape(gateway.settings.admin)
    assert not any("nothing-like-this" in dict(labels).get("route", "") for _, labels in samples)


def test_envoy_serves_its_stats_for_prometheus(gateway: Gateway) -> None:
    def public_requests() -> float:
        samples = scrape(gateway.settings.envoy_admin, "/stats/prometheus")
        return value(samples, "envoy_http_downstream_rq_total", envoy_http_conn_manager_prefix="public")

    before = public_requests()
    status, _ = gateway.http("GET", "/v1/models")  # the test's own request (no key: refused, counted all the same)
    assert status == 401
    eventually(public_requests, before + 1)
