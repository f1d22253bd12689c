"""The mock's request log, read back over HTTP: what each request was, how it ended, filtered and counted."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from lime.devstack.mock_upstream import MockServer

from ._mock import CHUNKS, QUESTION, get_log


async def test_log_records_model_headers_and_usage(
    oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic, server: MockServer
) -> None:
    await oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": QUESTION}],
        extra_headers={"X-Request-Id": "req-abc", "X-Lime-Test": "yes"},
    )
    stream = await oai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    async for _ in stream:
        pass
    async with claude.messages.stream(
        model="claude-haiku-4-5", max_tokens=50, messages=[{"role": "user", "content": QUESTION}]
    ) as anthropic_stream:
        await anthropic_stream.get_final_message()

    chat, chat_stream, messages = await get_log(server)
    assert chat["path"] == "/v1/chat/completions" and chat["method"] == "POST"
    assert chat["model"] == "gpt-4o-mini" and chat["stream"] is False
    assert chat["request_id"] == "req-abc"
    assert chat["headers"]["x-lime-test"] == "yes"
    assert chat["headers"]["authorization"] == "Bearer sk-test"
    assert all(name == name.lower() for name in chat["headers"])
    assert chat["body"]["messages"][0]["content"] == QUESTION
    assert chat["status"] == 200 and chat["completed"] is True
    assert chat["usage"]["prompt_tokens"] == 8 and chat["usage"]["completion_tokens"] == CHUNKS

    # A chat stream without include_usage reports no usage, so none is logged.
    assert chat_stream["stream"] is True and chat_stream["usage"] is None and chat_stream["request_id"] is None

    assert messages["path"] == "/v1/messages" and messages["model"] == "claude-haiku-4-5"
    assert "anthropic-version" in messages["headers"]
    # This SDK version sends the key as a bearer token; older ones used x-api-key.
    sent_keys = {messages["headers"].get("x-api-key"), messages["headers"].get("authorization")}
    assert sent_keys & {"sk-ant-test", "Bearer sk-ant-test"}
    assert messages["usage"]["input_tokens"] == 8 and messages["usage"]["output_tokens"] == CHUNKS

    async with aiohttp.ClientSession() as session:
        async with session.delete(f"{server.base_url}/_mock/requests") as resp:
            assert resp.status == 200 and (await resp.json()) == {"cleared": 3}
        async with session.get(f"{server.base_url}/_mock/health") as resp:
            assert resp.status == 200
    assert await get_log(server) == []


async def test_the_log_is_read_by_request_id_and_counted(oai: openai.AsyncOpenAI, server: MockServer) -> None:
    for request_id, content in (("req-1", "first"), ("req-2", "second"), (None, "third"), ("req-1", "fourth")):
        headers = {"X-Request-Id": request_id} if request_id else {}
        await oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": content}],
                                          extra_headers=headers)
    everything = await get_log(server)
    assert [entry["request_id"] for entry in everything] == ["req-1", "req-2", None, "req-1"]
    async with aiohttp.ClientSession() as session:
        async def read(path: str) -> Any:
            async with session.get(f"{server.base_url}{path}") as resp:
                assert resp.status == 200
                return await resp.json()

        assert await read("/_mock/requests?request_id=req-1") == [everything[0], everything[3]]
        assert await read("/_mock/requests?request_id=req-2") == [everything[1]]
        assert await read("/_mock/requests?request_id=nobody") == []
        assert await read("/_mock/requests/count") == {"count": 4}


async def test_error_override_is_logged_without_usage(oai: openai.AsyncOpenAI, server: MockServer) -> None:
    with pytest.raises(openai.RateLimitError):
        await oai.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-mock-status": "429"}
        )
    [entry] = await get_log(server)
    assert (entry["status"], entry["usage"], entry["model"]) == (429, None, "gpt-4o-mini")


async def test_abandoned_stream_is_logged_incomplete(server: MockServer) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{server.base_url}/v1/messages",
            json={"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}], "stream": True},
            headers={"x-mock-delay-ms": "50", "x-mock-chunks": "50"},
        ) as resp,
    ):
        await resp.content.readuntil(b"\n\n")
    await asyncio.sleep(0.2)
    [entry] = await get_log(server)
    assert entry["status"] == 200 and entry["completed"] is False
    assert math.isfinite(entry["usage"]["output_tokens"])
