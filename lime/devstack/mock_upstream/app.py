"""The mock upstream's HTTP server: OpenAI and Anthropic endpoints, plus a request log for tests.

Routes:
    POST   /v1/chat/completions, /v1/completions, /v1/responses, /v1/embeddings (OpenAI),
           /v1/messages, /v1/messages/count_tokens (Anthropic)
    GET, DELETE /v1/responses/{id}; POST /v1/responses/{id}/cancel; GET /v1/responses/{id}/input_items: the
           responses this account stored (stored.py)
    GET    /_mock/requests   the log, oldest first; ``?request_id=...``: only that request's entries;
                             ``?after=n``: only the entries after the first n
    GET    /_mock/requests/count   how many entries the log has: ``{"count": n}``
    DELETE /_mock/requests   empty the log
    GET    /_mock/health     200 once serving

``x-mock-replay: <file>`` answers with a recorded provider body or stream instead (replay.py).

Streams are written one SSE event per write, ``delay_ms`` apart, so a client behind a proxy can tell
incremental delivery from a buffered body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from lime.devstack.mock_upstream.answers import API_PATHS, Api, InvalidRequest, answer, is_stream
from lime.devstack.mock_upstream.config import MAX_DELAY_MS, BadOverride, MockConfig, Overrides, resolve_overrides
from lime.devstack.mock_upstream.errors import anthropic_error_body, openai_error_body, recorded_error
from lime.devstack.mock_upstream.log import LoggedRequest, RequestLog, headers_dict
from lime.devstack.mock_upstream.packing import Packer
from lime.devstack.mock_upstream.replay import ReplayError, load_recording
from lime.devstack.mock_upstream.reply import new_id
from lime.devstack.mock_upstream.sse import dumps
from lime.devstack.mock_upstream.stored import (
    ResponseStore,
    StoredResponse,
    account_of,
    input_items,
    items_page,
    not_found_body,
    previous_not_found_body,
)

__all__ = ["JSON_CONTENT_TYPE", "SSE_CONTENT_TYPE", "MockServer", "build_app", "main", "run", "start"]

logger = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json"
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
# Prompts in load tests can be large; the aiohttp default of 1 MiB would turn them into 413s.
_MAX_BODY_BYTES = 64 * 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class _State:
    config: MockConfig
    log: RequestLog
    responses: ResponseStore


_STATE = web.AppKey("lime_mock_state", _State)


def _json_response(status: int, payload: Any, api: Api | None = None) -> web.Response:
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


def _fail(
    state: _State, entry: LoggedRequest, api: Api, status: int, message: str | None, param: str | None = None
) -> web.Response:
    if api.is_anthropic:
        payload = anthropic_error_body(status, new_id("req_011C", 20), message)
    else:
        payload = openai_error_body(status, message, param=param)
    entry["status"] = status
    entry["completed"] = True
    state.log.add(entry)
    return _json_response(status, payload, api)


async def _stream(request: web.Request, entry: LoggedRequest, api: Api, events: tuple[bytes, ...],
                  overrides: Overrides) -> web.StreamResponse:
    packer = Packer(overrides.content_encoding)
    response = web.StreamResponse(status=200, headers={
        "Content-Type": SSE_CONTENT_TYPE, "Cache-Control": "no-cache", **provider_headers(api, 200),
        **packer.headers})
    await response.prepare(request)
    cut = next((after for after in (overrides.drop_after, overrides.error_after, overrides.invalid_after,
                                    overrides.stall_after) if after is not None), None)
    try:
        for index, event in enumerate(events):
            if index == cut:
                break
            if index and overrides.delay_ms:
                await asyncio.sleep(overrides.delay_ms / 1000)
            if overrides.tail_delay_ms and index == len(events) - 2:
                await asyncio.sleep(overrides.tail_delay_ms / 1000)
            if overrides.split_ms is not None:
                half = len(event) // 2
                await response.write(packer.pack(event[:half]))
                await asyncio.sleep(overrides.split_ms / 1000)
                event = event[half:]
            await response.write(packer.pack(event))
        if cut is not None and cut < len(events):
            if overrides.drop_after is not None:
                # No terminating chunk, no final event: the connection just ends, as when an upstream crashes.
                if request.transport is not None:
                    request.transport.abort()
                logger.info("dropped %s stream after %d events, as asked", request.path, cut)
                return response
            if overrides.stall_after is not None:
                await _stall(request)
                return response
            await response.write(packer.pack(
                in_stream_error(api) if overrides.error_after is not None else INVALID_EVENT))
        await response.write(packer.end())
        await response.write_eof()
    except ConnectionResetError:
        # The client hung up mid-stream; the entry stays incomplete, which is what the test wants to see.
        logger.info("client left %s stream after partial delivery", request.path)
        return response
    entry["completed"] = cut is None or cut >= len(events)
    return response


async def _stall(request: web.Request) -> None:
    """Send nothing, with the connection open, until the client closes it (or MAX_DELAY_MS is up)."""
    logger.info("stalling %s, as asked", request.path)
    for _ in range(MAX_DELAY_MS // 100):
        if request.transport is None or request.transport.is_closing():
            return
        await asyncio.sleep(0.1)


#: The event an invalid stream ends with: its data is not JSON (x-mock-invalid-body).
INVALID_EVENT = b'data: {"choices": [{"delta": {"content": "cut of\n\n'


def in_stream_error(api: Api) -> bytes:
    """The error event a provider sends inside a 200 stream (fixtures: anthropic-messages-stream-error.sse)."""
    if api.is_anthropic:
        return (b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
                b'"message":"Overloaded"}}\n\n')
    return (b'data: {"error":{"message":"The server had an error while processing your request.",'
            b'"type":"server_error","param":null,"code":null}}\n\n')


async def _serve(request: web.Request, api: Api) -> web.StreamResponse:
    state = request.app[_STATE]
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
        return _fail(state, entry, api, 400, "We could not parse the JSON body of your request.")
    entry["body"] = body
    if not isinstance(body, dict):
        return _fail(state, entry, api, 400, "The request body must be a JSON object.")
    model = body.get("model")
    entry["model"] = model if isinstance(model, str) else None
    entry["stream"] = is_stream(api, body)

    try:
        overrides = resolve_overrides(request.headers, state.config)
    except BadOverride as exc:
        return _fail(state, entry, api, 400, str(exc))
    if overrides.error_body is not None:
        recorded = recorded_error(overrides.error_body, entry["model"])
        if recorded is None:
            return _fail(state, entry, api, 400, f"x-mock-error-body: no recorded error {overrides.error_body!r}")
        status, payload, content_type = recorded
        entry["status"] = status
        entry["completed"] = True
        state.log.add(entry)
        return web.Response(status=status, body=payload,
                            headers={**provider_headers(api, status), "Content-Type": content_type})
    if overrides.status is not None:
        return _fail(state, entry, api, overrides.status, None)
    account = account_of(entry["headers"])
    previous = body.get("previous_response_id") if api is Api.RESPONSES else None
    continued = state.responses.get(account, previous) if isinstance(previous, str) else None
    if isinstance(previous, str) and continued is None:
        entry["status"] = 400
        entry["completed"] = True
        state.log.add(entry)
        return _json_response(400, previous_not_found_body(previous), api)
    if overrides.replay is not None:
        return await _replay(request, state, entry, api, overrides)
    try:
        planned = answer(api, body, overrides.chunks, overrides.cached_tokens,
                         context_tokens=continued.context_tokens if continued else 0)
    except InvalidRequest as exc:
        return _fail(state, entry, api, 400, exc.message, exc.param)
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
        return await _stream(request, entry, api, planned.events, overrides)
    if overrides.stall_after is not None:
        await _stall(request)
        return web.Response(status=200)  # nobody is left to read it
    if overrides.delay_ms and planned.pieces:
        await asyncio.sleep(overrides.delay_ms * planned.pieces / 1000)
    if overrides.invalid_after is not None:
        body = dumps(planned.body).encode()[:overrides.invalid_after]
        return web.Response(status=200, body=body, headers={"Content-Type": JSON_CONTENT_TYPE,
                                                            **provider_headers(api, 200)})
    entry["completed"] = True
    if overrides.content_encoding is None and overrides.content_type is None:
        return _json_response(200, planned.body, api)
    packer = Packer(overrides.content_encoding)
    body = packer.pack(dumps(planned.body).encode()) + packer.end()
    return web.Response(status=200, body=body, headers={
        "Content-Type": overrides.content_type or JSON_CONTENT_TYPE, **provider_headers(api, 200), **packer.headers})


async def _lifecycle(request: web.Request) -> web.Response:
    """GET/DELETE /v1/responses/{id}, POST .../cancel, GET .../input_items, for the account that stored it."""
    state = request.app[_STATE]
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
    return _json_response(status, payload, Api.RESPONSES)
async def _replay(request: web.Request, state: _State, entry: LoggedRequest, api: Api,
                  overrides: Overrides) -> web.StreamResponse:
    """A recorded answer (replay.py), paced and cut like the mock's own."""
    try:
        recording = load_recording(state.config.replay_dir, overrides.replay or "", entry["model"],
                                   stream=entry["stream"])
    except ReplayError as exc:
        return _fail(state, entry, api, 400, str(exc))
    entry["status"] = 200
    entry["usage"] = recording.usage
    entry["answer"] = (b"".join(recording.events) if recording.stream else recording.body).decode()
    state.log.add(entry)
    if recording.stream:
        return await _stream(request, entry, api, recording.events, overrides)
    entry["completed"] = True
    return web.Response(status=200, body=recording.body,
                        headers={"Content-Type": JSON_CONTENT_TYPE, **provider_headers(api, 200)})


