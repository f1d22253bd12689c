"""Which API a path speaks, and the complete answer the mock will give to one valid request.

Deciding the whole answer up front (body or every SSE event, and the usage it reports) lets the server log
the usage before it sends anything and then only has to pace the bytes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from lime.devstack.mock_upstream import anthropic_bodies, bodies, completion_bodies
from lime.devstack.mock_upstream.reply import Reply, count_input_tokens, new_id, plan_reply
from lime.devstack.mock_upstream.turns import PLAIN, plan_turn

__all__ = ["API_PATHS", "Answer", "Api", "InvalidRequest", "answer", "is_stream"]


class Api(StrEnum):
    CHAT = "chat_completions"
    RESPONSES = "responses"
    EMBEDDINGS = "embeddings"
    MESSAGES = "messages"
    COUNT_TOKENS = "count_tokens"
    COMPLETIONS = "completions"

    @property
    def is_anthropic(self) -> bool:
        return self in (Api.MESSAGES, Api.COUNT_TOKENS)


API_PATHS: dict[str, Api] = {
    "/v1/chat/completions": Api.CHAT,
    "/v1/responses": Api.RESPONSES,
    "/v1/embeddings": Api.EMBEDDINGS,
    "/v1/messages": Api.MESSAGES,
    "/v1/messages/count_tokens": Api.COUNT_TOKENS,
    "/v1/completions": Api.COMPLETIONS,
}


class InvalidRequest(ValueError):
    """A request the real API would refuse with 400; ``param`` names the offending field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True)
class Answer:
    """A JSON ``body`` or a sequence of SSE ``events`` (exactly one is set), and the usage it reports.

    ``usage`` is ``None`` when the answer carries none (a chat stream without ``include_usage``).
    """

    usage: dict[str, Any] | None
    body: dict[str, Any] | None = None
    events: tuple[bytes, ...] = ()
    #: Text pieces generated; a non-streamed answer waits one delay per piece, as if generating them.
    pieces: int = 0
    #: Responses: the final response object, as the provider keeps it when the request stores it.
    final: dict[str, Any] | None = None


def is_stream(api: Api, body: Mapping[str, Any]) -> bool:
    return api not in (Api.EMBEDDINGS, Api.COUNT_TOKENS) and body.get("stream") is True


def _include_obfuscation(body: Mapping[str, Any]) -> bool:
    options = body.get("stream_options")
    return not (isinstance(options, Mapping) and options.get("include_obfuscation") is False)


def _include_usage(body: Mapping[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, Mapping) and options.get("include_usage") is True


def _plan(api: Api, body: Mapping[str, Any], chunks: int, cached_tokens: int) -> Reply:
    now = int(time.time())
    if api is Api.COMPLETIONS:
        # Without max_tokens the API stops at 16 ("Defaults to 16", the reference's create parameters).
        return plan_reply({"max_tokens": 16, **body}, chunks=chunks, limit_fields=("max_tokens",),
                          response_id=new_id("cmpl-", 29), created=now, cached_tokens=cached_tokens)
    if api is Api.CHAT:
        return plan_reply(
            body,
            chunks=chunks,
            limit_fields=("max_completion_tokens", "max_tokens"),
            response_id=new_id("chatcmpl-", 29),
            created=now,
            cached_tokens=cached_tokens,
        )
    if api is Api.RESPONSES:
        return plan_reply(
            body,
            chunks=chunks,
            limit_fields=("max_output_tokens",),
            response_id=new_id("resp_", 48),
            created=now,
            item_id=new_id("msg_", 48),
            cached_tokens=cached_tokens,
        )
    return plan_reply(body, chunks=chunks, limit_fields=("max_tokens",), response_id=new_id("msg_01", 22), created=now,
                      cached_tokens=cached_tokens)


def answer(api: Api, body: Mapping[str, Any], chunks: int, cached_tokens: int = 0, context_tokens: int = 0) -> Answer:
    """The answer to a parsed request body, or :class:`InvalidRequest` for what the real API rejects.
    ``context_tokens``: a continuation's stored context, which the provider reads (and bills) as input."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("you must provide a model parameter", "model")
    if api is Api.EMBEDDINGS:
        if not bodies.embedding_inputs(body):
            raise InvalidRequest("'input' must be a non-empty string or array", "input")
        dimensions = body.get("dimensions")
        width = dimensions if isinstance(dimensions, int) and 0 < dimensions <= 8192 else None
        reply_body = bodies.embeddings_body(body, dimensions=width or bodies.DEFAULT_EMBEDDING_DIMENSIONS)
        return Answer(usage=reply_body["usage"], body=reply_body)

    if api is Api.COUNT_TOKENS:
        # Anthropic's answer is the count alone (https://docs.anthropic.com/en/api/messages-count-tokens).
        return Answer(usage=None, body={"input_tokens": count_input_tokens(body)})
    reply = _plan(api, body, chunks, cached_tokens)
    turn = plan_turn(api is Api.MESSAGES, body) if api in (Api.MESSAGES, Api.RESPONSES) else PLAIN
    if turn.text is not None:
        words = turn.text.split(" ")
        reply = replace(reply, pieces=tuple(word if i == 0 else " " + word for i, word in enumerate(words)),
                        truncated=False)
    stream = is_stream(api, body)
    if api is Api.CHAT:
        usage = bodies.chat_usage(reply)
        if not stream:
            return Answer(usage=usage, body=bodies.chat_completion(reply), pieces=reply.output_tokens)
        include_usage = _include_usage(body)
        events = bodies.chat_completion_events(
            reply, include_usage=include_usage, include_obfuscation=_include_obfuscation(body)
        )
        # Without include_usage the stream carries no usage at all, so the mock reported none.
        return Answer(usage=usage if include_usage else None, events=tuple(events))
    if api is Api.COMPLETIONS:
        answers = completion_bodies.completion_answers(dict(body))
        usage = completion_bodies.completions_usage(reply, answers)
        if not stream:
            return Answer(usage=usage, body=completion_bodies.text_completion(reply, answers),
                          pieces=reply.output_tokens)
        include_usage = _include_usage(body)
        events = completion_bodies.text_completion_events(reply, answers, include_usage=include_usage)
        return Answer(usage=usage if include_usage else None, events=tuple(events))
    if api is Api.RESPONSES:
        reply = dataclasses.replace(reply, input_tokens=reply.input_tokens + context_tokens)
        usage = bodies.responses_usage(reply)
        final = bodies.responses_body(reply, body, turn)
        if not stream:
            return Answer(usage=usage, body=final, pieces=reply.output_tokens, final=final)
        events = bodies.responses_events(reply, body, include_obfuscation=_include_obfuscation(body), turn=turn)
        return Answer(usage=usage, events=tuple(events), final=final)
    usage = anthropic_bodies.anthropic_usage(reply)
    if not stream:
        return Answer(usage=usage, body=anthropic_bodies.anthropic_message(reply, turn), pieces=reply.output_tokens)
    return Answer(usage=usage, events=tuple(anthropic_bodies.anthropic_events(reply, turn)))
