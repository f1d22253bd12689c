"""What the services share about metrics: the request counter, its outcomes, and the ``/metrics`` server.

Labels come from the catalog (tenant, model, upstream) or from Lime's own fixed sets (endpoint, outcome), never
from raw client input, so a client cannot grow a series per request. A label Lime does not know yet (an unknown
key has no tenant) is ``""``. ``docs/metrics.md`` lists every metric; keep it in step.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, start_http_server

from lime.errors import (
    AuthError,
    BadRequest,
    LimeError,
    MethodNotAllowed,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    ServiceUnavailable,
)
from lime.settings import Address

__all__ = ["REQUESTS", "MetricsServer", "Outcome", "rejection_outcome", "serve_metrics"]


class Outcome:
    """Values of the ``outcome`` label of ``lime_requests_total``."""

    OK = "ok"
    UPSTREAM_ERROR = "upstream_error"
    CLIENT_CANCELLED = "client_cancelled"
    REJECTED_AUTH = "rejected_auth"
    REJECTED_BAD_REQUEST = "rejected_bad_request"
    REJECTED_QUOTA = "rejected_quota"
    REJECTED_RATE_LIMIT = "rejected_rate_limit"
    REJECTED_UNAVAILABLE = "rejected_unavailable"
    GATEWAY_ERROR = "gateway_error"


#: authz counts the requests it refuses, extproc the ones it served; together, every request a tenant sent.
REQUESTS = Counter("lime_requests", "Requests by how they ended", ["tenant", "model", "endpoint", "outcome"])

_REJECTIONS: tuple[tuple[type[LimeError], str], ...] = (
    (QuotaExceeded, Outcome.REJECTED_QUOTA),
    (RateLimited, Outcome.REJECTED_RATE_LIMIT),
    (AuthError, Outcome.REJECTED_AUTH),
    (PermissionDenied, Outcome.REJECTED_AUTH),
    (BadRequest, Outcome.REJECTED_BAD_REQUEST),
    (NotFound, Outcome.REJECTED_BAD_REQUEST),
    (MethodNotAllowed, Outcome.REJECTED_BAD_REQUEST),
    (ServiceUnavailable, Outcome.REJECTED_UNAVAILABLE),
)


def rejection_outcome(error: LimeError) -> str:
    """The outcome a refusal is counted under; an error outside the tree's client errors is the gateway's."""
    for kind, outcome in _REJECTIONS:
        if isinstance(error, kind):
            return outcome
    return Outcome.GATEWAY_ERROR


@dataclass
class MetricsServer:
    server: WSGIServer
    thread: threading.Thread

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=2)


def serve_metrics(address: Address) -> MetricsServer:
    """Serve this process's metrics on ``http://<address>/metrics`` from a thread (off the event loop)."""
    server, thread = start_http_server(address.port, addr=address.host)
    return MetricsServer(server, thread)
