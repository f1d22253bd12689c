"""x-mock-replay: the mock answers with a vendored recording, byte for byte but for the model it names, which is the
request's; streams arrive event by event; a name that is no recording, or a stream flag that does not fit, is a 400.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from lime.devstack.mock_upstream import MockConfig, MockServer, start
from tests.provider_fixtures import PROVIDERS


@pytest.fixture
async def replaying() -> AsyncIterator[MockServer]:
    mock = await start("127.0.0.1", 0, MockConfig(chunks=5, replay_dir=PROVIDERS))
    try:
        yield mock
    finally:
        await mock.close()


async def _post(server: MockServer, path: str, body: dict[str, object], replay: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.post(
            server.base_url + path, json=body, headers={"x-mock-replay": replay}) as response:
        return response.status, await response.read()


async def test_a_json_recording_is_replayed_with_only_the_model_changed(replaying: MockServer) -> None:
    name = "anthropic-messages-cache-1h.json"
    status, body = await _post(replaying, "/v1/messages", {"model": "my-claude", "max_tokens": 5}, name)
    recorded = (PROVIDERS / name).read_bytes()
    assert status == 200
    original = json.loads(recorded)["model"]
    assert body == recorded.replace(f'"{original}"'.encode(), b'"my-claude"')
    assert replaying.log.entries()[-1]["usage"] == json.loads(recorded)["usage"]


async def test_a_stream_is_replayed_event_by_event(replaying: MockServer) -> None:
    name = "openai-responses-stream-web-search.sse"
    status, body = await _post(replaying, "/v1/responses", {"model": "gpt-x", "input": "hi", "stream": True}, name)
    assert status == 200
    recorded = (PROVIDERS / name).read_bytes()
    assert body.count(b'"model":"gpt-x"') == recorded.count(b'"model":"gpt-4.1-2025-04-14"') > 0
    assert len(body) == len(recorded) + body.count(b'"model":"gpt-x"') * (len("gpt-x") - len("gpt-4.1-2025-04-14")) \
        + (0 if recorded.endswith(b"\n\n") else 2)
    usage = replaying.log.entries()[-1]["usage"]
    assert usage is not None and usage["input_tokens"] == 17508  # response.completed's, the final one


@pytest.mark.parametrize(("replay", "stream"), [
    ("no-such-recording.json", False),
    ("../README.md", False),
    ("openai-chat-stream.sse", False),  # a stream for a JSON request
    ("openai-chat-service-tier-priority.json", True),
])
async def test_what_cannot_be_replayed_is_a_400(replaying: MockServer, replay: str, stream: bool) -> None:
    status, body = await _post(replaying, "/v1/chat/completions", {"model": "m", "stream": stream}, replay)
    assert status == 400 and b"x-mock-replay" in body
