"""The overdraft bound through Envoy (lime/money/overdraft.py): a file the upstream fetches by reference may cost far
more than the estimate can see, so it is served only when the balance, or the package's overdraft limit, covers
that worst case; a tenant that can never cover it gets a non-retryable answer, not a 429 the SDK retries."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from lime.catalog import Limits
from tests.e2e.conftest import Gateway
from tests.e2e.test_billing import record

#: A PDF the upstream fetches by file id: its size is invisible to Lime.
FETCHED_FILE: Any = [{"role": "user", "content": [
    {"type": "text", "text": "Summarise this report."},
    {"type": "file", "file": {"file_id": "file-6F2ksmvXxt4VdoqmHRw6kL"}}]}]
PLAIN: Any = [{"role": "user", "content": "Summarise the report in one line."}]
#: Test models cost 1 micro-point per input token: a fetched file's unseen part (150,000 tokens) is 150,000.
BALANCE = 100_000


def test_a_fetched_file_needs_its_unseen_cost_covered(gateway: Gateway) -> None:
    tenant = gateway.new_tenant(["chat-a"], points=BALANCE, limits=Limits(default_max_output_tokens=256))
    client = gateway.openai(tenant).with_options(max_retries=2)
    before = gateway.mock_request_count()
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="chat-a", messages=FETCHED_FILE)
    assert raised.value.code == "insufficient_quota"
    assert "file the upstream fetches" in raised.value.message
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert gateway.mock_request_count() == before  # refused before it left, and not retried
    # What the balance can see the cost of is served as before.
    served = client.chat.completions.with_raw_response.create(model="chat-a", messages=PLAIN)
    assert record(gateway, served.headers["x-request-id"])["outcome"] == "complete"


def test_a_package_overdraft_limit_lets_a_fetched_file_through(gateway: Gateway) -> None:
    tenant = gateway.new_tenant(["chat-a"], points=BALANCE,
                                limits=Limits(default_max_output_tokens=256, overdraft_limit=150_000))
    raw = gateway.openai(tenant).chat.completions.with_raw_response.create(model="chat-a", messages=FETCHED_FILE)
    assert raw.status_code == 200
    row = record(gateway, raw.headers["x-request-id"])
    assert row["outcome"] == "complete" and row["cost"] > 0