def _api_handler(api: Api) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await _serve(request, api)

    return handle


async def _list_requests(request: web.Request) -> web.Response:
    entries = request.app[_STATE].log.entries()
    if "request_id" in request.query:
        # A test after thousands of requests (some with megabyte bodies) wants one: not the whole log in JSON.
        entries = [entry for entry in entries if entry["request_id"] == request.query["request_id"]]
    if request.query.get("after", "").isdigit():
        entries = entries[int(request.query["after"]):]
    return _json_response(200, entries)


async def _count_requests(request: web.Request) -> web.Response:
    return _json_response(200, {"count": len(request.app[_STATE].log)})


async def _clear_requests(request: web.Request) -> web.Response:
    return _json_response(200, {"cleared": request.app[_STATE].log.clear()})


async def _health(_: web.Request) -> web.Response:
    return _json_response(200, {"status": "ok"})


def build_app(config: MockConfig) -> web.Application:
    """The mock as an aiohttp application, with its own empty request log."""
    app = web.Application(client_max_size=_MAX_BODY_BYTES)
    app[_STATE] = _State(config=config, log=RequestLog(), responses=ResponseStore())
    for path, api in API_PATHS.items():
        app.router.add_post(path, _api_handler(api))
    app.router.add_get("/v1/responses/{response_id}", _lifecycle)
    app.router.add_delete("/v1/responses/{response_id}", _lifecycle)
    app.router.add_post("/v1/responses/{response_id}/{action:cancel}", _lifecycle)
    app.router.add_get("/v1/responses/{response_id}/{action:input_items}", _lifecycle)
    app.router.add_get("/_mock/requests", _list_requests)
    app.router.add_get("/_mock/requests/count", _count_requests)
    app.router.add_delete("/_mock/requests", _clear_requests)
    app.router.add_get("/_mock/health", _health)
    return app


