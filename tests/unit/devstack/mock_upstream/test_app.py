"""The mock over real HTTP, driven by the official OpenAI and Anthropic SDKs."""

from __future__ import annotations

import base64
import itertools
import struct
import time
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from lime.devstack.mock_upstream import MockServer

from ._mock import CHUNKS, QUESTION, TEXT, get_log
from ._sse import parse_sse

# --- OpenAI --------------------------------------------------------------------------------------------


async def test_chat_completion(oai: openai.AsyncOpenAI) -> None:
    completion = await oai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": QUESTION}]
    )
    assert completion.model == "gpt-4o-mini"
    assert completion.id.startswith("chatcmpl-")
    assert completion.choices[0].message.content == TEXT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (8, CHUNKS)
    assert completion.usage.total_tokens == 8 + CHUNKS


async def test_chat_stream_with_usage(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == TEXT
    assert all(chunk.usage is None for chunk in chunks[:-1])
    final = chunks[-1]
    assert final.choices == []
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (8, CHUNKS)


async def test_chat_stream_respects_max_tokens(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": QUESTION}], stream=True, max_tokens=2
    )
    chunks = [chunk async for chunk in stream]
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "Hello from"
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_responses_create(oai: openai.AsyncOpenAI) -> None:
    response = await oai.responses.create(model="gpt-5.2", input=QUESTION, instructions="Be brief.")
    assert response.id.startswith("resp_")
    assert response.output_text == TEXT
    assert response.usage is not None
    # 30 + 9 characters of input and instructions.
    assert (response.usage.input_tokens, response.usage.output_tokens) == (10, CHUNKS)


async def test_responses_stream(oai: openai.AsyncOpenAI) -> None:
    deltas: list[str] = []
    async with oai.responses.stream(model="gpt-5.2", input=QUESTION) as stream:
        async for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = await stream.get_final_response()
    assert "".join(deltas) == TEXT == final.output_text
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens, final.usage.total_tokens) == (8, CHUNKS, 13)


async def test_embeddings_float_and_base64_agree(oai: openai.AsyncOpenAI, server: MockServer) -> None:
    as_float = await oai.embeddings.create(
        model="text-embedding-3-small", input=["hello", "world"], encoding_format="float"
    )
    # Without encoding_format the SDK asks for base64 and decodes it itself.
    as_default = await oai.embeddings.create(model="text-embedding-3-small", input=["hello", "world"])
    assert [len(item.embedding) for item in as_float.data] == [1536, 1536]
    assert as_default.data[0].embedding == pytest.approx(as_float.data[0].embedding, rel=1e-6)
    assert as_float.usage.prompt_tokens == as_float.usage.total_tokens == 3
    logged = await get_log(server)
    assert logged[1]["body"]["encoding_format"] == "base64"

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{server.base_url}/v1/embeddings",
            json={"model": "text-embedding-3-small", "input": "hi", "encoding_format": "base64", "dimensions": 4},
        ) as resp,
    ):
        body = await resp.json()
    raw = base64.b64decode(body["data"][0]["embedding"])
    assert len(struct.unpack("<4f", raw)) == 4


# --- Anthropic -----------------------------------------------------------------------------------------


async def test_messages_create(claude: anthropic.AsyncAnthropic) -> None:
    message = await claude.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": QUESTION}],
    )
    assert message.id.startswith("msg_")
    assert message.model == "claude-sonnet-4-6"
    assert message.content[0].type == "text" and message.content[0].text == TEXT
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (10, CHUNKS)


async def test_messages_stream(claude: anthropic.AsyncAnthropic) -> None:
    async with claude.messages.stream(
        model="claude-sonnet-4-6", max_tokens=100, messages=[{"role": "user", "content": QUESTION}]
    ) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == TEXT
    assert (final.usage.input_tokens, final.usage.output_tokens) == (8, CHUNKS)
    assert final.stop_reason == "end_turn"


async def test_messages_stream_stops_at_max_tokens(claude: anthropic.AsyncAnthropic) -> None:
    async with claude.messages.stream(
        model="claude-sonnet-4-6", max_tokens=3, messages=[{"role": "user", "content": QUESTION}]
    ) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 3


