"""The response tap, sans-IO: what the upstream sends goes in chunk by chunk, what the client gets comes out.

On the way it does three things and nothing else:

* **model id**: the upstream names its own model (often a dated snapshot, ``gpt-4o-mini-2024-07-18``); the
  client must see the public id it asked for. The first string ``"model"`` field of the answer tells which id the
  upstream reports; every ``"model": "<that id>"`` field is then rewritten, in place, byte for byte otherwise.
  (``"model"`` cannot occur inside a JSON string unescaped, so a match is always a real field.)
* **usage**: read from the protocol's own place (final chat chunk, ``response.completed``, ``message_start`` +
  ``message_delta``, the JSON body) into one :class:`~lime.protocols.usage.Usage`.
* **the usage chunk the client did not ask for**: when the gateway added ``stream_options.include_usage`` to a
  chat stream, the extra ``"choices": []`` chunk and the ``"usage": null`` fields are taken out again.

Streams go out event by event: bytes of an event still in flight are held until its blank line arrives, never
longer. A JSON body is held whole (it is rewritten as one document) and released at the end. Error answers
(non-2xx) and bodies of any other type pass through untouched.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from enum import Enum

from lime.protocols.content_encoding import Decoder, decoder_for, is_identity
from lime.protocols.endpoints import endpoint_named
from lime.protocols.output_count import OutputCount
from lime.protocols.sse import EventFramer, SSEEvent, parse_event
from lime.protocols.stream_readers import loads_object, read_answer_id
from lime.protocols.usage import Usage, with_body_facts

__all__ = ["Framing", "ResponseTap"]

log = logging.getLogger(__name__)

_MODEL_FIELD = re.compile(rb'("model"\s*:\s*)"((?:[^"\\]|\\.)*)"')

class Framing(Enum):
    SSE = "sse"
    JSON = "json"
    #: Anything the tap does not read: errors and unknown content types pass through as they are.
    OPAQUE = "opaque"


def framing_for(status: int, content_type: str) -> Framing:
    if not 200 <= status < 300:
        return Framing.OPAQUE
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "text/event-stream":
        return Framing.SSE
    if media_type == "application/json":
        return Framing.JSON
    return Framing.OPAQUE


class ResponseTap:
    def __init__(self, endpoint: str, public_model: str, *, hide_usage_chunk: bool = False) -> None:
        self.endpoint = endpoint
        # How this endpoint's answers are read (its spec, lime.protocols.endpoints); a name Lime does not serve
        # reads nothing: its bodies pass, only the model id is rewritten.
        spec = endpoint_named(endpoint)
        self._stream_reader = spec.stream_reader if spec else None
        self._json_usage = spec.json_usage if spec else None
        self._events_named_by_type = spec.events_named_by_type if spec else False
        self._records_answers = spec.records_answers if spec else False
        self.framing = Framing.OPAQUE
        self.status = 0
        self.usage: Usage | None = None
        #: The usage is the upstream's final word (chat's usage chunk, ``response.*`` end, ``message_delta``, a
        #: JSON body), not Anthropic's provisional ``message_start`` count.
        self.usage_final = False
        #: The protocol's own end was seen (``[DONE]``, ``message_stop``, ``response.completed``, a whole JSON).
        self.complete = False
        #: The upstream reported an error inside a 200 stream (``event: error``, ``response.failed``).
        self.failed = False
        #: Events that reached the client; 0 means the client got nothing of an answer.
        self.events = 0
        self._public_model = json.dumps(public_model).encode()
        self._reported_model: bytes | None = None
        #: The gateway asked a chat stream for usage the client did not ask for: hide it again.
        self.hide_usage_chunk = hide_usage_chunk
        self._framer = EventFramer()
        self._held: list[bytes] = []
        #: Events or bodies the tap failed to read (a bug or an input it did not foresee); they passed untouched.
        self.errors = 0
        #: The data of every event (or the JSON body) the client received, so that an answer cut off before its
        #: usage can still be counted at the end; held raw, and folded to its text only once it grows large.
        self.output = OutputCount(endpoint)
        #: Why a successful (2xx) answer could not be read, if it could not: ``content_type`` (neither SSE nor
        #: JSON), ``encoding`` (a content-encoding Lime does not decode), ``body`` (a JSON body that is not JSON),
        #: ``tap_error`` (the tap gave up). Such an answer settles by the fallback rule (docs/billing.md), never 0.
        self.unreadable: str | None = None
        #: Bytes of body the upstream sent, as sent (compressed, if it was): the fallback rule counts them.
        self.body_bytes = 0
        #: The body's end arrived (Envoy's end of stream), whether or not the protocol's own end was in it.
        self.ended = False
        #: A 2xx JSON body that is an error object (a relay's way of failing): no answer, nothing charged.
        self.error_body = False
        self._decoder: Decoder | None = None
        #: The id the upstream gave this answer, where it may store it (Responses), and whether it says it did.
        self.answer_id: str | None = None
        self.answer_stored = True

    @property
    def decodes(self) -> bool:
        """The answer came compressed and the client gets it decoded: its ``content-encoding`` must go."""
        return self._decoder is not None

    def start(self, status: int, content_type: str, content_encoding: str = "") -> None:
        """The response headers: how the body that follows is framed, and whether it must be decoded."""
        self.status = status
        self.framing = framing_for(status, content_type)
        if not 200 <= status < 300:
            return
        if self.framing is Framing.OPAQUE:
            self.unreadable = "content_type"
        elif not is_identity(content_encoding):
            self._decoder = decoder_for(content_encoding)
            if self._decoder is None:
                self.framing, self.unreadable = Framing.OPAQUE, "encoding"

    def feed(self, chunk: bytes) -> bytes:
        """One chunk from the upstream; returns the bytes to send to the client now."""
        self.body_bytes += len(chunk)
        if self._decoder is not None:
            chunk = self._decoder.decode(chunk)
        return self._framed(chunk)

    def _framed(self, chunk: bytes) -> bytes:
        if self.framing is Framing.SSE:
            return b"".join([self._event(raw) for raw in self._framer.feed(chunk)])
        if self.framing is Framing.JSON:
            self._held.append(chunk)
            return b""
        return chunk

    def finish(self) -> bytes:
        """The end of the body; returns what is still to send."""
        self.ended = True
        out = self._framed(self._decoder.flush()) if self._decoder is not None else b""
        return out + self._rest()

    def _rest(self) -> bytes:
        if self.framing is Framing.SSE:
            rest = self._framer.flush()
            return self._event(rest) if rest.strip() else rest
        if self.framing is Framing.JSON:
            body, self._held = b"".join(self._held), []
            return self._json_body(body)
        return b""

    def checkpoint(self) -> tuple[int, bytes]:
        """What is held right now, in O(1), for :meth:`release` after a chunk that could not be handled."""
        return len(self._held), self._framer.pending_bytes

    def release(self, checkpoint: tuple[int, bytes] | None = None) -> bytes:
        """Give up: the bytes held (as of ``checkpoint``, when given), untouched, for the caller to pass on."""
        if checkpoint is None:
            held = b"".join(self._held) + self._framer.flush()
        else:
            count, pending = checkpoint
            held = b"".join(self._held[:count]) + pending
            self._framer.flush()
        self._held = []
        self.framing = Framing.OPAQUE
        self.unreadable = self.unreadable or "tap_error"
        return held

    # -- model ids ---------------------------------------------------------------------------------------------

    def _rewrite_model(self, raw: bytes) -> bytes:
        if b'"model"' not in raw:
            return raw
        if self._reported_model is None:
            first = _MODEL_FIELD.search(raw)
            if first is None:
                return raw
            self._reported_model = first.group(2)
        reported = self._reported_model

        def swap(match: re.Match[bytes]) -> bytes:
            return match.group(1) + self._public_model if match.group(2) == reported else match.group(0)

        return _MODEL_FIELD.sub(swap, raw)

    # -- SSE ---------------------------------------------------------------------------------------------------

    def _event(self, raw: bytes) -> bytes:
        return self._guarded(self._read_event, raw)

    def _guarded(self, read: Callable[[bytes], bytes], raw: bytes) -> bytes:
        """Reading must never cost the client its bytes: what cannot be read is passed on as it came, counted."""
        try:
            return read(raw)
        except Exception:
            self.errors += 1
            self.events += 1
            log.exception("response tap could not read part of a %s answer; passed on as is", self.endpoint)
            return raw

    def _read_event(self, raw: bytes) -> bytes:
        event = parse_event(raw)
        data = event.data
        if data is None:
            return raw
        if event.name is None and self._events_named_by_type:
            # Some relays send only `data:` lines; these protocols repeat the event's name as its `type`.
            event = SSEEvent(_type_of(data), data)
        if self._stream_reader is not None:
            kept = self._stream_reader(self, event, raw)
            if kept is None:
                return b""
            raw = kept
        self.events += 1
        self.output.add(data)
        return self._rewrite_model(raw)

    # -- JSON --------------------------------------------------------------------------------------------------

    def _json_body(self, body: bytes) -> bytes:
        return self._guarded(self._read_json_body, body)

    def _read_json_body(self, body: bytes) -> bytes:
        document = loads_object(body)
        if document is None:
            self.unreadable = "body"
            return body
        self.complete = True
        if _is_error_object(document):
            # A relay that answers its errors with a 200: an upstream error all the same, and no answer.
            self.failed = self.error_body = True
            return self._rewrite_model(body)
        self.events = 1
        self.output.add(body)
        if self._records_answers:
            read_answer_id(self, document)
        if self._json_usage is not None:
            self.usage = with_body_facts(self._json_usage(document.get("usage")), document)
            self.usage_final = self.usage is not None
        return self._rewrite_model(body)


def _is_error_object(document: dict[str, object]) -> bool:
    """An error in either protocol's shape (OpenAI ``{"error": {...}}``, Anthropic ``{"type": "error"}``) and
    nothing of an answer beside it."""
    if "usage" in document:
        return False
    return isinstance(document.get("error"), dict) or document.get("type") == "error"


_TYPE_FIELD = re.compile(rb'"type"\s*:\s*"([^"\\]{1,100})"')


def _type_of(data: bytes) -> str | None:
    """The first ``"type"`` of an event's JSON, which leads in both Responses and Messages events."""
    match = _TYPE_FIELD.search(data)
    return match.group(1).decode("ascii", "replace") if match else None

