"""The stored responses' lifecycle: GET and DELETE /v1/responses/{id}, POST .../cancel, GET .../input_items, each
for the account that stored the response (stored.py)."""

from __future__ import annotations

from aiohttp import web

from lime.devstack.mock_upstream.answers import Api
from lime.devstack.mock_upstream.errors import openai_error_body
from lime.devstack.mock_upstream.log import LoggedRequest, headers_dict
from lime.devstack.mock_upstream.state import STATE
from lime.devstack.mock_upstream.stored import account_of, items_page, not_found_body
from lime.devstack.mock_upstream.wire import json_response

__all__ = ["add_stored_routes"]


def add_stored_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/responses/{response_id}", _lifecycle)
    router.add_delete("/v1/responses/{response_id}", _lifecycle)
    router.add_post("/v1/responses/{response_id}/{action:cancel}", _lifecycle)
    router.add_get("/v1/responses/{response_id}/{action:input_items}", _lifecycle)


async def _lifecycle(request: web.Request) -> web.Response:
    """GET/DELETE /v1/responses/{id}, POST .../cancel, GET .../input_items, for the account that stored it."""
    state = request.app[STATE]
    response_id = request.match_info["response_id"]
    action = request.match_info.get("action", "")
    headers = headers_dict(request.headers.items())
    entry: LoggedRequest = {
        "path": request.path, "method": request.method, "model": None, "stream": False, "headers": headers,
        "body": None, "request_id": request.headers.get("x-request-id"), "status": 0, "usage": None,
        "completed": True, "answer": None,
    }
    account = account_of(headers)
    stored = state.responses.get(account, response_id)
    if stored is None:
        status, payload = 404, not_found_body(response_id)
    elif request.method == "DELETE":
        state.responses.delete(account, response_id)
        status, payload = 200, {"id": response_id, "object": "response", "deleted": True}
    elif action == "cancel":
        status, payload = 400, openai_error_body(
            400, "Only responses created with background=true can be cancelled.", param=None)
    elif action == "input_items":
        status, payload = 200, items_page(stored.items)
    else:
        status, payload = 200, stored.body
    entry["status"] = status
    state.log.add(entry)
    return json_response(status, payload, Api.RESPONSES)
