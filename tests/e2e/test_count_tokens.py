"""``POST /v1/messages/count_tokens`` through Envoy with the Anthropic SDK's ``messages.count_tokens``: forwarded
with the upstream's credential and model id, not charged (the provider does not charge it), counted against the
package's request rate, and a model outside the package is a 404 like everywhere else."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from lime.catalog import Limits
from tests.e2e.conftest import Gateway
from tests.e2e.test_billing import ledger, record
from tests.e2e.test_fault_services import held_and_inflight

MESSAGES: Any = [{"role": "user", "content": "How many tokens is this? " * 20}]


def test_count_tokens_is_forwarded_and_free(gateway: Gateway) -> None:
    tenant = gateway.new_tenant(["claude"], points=1_000_000)
    client = gateway.anthropic(tenant)
    raw = client.messages.with_raw_response.count_tokens(model="claude", messages=MESSAGES)
    counted = raw.parse()
    assert counted.input_tokens > 100
    seen = gateway.mock_request(raw.headers["x-request-id"])
    assert seen["path"] == "/v1/messages/count_tokens" and seen["body"]["model"] != "claude"  # the upstream's id
    assert tenant.key not in str(seen["headers"])
    row = record(gateway, raw.headers["x-request-id"])
    assert (row["endpoint"], row["outcome"], row["cost"]) == ("count_tokens", "complete", 0)
    balance, entries = ledger(gateway, tenant.tenant_id)
    assert balance == 1_000_000 and not [entry for entry in entries if entry[0] == "usage"]
    assert held_and_inflight(gateway, tenant.tenant_id) == (0, 0)


def test_count_tokens_counts_against_the_request_rate(gateway: Gateway) -> None:
    tenant = gateway.new_tenant(["claude"], limits=Limits(rpm=2))
    client = gateway.anthropic(tenant)
    for _ in range(2):
        client.messages.count_tokens(model="claude", messages=MESSAGES)
    with pytest.raises(anthropic.RateLimitError):
        client.messages.count_tokens(model="claude", messages=MESSAGES)


def test_count_tokens_for_a_model_outside_the_package_is_404(gateway: Gateway) -> None:
    tenant = gateway.new_tenant(["claude"])
    with pytest.raises(anthropic.NotFoundError):
        gateway.anthropic(tenant).messages.count_tokens(model="chat-a", messages=MESSAGES)
