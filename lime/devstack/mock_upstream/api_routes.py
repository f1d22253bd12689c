"""The provider endpoints (POST /v1/chat/completions, /v1/messages...; answers.API_PATHS): read the request, apply
its ``x-mock-*`` overrides, plan the answer, log it, and send it whole or as a stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from aiohttp import web

from lime.devstack.mock_upstream.answers import Api, InvalidRequest, answer, is_stream
from lime.devstack.mock_upstream.config import BadOverride, resolve_overrides
from lime.devstack.mock_upstream.errors import recorded_error
from lime.devstack.mock_upstream.log import LoggedRequest, headers_dict
from lime.devstack.mock_upstream.packing import Packer
from lime.devstack.mock_upstream.replay_route import replay
from lime.devstack.mock_upstream.sse import dumps
from lime.devstack.mock_upstream.state import STATE
from lime.devstack.mock_upstream.stored import StoredResponse, account_of, input_items, previous_not_found_body
from lime.devstack.mock_upstream.streaming import stall, stream
from lime.devstack.mock_upstream.wire import JSON_CONTENT_TYPE, fail, json_response, provider_headers

__all__ = ["Handler", "api_handler"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def api_handler(api: Api) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await _serve(request, api)

    return handle


async def _serve(request: web.Request, api: Api) -> web.StreamResponse:
    state = request.app[STATE]
    entry: LoggedRequest = {
        "path": request.path,
        "method": request.method,
        "model": None,
        "stream": False,
        "headers": headers_dict(request.headers.items()),
        "body": None,
        "request_id": request.headers.get("x-request-id"),
        "status": 0,
        "usage": None,
        "completed": False,
        "answer": None,
    }
    raw = await request.read()
    try:
        body = json.loads(raw)
    except ValueError:
        return fail(state, entry, api, 400, "We could not parse the JSON body of your request.")
    entry["body"] = body
    if not isinstance(body, dict):
        return fail(state, entry, api, 400, "The request body must be a JSON object.")
    model = body.get("model")
    entry["model"] = model if isinstance(model, str) else None
    entry["stream"] = is_stream(api, body)

    try:
        overrides = resolve_overrides(request.headers, state.config)
    except BadOverride as exc:
        return fail(state, entry, api, 400, str(exc))
    if overrides.error_body is not None:
        recorded = recorded_error(overrides.error_body, entry["model"])
        if recorded is None:
            return fail(state, entry, api, 400, f"x-mock-error-body: no recorded error {overrides.error_body!r}")
        status, payload, content_type = recorded
        entry["status"] = status
        entry["completed"] = True
        state.log.add(entry)
        return web.Response(status=status, body=payload,
                            headers={**provider_headers(api, status), "Content-Type": content_type})
    if overrides.status is not None:
        return fail(state, entry, api, overrides.status, None)
    account = account_of(entry["headers"])
    previous = body.get("previous_response_id") if api is Api.RESPONSES else None
    continued = state.responses.get(account, previous) if isinstance(previous, str) else None
    if isinstance(previous, str) and continued is None:
        entry["status"] = 400
        entry["completed"] = True
        state.log.add(entry)
        return json_response(400, previous_not_found_body(previous), api)
    if overrides.replay is not None:
        return await replay(request, state, entry, api, overrides)
    try:
        planned = answer(api, body, overrides.chunks, overrides.cached_tokens,
                         context_tokens=continued.context_tokens if continued else 0)
    except InvalidRequest as exc:
        return fail(state, entry, api, 400, exc.message, exc.param)
    if planned.final is not None and body.get("store") is not False:
        usage = planned.final["usage"]
        items = [*(continued.items if continued else []), *input_items(body)]
        state.responses.put(account, StoredResponse(planned.final, items,
                                                    usage["input_tokens"] + usage["output_tokens"]))

    entry["status"] = 200
    entry["usage"] = planned.usage
    entry["answer"] = b"".join(planned.events).decode() if planned.body is None else dumps(planned.body)
    state.log.add(entry)
    if planned.body is None:
        return await stream(request, entry, api, planned.events, overrides)
    if overrides.stall_after is not None:
        await stall(request)
        return web.Response(status=200)  # nobody is left to read it
    if overrides.delay_ms and planned.pieces:
        await asyncio.sleep(overrides.delay_ms * planned.pieces / 1000)
    if overrides.invalid_after is not None:
        body = dumps(planned.body).encode()[:overrides.invalid_after]
        return web.Response(status=200, body=body, headers={"Content-Type": JSON_CONTENT_TYPE,
                                                            **provider_headers(api, 200)})
    entry["completed"] = True
    if overrides.content_encoding is None and overrides.content_type is None:
        return json_response(200, planned.body, api)
    packer = Packer(overrides.content_encoding)
    body = packer.pack(dumps(planned.body).encode()) + packer.end()
    return web.Response(status=200, body=body, headers={
        "Content-Type": overrides.content_type or JSON_CONTENT_TYPE, **provider_headers(api, 200), **packer.headers})
