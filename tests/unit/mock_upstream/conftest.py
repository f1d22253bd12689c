"""The mock upstream the tests here talk to: a free port, five chunks per stream (`CHUNKS` in test_app), no delay."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from lime.mock_upstream import MockConfig, MockServer, start


@pytest.fixture
async def server() -> AsyncIterator[MockServer]:
    mock = await start("127.0.0.1", 0, MockConfig(chunks=5, delay_ms=0))
    try:
        yield mock
    finally:
        await mock.close()
