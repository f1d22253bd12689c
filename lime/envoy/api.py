"""The only module that touches Envoy's generated message classes (protobuf/upb, from ``xds-protos``): ext_proc's
and the access log service's. (authz speaks Envoy's HTTP ext_authz mode: lime/envoy/authz_http.py.)

DESIGN.md: upb parses and serialises an Envoy message in ~1 µs where envoy-data-plane's betterproto2 takes
100-500 µs, so the request path uses upb, and this module keeps the generated names out of everything else.
Services read requests through the small views below and build responses with the helpers.

An Envoy quirk is encoded here so nobody has to remember it (ENVOY-NOTES pitfall 1): ext_proc header mutations
must carry ``raw_value`` (bytes).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.accesslog.v3 import als_pb2 as als_pb
from envoy.service.ext_proc.v3 import external_processor_pb2 as proc_pb

from lime.money.grant import PACKED_KEY, Grant
from lime.protocols.error_bodies import ErrorReply

__all__ = [
    "ACCESS_LOG_METHOD",
    "ACCESS_LOG_RECEIVED",
    "ANSWER_HEADERS",
    "ANSWER_NAMESPACE",
    "AUTHZ_NAMESPACE",
    "EMPTY_ANSWER",
    "EXTPROC_NAMESPACE",
    "OBSERVE_HEADER",
    "PROCESS_METHOD",
    "AccessLogEntry",
    "Grant",
    "ProcessingRequest",
    "ProcessingResponse",
    "access_log_entries",
    "access_log_name",
    "als_pb",
    "answer_headers",
    "extproc_word",
    "grant_of",
    "header_names",
    "header_values",
    "immediate_response",
    "is_local_reply",
    "proc_pb",
    "request_body_rewrite",
    "request_headers_rewrite",
    "response_body_replace",
    "response_headers_edit",
    "stream_handed_off",
    "whole_answer_edit",
    "whole_answer_ordered",
]

#: Where Envoy puts the ``dynamic_metadata`` of an ext_authz CheckResponse (it cannot be chosen).
AUTHZ_NAMESPACE = "envoy.filters.http.ext_authz"

ProcessingRequest = proc_pb.ProcessingRequest
ProcessingResponse = proc_pb.ProcessingResponse
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def header_names(headers: Any) -> list[str]:
    """The (lower-case) names in an ext_proc HttpHeaders message."""
    return [h.key for h in headers.headers.headers]


def header_values(headers: Any) -> dict[str, str]:
    """An ext_proc HttpHeaders message as a dict; Envoy sends values in ``raw_value`` (pitfall 1)."""
    return {h.key: h.raw_value.decode("utf-8", "replace") or h.value for h in headers.headers.headers}


#: Where Envoy puts the attributes an ext_proc filter asks for (``response_attributes`` in envoy.yaml).
EXT_PROC_NAMESPACE = "envoy.filters.http.ext_proc"
#: ``response.code_details`` of an answer that came from the upstream (anything else is Envoy's local reply).
VIA_UPSTREAM = "via_upstream"


def is_local_reply(request: Any) -> bool:
    """Whether a response phase carries Envoy's own reply rather than the upstream's; ``False`` when Envoy did not
    say (the attribute is not configured): then it is treated as the upstream's."""
    attributes = request.attributes
    if EXT_PROC_NAMESPACE not in attributes:
        return False
    details = attributes[EXT_PROC_NAMESPACE].fields.get("response.code_details")
    if details is None or details.WhichOneof("kind") != "string_value":
        return False
    return str(details.string_value) != VIA_UPSTREAM


#: The upstream response headers (and status) extproc reads when it skips an answer's headers message: its body's
#: format, the candidate that answered, and the retry advice an error keeps. Envoy gives ext_proc no response header
#: attributes then, so ``lime.answer_headers`` copies these into :data:`ANSWER_NAMESPACE`, forwarded with the body.
ANSWER_HEADERS = (":status", "content-type", "content-encoding", "x-lime-upstream", "retry-after", "retry-after-ms")
#: Set in :data:`ANSWER_NAMESPACE` by ``lime.answer_body`` when the answer had no body: the one byte it carries
#: instead (so that ext_proc sends it at all) is not the upstream's.
EMPTY_ANSWER = "empty"
ANSWER_NAMESPACE = "lime.answer"


def answer_headers(request: Any) -> tuple[int, dict[str, str]]:
    """The status and the :data:`ANSWER_HEADERS` of an answer whose headers message ext_proc skipped; status 0 when
    they did not come."""
    filter_metadata = request.metadata_context.filter_metadata
    if ANSWER_NAMESPACE not in filter_metadata:
        return 0, {}
    headers = {name: value.string_value for name, value in filter_metadata[ANSWER_NAMESPACE].fields.items()
               if value.HasField("string_value")}
    try:
        return int(headers.get(":status", "0")), headers
    except ValueError:
        return 0, headers


