"""``x-mock-stall-after``: an upstream that goes silent with the connection open."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from lime.devstack.mock_upstream import MockConfig, MockServer
from lime.devstack.mock_upstream.config import STALL_HEADER, resolve_overrides

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
#: Long enough for an event the mock would have sent at once to have arrived.
QUIET_SECONDS = 0.5


async def test_a_stream_sends_that_many_events_then_nothing(server: MockServer) -> None:
    async with aiohttp.ClientSession() as session, session.post(
            f"{server.base_url}/v1/chat/completions", json={**CHAT, "stream": True},
            headers={STALL_HEADER: "2"}) as resp:
        assert resp.status == 200
        events = [await resp.content.readuntil(b"\n\n") for _ in range(2)]
        assert all(json.loads(event.removeprefix(b"data: ")) for event in events)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(resp.content.readuntil(b"\n\n"), QUIET_SECONDS)
    [entry] = server.log.entries()
    assert entry["completed"] is False


async def test_a_json_answer_never_starts(server: MockServer) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(session.post(f"{server.base_url}/v1/chat/completions", json=CHAT,
                                                headers={STALL_HEADER: "0"}), QUIET_SECONDS)


def test_the_header_is_a_bounded_integer() -> None:
    assert resolve_overrides({STALL_HEADER: "3"}, MockConfig()).stall_after == 3
    with pytest.raises(ValueError):
        resolve_overrides({STALL_HEADER: "soon"}, MockConfig())
