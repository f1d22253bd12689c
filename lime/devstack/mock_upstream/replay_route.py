"""Answering with a recorded provider body or stream (``x-mock-replay: <file>``, replay.py), paced and cut like the
mock's own answers."""

from __future__ import annotations

from aiohttp import web

from lime.devstack.mock_upstream.answers import Api
from lime.devstack.mock_upstream.config import Overrides
from lime.devstack.mock_upstream.log import LoggedRequest
from lime.devstack.mock_upstream.replay import ReplayError, load_recording
from lime.devstack.mock_upstream.state import MockState
from lime.devstack.mock_upstream.streaming import stream
from lime.devstack.mock_upstream.wire import JSON_CONTENT_TYPE, fail, provider_headers

__all__ = ["replay"]


async def replay(request: web.Request, state: MockState, entry: LoggedRequest, api: Api,
                 overrides: Overrides) -> web.StreamResponse:
    """A recorded answer (replay.py), paced and cut like the mock's own."""
    try:
        recording = load_recording(state.config.replay_dir, overrides.replay or "", entry["model"],
                                   stream=entry["stream"])
    except ReplayError as exc:
        return fail(state, entry, api, 400, str(exc))
    entry["status"] = 200
    entry["usage"] = recording.usage
    entry["answer"] = (b"".join(recording.events) if recording.stream else recording.body).decode()
    state.log.add(entry)
    if recording.stream:
        return await stream(request, entry, api, recording.events, overrides)
    entry["completed"] = True
    return web.Response(status=200, body=recording.body,
                        headers={"Content-Type": JSON_CONTENT_TYPE, **provider_headers(api, 200)})
