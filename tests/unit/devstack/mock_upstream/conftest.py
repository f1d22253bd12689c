"""The mock upstream the tests here talk to: a free port, five chunks per stream (`CHUNKS` in _mock.py), no delay;
and the official SDKs pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anthropic
import openai
import pytest

from lime.devstack.mock_upstream import MockConfig, MockServer, start


@pytest.fixture
async def server() -> AsyncIterator[MockServer]:
    mock = await start("127.0.0.1", 0, MockConfig(chunks=5, delay_ms=0))
    try:
        yield mock
    finally:
        await mock.close()


@pytest.fixture
def oai(server: MockServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key="sk-test", max_retries=0)


@pytest.fixture
def claude(server: MockServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=server.base_url, api_key="sk-ant-test", max_retries=0)
