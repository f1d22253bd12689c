"""An upstream error answer, replaced on its way to the client by Lime's own (sans-IO; the rule is in
:mod:`lime.protocols.upstream_errors`).

The response body stays STREAMED for every answer (a success must not wait), so an error is rewritten in two
steps: at the response headers, its status, content-type and retry headers are set (the client's status depends
on the upstream's alone); then every chunk of the upstream's body is held back, and at its end Lime's body goes
out instead. Nothing of the upstream's body ever reaches the client, whatever fails: if building the answer
fails, a generic one goes out. The response tap never sees these bodies (an error is settled at no charge, as
before: the tap saw the error status and no event).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from lime.protocols.content_encoding import DecodeError, decoder_for, is_identity
from lime.protocols.endpoints import Protocol
from lime.protocols.error_bodies import JSON_CONTENT_TYPE, ErrorReply, render_error
from lime.protocols.errors import UpstreamError
from lime.protocols.upstream_errors import (
    MAX_ERROR_BODY_BYTES,
    client_status,
    error_headers,
    upstream_error_reply,
)

__all__ = ["ErrorAnswer"]

log = logging.getLogger(__name__)

#: Upstream headers that described the upstream's body, not Lime's (Envoy drops content-length itself once the
#: body goes to ext_proc, ENVOY-NOTES pitfall 12; it is removed here all the same).
_BODY_HEADERS = ("content-length", "content-encoding")


class ErrorAnswer:
    def __init__(self, status: int, headers: Mapping[str, str], protocol: Protocol, *, public_model: str,
                 upstream_model: str, secrets: tuple[str, ...], request_id: str) -> None:
        self.upstream_status = status
        self.status = client_status(status)
        self._headers = dict(headers)
        self._protocol = protocol
        self._public_model = public_model
        self._upstream_model = upstream_model
        self._secrets = secrets
        self._request_id = request_id
        self._held: list[bytes] = []
        self._size = 0

    def header_edit(self) -> tuple[dict[str, str], tuple[str, ...]]:
        """The headers to set (``:status`` included) and to remove, at the response headers."""
        set_headers = {":status": str(self.status), "content-type": JSON_CONTENT_TYPE,
                       **dict(error_headers(self.upstream_status, self._headers))}
        return set_headers, _BODY_HEADERS

    def feed(self, chunk: bytes, end_of_stream: bool) -> bytes:
        """One chunk of the upstream's body; returns what the client gets now: nothing until the end, then
        Lime's body. Only the first MAX_ERROR_BODY_BYTES are kept (a longer body is no error Lime can read)."""
        if self._size <= MAX_ERROR_BODY_BYTES:
            self._held.append(chunk)
            self._size += len(chunk)
        return self.reply().body if end_of_stream else b""

    def reply(self) -> ErrorReply:
        """Lime's answer for what was held (all of it, or nothing when the upstream sent no body)."""
        body = self._decoded(b"".join(self._held))
        try:
            reply = upstream_error_reply(
                self.upstream_status, self._headers, body, self._protocol, public_model=self._public_model,
                upstream_models=(self._upstream_model,), secrets=self._secrets, request_id=self._request_id)
        except Exception:
            log.exception("could not rewrite the upstream's %d for request %s; a generic error goes out",
                          self.upstream_status, self._request_id)
            reply = render_error(UpstreamError("The gateway's upstream could not answer this request.",
                                               upstream_status=self.upstream_status, status=self.status),
                                 self._protocol, self._request_id)
        if reply.status != self.status:  # the headers went out already; a bug if ever seen
            log.error("upstream error reply status %d differs from the %d already sent", reply.status, self.status)
        return reply

    def _decoded(self, body: bytes) -> bytes:
        """The body as the upstream meant it (some ignore ``accept-encoding: identity``); empty, so a generic message
        goes out, when it cannot be decoded. Decoded a KiB at a time and no further than an error body is read:
        a small compressed body must not grow into megabytes here."""
        encoding = self._headers.get("content-encoding", "")
        if is_identity(encoding):
            return body
        decoder = decoder_for(encoding)
        if decoder is None:
            return b""
        out: list[bytes] = []
        size = 0
        try:
            for start in range(0, len(body), 1024):
                piece = decoder.decode(body[start:start + 1024])
                out.append(piece)
                size += len(piece)
                if size > MAX_ERROR_BODY_BYTES:
                    return b""
            out.append(decoder.flush())
        except DecodeError:
            return b""
        return b"".join(out)
