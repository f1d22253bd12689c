"""One ext_proc stream: the decisions per phase, apart from the gRPC loop that carries them.

Envoy sends request headers, then the BUFFERED request body, then response headers and the STREAMED response
body chunk by chunk; each message gets exactly one answer of the matching kind (ENVOY-NOTES pitfall 5). An answer
read whole (extproc/answer_modes.py) is one message instead: its body, with its status and headers as attributes;
the header edit goes back as metadata for Envoy's ``lime.answer_headers`` filter.

A request phase without a grant means authz's metadata did not arrive (a misconfigured Envoy, or authz and
extproc of different versions): the request is refused, never sent on with the client's key. Response phases
without a grant are local replies (authz denied, or Envoy answered itself) and pass untouched.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from extproc.answer_modes import reads_whole_answer
from extproc.error_answers import ErrorAnswer
from extproc.response_headers import hidden_response_headers
from extproc.rewrite import CredentialLookup, rewrite_headers, rewrite_request
from extproc.stream_modes import envoy_edits_stream, handoff_metadata, hands_off, observed_answer, stream_edit_metadata
from lime.envoy import api as envoy_api
from lime.money.grant import Grant
from lime.money.response_record import ResponseRecord, record_of
from lime.money.settlement import settlement_for
from lime.money.usage_event import UsageEvent
from lime.protocols.endpoints import PASSED_RESPONSE_HEADERS, Protocol, endpoint_named, endpoint_protocol
from lime.protocols.error_bodies import ErrorReply, render_error
from lime.protocols.errors import LimeError, UpstreamError
from lime.protocols.response_tap import ResponseTap
from lime.protocols.upstream_errors import client_status, is_upstream_error

if TYPE_CHECKING:
    from extproc.request_metrics import Ending  # request_metrics reads a StreamProcessor

__all__ = ["StreamProcessor"]

log = logging.getLogger(__name__)

#: Set on the response by each upstream cluster (envoy/clusters.yaml); never reaches the client.
SERVED_BY_HEADER = "x-lime-upstream"
_RESPONSE_PHASES = frozenset({"response_headers", "response_body", "response_trailers"})


class StreamProcessor:
    def __init__(self, credential_for: CredentialLookup) -> None:
        self._credential_for = credential_for
        self._grant: Grant | None = None
        self._metadata_seen = False
        self._request_headers: list[str] = []
        self._tap: ResponseTap | None = None
        #: The answer comes whole, in one body message without a headers message before it.
        self._whole_answer = False
        self._hide_usage_chunk = False
        #: Set when the upstream answered an error: its body is replaced by Lime's (extproc/error_answers.py).
        self._error_answer: ErrorAnswer | None = None
        #: Envoy's ``lime.stream_bytes`` edits this stream's bytes (extproc/stream_modes.py): the tap only reads.
        self._envoy_edits = False
        #: This stream ends at the response headers: Envoy's observing tap reads (and settles) the answer.
        self.handed_off = False
        #: This is that observing tap's stream (ext_proc observability mode): Envoy reads no reply to it.
        self.observing = False
        #: Envoy's word that the observed answer was cut, and by whom (extproc/stream_cuts.py), once it came.
        self.cut: Ending | None = None
        #: What the metrics read once the stream is over.
        self.refusal: LimeError | None = None
        self.forwarded = False
        self.response_status: int | None = None
        #: The candidate that answered, as its Envoy cluster names itself (x-lime-upstream); None: not named.
        self.served_by: str | None = None
        self.first_byte_at: float | None = None
        self.end_of_stream = False
        #: Envoy will send nothing more on this stream: the answer has ended, or the request was refused.
        self.finished = False
        #: The stored-response record already handed out (lime.money.response_records), so it is written once.
        self._recorded = False

    def handle(self, request: Any, phase: str) -> Any:
        """The answer to one message; ``phase`` is its ``request`` oneof (the caller has read it already)."""
        try:
            return self._handle(request, phase)
        except Exception:
            if phase in _RESPONSE_PHASES:
                return self._tap_failed(phase)
            # A bug must not pass the request on unprocessed: refuse it, and say so in the log.
            request_id = self._grant.request_id if self._grant else "?"
            log.exception("extproc bug while processing request %s", request_id)
            return self._refuse(LimeError("The gateway failed to process this request."))

    def _handle(self, request: Any, phase: str) -> Any:
        if not self._metadata_seen:
            # Metadata rides on every message; decoding it once per stream is enough.
            self._metadata_seen = True
            self._grant = envoy_api.grant_of(request)
            if request.observability_mode:
                self._observe(request)
        if self.observing:
            return self._observed(request, phase)
        if phase == "request_headers":
            if self._grant is None:
                return self._missing_grant()
            self._request_headers = envoy_api.header_names(request.request_headers)
            spec = endpoint_named(self._grant.endpoint)
            if spec is not None and not spec.has_body:
                # No body will follow (or none that matters: the lifecycle's are empty): route it now. Its answer
                # streams as before (reads_whole_answer leaves body-less requests out).
                return self._bodiless_request()
            if reads_whole_answer(self._grant):
                self._whole_answer = True
                return envoy_api.whole_answer_ordered(self._passed_headers(), client_status(0))
            return envoy_api.ACK_REQUEST_HEADERS
        if phase == "request_body":
            if self.forwarded:
                return envoy_api.ACK_REQUEST_BODY  # routed with its headers already
            return self._request_body(request.request_body.body)
        if phase == "response_headers":
            self.finished = request.response_headers.end_of_stream
            return self._response_headers(request.response_headers, envoy_api.is_local_reply(request))
        if phase == "response_body":
            if self._whole_answer and self.response_status is None:
                return self._whole(request)
            return self._response_body(request.response_body.body, request.response_body.end_of_stream)
        if phase == "request_trailers":
            return envoy_api.ACK_REQUEST_TRAILERS
        return envoy_api.ACK_RESPONSE_TRAILERS

    def _observe(self, request: Any) -> None:
        """The first message of the observing tap's stream: the answer as extproc's word at its headers left it."""
        self.observing = True
        answer = observed_answer(envoy_api.extproc_word(request))
        grant = self._grant
        if grant is None or answer is None:
            log.error("the stream tap got a stream without authz's grant or extproc's word (check metadata "
                      "forwarding of lime.stream_tap): not read, the reaper settles it")
            self._grant, self.finished = None, True
            return
        self.forwarded = True
        self.response_status, self.served_by = answer.status, answer.served_by
        self._hide_usage_chunk = answer.hide_usage_chunk
        self._tap = ResponseTap(grant.endpoint, grant.model, hide_usage_chunk=answer.hide_usage_chunk)
        # What hands_off required of the headers: a successful SSE answer, uncompressed.
        self._tap.start(answer.status, "text/event-stream")
        self._envoy_edits = True

    def _observed(self, request: Any, phase: str) -> Any:
        """A message of the observed answer read: its headers (they open the stream: nothing to read in them, extproc
        read them already), a chunk, or the trailers that end it. The reply is never sent (the caller checks)."""
        if self.finished:
            return envoy_api.ACK_RESPONSE_BODY
        if phase == "response_body":
            self._response_body(request.response_body.body, request.response_body.end_of_stream)
        elif phase == "response_trailers":
            self._response_body(b"", True)
        if self._tap is not None and self._tap.complete:
            # The protocol's own end ([DONE], message_stop): nothing after it changes the settlement, and an SDK
            # that hangs up right there leaves Envoy's end of stream unsent (a DC after the whole answer).
            self.finished = True
        return envoy_api.ACK_RESPONSE_BODY

    def _request_body(self, body: bytes) -> Any:
        grant = self._grant
        if grant is None:
            return self._missing_grant()
        try:
            edit = rewrite_request(grant, body, self._credential_for, self._request_headers)
        except LimeError as error:
            if error.status >= 500:
                log.error("request %s refused: %s", grant.request_id, error.message)
            return self._refuse(error)
        self._hide_usage_chunk = edit.hide_usage_chunk
        self.forwarded = True
        return envoy_api.request_body_rewrite(
            edit.body, set_headers=edit.set_headers, remove_headers=edit.remove_headers)

    def _bodiless_request(self) -> Any:
        grant = self._grant
        assert grant is not None
        try:
            edit = rewrite_headers(grant, self._credential_for, self._request_headers)
        except LimeError as error:
            log.error("request %s refused: %s", grant.request_id, error.message)
            return self._refuse(error)
        self.forwarded = True
        return envoy_api.request_headers_rewrite(set_headers=edit.set_headers, remove_headers=edit.remove_headers)

    def _passed_headers(self) -> frozenset[str]:
        spec = endpoint_named(self._grant.endpoint) if self._grant is not None else None
        return spec.response_headers if spec is not None else PASSED_RESPONSE_HEADERS

    def _response_headers(self, headers: Any, local_reply: bool = False) -> Any:
        if self._grant is None:
            return envoy_api.ACK_RESPONSE_HEADERS  # a local reply: Envoy's or authz's own words
        values = envoy_api.header_values(headers)
        try:
            status = int(values.get(":status", "0"))
        except ValueError:
            status = 0
        try:
            edit = self._answer_begins(status, values, local_reply)
        except Exception:
            if local_reply or not is_upstream_error(status):
                raise
            return envoy_api.immediate_response(self._generic_error(status))
        if self._error_answer is not None and headers.end_of_stream:
            # No body will follow to carry Lime's: Envoy answers with this one instead.
            return envoy_api.immediate_response(self._error_answer.reply())
        metadata = None
        grant, tap = self._grant, self._tap
        if tap is not None and self._error_answer is None and envoy_edits_stream(tap):
            self._envoy_edits = True
            if hands_off(grant, tap) and not headers.end_of_stream:
                self.handed_off = self.finished = True
                return envoy_api.stream_handed_off(edit[0], handoff_metadata(
                    grant.model, self._hide_usage_chunk, status, self.served_by))
            metadata = stream_edit_metadata(grant.model, self._hide_usage_chunk)
        return envoy_api.response_headers_edit(edit[0], set_headers=edit[1], metadata=metadata)

    def _answer_begins(self, status: int, values: dict[str, str],
                       local_reply: bool) -> tuple[list[str], dict[str, str]]:
        """What the answer's headers say: the tap (or the error answer) that reads its body, and the headers to
        remove and to set."""
        grant = self._grant
        assert grant is not None
        self.response_status = status
        self.served_by = values.get(SERVED_BY_HEADER)
        self._tap = ResponseTap(grant.endpoint, grant.model, hide_usage_chunk=self._hide_usage_chunk)
        self._tap.start(status, values.get("content-type", ""), values.get("content-encoding", ""))
        passed = self._passed_headers()
        if self._tap.decodes:
            # The client gets the answer decoded (the upstream ignored accept-encoding: identity).
            passed = passed - {"content-encoding"}
        hidden = hidden_response_headers(values, passed)
        # Envoy's own replies (upstream unreachable, timed out) are already Lime's words: only the upstream's change.
        if not is_upstream_error(status) or local_reply:
            return hidden, {}
        # An upstream error: never passed on as the upstream wrote it (lime.protocols.upstream_errors).
        protocol = endpoint_protocol(grant.endpoint)
        credential = self._credential_for(grant.upstream)
        answer = self._error_answer = ErrorAnswer(
            status, values, protocol, public_model=grant.model, upstream_model=grant.upstream_model,
            secrets=(credential,) if credential else (), request_id=grant.request_id)
        set_headers, removed = answer.header_edit()
        return [*hidden, *removed], set_headers

    def _generic_error(self, status: int) -> ErrorReply:
        """Never the upstream's error as it came (handle() would pass it on): a generic one instead."""
        grant = self._grant
        assert grant is not None
        log.exception("could not rewrite the upstream's %d for request %s", status, grant.request_id)
        generic = UpstreamError("The gateway's upstream could not answer this request.", upstream_status=status,
                                status=client_status(status))
        return render_error(generic, endpoint_protocol(grant.endpoint), grant.request_id)

    def _whole(self, request: Any) -> Any:
        """The whole answer in one message: what its headers would have started, then its body, in one reply."""
        message = request.response_body
        self.end_of_stream = self.finished = message.end_of_stream
        if self._grant is None:
            return envoy_api.ACK_RESPONSE_BODY
        status, values = envoy_api.answer_headers(request)
        try:
            edit = self._answer_begins(status, values, envoy_api.is_local_reply(request))
        except Exception:
            reply = self._generic_error(status)
            return envoy_api.whole_answer_edit(reply.body, (), {":status": str(reply.status), **dict(reply.headers)})
        remove, set_headers = edit
        empty = envoy_api.EMPTY_ANSWER in values
        out = self._response_body(b"" if empty else message.body, message.end_of_stream)
        body = b"" if empty else None  # never the byte lime.answer_body put there
        if out.response_body.response.HasField("body_mutation"):
            mutation = out.response_body.response.body_mutation
            body = b"" if mutation.clear_body else mutation.body
        return envoy_api.whole_answer_edit(body, remove, set_headers)

    def _response_body(self, chunk: bytes, end_of_stream: bool) -> Any:
        if self.first_byte_at is None and chunk:
            self.first_byte_at = time.time()
        self.end_of_stream = self.finished = end_of_stream
        if self._error_answer is not None:
            return envoy_api.response_body_replace(self._error_answer.feed(chunk, end_of_stream))
        tap = self._tap
        if tap is None:
            return envoy_api.ACK_RESPONSE_BODY
        before = tap.checkpoint()
        try:
            out = tap.feed(chunk)
            if end_of_stream:
                out += tap.finish()
        except Exception:
            # A bug in the tap must not break a stream the client is receiving: what it held before this chunk,
            # then the chunk, go on untouched, and so does the rest. The tap stays, reading nothing more but
            # counting the bytes, and the request settles by the rule for unreadable answers (never free).
            log.exception("response tap failed for request %s; passing the rest through untouched",
                          self._grant.request_id if self._grant else "?")
            out = tap.release(before) + chunk
        if out == chunk or self._envoy_edits:
            # Envoy makes the same edit itself (lime.stream_bytes): the chunk goes on unchanged from here.
            return envoy_api.ACK_RESPONSE_BODY
        return envoy_api.response_body_replace(out)

    @property
    def grant(self) -> Grant | None:
        return self._grant

    @property
    def answer_complete(self) -> bool:
        """The answer ended as its protocol says an answer ends (the tap's word; Envoy's when the tap gave up)."""
        tap = self._tap
        return tap.complete if tap is not None and tap.unreadable is None else self.end_of_stream

    @property
    def unreadable(self) -> str | None:
        """Why a successful answer could not be read (the tap's reason), or ``None``."""
        tap = self._tap
        return tap.unreadable if tap is not None and 200 <= tap.status < 300 else None

    @property
    def answer_failed(self) -> bool:
        """The upstream reported an error inside a successful answer (an ``error`` event)."""
        return self._tap.failed if self._tap is not None else False

    def record_due(self, *, ended: bool = False) -> ResponseRecord | None:
        """The stored-response record this answer makes, once, as soon as it is known: a Responses answer's once
        its usage is final (the caller writes it before the answer's last bytes go on), else at the end
        (``ended``) with what was settled; a lifecycle DELETE the upstream confirmed leaves a tombstone."""
        grant, tap = self._grant, self._tap
        if self._recorded or grant is None or tap is None or not 200 <= tap.status < 300 or tap.failed:
            return None
        spec = endpoint_named(grant.endpoint)
        if spec is None:
            return None
        if spec.deletes_stored_answer and grant.response_id and (self.finished or ended):
            self._recorded = True
            return ResponseRecord(grant.response_id, grant.tenant_id, grant.key_id, grant.upstream,
                                  grant.candidate, grant.model, grant.upstream_model, 0, grant.started_at,
                                  deleted=True, request_id=grant.request_id)
        if not spec.records_answers or tap.answer_id is None or not (tap.usage_final or ended):
            return None
        self._recorded = True
        # The context a continuation carries is what this answer was billed for: its input and output.
        context = settlement_for(grant, tap, forwarded=True).tokens
        return record_of(grant, tap.answer_id, served_by=self.served_by, context_tokens=context,
                         stored=tap.answer_stored)

    def settlement(self) -> UsageEvent | None:
        """How this request settles, once its stream is over (or cut); ``None`` for a local reply."""
        if self._grant is None:
            return None
        return settlement_for(self._grant, self._tap, forwarded=self.forwarded)

    def _tap_failed(self, phase: str) -> Any:
        """A bug in the tap must not break a stream the client is receiving: the rest passes through as is."""
        request_id = self._grant.request_id if self._grant else "?"
        log.exception("response tap failed for request %s; passing the rest through untouched", request_id)
        if self._tap is not None:
            self._tap.release()  # reads nothing more; settles by the rule for unreadable answers
        if phase == "response_headers":
            return envoy_api.ACK_RESPONSE_HEADERS
        if phase == "response_body":
            # Past the tap (its own failures are handled in _response_body): the chunk goes on as it came.
            return envoy_api.ACK_RESPONSE_BODY
        return envoy_api.ACK_RESPONSE_TRAILERS

    def _missing_grant(self) -> Any:
        log.error("a request reached extproc without authz metadata: refused (check metadata forwarding)")
        return self._refuse(LimeError("The gateway is misconfigured and cannot process this request."))

    def _refuse(self, error: LimeError) -> Any:
        self.refusal = error
        self.finished = True
        grant = self._grant
        protocol = endpoint_protocol(grant.endpoint) if grant else Protocol.OPENAI
        return envoy_api.immediate_response(render_error(error, protocol, grant.request_id if grant else None))
