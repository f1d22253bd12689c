"""The served side of Lime's metrics: how each request ended, how long it took, and what its upstream did.

:func:`ending_of` is the rule (pure); :func:`record` counts a finished stream. The refusals are counted by authz
(:mod:`lime.metrics`), so ``lime_requests_total`` covers every request between them. A stream cut short is
the one case extproc cannot judge alone: :mod:`extproc.stream_cuts` asks Envoy who cut it.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Histogram

from extproc.processor import StreamProcessor
from lime.metrics import REQUESTS, Outcome, rejection_outcome

__all__ = ["UNREADABLE_ANSWERS", "Ending", "ending_of", "record"]

# LLM answers take from tens of milliseconds (embeddings) to minutes (long reasoning).
_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

DURATION = Histogram("lime_request_duration_seconds",
                     "From authz's decision to the last byte of the answer, for requests sent upstream",
                     ["model", "endpoint"], buckets=_DURATION_BUCKETS)
TIME_TO_FIRST_TOKEN = Histogram("lime_time_to_first_token_seconds",
                                "From authz's decision to the first byte of a streamed answer",
                                ["model", "endpoint"], buckets=_DURATION_BUCKETS)
UPSTREAM_REQUESTS = Counter("lime_upstream_requests", "Requests sent to an upstream", ["upstream", "endpoint"])
UPSTREAM_ERRORS = Counter("lime_upstream_errors",
                          "Upstream answers that failed: the HTTP status, stream_error (an error event inside a 200 "
                          "stream), stream_cut (the answer stopped early, not by the client) or timeout",
                          ["upstream", "endpoint", "reason"])
UNREADABLE_ANSWERS = Counter(
    "lime_unreadable_answers",
    "Successful (2xx) answers the response tap could not read, settled by the fallback rule (docs/billing.md): "
    "content_type, encoding, body (a JSON body that is not JSON) or tap_error (the tap gave up: a bug)",
    ["upstream", "endpoint", "reason"])


@dataclass(frozen=True, slots=True)
class Ending:
    outcome: str
    #: The ``reason`` of ``lime_upstream_errors_total``, when the upstream is to blame.
    upstream_error: str | None = None


OK = Ending(Outcome.OK)


def ending_of(status: int | None, *, complete: bool, failed: bool) -> Ending | None:
    """How a forwarded request ended, from what extproc saw: ``status`` is the answer's HTTP status (``None``
    when none came). ``None``: the answer stopped short (or never began), and only Envoy knows who stopped it."""
    if status is None:
        return None
    if not 200 <= status < 300:
        return Ending(Outcome.UPSTREAM_ERROR, str(status))
    if failed:
        return Ending(Outcome.UPSTREAM_ERROR, "stream_error")
    if complete:
        return OK
    return None


def record(processor: StreamProcessor, ending: Ending | None, *, ended_at: float) -> None:
    """Count one finished ext_proc stream. Local replies (no grant) are Envoy's or authz's and counted there.
    ``ending`` is :func:`ending_of`'s, or Envoy's word on a stream cut short; ``None`` when Envoy said nothing
    either: then an answer that had begun is counted as cut by the upstream, one that had not as the client's."""
    grant = processor.grant
    if grant is None:
        return
    if processor.refusal is not None:
        REQUESTS.labels(grant.tenant_id, grant.model, grant.endpoint, rejection_outcome(processor.refusal)).inc()
        return
    if not processor.forwarded:
        # The client left while its body was still arriving: nothing reached an upstream.
        REQUESTS.labels(grant.tenant_id, grant.model, grant.endpoint, Outcome.CLIENT_CANCELLED).inc()
        return
    if ending is None:
        ending = Ending(Outcome.CLIENT_CANCELLED) if processor.response_status is None else \
            Ending(Outcome.UPSTREAM_ERROR, "stream_cut")
    REQUESTS.labels(grant.tenant_id, grant.model, grant.endpoint, ending.outcome).inc()
    # The candidate of a failover group that answered, else the catalog's upstream. Its errors before the answer
    # began (failed over) are Envoy's to count: envoy_cluster_upstream_rq_xx{envoy_cluster_name="candidate_..."}.
    upstream = processor.served_by or grant.upstream
    UPSTREAM_REQUESTS.labels(upstream, grant.endpoint).inc()
    if processor.unreadable is not None:
        UNREADABLE_ANSWERS.labels(upstream, grant.endpoint, processor.unreadable).inc()
    if ending.upstream_error is not None:
        UPSTREAM_ERRORS.labels(upstream, grant.endpoint, ending.upstream_error).inc()
    DURATION.labels(grant.model, grant.endpoint).observe(max(0.0, ended_at - grant.started_at))
    if grant.stream and processor.first_byte_at is not None:
        TIME_TO_FIRST_TOKEN.labels(grant.model, grant.endpoint).observe(
            max(0.0, processor.first_byte_at - grant.started_at))
