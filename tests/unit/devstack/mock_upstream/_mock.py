"""What the mock tests share: the test server's pacing (conftest.py), the question, and its request log."""

from __future__ import annotations

from typing import Any

import aiohttp

from lime.devstack.mock_upstream import MockServer

CHUNKS = 5
TEXT = "Hello from the mock upstream."
QUESTION = "What is the capital of Mexico?"  # 30 characters: 8 tokens


async def get_log(server: MockServer) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(f"{server.base_url}/_mock/requests") as resp:
        assert resp.status == 200
        entries: list[dict[str, Any]] = await resp.json()
        return entries
