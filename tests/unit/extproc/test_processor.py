"""The ext_proc stream decisions over real Envoy messages (the upb classes Envoy's bytes parse into)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf import struct_pb2

from extproc.processor import StreamProcessor
from lime.envoy_api import AUTHZ_NAMESPACE, proc_pb
from lime.grant import Grant

GRANT = Grant("req-1", "t", "k", "chat_completions", "chat", "mock", "gpt-4o-mini", True)


def message(phase: str, *, metadata: dict[str, Any] | None = None, body: bytes = b"") -> Any:
    request = proc_pb.ProcessingRequest()
    if phase == "request_headers":
        request.request_headers.end_of_stream = False
    elif phase == "request_body":
        request.request_body.body = body
        request.request_body.end_of_stream = True
    elif phase == "response_headers":
        request.response_headers.end_of_stream = False
    elif phase == "response_body":
        request.response_body.body = body
    if metadata is not None:
        struct = struct_pb2.Struct()
        struct.update(metadata)
        request.metadata_context.filter_metadata[AUTHZ_NAMESPACE].CopyFrom(struct)
    # Round-trip through bytes, as the messages arrive from Envoy.
    return proc_pb.ProcessingRequest.FromString(request.SerializeToString())


def headers_of(mutation: Any) -> dict[str, bytes]:
    return {h.header.key: h.header.raw_value for h in mutation.set_headers}


def test_allowed_request_is_rewritten_in_the_body_response() -> None:
    processor = StreamProcessor({"mock": "sk-up"}.get)
    meta = GRANT.to_metadata()
    assert processor.handle(message("request_headers", metadata=meta)).WhichOneof("response") == "request_headers"
    answer = processor.handle(message("request_body", metadata=meta, body=b'{"model":"chat","stream":true}'))
    common = answer.request_body.response
    assert json.loads(common.body_mutation.body) == {"model": "gpt-4o-mini", "stream": True}
    headers = headers_of(common.header_mutation)
    # ext_proc reads raw_value only (ENVOY-NOTES pitfall 1), and the length must match the new body (pitfall 3)
    assert headers["authorization"] == b"Bearer sk-up"
    assert headers["content-length"] == str(len(common.body_mutation.body)).encode()
    assert headers["x-lime-upstream"] == b"mock"
    assert "x-lime-tenant-id" in common.header_mutation.remove_headers
    assert common.clear_route_cache


def test_response_passes_untouched() -> None:
    processor = StreamProcessor({"mock": "sk-up"}.get)
    meta = GRANT.to_metadata()
    headers = processor.handle(message("response_headers", metadata=meta))
    assert headers.WhichOneof("response") == "response_headers"
    assert not headers.response_headers.HasField("response")
    chunk = processor.handle(message("response_body", metadata=meta, body=b"data: {}\n\n"))
    assert chunk.WhichOneof("response") == "response_body"
    assert not chunk.response_body.response.HasField("body_mutation")


def test_local_reply_without_grant_passes() -> None:
    processor = StreamProcessor({"mock": "sk-up"}.get)
    assert processor.handle(message("response_headers")).WhichOneof("response") == "response_headers"
    assert processor.handle(message("response_body", body=b"{}")).WhichOneof("response") == "response_body"


@pytest.mark.parametrize("phase", ["request_headers", "request_body"])
def test_a_request_without_grant_is_refused_not_forwarded(phase: str) -> None:
    answer = StreamProcessor({"mock": "sk-up"}.get).handle(message(phase, body=b'{"model":"chat"}'))
    assert answer.WhichOneof("response") == "immediate_response"
    assert answer.immediate_response.status.code == 500
    assert json.loads(answer.immediate_response.body)["error"]["type"] == "server_error"


def test_a_bug_refuses_the_request() -> None:
    def broken(upstream: str) -> str:
        raise RuntimeError("boom")

    meta = GRANT.to_metadata()
    answer = StreamProcessor(broken).handle(message("request_body", metadata=meta, body=b'{"model":"chat"}'))
    assert answer.immediate_response.status.code == 500


def test_missing_credential_is_an_immediate_503_in_the_clients_protocol() -> None:
    processor = StreamProcessor(lambda upstream: None)
    meta = Grant("req-9", "t", "k", "messages", "claude", "anth", "c", False).to_metadata()
    answer = processor.handle(message("request_body", metadata=meta, body=b'{"model":"claude"}'))
    immediate = answer.immediate_response
    assert immediate.status.code == 503
    body = json.loads(immediate.body)
    assert body["type"] == "error" and body["error"]["type"] == "api_error" and body["request_id"] == "req-9"
