"""What the services share about metrics: the request counter, its outcomes, and the ``/metrics`` server.

Labels come from the catalog (tenant, model, upstream) or from Lime's own fixed sets (endpoint, outcome), never
from raw client input, so a client cannot grow a series per request. A label Lime does not know yet (an unknown
key has no tenant) is ``""``. ``docs/metrics.md`` lists every metric; keep it in step.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry, Counter, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from lime.protocols.errors import (
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

#: Set in each process of a pool: where prometheus_client keeps its values for the parent to add up.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

__all__ = ["MULTIPROCESS_DIR", "READINESS", "REQUESTS", "MetricsServer", "Outcome", "Readiness", "rejection_outcome",
           "serve_metrics"]


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


class Readiness:
    """Whether this process takes new work: false from the moment it starts draining (SIGTERM), so a probe takes
    it out of rotation before its listener closes."""

    def __init__(self) -> None:
        self._draining = False

    def drain(self) -> None:
        self._draining = True

    @property
    def draining(self) -> bool:
        return self._draining


READINESS = Readiness()

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


def _app(readiness: Readiness, registry: CollectorRegistry) -> Callable[[Environ, StartResponse], Iterable[bytes]]:
    metrics = make_wsgi_app(registry)

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/ready":
            status = "503 Service Unavailable" if readiness.draining else "200 OK"
            start_response(status, [("Content-Type", "text/plain")])
            return [b"draining\n" if readiness.draining else b"ready\n"]
        result: Iterable[bytes] = metrics(environ, start_response)
        return result

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and probes every few seconds are not news."""


@dataclass
class MetricsServer:
    server: WSGIServer
    thread: threading.Thread

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=2)


def serve_metrics(address: Address, readiness: Readiness = READINESS,
                  registry: CollectorRegistry = REGISTRY) -> MetricsServer | None:
    """Serve ``/metrics`` and ``/ready`` (200, or 503 once draining) on ``address`` from a thread, off the event
    loop; ``None`` in a process of a pool (``PROMETHEUS_MULTIPROC_DIR`` set), whose parent serves both for all its
    processes (lime/cli/process_pool.py)."""
    if registry is REGISTRY and os.environ.get(MULTIPROCESS_DIR):
        return None
    server = make_server(address.host, address.port, _app(readiness, registry), ThreadingWSGIServer,
                         handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    return MetricsServer(server, thread)
