"""The ext_proc stream decisions over real Envoy messages (the upb classes Envoy's bytes parse into)."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from google.protobuf import struct_pb2

from extproc.processor import StreamProcessor
from lime.envoy.api import AUTHZ_NAMESPACE, proc_pb
from lime.money.grant import Grant

GRANT = Grant("req-1", "t", "k", "chat_completions", "chat", "mock", "gpt-4o-mini", True)


def message(phase: str, *, metadata: dict[str, Any] | None = None, body: bytes = b"",
            headers: dict[str, str] | None = None, end_of_stream: bool = False) -> Any:
    request = proc_pb.ProcessingRequest()
    if phase == "request_headers":
        request.request_headers.end_of_stream = False
    elif phase == "request_body":
        request.request_body.body = body
        request.request_body.end_of_stream = True
    elif phase == "response_headers":
        request.response_headers.end_of_stream = False
        for name, value in (headers or {}).items():
            request.response_headers.headers.headers.add(key=name, raw_value=value.encode())
    elif phase == "response_body":
        request.response_body.body = body
        request.response_body.end_of_stream = end_of_stream
    if metadata is not None:
        struct = struct_pb2.Struct()
        struct.update(metadata)
        request.metadata_context.filter_metadata[AUTHZ_NAMESPACE].CopyFrom(struct)
    # Round-trip through bytes, as the messages arrive from Envoy.
    return proc_pb.ProcessingRequest.FromString(request.SerializeToString())


def handle(processor: StreamProcessor, request: Any) -> Any:
    return processor.handle(request, request.WhichOneof("request"))


def headers_of(mutation: Any) -> dict[str, bytes]:
    return {h.header.key: h.header.raw_value for h in mutation.set_headers}


def test_allowed_request_is_rewritten_in_the_body_response() -> None:
    processor = StreamProcessor({"mock": "sk-up"}.get)
    meta = GRANT.to_metadata()
    assert handle(processor, message("request_headers", metadata=meta)).WhichOneof("response") == "request_headers"
    answer = handle(processor, message("request_body", metadata=meta, body=b'{"model":"chat","stream":true}'))
    common = answer.request_body.response
    # a streamed chat request is asked for its usage (the tap hides that chunk again from this client)
    assert json.loads(common.body_mutation.body) == {"model": "gpt-4o-mini", "stream": True,
                                                     "stream_options": {"include_usage": True}}
    headers = headers_of(common.header_mutation)
    # ext_proc reads raw_value only (ENVOY-NOTES pitfall 1), and the length must match the new body (pitfall 3)
    assert headers["authorization"] == b"Bearer sk-up"
    assert headers["content-length"] == str(len(common.body_mutation.body)).encode()
    assert headers["x-lime-upstream"] == b"mock"
    assert "x-lime-tenant-id" in common.header_mutation.remove_headers
    assert common.clear_route_cache


def test_a_stream_is_handed_to_the_observing_tap_at_its_headers() -> None:
    processor = StreamProcessor({"mock": "sk-up"}.get)
    meta = GRANT.to_metadata()
    upstream_headers = {":status": "200", "content-type": "text/event-stream; charset=utf-8", "x-request-id": "up-1",
                        "openai-organization": "org-x", "set-cookie": "__cf_bm=1", "retry-after": "1",
                        "x-lime-upstream": "mock"}
    headers = handle(processor, message("response_headers", metadata=meta, headers=upstream_headers))
    mutation = headers.response_headers.response.header_mutation
    assert set(mutation.remove_headers) == {"x-request-id", "openai-organization", "set-cookie", "x-lime-upstream"}
    # The mark lime.stream_tap's matcher wakes on, and no chunk for this stream (mode_override at the headers).
    assert headers_of(mutation) == {"x-lime-observe": b"1"}
    assert headers.mode_override.response_body_mode == headers.mode_override.NONE
    # lime.stream_bytes rewrites the model id to this, quotes included, as the tap did; the tap learns the rest.
    word = {name: value.string_value for name, value in
            headers.dynamic_metadata.fields["lime.extproc"].struct_value.fields.items()}
    assert word == {"stream_model": '"chat"', "status": "200", "served_by": "mock"}
    # This stream is over: the observing one counts and settles the request.
    assert processor.handed_off and processor.finished


def observed(meta: dict[str, Any], word: dict[str, str], *, body: bytes, end_of_stream: bool = False) -> Any:
    request = message("response_body", metadata=meta, body=body, end_of_stream=end_of_stream)
    request.observability_mode = True
    request.metadata_context.filter_metadata["lime.extproc"].update(word)
    return request


def test_the_observing_tap_reads_settles_and_ends_at_the_protocols_end() -> None:
    processor = StreamProcessor({"mock": "sk-up"}.get)
    meta, word = GRANT.to_metadata(), {"stream_model": '"chat"', "status": "200", "hide_usage": "1"}
    events = [b'data: {"id":"c","model":"gpt-4o-mini-2024-07-18","choices":[{"delta":{"content":"hi"}}]}\n\n',
              b'data: {"id":"c","model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":3,'
              b'"completion_tokens":2,"total_tokens":5}}\n\n', b"data: [DONE]\n\n"]
    headers = message("response_headers", metadata=meta, headers={":status": "200"})
    headers.observability_mode = True
    headers.metadata_context.filter_metadata["lime.extproc"].update(word)
    handle(processor, headers)  # opens the observed stream: a cut before the first chunk is still seen
    for event in events:
        assert not processor.finished
        handle(processor, observed(meta, word, body=event))
    assert processor.observing and not processor.handed_off
    # [DONE] ends it, even when Envoy's end of stream never comes (an SDK that hangs up right there).
    assert processor.finished and processor.answer_complete
    settled = processor.settlement()
    assert settled is not None and (settled.outcome, settled.input_tokens, settled.output_tokens) == ("complete", 3, 2)
    assert processor.response_status == 200


def test_an_observed_stream_without_extprocs_word_is_left_to_the_reaper() -> None:
    processor = StreamProcessor({"mock": "sk-up"}.get)
    handle(processor, observed(GRANT.to_metadata(), {}, body=b"data: {}\n\n"))
    assert processor.finished and processor.settlement() is None


def test_a_responses_stream_stays_on_the_intercepting_path() -> None:
    processor = StreamProcessor({"mock": "sk-up"}.get)
    grant = Grant("req-2", "t", "k", "responses", "chat", "mock", "gpt-4o-mini", True)
    headers = handle(processor, message("response_headers", metadata=grant.to_metadata(),
                                        headers={":status": "200", "content-type": "text/event-stream"}))
    # Its record is written before its last bytes go on, so Envoy waits for its chunks; their bytes are Envoy's.
    assert not processor.handed_off and not headers.HasField("mode_override")
    assert headers.dynamic_metadata.fields["lime.extproc"].struct_value.fields["stream_model"].string_value \
        == '"chat"'
    answer = handle(processor, message("response_body", metadata=grant.to_metadata(),
                                       body=b'data: {"model":"gpt-4o-mini-2024-07-18"}\n\n'))
    assert answer.WhichOneof("response") == "response_body"
    assert not answer.response_body.response.HasField("body_mutation")


def test_a_compressed_stream_is_still_edited_by_extproc() -> None:
    processor = StreamProcessor({"mock": "sk-up"}.get)
    meta = GRANT.to_metadata()
    headers = handle(processor, message("response_headers", metadata=meta, headers={
        ":status": "200", "content-type": "text/event-stream", "content-encoding": "gzip"}))
    assert "lime.extproc" not in headers.dynamic_metadata.fields
    event = b'data: {"id":"c","model":"gpt-4o-mini-2024-07-18","choices":[{"delta":{}}]}\n\n'
    answer = handle(processor, message("response_body", metadata=meta, body=gzip.compress(event),
                                       end_of_stream=True))
    assert answer.response_body.response.body_mutation.body == event.replace(b"gpt-4o-mini-2024-07-18", b"chat")


def test_an_upstream_error_is_held_and_replaced_by_limes_own() -> None:
    processor = StreamProcessor({"mock": "sk-up-secret"}.get)
    meta = GRANT.to_metadata()
    headers = handle(processor, message("response_headers", metadata=meta, headers={
        ":status": "401", "content-type": "application/json", "content-length": "180", "x-request-id": "req_up",
        "www-authenticate": "Bearer", "x-should-retry": "true"}))
    mutation = headers.response_headers.response.header_mutation
    # The client gets a 502 (the status goes out with the headers), never an authentication error.
    assert headers_of(mutation) == {":status": b"502", "content-type": b"application/json",
                                    "x-should-retry": b"false"}
    assert {"content-length", "x-request-id", "www-authenticate"} <= set(mutation.remove_headers)
    upstream = (b'{"error":{"message":"Incorrect API key provided: sk-up-se****cret. You can find your API key at '
                b'https://platform.openai.com/account/api-keys.","type":"invalid_request_error","code":"invalid_api_key"}}')
    first = handle(processor, message("response_body", metadata=meta, body=upstream[:50]))
    assert first.response_body.response.body_mutation.clear_body  # held: nothing of it reaches the client
    last = handle(processor, message("response_body", metadata=meta, body=upstream[50:], end_of_stream=True))
    body = json.loads(last.response_body.response.body_mutation.body)
    assert body["error"]["code"] == "upstream_auth_failed" and body["error"]["type"] == "server_error"
    assert "platform.openai.com" not in json.dumps(body) and "sk-" not in json.dumps(body)
    # Settled as before: an error costs nothing, and the usage record keeps the upstream's status.
    event = processor.settlement()
    assert event is not None and event.cost == 0 and event.upstream_status == 401


def test_a_client_error_keeps_its_status_type_code_and_param() -> None:
    processor = StreamProcessor({"mock": "sk-up"}.get)
    meta = GRANT.to_metadata()
    headers = handle(processor, message("response_headers", metadata=meta,
                                        headers={":status": "400", "content-type": "application/json"}))
    assert headers_of(headers.response_headers.response.header_mutation)[":status"] == b"400"
    upstream = (b'{"error":{"message":"This model\'s maximum context length is 128000 tokens (gpt-4o-mini, '
                b'req_abc123).","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}')
    last = handle(processor, message("response_body", metadata=meta, body=upstream, end_of_stream=True))
    error = json.loads(last.response_body.response.body_mutation.body)["error"]
    assert error == {"message": "This model's maximum context length is 128000 tokens (chat, [redacted]).",
                     "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}


def test_an_upstream_error_without_a_body_gets_limes_as_an_immediate_response() -> None:
    processor = StreamProcessor({"mock": "sk-up"}.get)
    request = message("response_headers", metadata=GRANT.to_metadata(), headers={":status": "429", "retry-after": "7"})
    request.response_headers.end_of_stream = True
    answer = handle(processor, request).immediate_response
    assert answer.status.code == 429
    assert json.loads(answer.body)["error"]["code"] == "upstream_rate_limited"
    assert headers_of(answer.headers)["retry-after"] == b"7"
    assert processor.finished


def test_a_bug_while_rewriting_an_error_never_passes_the_upstreams_body(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr("extproc.error_answers.upstream_error_reply", broken)
    processor = StreamProcessor({"mock": "sk-up"}.get)
    meta = GRANT.to_metadata()
    handle(processor, message("response_headers", metadata=meta, headers={":status": "400"}))
    last = handle(processor, message("response_body", metadata=meta, body=b'{"error":{"message":"org-secret"}}',
                                     end_of_stream=True))
    body = last.response_body.response.body_mutation.body
    assert b"org-secret" not in body and json.loads(body)["error"]["message"]


def test_local_reply_without_grant_passes() -> None:
    processor = StreamProcessor({"mock": "sk-up"}.get)
    assert handle(processor, message("response_headers")).WhichOneof("response") == "response_headers"
    assert handle(processor, message("response_body", body=b"{}")).WhichOneof("response") == "response_body"


@pytest.mark.parametrize("phase", ["request_headers", "request_body"])
def test_a_request_without_grant_is_refused_not_forwarded(phase: str) -> None:
    answer = handle(StreamProcessor({"mock": "sk-up"}.get), message(phase, body=b'{"model":"chat"}'))
    assert answer.WhichOneof("response") == "immediate_response"
    assert answer.immediate_response.status.code == 500
    assert json.loads(answer.immediate_response.body)["error"]["type"] == "server_error"


def test_a_bug_refuses_the_request() -> None:
    def broken(upstream: str) -> str:
        raise RuntimeError("boom")

    meta = GRANT.to_metadata()
    answer = handle(StreamProcessor(broken), message("request_body", metadata=meta, body=b'{"model":"chat"}'))
    assert answer.immediate_response.status.code == 500


def test_missing_credential_is_an_immediate_503_in_the_clients_protocol() -> None:
    processor = StreamProcessor(lambda upstream: None)
    meta = Grant("req-9", "t", "k", "messages", "claude", "anth", "c", False).to_metadata()
    answer = handle(processor, message("request_body", metadata=meta, body=b'{"model":"claude"}'))
    immediate = answer.immediate_response
    assert immediate.status.code == 503
    body = json.loads(immediate.body)
    assert body["type"] == "error" and body["error"]["type"] == "api_error" and body["request_id"] == "req-9"


def test_the_stream_is_finished_once_the_answer_ended_or_the_request_was_refused() -> None:
    """After these Envoy sends nothing more, so extproc ends the stream rather than wait for Envoy's reset."""
    meta = GRANT.to_metadata()
    answered = StreamProcessor({"mock": "sk-up"}.get)
    handle(answered, message("request_headers", metadata=meta))
    handle(answered, message("request_body", metadata=meta, body=b'{"model":"chat"}'))
    handle(answered, message("response_headers", metadata=meta,
                             headers={":status": "200", "content-type": "text/event-stream"}))
    handle(answered, message("response_body", metadata=meta, body=b'data: {"a":1}\n\n'))
    assert not answered.finished
    handle(answered, message("response_body", metadata=meta, body=b"data: [DONE]\n\n", end_of_stream=True))
    assert answered.finished

    refused = StreamProcessor(lambda upstream: None)
    handle(refused, message("request_headers", metadata=meta))
    assert not refused.finished
    assert handle(refused, message("request_body", metadata=meta, body=b'{"model":"chat"}')).HasField(
        "immediate_response")
    assert refused.finished



