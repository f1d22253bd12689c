"""Responses the mock stored, per account, and the lifecycle answers it gives about them.

A provider keeps a stored response under the account (OpenAI: the project) whose key created it, and answers
another account as if the id did not exist. The mock does the same, keyed by the credential the request carried:
each upstream (and each failover candidate) of a test has its own credential, so a continuation or a retrieve sent
to an upstream that did not create the response is refused, which is how the tests prove Lime pins them.

Shapes from OpenAI's API reference (https://platform.openai.com/docs/api-reference/responses): retrieve returns
the response object; delete returns ``{"id", "object": "response", "deleted": true}``; cancel returns the
response object, and "only responses created with the background parameter set to true can be cancelled"
(https://developers.openai.com/api/reference/go/resources/responses/methods/cancel); input items are a list
object (``data``, ``first_id``, ``last_id``, ``has_more``) of the input's items, each with an id. A missing
response is 404 ``Response with id '…' not found.``; a missing previous response is 400
``previous_response_not_found`` (as OpenAI answers Codex CLI).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lime.devstack.mock_upstream.reply import new_id

__all__ = ["ResponseStore", "StoredResponse", "account_of", "input_items", "items_page", "not_found_body",
           "previous_not_found_body"]

JSON = dict[str, Any]


@dataclass
class StoredResponse:
    body: JSON
    items: list[JSON]
    #: What a continuation carries as input: this response's input and output.
    context_tokens: int


@dataclass
class ResponseStore:
    _accounts: dict[str, dict[str, StoredResponse]] = field(default_factory=dict)

    def put(self, account: str, stored: StoredResponse) -> None:
        self._accounts.setdefault(account, {})[stored.body["id"]] = stored

    def get(self, account: str, response_id: str) -> StoredResponse | None:
        return self._accounts.get(account, {}).get(response_id)

    def delete(self, account: str, response_id: str) -> bool:
        return self._accounts.get(account, {}).pop(response_id, None) is not None


def account_of(headers: Mapping[str, str]) -> str:
    """The account a request acts for: its credential, as the provider would resolve it."""
    return headers.get("authorization") or headers.get("x-api-key") or ""


def input_items(request: Mapping[str, Any]) -> list[JSON]:
    """The input of a Responses request as the items the provider lists (a string is one user message)."""
    given = request.get("input")
    if isinstance(given, str):
        given = [{"role": "user", "content": given}]
    items = []
    for item in given if isinstance(given, list) else []:
        if not isinstance(item, dict):
            continue
        content = item.get("content")
        if isinstance(content, str):
            content = [{"type": "input_text", "text": content}]
        items.append({"type": "message", "status": "completed", **item, "content": content,
                      "id": item.get("id") or new_id("msg_", 48)})
    return items


def items_page(items: list[JSON]) -> JSON:
    return {"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None, "has_more": False}


def not_found_body(response_id: str) -> JSON:
    return {"error": {"message": f"Response with id '{response_id}' not found.", "type": "invalid_request_error",
                      "param": None, "code": None}}


def previous_not_found_body(response_id: str) -> JSON:
    return {"error": {"message": f"Previous response with id '{response_id}' not found.",
                      "type": "invalid_request_error", "param": "previous_response_id",
                      "code": "previous_response_not_found"}}
