"""``x-mock-invalid-body``: an upstream that answers 200 with a body its protocol cannot read."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from lime.devstack.mock_upstream import MockConfig, MockServer
from lime.devstack.mock_upstream.config import INVALID_HEADER, resolve_overrides

from ._sse import parse_sse

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


async def post(server: MockServer, path: str, body: dict[str, Any], after: str) -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession() as session, session.post(
            f"{server.base_url}{path}", json=body, headers={INVALID_HEADER: after}) as resp:
        return resp.status, resp.headers["Content-Type"], await resp.read()


def logged(server: MockServer) -> list[dict[str, Any]]:
    return [dict(entry) for entry in server.log.entries()]


async def test_a_json_answer_is_cut_after_that_many_bytes(server: MockServer) -> None:
    status, content_type, body = await post(server, "/v1/chat/completions", CHAT, "40")
    assert (status, content_type, len(body)) == (200, "application/json", 40)
    with pytest.raises(ValueError):
        json.loads(body)
    status, _, empty = await post(server, "/v1/messages", {**CHAT, "max_tokens": 10}, "0")
    assert (status, empty) == (200, b"")
    assert [entry["completed"] for entry in logged(server)] == [False, False]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
async def test_a_stream_ends_cleanly_with_an_event_that_is_not_json(server: MockServer, path: str) -> None:
    status, content_type, raw = await post(server, path, {**CHAT, "max_tokens": 10, "stream": True}, "3")
    assert status == 200 and content_type.startswith("text/event-stream")
    events = parse_sse(raw)
    assert len(events) == 4
    for event in events[:3]:
        json.loads(event.data)
    with pytest.raises(ValueError):
        json.loads(events[3].data)
    [entry] = logged(server)
    assert entry["completed"] is False


async def test_a_stream_shorter_than_the_count_is_whole(server: MockServer) -> None:
    _, _, raw = await post(server, "/v1/chat/completions", {**CHAT, "stream": True}, "1000")
    assert parse_sse(raw)[-1].data == "[DONE]"
    assert [entry["completed"] for entry in logged(server)] == [True]


def test_the_header_is_a_bounded_integer() -> None:
    assert resolve_overrides({INVALID_HEADER: "7"}, MockConfig()).invalid_after == 7
    assert resolve_overrides({}, MockConfig()).invalid_after is None
    with pytest.raises(ValueError):
        resolve_overrides({INVALID_HEADER: "-1"}, MockConfig())
