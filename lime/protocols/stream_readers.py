"""How each streamed answer format is read, one SSE event at a time: usage, its end, and errors inside a 200.

A reader takes the tap's state, one parsed event and its raw bytes, updates the state, and returns the bytes the
client gets for that event (``None``: the client does not get it). It runs on the hot path, so it parses an
event's JSON only when a cheap look says the event matters (a usage object, an end, an error). An endpoint names
its reader in its spec (:mod:`lime.protocols.endpoints`); :class:`~lime.protocols.response_tap.ResponseTap` calls it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Protocol

from lime.protocols import fast_json
from lime.protocols.sse import SSEEvent
from lime.protocols.usage import Usage, anthropic_usage, chat_usage, responses_usage, with_body_facts

__all__ = ["StreamReader", "TapState", "loads_object", "read_answer_id", "read_chat_event", "read_messages_event",
           "read_responses_event"]

_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
_USAGE_NULL = (b',"usage":null', b'"usage":null,')
_RESPONSES_END = frozenset({"response.completed", "response.incomplete", "response.failed"})


class TapState(Protocol):
    """What a reader may learn about an answer (the tap's fields of the same names)."""

    usage: Usage | None
    #: The usage is the upstream's final word, not a provisional count (Anthropic's ``message_start``).
    usage_final: bool
    #: The protocol's own end was seen.
    complete: bool
    #: The upstream reported an error inside a 200 stream.
    failed: bool
    #: The gateway asked for usage the client did not: its traces are taken out again.
    hide_usage_chunk: bool
    #: The id under which the upstream may store this answer (Responses), and whether it says it stored it.
    answer_id: str | None
    answer_stored: bool


StreamReader = Callable[[TapState, SSEEvent, bytes], "bytes | None"]


def loads_object(data: bytes | None) -> dict[str, Any] | None:
    """A JSON object, or ``None`` for anything else (not JSON, cut off, a list)."""
    if data is None:
        return None
    try:
        value = fast_json.loads(data)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def read_chat_event(state: TapState, event: SSEEvent, raw: bytes) -> bytes | None:
    """Chat Completions: usage comes in its own chunk (``"choices": []``) before ``[DONE]``, only when asked for."""
    assert event.data is not None
    if state.hide_usage_chunk:
        for pattern in _USAGE_NULL:
            raw = raw.replace(pattern, b"")
    if event.data.strip() == b"[DONE]":
        state.complete = True
        return raw
    if _USAGE_OBJECT.search(event.data) is None:
        return raw
    chunk = loads_object(event.data)
    if chunk is None:
        return raw
    # The tier served is on every chunk; the usage chunk's is as final as any (fact 30).
    state.usage = with_body_facts(chat_usage(chunk.get("usage")), chunk) or state.usage
    state.usage_final = state.usage is not None
    # The usage-only chunk has no choices; a client that did not ask for it must not see it.
    return None if state.hide_usage_chunk and chunk.get("choices") == [] else raw


def read_responses_event(state: TapState, event: SSEEvent, raw: bytes) -> bytes | None:
    """Responses: ``response.created`` names the answer's id, the final ``response.*`` event carries the whole
    response, usage included."""
    if event.name == "error":
        state.failed = True
        return raw
    if event.name != "response.created" and event.name not in _RESPONSES_END:
        return raw
    body = loads_object(event.data)
    if body is None:  # cut off inside the final event (flushed at EOF): its end never arrived
        return raw
    response = body.get("response")
    if isinstance(response, dict):
        read_answer_id(state, response)
    if event.name == "response.created":
        return raw
    state.complete = True
    state.failed = event.name == "response.failed"
    if isinstance(response, dict):
        # Only the final response has the tier served and every tool call item (facts 29, 30).
        state.usage = with_body_facts(responses_usage(response.get("usage")), response) or state.usage
        state.usage_final = state.usage is not None
    return raw


def read_answer_id(state: TapState, response: dict[str, Any]) -> None:
    """A response object's id, and whether it was stored (``store`` defaults to true, as OpenAI's does)."""
    answer_id = response.get("id")
    if isinstance(answer_id, str) and answer_id:
        state.answer_id = answer_id
    state.answer_stored = response.get("store") is not False


def read_messages_event(state: TapState, event: SSEEvent, raw: bytes) -> bytes | None:
    """Anthropic Messages: usage spread over ``message_start`` (provisional) and ``message_delta`` (final)."""
    if event.name == "message_stop":
        # Only a whole one: an event cut off at EOF is flushed too, and a half `message_stop` is no end.
        state.complete = state.complete or loads_object(event.data) is not None
    elif event.name == "error":
        state.failed = True
    elif event.name == "message_start":
        body = loads_object(event.data)
        message = body.get("message") if body else None
        if isinstance(message, dict):
            state.usage = anthropic_usage(message.get("usage"), state.usage)
    elif event.name == "message_delta":
        body = loads_object(event.data)
        if body is not None:
            state.usage = anthropic_usage(body.get("usage"), state.usage)
            state.usage_final = state.usage is not None
    return raw