def test_a_tap_that_breaks_mid_stream_loses_and_repeats_no_byte(monkeypatch: pytest.MonkeyPatch) -> None:
    processor = StreamProcessor({"mock": "sk-up"}.get)
    meta = GRANT.to_metadata()
    handle(processor, message("response_headers", metadata=meta,
                             headers={":status": "200", "content-type": "text/event-stream"}))
    sent: list[bytes] = []

    def passed(chunk: bytes, answer: Any) -> None:
        mutation = answer.response_body.response.body_mutation
        sent.append(chunk if not answer.response_body.response.HasField("body_mutation")
                    else b"" if mutation.clear_body else mutation.body)

    first, second, third = b'data: {"a":1}\n\ndata: {"b"', b':2}\n\ndata: {"c":3}\n\n', b"data: [DONE]\n\n"
    passed(first, handle(processor, message("response_body", metadata=meta, body=first)))
    tap = processor._tap
    assert tap is not None

    def broken(chunk: bytes) -> bytes:
        tap._framer.feed(chunk)  # the failure comes after the chunk was taken in
        raise RuntimeError("a bug in the tap")

    monkeypatch.setattr(tap, "feed", broken)
    passed(second, handle(processor, message("response_body", metadata=meta, body=second)))
    passed(third, handle(processor, message("response_body", metadata=meta, body=third, end_of_stream=True)))
    assert b"".join(sent) == first + second + third  # every byte once, in order
    event = processor.settlement()
    # Unread, but served: settled by the fallback rule (input estimate + output from the bytes), never free.
    assert processor.unreadable == "tap_error"
    assert event is not None and (event.outcome, event.estimated) == ("partial", True)
    assert event.input_tokens == GRANT.input_estimate


