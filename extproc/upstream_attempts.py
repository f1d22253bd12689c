"""Failed upstream attempts, by candidate, from Envoy's upstream log.

A failover group hides its candidates' failures from the client (Envoy retries on the next candidate) and from
the response extproc sees; Envoy logs each failed attempt (``envoy/envoy.yaml``, ``lime_upstream_attempts``) to
extproc, which counts it here. ``lime_upstream_errors_total`` counts answers; this counts attempts.
"""

from __future__ import annotations

from prometheus_client import Counter

from lime.envoy.api import AccessLogEntry
from lime.protocols.upstream_errors import AUTH_STATUSES

__all__ = ["ATTEMPT_FAILURES", "AUTH_FAILURES", "attempt_failure", "count"]

ATTEMPT_FAILURES = Counter(
    "lime_upstream_attempt_failures",
    "Upstream attempts that failed (a failover candidate's included): the HTTP status, or connect_failure, "
    "no_healthy_upstream, reset, timeout, overflow, protocol_error",
    ["upstream", "reason"])
#: A refused credential or account is an SRE page (alert LimeUpstreamCredentialRefused): counted per attempt, so a
#: candidate whose refusal a failover hid from the client is counted too.
AUTH_FAILURES = Counter(
    "lime_upstream_auth_failures",
    "Upstream attempts refused for the gateway's credential or account (HTTP 401, 402, 403, 407)",
    ["upstream", "status"])

_UPSTREAM_PREFIX = "upstream_"
# Envoy's ResponseFlags fields, by what went wrong; the first that applies names the failure.
_FLAG_REASONS = (
    ("upstream_connection_failure", "connect_failure"),
    ("no_healthy_upstream", "no_healthy_upstream"),
    ("upstream_request_timeout", "timeout"),
    ("upstream_remote_reset", "reset"),
    ("upstream_connection_termination", "reset"),
    ("upstream_overflow", "overflow"),
    ("upstream_retry_limit_exceeded", "overflow"),
    ("upstream_protocol_error", "protocol_error"),
)


def attempt_failure(entry: AccessLogEntry) -> tuple[str, str] | None:
    """``(upstream, reason)`` of a failed attempt: the candidate that failed (its endpoint metadata names it),
    else the catalog upstream of its cluster; ``None`` for an entry that is no failure."""
    upstream = entry.custom_tags.get("candidate") or entry.upstream_cluster.removeprefix(_UPSTREAM_PREFIX)
    if not upstream or upstream == "-":
        upstream = "unknown"
    # A flag says more than the status Envoy gives an attempt that got no answer (a refused connection is "503").
    flags = set(entry.flags)
    for flag, reason in _FLAG_REASONS:
        if flag in flags:
            return upstream, reason
    if entry.status >= 500 or entry.status == 429 or entry.status in AUTH_STATUSES:
        return upstream, str(entry.status)
    return None


def count(entry: AccessLogEntry) -> None:
    failure = attempt_failure(entry)
    if failure is not None:
        ATTEMPT_FAILURES.labels(*failure).inc()
        if entry.status in AUTH_STATUSES and failure[1] == str(entry.status):
            AUTH_FAILURES.labels(*failure).inc()