def grant_of(request: Any) -> Grant | None:
    """The grant authz attached to this stream, if Envoy forwarded it (only its packed value is read)."""
    filter_metadata = request.metadata_context.filter_metadata
    if AUTHZ_NAMESPACE not in filter_metadata:
        return None
    value = filter_metadata[AUTHZ_NAMESPACE].fields.get(PACKED_KEY)
    return Grant.unpack(value.string_value) if value is not None and value.HasField("string_value") else None


def extproc_word(request: Any) -> dict[str, str]:
    """What extproc wrote in ``lime.extproc`` earlier in this request, as Envoy forwards it (string values only)."""
    filter_metadata = request.metadata_context.filter_metadata
    if EXTPROC_NAMESPACE not in filter_metadata:
        return {}
    return {name: value.string_value for name, value in filter_metadata[EXTPROC_NAMESPACE].fields.items()
            if value.HasField("string_value")}


def _header_mutation(target: Any, set_headers: Mapping[str, str], remove: Iterable[str]) -> None:
    for name, value in set_headers.items():
        target.set_headers.append(base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=name, raw_value=value.encode()), append_action=_OVERWRITE))
    target.remove_headers.extend(remove)


def request_body_rewrite(body: bytes, *, set_headers: Mapping[str, str], remove_headers: Iterable[str],
                         clear_route_cache: bool = True) -> Any:
    """The answer to a BUFFERED request body: new body, its content-length, header edits, re-route."""
    response = proc_pb.ProcessingResponse()
    common = response.request_body.response
    common.body_mutation.body = body
    # ENVOY-NOTES pitfall 3: a rewritten body without a matching content-length is a 500.
    _header_mutation(common.header_mutation, {**set_headers, "content-length": str(len(body))}, remove_headers)
    common.clear_route_cache = clear_route_cache
    return response


def request_headers_rewrite(*, set_headers: Mapping[str, str], remove_headers: Iterable[str]) -> Any:
    """The answer to the request headers of a request without a body: header edits, and re-route."""
    response = proc_pb.ProcessingResponse()
    common = response.request_headers.response
    _header_mutation(common.header_mutation, set_headers, remove_headers)
    common.clear_route_cache = True
    return response


def response_headers_edit(remove_headers: Iterable[str], set_headers: Mapping[str, str] | None = None,
                          metadata: Mapping[str, str] | None = None) -> Any:
    """Remove (and set) response headers; ``set_headers`` may hold ``:status`` (ext_proc may change it).
    ``metadata``: extproc's word to Envoy's filters for the rest of the answer (``lime.extproc``)."""
    remove = list(remove_headers)
    if not remove and not set_headers and not metadata:
        return ACK_RESPONSE_HEADERS
    response = proc_pb.ProcessingResponse()
    common = response.response_headers.response
    common.SetInParent()
    _header_mutation(common.header_mutation, set_headers or {}, remove)
    if metadata:
        response.dynamic_metadata.update({EXTPROC_NAMESPACE: dict(metadata)})
    return response


#: Where extproc's word to Envoy's ``lime.answer_headers`` filter goes (``receiving_namespaces`` in envoy.yaml).
EXTPROC_NAMESPACE = "lime.extproc"
_MODE = processing_mode_pb2.ProcessingMode
#: An answer read whole: its headers skipped, its body in one message; the request side as configured.
_WHOLE_ANSWER_MODE = _MODE(request_header_mode=_MODE.SEND, request_body_mode=_MODE.BUFFERED,
                           request_trailer_mode=_MODE.SKIP, response_header_mode=_MODE.SKIP,
                           response_body_mode=_MODE.BUFFERED, response_trailer_mode=_MODE.SKIP)


#: A stream handed to the observing tap: extproc's own ext_proc sends no chunk (the request side is over already).
_OBSERVED_STREAM_MODE = _MODE(request_header_mode=_MODE.SEND, request_body_mode=_MODE.BUFFERED,
                              request_trailer_mode=_MODE.SKIP, response_header_mode=_MODE.SEND,
                              response_body_mode=_MODE.NONE, response_trailer_mode=_MODE.SKIP)
#: The response header that wakes Envoy's ``lime.stream_tap`` (its matcher); ``lime.stream_bytes`` removes it.
OBSERVE_HEADER = "x-lime-observe"