@dataclass(frozen=True)
class MockServer:
    """A started mock: where it listens, its log (also at ``GET /_mock/requests``), and how to stop it."""

    runner: web.AppRunner
    host: str
    port: int

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def log(self) -> RequestLog:
        return self.runner.app[_STATE].log

    async def close(self) -> None:
        await self.runner.cleanup()


async def start(host: str, port: int, config: MockConfig) -> MockServer:
    """Start serving in the background; ``port=0`` picks a free port, reported in ``MockServer.port``."""
    runner = web.AppRunner(build_app(config))
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = int(runner.addresses[0][1])
    return MockServer(runner=runner, host=host, port=bound_port)


async def run(host: str, port: int, config: MockConfig) -> None:
    """Serve until cancelled."""
    server = await start(host, port, config)
    logger.info(
        "mock upstream listening on %s (chunks=%d, delay_ms=%d)", server.base_url, config.chunks, config.delay_ms
    )
    try:
        await asyncio.Event().wait()
    finally:
        await server.close()


async def _serve_until_terminated(host: str, port: int, config: MockConfig) -> None:
    # SIGTERM (docker stop, process managers) should close the listener cleanly, like Ctrl-C does.
    task = asyncio.current_task()
    if task is not None:
        with contextlib.suppress(NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await run(host, port, config)


def main(host: str, port: int, chunks: int = 8, delay_ms: int = 0) -> None:
    """Blocking entry point for the CLI: serve until Ctrl-C or SIGTERM."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_until_terminated(host, port, MockConfig(chunks=chunks, delay_ms=delay_ms)))
