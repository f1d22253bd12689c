"""What a Responses request says about answers stored upstream: which one it names, and what Lime refuses. Pure.

A response the upstream stored is named by its id, in the path of the lifecycle endpoints
(``/v1/responses/{response_id}``) or as a continuation's ``previous_response_id``. Lime serves it only to the
tenant that created it; an id that is unknown, malformed, deleted or another tenant's gets the same answer as
OpenAI gives a missing one, so a tenant cannot tell whether someone else's id exists.

Refused up front, each with a 400 naming its parameter:

* ``conversation`` (the Conversations API): its context lives in a conversation object Lime does not serve or
  record, so the tokens it adds cannot be reserved.
* ``background: true``: the answer is settled by the upstream after the request has ended, which Lime's
  settlement (at the end of the request's stream) cannot see; served, it would be free.
"""

from __future__ import annotations

import re
from typing import Any

from lime.protocols.errors import BadRequest, LimeError

__all__ = ["PreviousResponseNotFound", "ResponseNotFound", "continuation_of", "is_response_id"]

# OpenAI's ids hold letters, digits, underscores and dashes; anything else cannot be one (and is never looked up).
_RESPONSE_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")


class ResponseNotFound(LimeError):
    """A lifecycle call on an id this tenant has no stored response under: OpenAI's words for a missing one."""

    status = 404
    openai_type = "invalid_request_error"
    openai_code = None
    anthropic_type = "not_found_error"

    def __init__(self, response_id: str) -> None:
        super().__init__(f"Response with id '{_shown(response_id)}' not found.")


class PreviousResponseNotFound(BadRequest):
    """A continuation of an id this tenant has no stored response under. OpenAI answers a missing previous
    response with 400 and this code (Codex CLI recognises it and resends the whole conversation)."""

    openai_code = "previous_response_not_found"

    def __init__(self, response_id: str) -> None:
        super().__init__(f"Previous response with id '{_shown(response_id)}' not found.",
                         param="previous_response_id")


def _shown(response_id: str) -> str:
    # The client's own string, cut short: an error message must not grow with what the client sent.
    return response_id[:200]


def is_response_id(value: str) -> bool:
    """Whether ``value`` can be a response id at all."""
    return _RESPONSE_ID.fullmatch(value) is not None


def continuation_of(body: dict[str, Any]) -> str | None:
    """The ``previous_response_id`` a Responses body continues, or ``None``; a 400 for what Lime refuses."""
    if body.get("background") is True:
        raise BadRequest("`background: true` is not supported by this gateway: a background response is settled "
                         "after the request ends, which the gateway cannot bill. Send the request without it "
                         "(stream it instead for long answers).", param="background")
    if body.get("conversation") is not None:
        raise BadRequest("`conversation` is not supported by this gateway: it does not serve the Conversations API "
                         "and cannot account for a conversation's stored context. Use `previous_response_id`, or "
                         "send the conversation in `input`.", param="conversation")
    previous = body.get("previous_response_id")
    if previous is None:
        return None
    if not isinstance(previous, str):
        raise BadRequest("`previous_response_id` must be a string.", param="previous_response_id",
                         code="invalid_type")
    return previous
