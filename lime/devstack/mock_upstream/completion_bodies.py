"""OpenAI legacy Completions bodies (``POST /v1/completions``) for a planned reply: pure, no I/O.

Shapes from OpenAI's API reference (https://platform.openai.com/docs/api-reference/completions/object): a
``text_completion`` object whose ``choices`` each carry ``text``, ``index``, ``logprobs`` and ``finish_reason``,
and chat's ``usage``. Streamed, every chunk is the same object with that chunk's text; with
``stream_options.include_usage`` every chunk carries ``"usage":null`` and one more chunk, with ``"choices":[]``,
carries the usage before ``data: [DONE]`` (the reference's words for ``include_usage``, the same as chat's).
Each prompt of a list is answered ``n`` times; the choices are numbered across them, as the API does.
"""

from __future__ import annotations

from typing import Any

from lime.devstack.mock_upstream.bodies import JSON
from lime.devstack.mock_upstream.reply import Reply
from lime.devstack.mock_upstream.sse import DONE, sse_event

__all__ = ["completion_answers", "completions_usage", "text_completion", "text_completion_events"]


def completion_answers(request: dict[str, Any]) -> int:
    """How many choices the request asks for: ``n`` for each prompt of a list."""
    prompt, n = request.get("prompt"), request.get("n")
    prompts = len(prompt) if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int) else 1
    return prompts * (n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1)


def completions_usage(reply: Reply, answers: int) -> JSON:
    output = reply.output_tokens * answers
    return {"prompt_tokens": reply.input_tokens, "completion_tokens": output,
            "total_tokens": reply.input_tokens + output}


def _finish_reason(reply: Reply) -> str:
    return "length" if reply.truncated else "stop"


def _choice(index: int, text: str, finish_reason: str | None) -> JSON:
    return {"text": text, "index": index, "logprobs": None, "finish_reason": finish_reason}


def _object(reply: Reply, choices: list[JSON]) -> JSON:
    return {"id": reply.response_id, "object": "text_completion", "created": reply.created, "model": reply.model,
            "system_fingerprint": None, "choices": choices}


def text_completion(reply: Reply, answers: int) -> JSON:
    """The non-streamed answer."""
    choices = [_choice(index, reply.text, _finish_reason(reply)) for index in range(answers)]
    return {**_object(reply, choices), "usage": completions_usage(reply, answers)}


def text_completion_events(reply: Reply, answers: int, *, include_usage: bool) -> list[bytes]:
    """A chunk a piece for each choice, a finish chunk each, the usage chunk when asked for, ``[DONE]``."""

    def chunk(choices: list[JSON], usage: JSON | None = None) -> bytes:
        body = _object(reply, choices)
        if include_usage:
            body["usage"] = usage
        return sse_event(body)

    events = [chunk([_choice(index, piece, None)]) for piece in reply.pieces for index in range(answers)]
    events += [chunk([_choice(index, "", _finish_reason(reply))]) for index in range(answers)]
    if include_usage:
        events.append(chunk([], completions_usage(reply, answers)))
    events.append(DONE)
    return events
