"""What Envoy sends authz and extproc for one request: authz's HTTP call as Envoy 1.40 writes it, and extproc's
messages one by one under envoy/envoy.yaml's processing modes and the overrides extproc answers with. The work budget
(bench/work_budget.py) drives both with these, so the work it counts per request is what a real Envoy would cause."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from google.protobuf import struct_pb2

from lime.envoy.api import (
    ANSWER_HEADERS,
    ANSWER_NAMESPACE,
    AUTHZ_NAMESPACE,
    EXTPROC_NAMESPACE,
    OBSERVE_HEADER,
    proc_pb,
)
from lime.envoy.authz_http import METADATA_HEADERS

__all__ = ["ENVOY_CONFIG", "EnvoyStream", "ObservedStream", "authz_call", "metadata_of_answer", "processing_requests"]

class EnvoyStream:
    """An ext_proc stream as grpclib hands it to extproc: Envoy's messages in, the answers collected. Which messages
    come follows the processing mode in envoy/envoy.yaml and, as Envoy does, a ``mode_override`` in the answer to
    the request headers, so the number of messages per request is what Envoy would send."""

    def __init__(self, request: list[Any], response: AnswerMessages) -> None:
        self._request = request
        self._headers, self._chunks, self._whole = response
        self.answers: list[Any] = []

    async def __aiter__(self) -> AsyncIterator[Any]:
        mode = _configured_mode()
        for message in self._request:
            yield message
            answer = self.answers[-1]
            if answer.HasField("mode_override") and _ALLOW_MODE_OVERRIDE:
                mode = answer.mode_override
        if mode.response_header_mode != _MODE.SKIP:
            yield self._headers
            answer = self.answers[-1]
            if answer.HasField("mode_override") and _ALLOW_MODE_OVERRIDE:
                mode = answer.mode_override  # honoured in the answer to any headers message (ext_proc.cc)
        if mode.response_body_mode == _MODE.BUFFERED:
            yield self._whole
        elif mode.response_body_mode != _MODE.NONE:
            for chunk in self._chunks:
                yield chunk

    async def send_message(self, message: Any) -> None:
        self.answers.append(message)

    def observed(self) -> ObservedStream | None:
        """The stream of Envoy's ``lime.stream_tap`` for this answer, if extproc's answer to its headers woke it
        (the ``x-lime-observe`` header its matcher looks for): the chunks, in observability mode, with the
        ``lime.extproc`` word that answer wrote forwarded on each."""
        headers = next((a for a in self.answers if a.WhichOneof("response") == "response_headers"), None)
        if headers is None or OBSERVE_HEADER not in {option.header.key for option in
                                                     headers.response_headers.response.header_mutation.set_headers}:
            return None
        if _TAP_BODY_MODE != _MODE.STREAMED:
            return None
        word = headers.dynamic_metadata.fields[EXTPROC_NAMESPACE].struct_value
        chunks = []
        sent_headers = [self._headers] if _mode_of(_TAP).response_header_mode == _MODE.SEND else []
        for chunk in [*sent_headers, *self._chunks]:
            observed = proc_pb.ProcessingRequest()
            observed.CopyFrom(chunk)
            observed.observability_mode = True
            observed.metadata_context.filter_metadata[EXTPROC_NAMESPACE].CopyFrom(word)
            chunks.append(proc_pb.ProcessingRequest.FromString(observed.SerializeToString()))
        return ObservedStream(chunks)


class ObservedStream:
    """The observing tap's ext_proc stream: Envoy's messages in; nothing may come back (Envoy reads no reply)."""

    def __init__(self, messages: list[Any]) -> None:
        self.messages = messages
        self.answers: list[Any] = []

    async def __aiter__(self) -> AsyncIterator[Any]:
        for message in self.messages:
            yield message

    async def send_message(self, message: Any) -> None:
        self.answers.append(message)


_MODE = processing_mode_pb2.ProcessingMode
ENVOY_CONFIG = Path(__file__).resolve().parent.parent / "envoy" / "envoy.yaml"


def _filter_config(name: str) -> dict[str, Any]:
    bootstrap = yaml.safe_load(ENVOY_CONFIG.read_text())
    for listener in bootstrap["static_resources"]["listeners"]:
        for chain in listener.get("filter_chains") or []:
            for network_filter in chain.get("filters") or []:
                for http_filter in (network_filter.get("typed_config") or {}).get("http_filters") or []:
                    if http_filter["name"] == name:
                        config: dict[str, Any] = http_filter["typed_config"]
                        # A filter behind a match delegate: the filter's own config.
                        inner: dict[str, Any] = config.get("extension_config", {}).get("typed_config", config)
                        return inner
    raise RuntimeError(f"no {name} filter in {ENVOY_CONFIG}")


_EXT_PROC = _filter_config("envoy.filters.http.ext_proc")
_ALLOW_MODE_OVERRIDE = bool(_EXT_PROC.get("allow_mode_override"))


def _mode_of(config: dict[str, Any]) -> Any:
    configured = config.get("processing_mode") or {}
    return _MODE(**{name: _MODE.HeaderSendMode.Value(value) if name.endswith("header_mode")
                    or name.endswith("trailer_mode") else _MODE.BodySendMode.Value(value)
                    for name, value in configured.items()})


def _configured_mode() -> Any:
    return _mode_of(_EXT_PROC)


_TAP = _filter_config("lime.stream_tap")
_TAP_BODY_MODE = _mode_of(_TAP).response_body_mode if _TAP.get("observability_mode") else _MODE.NONE


def authz_call(tenant: str, key: str, body: bytes, request_id: str) -> bytes:
    """authz's HTTP call for a chat completion, byte for byte as Envoy 1.40 writes it (captured from one): the
    client's method and path, the headers envoy.yaml allows, Envoy's own, and the body."""
    return (f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:8080\r\ncontent-length: {len(body)}\r\n"
            f"x-request-id: {request_id}\r\nx-lime-tenant-id: {tenant}\r\nx-envoy-auth-partial-body: false\r\n"
            f"authorization: Bearer {key}\r\nx-envoy-internal: true\r\nx-envoy-expected-rq-timeout-ms: 2000\r\n"
            "\r\n").encode() + body


def metadata_of_answer(answer: bytes) -> struct_pb2.Struct:
    """The dynamic metadata Envoy makes of authz's allowing answer (``dynamic_metadata_from_headers``)."""
    head = answer.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]
    metadata = struct_pb2.Struct()
    metadata.update({name: value.strip() for name, _, value in (line.partition(":") for line in head)
                     if name in METADATA_HEADERS})
    return metadata


