"""Upstream faults the provider's own error responses do not cover (those are in test_upstream_errors.py and
test_broken_streams.py): an upstream that refuses connections, one that hangs past the route's idle timeout,
and one that answers 200 with a body its protocol cannot read.

The hang: the shipped routes have no overall timeout (an answer may stream for an hour) and an ``idle_timeout`` of
300 s, which bounds silence. Waiting that out is no test, so the hang tests run a second Envoy from the very same
rendered files, in front of the same services, with only the upstream routes' ``idle_timeout`` set to 2 s;
``test_the_shipped_upstream_routes_bound_silence`` pins the shipped value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import yaml

from lime.devstack.embedded import free_port
from lime.devstack.stack import Stack
from lime.envoy.render import write_envoy_config
from lime.settings import Address
from tests.e2e.conftest import Gateway, TenantAccess
from tests.e2e.test_billing import ledger, record
from tests.e2e.test_fault_services import held_and_inflight

MESSAGES: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "claude"], points=10**9)


def assert_released_at_no_charge(gateway: Gateway, tenant: TenantAccess, request_id: str) -> dict[str, Any]:
    row = record(gateway, request_id)
    assert row["cost"] == 0 and row["output_tokens"] == 0, row
    _, entries = ledger(gateway, tenant.tenant_id)
    assert not [entry for entry in entries if entry[2] == request_id]
    assert held_and_inflight(gateway, tenant.tenant_id) == (0, 0)
    return row


def test_upstream_refusing_connections_is_a_503_in_each_protocol_and_charges_nothing(
        gateway: Gateway, tenant: TenantAccess) -> None:
    with gateway.stopped("mock_upstream"):  # its port is closed: connection refused
        with pytest.raises(openai.InternalServerError) as refused:
            gateway.openai(tenant).chat.completions.create(model="chat-a", messages=MESSAGES, stream=True)
        with pytest.raises(anthropic.InternalServerError) as anthropic_refused:
            gateway.anthropic(tenant).messages.create(model="claude", max_tokens=8, messages=MESSAGES)
    assert refused.value.status_code == 503
    assert refused.value.response.json()["error"]["code"] == "upstream_unavailable"
    assert anthropic_refused.value.status_code == 503
    body = anthropic_refused.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    for error in (refused.value, anthropic_refused.value):
        row = assert_released_at_no_charge(gateway, tenant, error.response.headers["x-request-id"])
        assert row["outcome"] == "failed"


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
def test_a_json_answer_the_client_cannot_read_reaches_it_as_sent_and_is_billed_by_the_fallback(
        gateway: Gateway, tenant: TenantAccess, protocol: str) -> None:
    invalid = {"x-mock-invalid-body": "40"}  # a 200 whose JSON stops after 40 bytes
    if protocol == "openai":
        raw: Any = gateway.openai(tenant).chat.completions.with_raw_response.create(
            model="chat-a", messages=MESSAGES, extra_headers=invalid)
    else:
        raw = gateway.anthropic(tenant).messages.with_raw_response.create(
            model="claude", max_tokens=8, messages=MESSAGES, extra_headers=invalid)
    # Lime does not make up an answer (the status and headers were sent before the body came): the upstream's
    # bytes pass as they came, and the SDK fails to read them.
    assert raw.status_code == 200 and len(raw.http_response.read()) == 40
    with pytest.raises(ValueError):
        raw.parse()
    # The upstream answered (and billed) all the same: the input estimate plus the output by size (40 / 4), not
    # more than the output reserved (8 tokens for the Anthropic request).
    row = record(gateway, raw.headers["x-request-id"])
    assert (row["outcome"], row["estimated"], row["upstream_status"]) == ("partial", True, 200)
    assert row["input_tokens"] > 0 and row["output_tokens"] == (10 if protocol == "openai" else 8)
    assert row["cost"] > 0
    assert held_and_inflight(gateway, tenant.tenant_id) == (0, 0)


def assert_cut_after_three_and_billed_partial(gateway: Gateway, tenant: TenantAccess, client: openai.OpenAI,
                                              fault: dict[str, str], error: type[Exception]) -> None:
    """A chat stream the upstream breaks after four events raises ``error`` after three pieces of text, and is
    billed as partial for exactly those, its hold and slot given back."""
    raw = client.chat.completions.with_raw_response.create(
        model="chat-a", messages=MESSAGES, stream=True, extra_headers=fault)
    received: list[str] = []
    with pytest.raises(error):
        for chunk in raw.parse():
            received.extend(choice.delta.content or "" for choice in chunk.choices)
    texts = [text for text in received if text]
    assert len(texts) == 3
    row = record(gateway, raw.headers["x-request-id"])
    assert row["outcome"] == "partial" and row["estimated"]
    assert row["output_tokens"] == len(texts) and row["cost"] > 0
    assert held_and_inflight(gateway, tenant.tenant_id) == (0, 0)


def test_a_stream_that_turns_to_garbage_is_an_error_after_what_came_and_is_billed_partial(
        gateway: Gateway, tenant: TenantAccess) -> None:
    # The SDK cannot read the fifth event: after the role and three pieces of text.
    assert_cut_after_three_and_billed_partial(gateway, tenant, gateway.openai(tenant), {"x-mock-invalid-body": "4"},
                                              ValueError)


def test_an_anthropic_stream_that_turns_to_garbage_ends_short_and_is_billed_partial(
        gateway: Gateway, tenant: TenantAccess) -> None:
    with gateway.anthropic(tenant).messages.stream(model="claude", max_tokens=50, messages=MESSAGES,
                                                   extra_headers={"x-mock-invalid-body": "4"}) as stream:
        request_id = stream.response.headers["x-request-id"]
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    # The SDK skips an event it cannot name and the connection ended cleanly: the client is left with a message
    # that never stopped (no message_stop, stop_reason None) rather than an exception.
    assert texts == ["Hello"] and final.stop_reason is None
    row = record(gateway, request_id)
    assert row["outcome"] == "partial" and row["estimated"]
    assert row["output_tokens"] >= 1 and row["cost"] > 0


SHIPPED_IDLE_TIMEOUT = "300s"
TEST_IDLE_TIMEOUT = "2s"


def upstream_routes(document: Any) -> Iterator[dict[str, Any]]:
    """Every route action (the ``route:`` of a route) that sends requests to an upstream cluster."""
    if isinstance(document, dict):
        if str(document.get("cluster", "")).startswith("upstream_") and "timeout" in document:
            yield document
        for child in document.values():
            yield from upstream_routes(child)
    elif isinstance(document, list):
        for child in document:
            yield from upstream_routes(child)


def envoy_documents(folder: Path) -> dict[Path, Any]:
    return {path: yaml.safe_load(path.read_text()) for path in sorted(folder.glob("*.yaml"))}


def test_the_shipped_upstream_routes_bound_silence(gateway: Gateway) -> None:
    routes = [route for document in envoy_documents(gateway.settings.envoy_config.parent).values()
              for route in upstream_routes(document)]
    assert routes
    for route in routes:
        assert route["timeout"] == "0s" and route["idle_timeout"] == SHIPPED_IDLE_TIMEOUT, route


@pytest.fixture(scope="module")
def impatient(gateway: Gateway, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The origin of a second Envoy, rendered like the first, whose upstream routes give up after 2 s of silence."""
    settings = dataclasses.replace(gateway.settings, public=Address("127.0.0.1", free_port()),
                                   envoy_admin=Address("127.0.0.1", free_port()),
                                   envoy_stats=Address("127.0.0.1", free_port()))
    folder = tmp_path_factory.mktemp("impatient_envoy")
    stack = Stack(settings, gateway.env, folder, with_mock=False)
    write_envoy_config(settings, folder / "envoy.yaml")  # where Stack starts Envoy from
    changed = 0
    for path, document in envoy_documents(folder).items():
        routes = list(upstream_routes(document))
        for route in routes:
            route["idle_timeout"] = TEST_IDLE_TIMEOUT
        if routes:
            path.write_text(yaml.safe_dump(document, sort_keys=False))
            changed += len(routes)
    assert changed
    stack.start_service("envoy")
    try:
        yield f"http://{settings.public}"
    finally:
        stack.stop_service("envoy")


