"""The Responses lifecycle and continuations through Envoy with the official openai SDK: ``responses.retrieve``,
``delete``, ``cancel``, ``input_items.list`` and ``previous_response_id``, each served only to the tenant that
created the response, on the upstream (the failover candidate) that stored it, free but counted against the
request rate; a continuation reserves the context the record says it carries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai
import psycopg
import pytest

from lime.catalog import Limits
from tests.e2e.conftest import UPSTREAM_SECRET, UPSTREAM_SECRET_BACKUP, Gateway, TenantAccess, run_sync
from tests.e2e.test_billing import expected_cost, ledger, record
from tests.e2e.test_fault_services import held_and_inflight
from tests.e2e.test_routing import candidates_answer, edited, until


@pytest.fixture(scope="module")
def owner(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "chat-b", "chat-failover", "embed"])


@pytest.fixture(scope="module")
def stranger(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "chat-b", "chat-failover"])


def create(gateway: Gateway, tenant: TenantAccess, **extra: Any) -> Any:
    params: dict[str, Any] = {"model": "chat-a", "input": "Tell me about limes.", **extra}
    return gateway.openai(tenant).responses.create(**params)


def usage_rows(gateway: Gateway, tenant: TenantAccess) -> list[tuple[str, int, str | None]]:
    return [entry for entry in ledger(gateway, tenant.tenant_id)[1] if entry[0] == "usage"]


def test_retrieve_lists_and_deletes_the_tenants_own_response_on_its_upstream(
        gateway: Gateway, owner: TenantAccess) -> None:
    client = gateway.openai(owner)
    made = client.responses.with_raw_response.create(model="chat-a", input="Tell me about limes.")
    created = made.parse()
    record(gateway, made.headers["x-request-id"])  # its charge is written (by the settler) before counting
    charges = len(usage_rows(gateway, owner))

    raw = client.responses.with_raw_response.retrieve(created.id)
    retrieved = raw.parse()
    assert (retrieved.id, retrieved.model) == (created.id, "chat-a")  # the public id, not gpt-4o-mini
    assert retrieved.output_text == created.output_text
    seen = gateway.mock_request(raw.headers["x-request-id"])
    assert (seen["method"], seen["path"]) == ("GET", f"/v1/responses/{created.id}")
    assert seen["headers"]["authorization"] == f"Bearer {UPSTREAM_SECRET}"
    assert owner.key not in str(seen["headers"]) and "x-lime-tenant-id" not in seen["headers"]
    row = record(gateway, raw.headers["x-request-id"])
    assert (row["endpoint"], row["outcome"], row["cost"]) == ("responses_retrieve", "complete", 0)

    items = client.responses.input_items.list(created.id)
    assert [item.model_dump()["content"][0]["text"] for item in items.data] == ["Tell me about limes."]

    deleted = client.responses.with_raw_response.delete(created.id)
    assert deleted.http_response.json() == {"id": created.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.BadRequestError) as continued:
        create(gateway, owner, previous_response_id=created.id)
    assert continued.value.code == "previous_response_not_found"
    assert len(usage_rows(gateway, owner)) == charges  # the lifecycle calls charged nothing
    assert held_and_inflight(gateway, owner.tenant_id) == (0, 0)


def test_cancel_reaches_the_upstream_that_holds_the_response(gateway: Gateway, owner: TenantAccess) -> None:
    created = create(gateway, owner)
    with pytest.raises(openai.BadRequestError) as raised:
        gateway.openai(owner).responses.cancel(created.id)
    # The provider's own refusal (only background responses can be cancelled), so it reached the upstream.
    assert "background" in raised.value.message
    seen = gateway.mock_request(raised.value.response.headers["x-request-id"])
    assert seen["path"] == f"/v1/responses/{created.id}/cancel"


def _refusal(error: openai.APIStatusError, response_id: str) -> tuple[int, Any, list[str]]:
    body = error.response.text.replace(response_id, "<id>")
    names = sorted(name for name in error.response.headers if name not in ("date", "x-request-id", "content-length"))
    return error.response.status_code, body, names


def test_another_tenant_cannot_read_delete_cancel_list_or_continue_a_response(
        gateway: Gateway, owner: TenantAccess, stranger: TenantAccess) -> None:
    created = create(gateway, owner)
    unknown = "resp_" + "0" * 48
    client = gateway.openai(stranger)
    before = gateway.mock_request_count()
    calls: dict[str, Callable[[str], object]] = {
        "retrieve": lambda rid: client.responses.retrieve(rid),
        "delete": lambda rid: client.responses.delete(rid),
        "cancel": lambda rid: client.responses.cancel(rid),
        "input_items": lambda rid: client.responses.input_items.list(rid),
    }
    for name, call in calls.items():
        answers = []
        for response_id in (created.id, unknown):
            with pytest.raises(openai.NotFoundError) as raised:
                call(response_id)
            answers.append(_refusal(raised.value, response_id))
        assert answers[0] == answers[1], name  # someone else's response looks exactly like a missing one
    continuations = []
    for response_id in (created.id, unknown):
        with pytest.raises(openai.BadRequestError) as refused:
            create(gateway, stranger, previous_response_id=response_id)
        assert refused.value.code == "previous_response_not_found"
        assert refused.value.param == "previous_response_id"
        continuations.append(_refusal(refused.value, response_id))
    assert continuations[0] == continuations[1]
    assert gateway.mock_request_count() == before  # nothing reached an upstream
    assert usage_rows(gateway, stranger) == [] and held_and_inflight(gateway, stranger.tenant_id) == (0, 0)
    # The owner's response is untouched by the stranger's delete.
    assert gateway.openai(owner).responses.retrieve(created.id).id == created.id


def test_store_false_records_nothing_retrievable(gateway: Gateway, owner: TenantAccess) -> None:
    created = create(gateway, owner, store=False)
    before = gateway.mock_request_count()
    with pytest.raises(openai.NotFoundError):
        gateway.openai(owner).responses.retrieve(created.id)
    with pytest.raises(openai.BadRequestError):
        create(gateway, owner, previous_response_id=created.id)
    assert gateway.mock_request_count() == before


@pytest.mark.parametrize("stream", [False, True])
def test_a_continuation_is_served_and_charged_the_providers_usage(
        gateway: Gateway, owner: TenantAccess, stream: bool) -> None:
    client = gateway.openai(owner)
    first = create(gateway, owner)
    second: Any
    if stream:
        with client.responses.stream(model="chat-a", input="And lemons?", previous_response_id=first.id) as events:
            for _ in events:
                pass
            second = events.get_final_response()
    else:
        second = client.responses.create(model="chat-a", input="And lemons?", previous_response_id=first.id)
    assert second.model == "chat-a" and second.previous_response_id == first.id
    assert first.usage is not None and second.usage is not None
    # The provider read the stored context again as input, and Lime charged what it reported.
    assert second.usage.input_tokens > first.usage.total_tokens
    row = record(gateway, _settled_request(gateway, second.id))
    assert (row["endpoint"], row["estimated"]) == ("responses", False)
    assert row["cost"] == expected_cost(second.usage.input_tokens, second.usage.output_tokens)
    # A continuation is continued in turn, and its record carries the whole chain.
    third = client.responses.create(model="chat-a", input="Thanks.", previous_response_id=second.id)
    assert third.usage is not None and third.usage.input_tokens > second.usage.total_tokens


def _settled_request(gateway: Gateway, response_id: str) -> str:
    """The request that created a response, from its record in PostgreSQL (once the settler wrote it)."""
    async def fetch() -> str:
        async with await psycopg.AsyncConnection.connect(gateway.database_url, autocommit=True) as conn:
            row = await (await conn.execute("SELECT request_id FROM responses WHERE id = %s",
                                            (response_id,))).fetchone()
            return str(row[0]) if row else ""

    return str(until(lambda: run_sync(fetch()), bool, "the response's record in PostgreSQL"))


def test_a_continuation_reserves_the_recorded_context(gateway: Gateway) -> None:
    """A tenant whose balance covers a fresh short request but not the stored context a continuation carries is
    refused the continuation before anything is sent; the fresh request still passes."""
    tenant = gateway.new_tenant(["chat-a"], points=5_000)
    client = gateway.openai(tenant)
    raw = client.responses.with_raw_response.create(model="chat-a", input="word " * 3000, max_output_tokens=16)
    first = raw.parse()
    assert first.usage is not None and first.usage.total_tokens > 3_000
    record(gateway, raw.headers["x-request-id"])  # settled and persisted
    balance = ledger(gateway, tenant.tenant_id)[0]
    assert balance < first.usage.total_tokens  # what the continuation would carry no longer fits
    before = gateway.mock_request_count()
    with pytest.raises(openai.RateLimitError) as refused:
        client.responses.create(model="chat-a", input="More.", max_output_tokens=16, previous_response_id=first.id)
    assert refused.value.code == "insufficient_quota"
    assert gateway.mock_request_count() == before
    assert held_and_inflight(gateway, tenant.tenant_id) == (0, 0)
    assert client.responses.create(model="chat-a", input="More.", max_output_tokens=16).output_text


def test_lifecycle_calls_count_against_the_request_rate(gateway: Gateway) -> None:
    tenant = gateway.new_tenant(["chat-a"], limits=Limits(rpm=3))
    client = gateway.openai(tenant)
    created = client.responses.create(model="chat-a", input="hi")
    client.responses.retrieve(created.id)
    client.responses.input_items.list(created.id)
    with pytest.raises(openai.RateLimitError):
        client.responses.retrieve(created.id)


def test_a_continuation_may_switch_models_on_the_same_upstream_only(
        gateway: Gateway, owner: TenantAccess) -> None:
    first = create(gateway, owner)
    switched = create(gateway, owner, model="chat-b", previous_response_id=first.id)  # both on upstream `mock`
    assert switched.model == "chat-b"
    with pytest.raises(openai.BadRequestError) as refused:
        create(gateway, owner, model="chat-failover", previous_response_id=first.id)
    assert refused.value.param == "model"


def test_background_and_conversation_are_refused_with_their_parameter(gateway: Gateway, owner: TenantAccess) -> None:
    for extra, param in (({"background": True}, "background"), ({"conversation": "conv_123"}, "conversation")):
        with pytest.raises(openai.BadRequestError) as refused:
            create(gateway, owner, **extra)
        assert refused.value.param == param and param in refused.value.message


def test_a_continuation_is_pinned_to_the_candidate_that_stored_its_response(
        gateway: Gateway, owner: TenantAccess) -> None:
    """The first answer comes from the backup (the primary answers 500); with the primary healthy and first in
    order again, the continuation and the lifecycle calls still go to the backup, which alone holds the response
    (the mock keeps responses per credential, so the primary would refuse it). And when the backup fails, the
    client gets its error: no silent switch to a candidate that does not hold the response."""
    clusters = gateway.stack.envoy_config.parent / "clusters.yaml"
    client = gateway.openai(owner)

    def served() -> tuple[Any, list[dict[str, Any]]]:
        raw = client.responses.with_raw_response.create(model="chat-failover", input="hi")
        return raw.parse(), gateway.mock_requests(raw.headers["x-request-id"])

    with edited(clusters, candidates_answer({"candidate_mock_primary": "500", "candidate_mock_backup": "200"})):
        first, attempts = until(served, lambda r: r[1][-1]["model"] == "gpt-4o-backup", "an answer from the backup")
    assert first.model == "chat-failover"

    raw = client.responses.with_raw_response.create(model="chat-failover", input="more", previous_response_id=first.id)
    assert raw.parse().previous_response_id == first.id
    [seen] = gateway.mock_requests(raw.headers["x-request-id"])
    assert seen["model"] == "gpt-4o-backup"
    assert seen["headers"]["authorization"] == f"Bearer {UPSTREAM_SECRET_BACKUP}"
    retrieved = client.responses.with_raw_response.retrieve(first.id)
    assert retrieved.parse().model == "chat-failover"
    [seen] = gateway.mock_requests(retrieved.headers["x-request-id"])
    assert seen["headers"]["authorization"] == f"Bearer {UPSTREAM_SECRET_BACKUP}"

    with edited(clusters, candidates_answer({"candidate_mock_primary": "200", "candidate_mock_backup": "503"})):
        def continued() -> list[dict[str, Any]]:
            try:
                client.responses.create(model="chat-failover", input="again", previous_response_id=first.id)
            except openai.InternalServerError as error:
                return gateway.mock_requests(error.response.headers["x-request-id"])
            return []

        attempts = until(continued, lambda seen: bool(seen), "the backup's failure reaching the client")
    assert [attempt["headers"]["x-mock-status"] for attempt in attempts] == ["503"]  # tried on the backup alone
