"""OpenAI-shaped bodies for a planned :class:`~lime.devstack.mock_upstream.reply.Reply`: pure functions, no I/O.

Anthropic's are in :mod:`lime.devstack.mock_upstream.anthropic_bodies`.

The shapes copy the recorded bodies in ``tests/fixtures/providers`` (see its README), field for field
where it matters to a client or a usage parser:

- Chat Completions streams send only ``data:`` lines and end with ``data: [DONE]``. With
  ``stream_options.include_usage`` every chunk carries ``"usage":null`` and a last chunk with ``"choices":[]``
  carries the usage, after the ``finish_reason`` chunk.
- Responses and Anthropic streams name every event with ``event:`` and have no ``[DONE]``. Responses events
  are numbered by ``sequence_number``; usage arrives only in the terminal ``response.completed``.
- Anthropic's ``message_start`` carries the input side of usage and a provisional ``output_tokens``;
  ``message_delta`` carries the cumulative final usage.
- A Responses tool call is a ``function_call`` item streamed as ``response.function_call_arguments.delta``
  events; a ``reasoning`` item (asked for by ``include: ["reasoning.encrypted_content"]``) comes first, whole
  with its ``encrypted_content`` in both its ``output_item.added`` and ``.done`` events, and ``"summary": []``
  (openai-responses-stream-function-call.sse).
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Mapping
from typing import Any

from lime.devstack.mock_upstream.reply import Reply, count_input_tokens
from lime.devstack.mock_upstream.sse import DONE, dumps, sse_event
from lime.devstack.mock_upstream.turns import PLAIN, Turn

__all__ = [
    "DEFAULT_EMBEDDING_DIMENSIONS",
    "JSON",
    "chat_completion",
    "chat_completion_events",
    "chat_usage",
    "embedding_inputs",
    "embedding_vector",
    "embeddings_body",
    "embeddings_usage",
    "responses_body",
    "responses_events",
    "responses_usage",
]

JSON = dict[str, Any]

#: text-embedding-3-small's width, as in the recorded embeddings.
DEFAULT_EMBEDDING_DIMENSIONS = 1536
_PAD = "abcdefghijklmnopqrstuvwxyz"


def _obfuscation(text: str) -> str:
    # The real field pads each delta so its length does not leak the token's; any filler will do.
    return _PAD[: 16 - len(text) % 16]


# --- OpenAI Chat Completions ---------------------------------------------------------------------------


def chat_usage(reply: Reply) -> JSON:
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.input_tokens + reply.output_tokens,
        "prompt_tokens_details": {"cached_tokens": reply.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _chat_finish_reason(reply: Reply) -> str:
    return "length" if reply.truncated else "stop"


def chat_completion(reply: Reply) -> JSON:
    """The non-streaming ``chat.completion`` object."""
    return {
        "id": reply.response_id,
        "object": "chat.completion",
        "created": reply.created,
        "model": reply.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text, "refusal": None, "annotations": []},
                "finish_reason": _chat_finish_reason(reply),
            }
        ],
        "usage": chat_usage(reply),
        "service_tier": "default",
        "system_fingerprint": None,
    }


def _chat_chunk(
    reply: Reply,
    choices: list[JSON],
    *,
    include_usage: bool,
    usage: JSON | None = None,
    obfuscation: str | None = None,
) -> JSON:
    chunk: JSON = {
        "id": reply.response_id,
        "object": "chat.completion.chunk",
        "created": reply.created,
        "model": reply.model,
        "service_tier": "default",
        "system_fingerprint": None,
        "choices": choices,
    }
    if include_usage:
        chunk["usage"] = usage
    if obfuscation is not None:
        chunk["obfuscation"] = obfuscation
    return chunk


def _chat_choice(delta: JSON, finish_reason: str | None = None) -> JSON:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


def chat_completion_events(reply: Reply, *, include_usage: bool, include_obfuscation: bool = True) -> list[bytes]:
    """The ``chat.completion.chunk`` stream: role chunk, one chunk a piece, finish chunk, usage chunk, [DONE]."""

    def pad(text: str) -> str | None:
        return _obfuscation(text) if include_obfuscation else None

    def chunk(delta: JSON, finish_reason: str | None = None, text: str = "") -> bytes:
        choice = _chat_choice(delta, finish_reason)
        return sse_event(_chat_chunk(reply, [choice], include_usage=include_usage, obfuscation=pad(text)))

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [chunk({"content": piece}, text=piece) for piece in reply.pieces]
    events.append(chunk({}, _chat_finish_reason(reply)))
    if include_usage:
        usage_chunk = _chat_chunk(
            reply, [], include_usage=True, usage=chat_usage(reply), obfuscation="" if include_obfuscation else None
        )
        events.append(sse_event(usage_chunk))
    events.append(DONE)
    return events


# --- OpenAI Responses ----------------------------------------------------------------------------------


def responses_usage(reply: Reply) -> JSON:
    return {
        "input_tokens": reply.input_tokens,
        "input_tokens_details": {"cached_tokens": reply.cached_tokens},
        "output_tokens": reply.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": reply.input_tokens + reply.output_tokens,
    }


def _echo(request: Mapping[str, Any], key: str, kinds: tuple[type, ...], default: Any) -> Any:
    # Echo a request setting only when it has the right type, so a bad request cannot break the SDK's parsing.
    value = request.get(key)
    if isinstance(value, bool) and bool not in kinds:
        return default
    return value if isinstance(value, kinds) else default


def _output_part(text: str) -> JSON:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _message_item(reply: Reply, status: str, content: list[JSON]) -> JSON:
    return {"id": reply.item_id, "type": "message", "status": status, "content": content, "role": "assistant"}


def _digest(reply: Reply, salt: str) -> str:
    return hashlib.sha256((reply.response_id + salt).encode()).hexdigest()


def _reasoning_item(reply: Reply) -> JSON:
    # Fernet-like, as the recorded ones ("gAAAAAB..."): opaque to the client, sent back as it came.
    encrypted = "gAAAAAB" + base64.urlsafe_b64encode(bytes.fromhex(_digest(reply, "reasoning")) * 8).decode()
    return {"id": "rs_" + _digest(reply, "rs")[:48], "type": "reasoning", "encrypted_content": encrypted,
            "summary": []}


def _function_call_item(reply: Reply, turn: Turn, status: str) -> JSON:
    assert turn.tool_call is not None
    name, arguments = turn.tool_call
    return {"id": "fc_" + _digest(reply, "fc")[:48], "type": "function_call", "status": status,
            "arguments": dumps(arguments) if status == "completed" else "",
            "call_id": "call_" + _digest(reply, "call")[:24], "name": name}


def _final_items(reply: Reply, turn: Turn) -> list[JSON]:
    items = [_reasoning_item(reply)] if turn.reasoning else []
    if turn.tool_call is not None:
        return [*items, _function_call_item(reply, turn, "completed")]
    status = "incomplete" if reply.truncated else "completed"
    return [*items, _message_item(reply, status, [_output_part(reply.text)])]


def _response_object(reply: Reply, request: Mapping[str, Any], *, final: bool, turn: Turn = PLAIN) -> JSON:
    output: list[JSON] = []
    if not final:
        status, usage, completed_at, incomplete = "in_progress", None, None, None
    elif reply.truncated and turn.tool_call is None:
        status, output, usage, completed_at = "incomplete", _final_items(reply, turn), responses_usage(reply), None
        incomplete = {"reason": "max_output_tokens"}
    else:
        status, output, usage = "completed", _final_items(reply, turn), responses_usage(reply)
        completed_at, incomplete = reply.created, None
    return {
        "id": reply.response_id,
        "object": "response",
        "created_at": reply.created,
        "status": status,
        "background": False,
        "completed_at": completed_at,
        "error": None,
        "frequency_penalty": 0.0,
        "incomplete_details": incomplete,
        "instructions": _echo(request, "instructions", (str,), None),
        "max_output_tokens": _echo(request, "max_output_tokens", (int,), None),
        "max_tool_calls": _echo(request, "max_tool_calls", (int,), None),
        "model": reply.model,
        "output": output,
        "parallel_tool_calls": _echo(request, "parallel_tool_calls", (bool,), True),
        "presence_penalty": 0.0,
        "previous_response_id": _echo(request, "previous_response_id", (str,), None),
        "prompt_cache_key": _echo(request, "prompt_cache_key", (str,), None),
        "prompt_cache_retention": _echo(request, "prompt_cache_retention", (str,), None),
        "reasoning": {"effort": None, "summary": None},
        "safety_identifier": _echo(request, "safety_identifier", (str,), None),
        "service_tier": "default",
        "store": _echo(request, "store", (bool,), True),
        "temperature": float(_echo(request, "temperature", (int, float), 1.0)),
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_logprobs": 0,
        "top_p": float(_echo(request, "top_p", (int, float), 1.0)),
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": _echo(request, "metadata", (dict,), {}),
    }


def responses_body(reply: Reply, request: Mapping[str, Any], turn: Turn = PLAIN) -> JSON:
    """The non-streaming ``response`` object; ``status:"incomplete"`` when the token limit cut it short."""
    return _response_object(reply, request, final=True, turn=turn)


def _message_events(reply: Reply, index: int, include_obfuscation: bool) -> list[JSON]:
    payloads: list[JSON] = [
        {"type": "response.output_item.added", "item": _message_item(reply, "in_progress", []), "output_index": index},
        {
            "type": "response.content_part.added",
            "content_index": 0,
            "item_id": reply.item_id,
            "output_index": index,
            "part": _output_part(""),
        },
    ]
    for piece in reply.pieces:
        delta: JSON = {
            "type": "response.output_text.delta",
            "content_index": 0,
            "delta": piece,
            "item_id": reply.item_id,
            "logprobs": [],
        }
        if include_obfuscation:
            delta["obfuscation"] = _obfuscation(piece)
        delta["output_index"] = index
        payloads.append(delta)
    item_status = "incomplete" if reply.truncated else "completed"
    return [
        *payloads,
        {
            "type": "response.output_text.done",
            "content_index": 0,
            "item_id": reply.item_id,
            "logprobs": [],
            "output_index": index,
            "text": reply.text,
        },
        {
            "type": "response.content_part.done",
            "content_index": 0,
            "item_id": reply.item_id,
            "output_index": index,
            "part": _output_part(reply.text),
        },
        {
            "type": "response.output_item.done",
            "item": _message_item(reply, item_status, [_output_part(reply.text)]),
            "output_index": index,
        },
    ]


def _function_call_events(reply: Reply, turn: Turn, index: int) -> list[JSON]:
    done = _function_call_item(reply, turn, "completed")
    arguments = done["arguments"]
    half = len(arguments) // 2
    return [
        {"type": "response.output_item.added", "output_index": index,
         "item": _function_call_item(reply, turn, "in_progress")},
        *({"type": "response.function_call_arguments.delta", "item_id": done["id"], "output_index": index,
           "delta": part} for part in (arguments[:half], arguments[half:])),
        {"type": "response.function_call_arguments.done", "item_id": done["id"], "output_index": index,
         "arguments": arguments},
        {"type": "response.output_item.done", "output_index": index, "item": done},
    ]


def responses_events(reply: Reply, request: Mapping[str, Any], *, include_obfuscation: bool = True,
                     turn: Turn = PLAIN) -> list[bytes]:
    """The Responses event stream (a reasoning item when asked for, then a message or a function call),
    numbered 0, 1, 2… by ``sequence_number``."""
    payloads: list[JSON] = [
        {"type": "response.created", "response": _response_object(reply, request, final=False)},
        {"type": "response.in_progress", "response": _response_object(reply, request, final=False)},
    ]
    index = 0
    if turn.reasoning:
        reasoning = _reasoning_item(reply)
        payloads += [{"type": "response.output_item.added", "output_index": 0, "item": reasoning},
                     {"type": "response.output_item.done", "output_index": 0, "item": reasoning}]
        index = 1
    if turn.tool_call is not None:
        payloads += _function_call_events(reply, turn, index)
    else:
        payloads += _message_events(reply, index, include_obfuscation)
    final = _response_object(reply, request, final=True, turn=turn)
    ending = "response.incomplete" if reply.truncated and turn.tool_call is None else "response.completed"
    payloads.append({"type": ending, "response": final})
    return [sse_event({**payload, "sequence_number": n}, payload["type"]) for n, payload in enumerate(payloads)]


# --- OpenAI Embeddings ---------------------------------------------------------------------------------


def embedding_inputs(request: Mapping[str, Any]) -> list[Any]:
    """The request's ``input`` as a list of items: strings, or token-id lists for pre-tokenised input."""
    value = request.get("input")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        if value and all(isinstance(item, int) and not isinstance(item, bool) for item in value):
            return [value]
        return list(value)
    return []


