"""One ext_proc stream: the decisions per phase, apart from the gRPC loop that carries them.

Envoy sends request headers, then the BUFFERED request body, then response headers and the STREAMED response
body chunk by chunk; each message gets exactly one answer of the matching kind (ENVOY-NOTES pitfall 5). A
stream without authz metadata is a local reply (authz denied, or Envoy answered itself): it passes untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from extproc.rewrite import rewrite_request
from lime import envoy_api
from lime.endpoints import ENDPOINTS, Protocol
from lime.error_bodies import render_error
from lime.errors import LimeError
from lime.grant import Grant

__all__ = ["StreamProcessor"]

log = logging.getLogger(__name__)
_PROTOCOL_BY_ENDPOINT = {endpoint.name: endpoint.protocol for endpoint in ENDPOINTS}


class StreamProcessor:
    def __init__(self, credentials: Mapping[str, str]) -> None:
        self._credentials = credentials
        self._grant: Grant | None = None
        self._metadata_seen = False

    def handle(self, request: Any) -> Any:
        phase = request.WhichOneof("request")
        if not self._metadata_seen:
            # Metadata rides on every message; decoding it once per stream is enough.
            self._metadata_seen = True
            self._grant = Grant.from_metadata(envoy_api.metadata_of(request))
        if phase == "request_headers":
            return envoy_api.ACK_REQUEST_HEADERS
        if phase == "request_body":
            return self._request_body(request.request_body.body)
        if phase == "response_headers":
            return envoy_api.ACK_RESPONSE_HEADERS
        if phase == "response_body":
            return envoy_api.ACK_RESPONSE_BODY
        if phase == "request_trailers":
            return envoy_api.ACK_REQUEST_TRAILERS
        return envoy_api.ACK_RESPONSE_TRAILERS

    def _request_body(self, body: bytes) -> Any:
        grant = self._grant
        if grant is None:
            return envoy_api.ACK_REQUEST_BODY
        try:
            edit = rewrite_request(grant, body, self._credentials)
        except LimeError as error:
            protocol = _PROTOCOL_BY_ENDPOINT.get(grant.endpoint, Protocol.OPENAI)
            if error.status >= 500:
                log.error("request %s refused: %s", grant.request_id, error.message)
            return envoy_api.immediate_response(render_error(error, protocol, grant.request_id))
        return envoy_api.request_body_rewrite(
            edit.body, set_headers=edit.set_headers, remove_headers=edit.remove_headers)
