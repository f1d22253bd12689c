"""Nothing served. Refused before it left, or an upstream error status: ``failed``, 0 points. Reached the upstream
and nothing came back (cut before any response, a 2xx of which the client got no whole event): the provider
billed the prompt, so the reservation's input estimate, ``partial`` and ``estimated``; never free."""

from __future__ import annotations

import pytest

from lime.money.settlement import settlement_for
from tests.provider_fixtures import provider_fixture
from tests.unit.money.settlement.taps import GRANT, JSON, assert_priced, grant, tap_of, tokens


def test_a_request_refused_before_it_left_is_failed_and_free() -> None:
    event = settlement_for(GRANT, None, forwarded=False)
    assert (event.outcome, event.cost, event.estimated, event.upstream_status) == ("failed", 0, False, 0)
    assert tokens(event) == (0, 0, 0, 0, 0)
    assert_priced(event, GRANT)


def test_a_request_cut_before_any_response_pays_its_input_estimate() -> None:
    # The client left while the upstream worked on the prompt: the provider bills it, so the tenant pays it.
    event = settlement_for(GRANT, None)
    assert (event.outcome, event.estimated, event.upstream_status) == ("partial", True, 0)
    assert tokens(event) == (GRANT.input_estimate, 0, 0, 0, 0)
    assert event.cost > 0
    assert_priced(event, GRANT)


@pytest.mark.parametrize(("name", "endpoint", "status"), [
    ("openai-error-429-rate-limit-exceeded.json", "chat_completions", 429),
    ("openai-error-400-invalid-request.json", "chat_completions", 400),
    ("openai-error-401-invalid-api-key.json", "responses", 401),
    ("openai-error-404-model-not-found.json", "embeddings", 404),
    ("anthropic-error-529-overloaded.json", "messages", 529),
    ("anthropic-error-429-rate-limit.json", "messages", 429),
])
def test_upstream_error_status_is_failed_and_free(name: str, endpoint: str, status: int) -> None:
    tap = tap_of(endpoint, provider_fixture(name).read_bytes(), status=status, content_type=JSON)
    event = settlement_for(grant(endpoint), tap)
    assert (event.outcome, event.cost, event.estimated, event.upstream_status) == ("failed", 0, False, status)
    assert tokens(event) == (0, 0, 0, 0, 0)


def test_error_status_with_a_usage_stream_is_still_failed() -> None:
    # Whatever an error answer carries, it is not read: a 500 is never billed.
    body = provider_fixture("openai-chat-stream-include-usage.sse").read_bytes()
    event = settlement_for(GRANT, tap_of("chat_completions", body, status=500))
    assert (event.outcome, event.cost, event.upstream_status) == ("failed", 0, 500)


@pytest.mark.parametrize("body", [b"", b": keep-alive\n\n: still here\n\n", b"data: {\"choi"])
def test_a_200_stream_without_a_whole_event_pays_its_input_estimate(body: bytes) -> None:
    event = settlement_for(GRANT, tap_of("chat_completions", body, finish=False))
    assert (event.outcome, event.estimated, event.upstream_status) == ("partial", True, 200)
    assert tokens(event) == (GRANT.input_estimate, 0, 0, 0, 0)
    assert_priced(event, GRANT)


def test_a_json_body_the_client_never_got_pays_its_input_estimate() -> None:
    raw = provider_fixture("openai-chat-completion-cached.json").read_bytes()
    # No end at all: the body was never released to the client, but the upstream answered the prompt.
    event = settlement_for(GRANT, tap_of("chat_completions", raw, content_type=JSON, finish=False))
    assert (event.outcome, event.estimated) == ("partial", True)
    assert tokens(event) == (GRANT.input_estimate, 0, 0, 0, 0)


def test_an_endpoint_the_provider_does_not_charge_settles_free() -> None:
    tap = tap_of("count_tokens", b'{"input_tokens": 2095}', content_type=JSON)
    event = settlement_for(grant("count_tokens"), tap)
    assert (event.outcome, event.cost, event.estimated, event.endpoint) == ("complete", 0, False, "count_tokens")
    assert tokens(event) == (0, 0, 0, 0, 0)
