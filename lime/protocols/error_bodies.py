"""The one place that turns a :class:`~lime.protocols.errors.LimeError` into what a client receives.

OpenAI shape: ``{"error": {"message", "type", "param", "code"}}``; Anthropic shape:
``{"type": "error", "error": {"type", "message"}, "request_id"}``. Status codes are the error's own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from lime.protocols.endpoints import Protocol
from lime.protocols.errors import LimeError

__all__ = ["ErrorReply", "render_error"]

JSON_CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class ErrorReply:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = (("content-type", JSON_CONTENT_TYPE),)


def render_error(error: LimeError, protocol: Protocol, request_id: str | None = None) -> ErrorReply:
    if protocol is Protocol.ANTHROPIC:
        body: dict[str, object] = {
            "type": "error",
            "error": {"type": error.anthropic_type, "message": error.message},
        }
        if request_id:
            body["request_id"] = request_id
    else:
        body = {
            "error": {
                "message": error.message,
                "type": error.openai_type,
                "param": error.param,
                "code": error.openai_code,
            }
        }
    status = error.status
    if protocol is Protocol.ANTHROPIC and error.anthropic_status is not None:
        status = error.anthropic_status
    headers: tuple[tuple[str, str], ...] = (("content-type", JSON_CONTENT_TYPE),)
    if error.retry_after is not None:
        headers += (("retry-after", str(error.retry_after)),)
    if not error.retryable:
        headers += (("x-should-retry", "false"),)
    return ErrorReply(status, json.dumps(body, ensure_ascii=False).encode(), headers)
