"""Anthropic-shaped Messages bodies for a planned :class:`~lime.devstack.mock_upstream.reply.Reply`: pure, no I/O.

As recorded (``tests/fixtures/providers``): every stream event is named with ``event:`` and there is no
``[DONE]``; ``message_start`` carries the input side of usage and a provisional ``output_tokens``, and
``message_delta`` the cumulative final usage.
"""

from __future__ import annotations

from lime.devstack.mock_upstream.bodies import JSON
from lime.devstack.mock_upstream.reply import Reply
from lime.devstack.mock_upstream.sse import sse_event

__all__ = ["anthropic_events", "anthropic_message", "anthropic_usage"]


def _anthropic_input_usage(reply: Reply) -> JSON:
    # Anthropic's input_tokens leave out what was read from the cache (fixtures README, fact 15).
    return {"input_tokens": reply.input_tokens - reply.cached_tokens, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": reply.cached_tokens}


def anthropic_usage(reply: Reply) -> JSON:
    return {
        **_anthropic_input_usage(reply),
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": reply.output_tokens,
        "service_tier": "standard",
    }


def _anthropic_stop_reason(reply: Reply) -> str:
    return "max_tokens" if reply.truncated else "end_turn"


def anthropic_message(reply: Reply) -> JSON:
    """The non-streaming ``message`` object."""
    return {
        "id": reply.response_id,
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": [{"type": "text", "text": reply.text}],
        "stop_reason": _anthropic_stop_reason(reply),
        "stop_sequence": None,
        "usage": anthropic_usage(reply),
    }


def anthropic_events(reply: Reply) -> list[bytes]:
    """message_start, content_block_start, ping, a delta a piece, content_block_stop, message_delta, message_stop."""
    # Like the API, message_start reports a provisional output count; message_delta carries the final total.
    start_usage = {**anthropic_usage(reply), "output_tokens": min(1, reply.output_tokens)}
    message: JSON = {
        "model": reply.model,
        "id": reply.response_id,
        "type": "message",
        "role": "assistant",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    events = [
        sse_event({"type": "message_start", "message": message}, "message_start"),
        sse_event(
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            "content_block_start",
        ),
        # Sent verbatim: the API's ping alone has a space after the colon.
        sse_event('{"type": "ping"}', "ping"),
    ]
    events += [
        sse_event(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
            "content_block_delta",
        )
        for piece in reply.pieces
    ]
    final_usage = {**_anthropic_input_usage(reply), "output_tokens": reply.output_tokens}
    events += [
        sse_event({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        sse_event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": _anthropic_stop_reason(reply), "stop_sequence": None},
                "usage": final_usage,
            },
            "message_delta",
        ),
        sse_event({"type": "message_stop"}, "message_stop"),
    ]
    return events
