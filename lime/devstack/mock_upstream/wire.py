"""The mock's answers as a provider's look on the wire: content types, the provider's identifying headers, a JSON
answer and an error answer in the API's own shape."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lime.devstack.mock_upstream.answers import Api
from lime.devstack.mock_upstream.errors import anthropic_error_body, openai_error_body
from lime.devstack.mock_upstream.log import LoggedRequest
from lime.devstack.mock_upstream.reply import new_id
from lime.devstack.mock_upstream.sse import dumps
from lime.devstack.mock_upstream.state import MockState

__all__ = ["JSON_CONTENT_TYPE", "SSE_CONTENT_TYPE", "fail", "json_response", "provider_headers"]

JSON_CONTENT_TYPE = "application/json"
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"


def json_response(status: int, payload: Any, api: Api | None = None) -> web.Response:
    # Set the header by hand: aiohttp's content_type= would append "; charset=utf-8", which OpenAI omits.
    headers = {"Content-Type": JSON_CONTENT_TYPE, **(provider_headers(api, status) if api else {})}
    return web.Response(status=status, body=dumps(payload).encode(), headers=headers)


def provider_headers(api: Api, status: int) -> dict[str, str]:
    """The identifying headers real providers add (their own ids, organisation, rate-limit windows, a cookie):
    what a gateway must not pass on to its clients."""
    headers = {"Set-Cookie": "__cf_bm=mock-cookie; path=/; HttpOnly", "CF-RAY": "8f1e2d3c4b5a6978-AMS"}
    if api.is_anthropic:
        headers.update({"request-id": new_id("req_011C", 20), "anthropic-organization-id": "mock-org-0001",
                        "anthropic-ratelimit-requests-limit": "4000",
                        "anthropic-ratelimit-requests-remaining": "3999"})
    else:
        headers.update({"x-request-id": new_id("req_", 32), "openai-organization": "mock-org",
                        "openai-processing-ms": "12", "openai-version": "2020-10-01",
                        "x-ratelimit-limit-requests": "10000", "x-ratelimit-remaining-requests": "9999"})
    if status == 429:
        headers["retry-after"] = "2"
    return headers


def fail(
    state: MockState, entry: LoggedRequest, api: Api, status: int, message: str | None, param: str | None = None
) -> web.Response:
    """Log ``entry`` as answered with ``status`` and answer with the API's error body."""
    if api.is_anthropic:
        payload = anthropic_error_body(status, new_id("req_011C", 20), message)
    else:
        payload = openai_error_body(status, message, param=param)
    entry["status"] = status
    entry["completed"] = True
    state.log.add(entry)
    return json_response(status, payload, api)
