"""authz's side of Envoy's HTTP ext_authz contract: which headers Envoy sends, and the answers authz writes.

authz speaks Envoy's HTTP ext_authz mode rather than gRPC (docs/performance.md, "authz's transport"): a call is
one HTTP/1.1 request on a kept-alive connection (a Unix socket in the gateway pod), which costs authz a twelfth
and Envoy half of a grpc.aio unary call's CPU. Envoy sends the client's method, path, the headers of
:data:`REQUEST_HEADERS` and the body; authz answers

- **allowed**: 200 and no body; the headers of :data:`METADATA_HEADERS` become the request's dynamic metadata
  in ``envoy.filters.http.ext_authz`` (the grant extproc reads, the fields the access log reads), those of
  :data:`UPSTREAM_HEADERS` are set on the upstream request;
- **refused**: the error's status and body, with the headers of :data:`CLIENT_HEADERS`, which Envoy sends the
  client as they are. Envoy reads any 5xx from an authorization server as the server's failure and answers its
  own ``status_on_error`` instead, without the body, so Lime's own 5xx refusals (a store down: "nothing was
  charged, retry shortly") travel under the carrier statuses of :data:`CARRIED_STATUSES`, which
  ``local_reply_config`` in envoy/envoy.yaml turns back into the real ones.

Pure: bytes in, bytes out. envoy/envoy.yaml lists the same names and ``lime envoy check`` compares them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from http import HTTPStatus

from lime.keys import KEY_HEADERS
from lime.money.grant import LOGGED_FIELDS, PACKED_KEY, TENANT_HEADER, VERIFIED_TENANT_HEADER
from lime.protocols.error_bodies import ErrorReply

__all__ = [
    "CARRIED_STATUSES",
    "CLIENT_HEADERS",
    "METADATA_HEADERS",
    "REQUEST_HEADERS",
    "UPSTREAM_HEADERS",
    "allow",
    "refuse",
]

#: The client's headers authz reads (Envoy always adds :method, :path, :authority and authorization).
REQUEST_HEADERS = (*KEY_HEADERS, TENANT_HEADER, "x-request-id", "anthropic-version")
#: Headers of an allowing answer that Envoy turns into dynamic metadata: the packed grant and the logged fields.
METADATA_HEADERS = (PACKED_KEY, *LOGGED_FIELDS)
#: Headers of an allowing answer that Envoy sets on the upstream request.
UPSTREAM_HEADERS = (VERIFIED_TENANT_HEADER,)
#: Headers of a refusing answer that Envoy passes to the client (Envoy adds :status and content-length itself).
CLIENT_HEADERS = ("content-type", "retry-after", "x-should-retry")
#: A 5xx refusal's status -> the 4xx status it travels under (envoy.yaml maps each back). A 5xx not listed
#: travels as a 500.
CARRIED_STATUSES = {500: 450, 503: 453}

_OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n"
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")  # tab is allowed in a value


def allow(metadata: Mapping[str, str], headers: Mapping[str, str] | None = None) -> bytes:
    """The answer that lets a request through with ``metadata`` (keys from :data:`METADATA_HEADERS`) and
    ``headers`` for the upstream (names from :data:`UPSTREAM_HEADERS`). Values go as UTF-8 (the grant is ASCII
    JSON, the rest catalog ids); one with a control character raises :class:`ValueError`, since it would end the
    header and start another (authz's server answers that with a 500, and Envoy fails closed)."""
    return b"".join((_OK, _fields(metadata.items()), _fields((headers or {}).items()), b"\r\n"))


def refuse(reply: ErrorReply) -> bytes:
    """The answer that refuses a request with ``reply``, in the client's protocol."""
    status = _carrier_of(reply.status)
    return b"".join((
        f"HTTP/1.1 {status} {_phrase(status)}\r\ncontent-length: {len(reply.body)}\r\n".encode(),
        _fields(reply.headers), b"\r\n", reply.body))


def _carrier_of(status: int) -> int:
    """The status a refusal travels under to Envoy (itself, unless a 5xx)."""
    if status < 500:
        return status
    return CARRIED_STATUSES.get(status, CARRIED_STATUSES[500])


def _fields(headers: Iterable[tuple[str, str]]) -> bytes:
    # UTF-8, so that a catalog id outside ASCII reaches Envoy's metadata as it is; a client's own text is only ever
    # in a refusal's body, never here.
    lines = []
    for name, value in headers:
        if _CONTROL.search(value):
            raise ValueError(f"the value of {name} has a control character")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Refused"  # a carrier status has no phrase of its own; Envoy reads only the number