def _client_headers(tenant: str, key: str, body: bytes, request_id: str) -> dict[str, str]:
    return {":authority": "127.0.0.1:8080", ":method": "POST", ":path": "/v1/chat/completions", ":scheme": "http",
            "authorization": f"Bearer {key}", "x-lime-tenant-id": tenant, "content-type": "application/json",
            "content-length": str(len(body)), "user-agent": "OpenAI/Python 1.99.0", "accept": "application/json",
            "x-forwarded-proto": "http", "x-request-id": request_id}


def _message(metadata: struct_pb2.Struct) -> Any:
    request = proc_pb.ProcessingRequest()
    request.metadata_context.filter_metadata[AUTHZ_NAMESPACE].CopyFrom(metadata)
    return request


#: An answer three ways: its headers message, its STREAMED chunks, and its whole BUFFERED body.
AnswerMessages = tuple[Any, list[Any], Any]


def processing_requests(metadata: struct_pb2.Struct, tenant: str, key: str, body: bytes, request_id: str,
                        upstream_answer: list[bytes], content_type: str) -> tuple[list[Any], AnswerMessages]:
    """The ext_proc messages of one request as Envoy sends them (metadata forwarded on every one): the request's,
    then the answer's three ways: its headers, its chunks (STREAMED), and its whole body with the headers
    ``lime.answer_headers`` copies for extproc (BUFFERED, headers skipped)."""
    request = []
    headers = _message(metadata)
    for name, value in _client_headers(tenant, key, body, request_id).items():
        headers.request_headers.headers.headers.add(key=name, raw_value=value.encode())
    request.append(headers)
    request_body = _message(metadata)
    request_body.request_body.body = body
    request_body.request_body.end_of_stream = True
    request.append(request_body)
    upstream_headers = {":status": "200", "content-type": content_type, "x-request-id": "req_upstream",
                        "openai-organization": "mock-org", "openai-processing-ms": "12",
                        "set-cookie": "__cf_bm=mock-cookie; path=/; HttpOnly"}
    response_headers = _message(metadata)
    for name, value in upstream_headers.items():
        response_headers.response_headers.headers.headers.add(key=name, raw_value=value.encode())
    chunks = []
    for index, chunk in enumerate(upstream_answer):
        part = _message(metadata)
        part.response_body.body = chunk
        part.response_body.end_of_stream = index == len(upstream_answer) - 1
        chunks.append(part)
    whole = _message(metadata)
    whole.metadata_context.filter_metadata[ANSWER_NAMESPACE].update(
        {name: value for name, value in upstream_headers.items() if name in ANSWER_HEADERS})
    whole.response_body.body = b"".join(upstream_answer)
    whole.response_body.end_of_stream = True

    def wire(message: Any) -> Any:
        return proc_pb.ProcessingRequest.FromString(message.SerializeToString())

    return [wire(m) for m in request], (wire(response_headers), [wire(m) for m in chunks], wire(whole))
