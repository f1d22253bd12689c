"""How a forwarded request is counted: extproc's own rule, Envoy's word on a cut, and the join of the two."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extproc.request_metrics import OK, Ending, ending_of
from extproc.stream_cuts import CUT_BY_CLIENT, CUT_BY_UPSTREAM, TIMED_OUT, CutReports, ending_for_flags
from lime.metrics import Outcome, rejection_outcome
from lime.protocols.errors import (
    AuthError,
    BadRequest,
    LimeError,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    ServiceUnavailable,
    UnsupportedModel,
)


def test_a_complete_2xx_answer_is_ok() -> None:
    assert ending_of(200, complete=True, failed=False) == OK


@pytest.mark.parametrize("status", [400, 429, 500, 503, 529])
def test_an_error_status_is_the_upstreams_error_under_its_status(status: int) -> None:
    assert ending_of(status, complete=True, failed=False) == Ending(Outcome.UPSTREAM_ERROR, str(status))


def test_an_error_event_inside_a_200_stream_is_an_upstream_error() -> None:
    assert ending_of(200, complete=True, failed=True) == Ending(Outcome.UPSTREAM_ERROR, "stream_error")


@pytest.mark.parametrize("status", [None, 200])
def test_an_answer_cut_short_or_never_begun_is_left_to_envoy(status: int | None) -> None:
    assert ending_of(status, complete=False, failed=False) is None


@given(st.one_of(st.none(), st.integers(100, 599)), st.booleans(), st.booleans())
def test_every_status_gets_an_ending_or_a_question_for_envoy(status: int | None, complete: bool, failed: bool) -> None:
    ending = ending_of(status, complete=complete, failed=failed)
    if ending is None:
        assert status is None or (200 <= status < 300 and not complete and not failed)
    else:
        assert ending.outcome in {Outcome.OK, Outcome.UPSTREAM_ERROR}
        assert (ending.outcome == Outcome.OK) == (ending.upstream_error is None)


@pytest.mark.parametrize(("flags", "ending"), [
    (["downstream_connection_termination"], CUT_BY_CLIENT),
    (["downstream_remote_reset"], CUT_BY_CLIENT),
    (["upstream_connection_termination"], CUT_BY_UPSTREAM),
    (["upstream_remote_reset"], CUT_BY_UPSTREAM),
    (["upstream_request_timeout"], TIMED_OUT),
    (["stream_idle_timeout"], TIMED_OUT),
    # The client left, and Envoy then reset the upstream: the client's doing.
    (["downstream_connection_termination", "upstream_remote_reset"], CUT_BY_CLIENT),
    ([], None),
    (["no_route_found"], None),
])
def test_envoys_flags_say_who_cut_the_stream(flags: list[str], ending: Ending | None) -> None:
    assert ending_for_flags(flags) == ending


async def test_a_report_that_comes_first_waits_for_its_stream() -> None:
    reports = CutReports()
    reports.report("r1", CUT_BY_CLIENT)
    assert await reports.wait("r1", patience=0.01) == CUT_BY_CLIENT
    assert len(reports) == 0


async def test_a_stream_that_ends_first_waits_for_its_report() -> None:
    reports = CutReports()
    waiting = asyncio.create_task(reports.wait("r1", patience=5))
    await asyncio.sleep(0)
    reports.report("r2", CUT_BY_CLIENT)  # another request's report does not answer this one
    reports.report("r1", CUT_BY_UPSTREAM)
    assert await waiting == CUT_BY_UPSTREAM
    assert await reports.wait("r2", patience=0.01) == CUT_BY_CLIENT


async def test_no_report_in_time_is_none_and_leaves_nothing_behind() -> None:
    reports = CutReports()
    assert await reports.wait("r1", patience=0.01) is None
    assert len(reports) == 0


def test_reports_nobody_asks_for_are_forgotten() -> None:
    reports = CutReports(keep_seconds=30)
    for n in range(100):
        reports.report(f"old-{n}", CUT_BY_CLIENT, now=1000.0)
    reports.report("new", CUT_BY_CLIENT, now=1031.0)
    assert len(reports) == 1


@pytest.mark.parametrize(("error", "outcome"), [
    (AuthError("x"), Outcome.REJECTED_AUTH),
    (PermissionDenied("x"), Outcome.REJECTED_AUTH),
    (BadRequest("x"), Outcome.REJECTED_BAD_REQUEST),
    (UnsupportedModel("x"), Outcome.REJECTED_BAD_REQUEST),
    (NotFound("x"), Outcome.REJECTED_BAD_REQUEST),
    (QuotaExceeded("x"), Outcome.REJECTED_QUOTA),
    (RateLimited("x", retry_after=1), Outcome.REJECTED_RATE_LIMIT),
    (ServiceUnavailable("x"), Outcome.REJECTED_UNAVAILABLE),
    (LimeError("x"), Outcome.GATEWAY_ERROR),
])
def test_each_refusal_is_counted_under_its_own_outcome(error: LimeError, outcome: str) -> None:
    assert rejection_outcome(error) == outcome