@pytest.mark.parametrize(("details", "rewritten"), [
    ("via_upstream", True),
    # Envoy's own replies (local_reply_config already put them in Lime's words) pass as they are.
    ("upstream_reset_before_response_started{connection_failure}", False),
    ("response_timeout", False),
    (None, True),  # Envoy did not say: treated as the upstream's
])
def test_only_the_upstreams_own_errors_are_rewritten(details: str | None, rewritten: bool) -> None:
    processor = StreamProcessor({"mock": "sk-up"}.get)
    request = message("response_headers", metadata=GRANT.to_metadata(),
                      headers={":status": "503", "content-type": "application/json"})
    if details is not None:
        request.attributes["envoy.filters.http.ext_proc"].update({"response.code_details": details})
    mutation = handle(processor, request).response_headers.response.header_mutation
    assert (":status" in headers_of(mutation)) is rewritten
    body = b'{"error":{"message":"The upstream is unavailable: connection failure","code":"upstream_unavailable"}}'
    last = handle(processor, message("response_body", metadata=GRANT.to_metadata(), body=body, end_of_stream=True))
    assert last.response_body.response.HasField("body_mutation") is rewritten


RAW_ERROR = b'{"error":{"message":"bad org-x1","type":"invalid_request_error","param":"messages","code":"c"}}'


@pytest.mark.parametrize(("encoding", "body", "readable"), [
    ("gzip", gzip.compress(RAW_ERROR), True),
    ("compress", RAW_ERROR, False),  # a coding Lime does not decode: a generic message, never the raw bytes
    ("gzip", gzip.compress(b"x" * 200_000), False),  # decodes past what an error body may be: generic
], ids=["gzip", "unknown-coding", "too-large"])
def test_a_compressed_upstream_error_is_decoded_or_answered_generically(encoding: str, body: bytes,
                                                                       readable: bool) -> None:
    processor = StreamProcessor({"mock": "sk-up"}.get)
    meta = GRANT.to_metadata()
    handle(processor, message("response_headers", metadata=meta,
                              headers={":status": "400", "content-encoding": encoding}))
    last = handle(processor, message("response_body", metadata=meta, body=body, end_of_stream=True))
    error = json.loads(last.response_body.response.body_mutation.body)["error"]
    if readable:
        assert error["message"] == "bad [redacted]" and error["param"] == "messages"
    else:
        assert error["message"].startswith("The upstream refused this request (HTTP 400)")