def test_an_upstream_that_never_answers_is_a_504_in_each_protocol_and_charges_nothing(
        gateway: Gateway, tenant: TenantAccess, impatient: str) -> None:
    stall = {"x-mock-stall-after": "0"}
    oai = openai.OpenAI(base_url=f"{impatient}/v1", api_key=tenant.key, max_retries=0, default_headers=tenant.headers)
    with pytest.raises(openai.InternalServerError) as timed_out:
        oai.chat.completions.create(model="chat-a", messages=MESSAGES, extra_headers=stall)
    claude = anthropic.Anthropic(base_url=impatient, api_key=tenant.key, max_retries=0, default_headers=tenant.headers)
    with pytest.raises(anthropic.APIStatusError) as anthropic_timed_out:
        claude.messages.create(model="claude", max_tokens=8, messages=MESSAGES, extra_headers=stall)
    assert timed_out.value.status_code == anthropic_timed_out.value.status_code == 504
    assert timed_out.value.response.json()["error"]["code"] == "upstream_unavailable"
    body = anthropic_timed_out.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    for error in (timed_out.value, anthropic_timed_out.value):
        row = assert_released_at_no_charge(gateway, tenant, error.response.headers["x-request-id"])
        assert row["outcome"] == "failed"


def test_a_stream_that_goes_silent_is_cut_after_what_came_and_billed_partial(
        gateway: Gateway, tenant: TenantAccess, impatient: str) -> None:
    oai = openai.OpenAI(base_url=f"{impatient}/v1", api_key=tenant.key, max_retries=0, default_headers=tenant.headers)
    # Never a clean end that would pass for a short answer: the role, three pieces of text, then the silence.
    assert_cut_after_three_and_billed_partial(gateway, tenant, oai, {"x-mock-stall-after": "4"},
                                              openai.APIConnectionError)