# --- errors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (404, openai.NotFoundError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
    ],
)
async def test_status_override_raises_the_openai_error(
    oai: openai.AsyncOpenAI, status: int, error: type[openai.APIStatusError]
) -> None:
    with pytest.raises(error) as caught:
        await oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            extra_headers={"x-mock-status": str(status)},
        )
    assert caught.value.status_code == status
    assert isinstance(caught.value.body, dict) and set(caught.value.body) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("status", "error", "error_type"),
    [
        (401, anthropic.AuthenticationError, "authentication_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
async def test_status_override_raises_the_anthropic_error(
    claude: anthropic.AsyncAnthropic, status: int, error: type[anthropic.APIStatusError], error_type: str
) -> None:
    with pytest.raises(error) as caught:
        await claude.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-mock-status": str(status)},
        )
    assert caught.value.status_code == status
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error" and body["error"]["type"] == error_type


async def test_invalid_json_is_a_provider_shaped_400(server: MockServer) -> None:
    async with aiohttp.ClientSession() as session:
        for path in ("/v1/chat/completions", "/v1/messages"):
            async with session.post(
                f"{server.base_url}{path}", data=b"{not json", headers={"Content-Type": "application/json"}
            ) as resp:
                assert resp.status == 400
                assert resp.headers["Content-Type"] == "application/json"
                body = await resp.json()
            if path == "/v1/messages":
                assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
            else:
                assert body["error"]["type"] == "invalid_request_error" and body["error"]["code"] is None
        async with session.post(
            f"{server.base_url}/v1/chat/completions", json={"model": "m"}, headers={"x-mock-chunks": "lots"}
        ) as resp:
            assert resp.status == 400
    assert [entry["status"] for entry in await get_log(server)] == [400, 400, 400]


# --- pacing --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v1/chat/completions",
            {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        ),
        (
            "/v1/messages",
            {"model": "m", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}], "stream": True},
        ),
    ],
)
async def test_stream_events_arrive_spread_over_time(server: MockServer, path: str, body: dict[str, Any]) -> None:
    delay_ms = 100
    arrivals: list[float] = []
    raw = b""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{server.base_url}{path}", json=body, headers={"x-mock-delay-ms": str(delay_ms), "x-mock-chunks": "3"}
        ) as resp,
    ):
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        started = time.monotonic()
        async for chunk in resp.content.iter_any():
            raw += chunk
            # One timestamp per complete event received so far.
            arrivals += [time.monotonic() - started] * (raw.count(b"\n\n") - len(arrivals))
    events = parse_sse(raw)
    assert len(arrivals) == len(events) >= 5
    # Each event arrived on its own, in order, rather than all at once at the end.
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert sum(gap > delay_ms / 2000 for gap in gaps) >= len(gaps) // 2
    assert arrivals[0] < arrivals[-1] / 2
    nominal = delay_ms * (len(events) - 1) / 1000
    assert nominal / 2 <= arrivals[-1] < nominal + 10


async def test_non_streamed_answers_wait_one_delay_per_piece(server: MockServer) -> None:
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{server.base_url}/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-mock-delay-ms": "50", "x-mock-chunks": "4"},
        ) as resp,
    ):
        assert resp.status == 200
        body = await resp.json()
    assert body["usage"]["completion_tokens"] == 4
    assert 0.1 <= time.monotonic() - started < 10


async def test_cached_tokens_are_reported_in_each_protocols_own_way(
        oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic) -> None:
    prompt = "cache me " * 50
    cached = {"x-mock-cached-tokens": "40"}
    chat = await oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": prompt}],
                                             extra_headers=cached)
    assert chat.usage is not None and chat.usage.prompt_tokens_details is not None
    assert chat.usage.prompt_tokens_details.cached_tokens == 40  # part of prompt_tokens
    message = await claude.messages.create(model="claude-mock", max_tokens=5, extra_headers=cached,
                                           messages=[{"role": "user", "content": prompt}])
    assert message.usage.cache_read_input_tokens == 40
    assert message.usage.input_tokens == chat.usage.prompt_tokens - 40  # Anthropic leaves them out
    huge = await oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                             extra_headers={"x-mock-cached-tokens": "1000"})
    assert huge.usage is not None and huge.usage.prompt_tokens_details is not None
    assert huge.usage.prompt_tokens_details.cached_tokens == huge.usage.prompt_tokens  # never more than the prompt
