"""The record of a stored response: who owns it, where it lives, what a continuation carries."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lime.money.grant import Grant
from lime.money.response_record import ResponseRecord, record_of

GRANT = Grant(request_id="req-1", tenant_id="t-a", key_id="key-1", endpoint="responses", model="chat",
              upstream="group", upstream_model="gpt-4o", stream=False, started_at=1_700_000_000.5)

records = st.builds(
    ResponseRecord, id=st.text(min_size=1), tenant_id=st.text(), key_id=st.text(), upstream=st.text(),
    candidate=st.text(), model=st.text(), upstream_model=st.text(), context_tokens=st.integers(0, 10**9),
    created_at=st.floats(0, 4e9), stored=st.booleans(), deleted=st.booleans(), request_id=st.text())


@given(records)
def test_a_record_survives_redis_and_the_stream(record: ResponseRecord) -> None:
    assert ResponseRecord.from_fields(record.to_fields()) == record
    assert ResponseRecord.decode(record.encode()) == record


def test_only_its_tenant_owns_a_stored_response_that_was_not_deleted() -> None:
    record = record_of(GRANT, "resp_1", served_by=None, context_tokens=10, stored=True)
    assert record.owned_by("t-a") and not record.owned_by("t-b")
    assert not record_of(GRANT, "resp_1", served_by=None, context_tokens=10, stored=False).owned_by("t-a")
    deleted = ResponseRecord(**{**record.__dict__, "deleted": True})
    assert not deleted.owned_by("t-a")


def test_the_candidate_that_served_it_is_recorded_and_kept_by_continuations() -> None:
    served = record_of(GRANT, "resp_1", served_by="backup", context_tokens=10, stored=True)
    assert (served.upstream, served.candidate) == ("group", "backup")
    assert record_of(GRANT, "resp_1", served_by=None, context_tokens=1, stored=True).candidate == ""
    # A single upstream names itself (or nothing): no candidate to pin.
    assert record_of(GRANT, "resp_1", served_by="group", context_tokens=1, stored=True).candidate == ""
    pinned = Grant(**{**GRANT.__dict__, "candidate": "backup"})
    assert record_of(pinned, "resp_2", served_by=None, context_tokens=1, stored=True).candidate == "backup"
