"""Anthropic-shaped Messages bodies for a planned :class:`~lime.devstack.mock_upstream.reply.Reply`: pure, no I/O.

As recorded (``tests/fixtures/providers``): every stream event is named with ``event:`` and there is no
``[DONE]``; ``message_start`` carries the input side of usage and a provisional ``output_tokens``, and
``message_delta`` the cumulative final usage. A tool call is a ``tool_use`` block streamed as
``input_json_delta`` pieces, ending with ``stop_reason: "tool_use"`` (anthropic-messages-stream-tool-use.sse).

Thinking, from Anthropic's extended-thinking guide
(https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking): ``thinking`` and ``redacted_thinking``
blocks come before the text; a ``thinking`` block carries an opaque ``signature``; streamed, it starts as
``{"type": "thinking", "thinking": ""}``, grows by ``thinking_delta`` events and gets its signature in one
``signature_delta`` just before its ``content_block_stop``; a ``redacted_thinking`` block (encrypted ``data``)
arrives whole in its ``content_block_start``.
"""

from __future__ import annotations

import base64
import hashlib
import json

from lime.devstack.mock_upstream.bodies import JSON
from lime.devstack.mock_upstream.reply import Reply
from lime.devstack.mock_upstream.sse import sse_event
from lime.devstack.mock_upstream.turns import PLAIN, Turn, signature_for

#: What the mock "thinks", in two deltas when streamed.
THINKING = ("Let me think about this ", "step by step.")

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


def _anthropic_stop_reason(reply: Reply, turn: Turn) -> str:
    if turn.tool_call is not None:
        return "tool_use"
    return "max_tokens" if reply.truncated else "end_turn"


def _blocks(reply: Reply, turn: Turn) -> list[JSON]:
    """The whole content blocks of the answer, in order."""
    blocks: list[JSON] = []
    if turn.thinking:
        text = "".join(THINKING)
        blocks.append({"type": "thinking", "thinking": text, "signature": signature_for(reply.response_id + text)})
    if turn.redacted_thinking:
        data = base64.b64encode(b"\x12\x0credacted" + hashlib.sha256(reply.response_id.encode()).digest()).decode()
        blocks.append({"type": "redacted_thinking", "data": data})
    if turn.tool_call is not None:
        name, arguments = turn.tool_call
        tool_id = "toolu_01" + hashlib.sha256(reply.response_id.encode()).hexdigest()[:22]
        blocks.append({"type": "tool_use", "id": tool_id, "name": name, "input": arguments})
    else:
        blocks.append({"type": "text", "text": reply.text})
    return blocks


def anthropic_message(reply: Reply, turn: Turn = PLAIN) -> JSON:
    """The non-streaming ``message`` object."""
    return {
        "id": reply.response_id,
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": _blocks(reply, turn),
        "stop_reason": _anthropic_stop_reason(reply, turn),
        "stop_sequence": None,
        "usage": anthropic_usage(reply),
    }


def _block_events(index: int, block: JSON, reply: Reply) -> list[bytes]:
    """content_block_start, its deltas, content_block_stop."""
    kind = block["type"]
    if kind == "thinking":
        start: JSON = {"type": "thinking", "thinking": "", "signature": ""}
        deltas: list[JSON] = [{"type": "thinking_delta", "thinking": piece} for piece in THINKING]
        deltas.append({"type": "signature_delta", "signature": block["signature"]})
    elif kind == "tool_use":
        start = {**block, "input": {}}
        arguments = json.dumps(block["input"], separators=(",", ":"))
        half = len(arguments) // 2
        deltas = [{"type": "input_json_delta", "partial_json": part}
                  for part in ("", arguments[:half], arguments[half:])]
    elif kind == "text":
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in reply.pieces]
    else:  # redacted_thinking: whole in its start
        start, deltas = block, []
    events = [sse_event({"type": "content_block_start", "index": index, "content_block": start},
                        "content_block_start")]
    events += [sse_event({"type": "content_block_delta", "index": index, "delta": delta}, "content_block_delta")
               for delta in deltas]
    events.append(sse_event({"type": "content_block_stop", "index": index}, "content_block_stop"))
    return events


def anthropic_events(reply: Reply, turn: Turn = PLAIN) -> list[bytes]:
    """message_start, ping, each block's start, deltas and stop, message_delta, message_stop."""
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
    blocks = [_block_events(index, block, reply) for index, block in enumerate(_blocks(reply, turn))]
    # Sent verbatim, after the first block's start: the API's ping alone has a space after the colon.
    events = [sse_event({"type": "message_start", "message": message}, "message_start"), blocks[0][0],
              sse_event('{"type": "ping"}', "ping"), *blocks[0][1:]]
    for block in blocks[1:]:
        events += block
    final_usage = {**_anthropic_input_usage(reply), "output_tokens": reply.output_tokens}
    events += [
        sse_event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": _anthropic_stop_reason(reply, turn), "stop_sequence": None},
                "usage": final_usage,
            },
            "message_delta",
        ),
        sse_event({"type": "message_stop"}, "message_stop"),
    ]
    return events
