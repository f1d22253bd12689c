"""How many ext_proc messages a request costs, counted by extproc itself behind a real Envoy
(``lime_extproc_messages_total``): a non-streamed answer is read whole, so the request is three messages (its
headers, its body, the whole answer), where it was four; a streamed answer is three too, its chunks going to the
observing tap without a reply (``lime_extproc_observed_messages_total``)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.conftest import Gateway, TenantAccess
from tests.e2e.test_metrics import scrape, value

MESSAGES: Any = [{"role": "user", "content": "hi"}]
PHASES = ("request_headers", "request_body", "response_headers", "response_body")


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "claude"])


def by_phase(gateway: Gateway) -> dict[str, float]:
    samples = scrape(gateway.settings.extproc_metrics)
    counts = {phase: value(samples, "lime_extproc_messages_total", phase=phase) for phase in PHASES}
    counts["observed_chunks"] = value(samples, "lime_extproc_observed_messages_total", phase="response_body")
    return counts


def messages_of(gateway: Gateway, send: Any) -> dict[str, float]:
    """The messages one request cost, once extproc has counted its streams (when each ends)."""
    before = by_phase(gateway)
    send()
    deadline = time.monotonic() + 10
    while True:
        delta = {phase: count - before[phase] for phase, count in by_phase(gateway).items()}
        if delta["response_body"] or delta["observed_chunks"]:
            time.sleep(0.3)  # the stream's last messages and its tally
            return {phase: count - before[phase] for phase, count in by_phase(gateway).items()}
        assert time.monotonic() < deadline, "extproc counted no answer"
        time.sleep(0.05)


def test_a_non_streamed_answer_costs_three_messages(gateway: Gateway, tenant: TenantAccess) -> None:
    for send in (
        lambda: gateway.openai(tenant).chat.completions.create(model="chat-a", messages=MESSAGES),
        lambda: gateway.anthropic(tenant).messages.create(model="claude", max_tokens=16, messages=MESSAGES),
    ):
        assert messages_of(gateway, send) == {
            "request_headers": 1, "request_body": 1, "response_headers": 0, "response_body": 1, "observed_chunks": 0}


def test_a_streamed_answer_waits_for_no_reply_on_its_chunks(gateway: Gateway, tenant: TenantAccess) -> None:
    def stream() -> None:
        for _ in gateway.openai(tenant).chat.completions.create(
                model="chat-a", messages=MESSAGES, stream=True, extra_headers={"x-mock-chunks": "4"}):
            pass

    counted = messages_of(gateway, stream)
    # Envoy waits for extproc's reply to the request's headers and body and the answer's headers; the chunks go to
    # the observing tap (lime.stream_tap), which reads them and replies nothing.
    assert {phase: counted[phase] for phase in PHASES} == {
        "request_headers": 1, "request_body": 1, "response_headers": 1, "response_body": 0}
    assert counted["observed_chunks"] >= 1
