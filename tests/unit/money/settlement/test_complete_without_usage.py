"""Complete without usage: ``complete``, ``estimated``, input at the reservation's estimate and the output counted
from what the client received."""

from __future__ import annotations

import json

import pytest

from lime.money.settlement import settlement_for
from lime.protocols.output_count import count_output
from tests.provider_fixtures import provider_fixture
from tests.unit.money.settlement.taps import GRANT, JSON, assert_priced, data_of, grant, tap_of


def test_complete_stream_without_usage_is_counted_and_estimated() -> None:
    body = provider_fixture("openai-chat-stream.sse").read_bytes()
    tap = tap_of("chat_completions", body)
    event = settlement_for(GRANT, tap)
    assert (event.outcome, event.estimated) == ("complete", True)
    assert event.input_tokens == GRANT.input_estimate
    assert event.output_tokens == count_output("chat_completions", data_of(body)) > 0
    assert_priced(event, GRANT)


@pytest.mark.parametrize(("endpoint", "name"), [
    ("chat_completions", "openai-chat-completion-cached.json"), ("responses", "openai-responses.json"),
    ("messages", "anthropic-messages-cache.json")])
def test_complete_json_without_usage_is_estimated_at_the_reserved_input_and_counted_output(
        endpoint: str, name: str) -> None:
    document = json.loads(provider_fixture(name).read_bytes())
    del document["usage"]
    event = settlement_for(grant(endpoint), tap_of(endpoint, json.dumps(document).encode(), content_type=JSON))
    assert (event.outcome, event.estimated, event.input_tokens) == ("complete", True, GRANT.input_estimate)
    # Lime counts the answer's text itself: never nothing for an answer that has text.
    assert event.output_tokens > 0
    assert_priced(event, grant(endpoint))