def stream_handed_off(remove_headers: Iterable[str], metadata: Mapping[str, str]) -> Any:
    """The answer to the response headers of a stream the observing tap reads from here on: the header edit, the
    mark that wakes the tap, extproc's word for it and for ``lime.stream_bytes``, and no chunk for this stream
    (``mode_override`` is honoured in the answer to a headers message, ext_proc.cc ``onReceiveMessage``)."""
    response = response_headers_edit(remove_headers, {OBSERVE_HEADER: "1"}, metadata)
    response.mode_override.CopyFrom(_OBSERVED_STREAM_MODE)
    return response


@functools.cache
def whole_answer_ordered(passed: frozenset[str], error_status: int) -> Any:
    """The reply to the request headers of a request whose answer is read whole (built once per allowlist): the
    mode for it, and what ``lime.answer_headers`` applies if no body ever reaches extproc (the allowlist, and the
    status an error without a body becomes)."""
    response = proc_pb.ProcessingResponse(request_headers=proc_pb.HeadersResponse(), mode_override=_WHOLE_ANSWER_MODE)
    response.dynamic_metadata.update({EXTPROC_NAMESPACE: {
        "answer": "whole", "read": ",".join(ANSWER_HEADERS), "pass": ",".join(sorted(passed)),
        "error_status": str(error_status)}})
    return response


def whole_answer_edit(body: bytes | None, remove_headers: Iterable[str] = (),
                      set_headers: Mapping[str, str] | None = None) -> Any:
    """The reply to the whole body of an answer: its new body (``None``: unchanged), and the header edit
    ``lime.answer_headers`` applies after the allowlist (``set_headers`` may hold ``:status``)."""
    response = proc_pb.ProcessingResponse()
    common = response.response_body.response
    common.SetInParent()  # an empty body answer is still the answer of its kind (ENVOY-NOTES pitfall 5)
    if body:
        common.body_mutation.body = body
    elif body is not None:
        common.body_mutation.clear_body = True
    response.dynamic_metadata.update({EXTPROC_NAMESPACE: {
        "remove": ",".join(remove_headers), "set": dict(set_headers or {})}})
    return response


def response_body_replace(body: bytes) -> Any:
    """Replace one STREAMED response chunk; an empty ``body`` holds the chunk back entirely."""
    response = proc_pb.ProcessingResponse()
    mutation = response.response_body.response.body_mutation
    if body:
        mutation.body = body
    else:
        mutation.clear_body = True
    return response


def immediate_response(reply: ErrorReply) -> Any:
    response = proc_pb.ProcessingResponse()
    immediate = response.immediate_response
    immediate.status.code = reply.status
    immediate.body = reply.body
    _header_mutation(immediate.headers, dict(reply.headers), ())
    return response


# The gRPC methods extproc serves (grpclib routes by path).
PROCESS_METHOD = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"
ACCESS_LOG_METHOD = "/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs"

# Plain acknowledgements, built once: an ext_proc stream answers every message, most with nothing to change.
ACK_REQUEST_HEADERS = proc_pb.ProcessingResponse(request_headers=proc_pb.HeadersResponse())
ACK_REQUEST_BODY = proc_pb.ProcessingResponse(request_body=proc_pb.BodyResponse())
ACK_RESPONSE_HEADERS = proc_pb.ProcessingResponse(response_headers=proc_pb.HeadersResponse())
ACK_RESPONSE_BODY = proc_pb.ProcessingResponse(response_body=proc_pb.BodyResponse())
ACK_REQUEST_TRAILERS = proc_pb.ProcessingResponse(request_trailers=proc_pb.TrailersResponse())
ACK_RESPONSE_TRAILERS = proc_pb.ProcessingResponse(response_trailers=proc_pb.TrailersResponse())


ACCESS_LOG_RECEIVED = als_pb.StreamAccessLogsResponse()


@dataclass(frozen=True)
class AccessLogEntry:
    request_id: str
    #: Names of the response flags set (``upstream_connection_failure``, ``downstream_remote_reset``...).
    flags: tuple[str, ...]
    status: int  # 0: no response
    upstream_cluster: str
    custom_tags: Mapping[str, str]


def access_log_name(message: Any) -> str | None:
    """The ``log_name`` of the logger sending a stream; only its first message carries it."""
    return str(message.identifier.log_name) if message.HasField("identifier") else None


def access_log_entries(message: Any) -> Iterable[AccessLogEntry]:
    """The HTTP entries of a StreamAccessLogsMessage."""
    for entry in message.http_logs.log_entry:
        common = entry.common_properties
        flags = tuple(field.name for field, value in common.response_flags.ListFields() if value is True)
        status = entry.response.response_code.value if entry.response.HasField("response_code") else 0
        yield AccessLogEntry(entry.request.request_id, flags, status, common.upstream_cluster,
                             dict(common.custom_tags))