def embedding_vector(item: Any, dimensions: int) -> list[float]:
    """A unit-length vector, the same for the same input, exactly representable as little-endian float32."""
    seed = repr(item).encode()
    raw = hashlib.shake_256(seed).digest(4 * dimensions)
    values = [(word / 0xFFFFFFFF) * 2.0 - 1.0 for word in struct.unpack(f"<{dimensions}I", raw)]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    # Nine significant digits round-trip float32, so the float and base64 forms decode to the same numbers.
    return [float(f"{v / norm:.9g}") for v in values]


def embeddings_usage(request: Mapping[str, Any]) -> JSON:
    tokens = count_input_tokens({"input": request.get("input")})
    return {"prompt_tokens": tokens, "total_tokens": tokens}


def embeddings_body(request: Mapping[str, Any], *, dimensions: int = DEFAULT_EMBEDDING_DIMENSIONS) -> JSON:
    """The ``list`` of embeddings; ``encoding_format:"base64"`` packs each vector as little-endian float32."""
    as_base64 = request.get("encoding_format") == "base64"
    data: list[JSON] = []
    for index, item in enumerate(embedding_inputs(request)):
        vector = embedding_vector(item, dimensions)
        embedding: list[float] | str = (
            base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode() if as_base64 else vector
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {"object": "list", "data": data, "model": str(request.get("model", "")), "usage": embeddings_usage(request)}
