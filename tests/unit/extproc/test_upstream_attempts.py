"""A failed upstream attempt, from Envoy's upstream log entry, counted under the candidate that failed."""

from __future__ import annotations

import pytest

from extproc.upstream_attempts import ATTEMPT_FAILURES, AUTH_FAILURES, attempt_failure, count
from lime.envoy.api import AccessLogEntry


def entry(status: int = 0, flags: tuple[str, ...] = (), cluster: str = "upstream_mock_failover",
          candidate: str | None = "mock_primary") -> AccessLogEntry:
    return AccessLogEntry("r1", flags, status, cluster, {"candidate": candidate} if candidate else {})


@pytest.mark.parametrize(("log", "expected"), [
    (entry(500), ("mock_primary", "500")),
    (entry(429), ("mock_primary", "429")),
    # A refused connection gets status 503 from Envoy: the flag says what happened.
    (entry(503, ("upstream_connection_failure",)), ("mock_primary", "connect_failure")),
    (entry(0, ("upstream_remote_reset",)), ("mock_primary", "reset")),
    (entry(504, ("upstream_request_timeout",)), ("mock_primary", "timeout")),
    # A single upstream (no candidate metadata) is named by its catalog id.
    (entry(502, cluster="upstream_mock", candidate=None), ("mock", "502")),
    # A refused credential or account: the failover hides it from the client, the count does not.
    (entry(401), ("mock_primary", "401")),
    (entry(407, cluster="upstream_mock", candidate=None), ("mock", "407")),
    (entry(200), None),
    (entry(404), None),
])
def test_an_attempt_failure_names_its_candidate_and_reason(log: AccessLogEntry, expected: tuple[str, str] | None,
                                                            ) -> None:
    assert attempt_failure(log) == expected


def test_refused_credentials_are_counted_apart_for_the_alert() -> None:
    def auth(status: str) -> float:
        return float(AUTH_FAILURES.labels("mock_backup", status)._value.get())

    before, attempts = auth("403"), ATTEMPT_FAILURES.labels("mock_backup", "403")._value.get()
    count(entry(403, candidate="mock_backup"))
    count(entry(500, candidate="mock_backup"))
    assert auth("403") == before + 1
    assert ATTEMPT_FAILURES.labels("mock_backup", "403")._value.get() == attempts + 1
    assert auth("500") == 0
