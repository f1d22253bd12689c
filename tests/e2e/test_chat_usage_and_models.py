"""What test_chat_openai.py and test_models.py leave out: streamed chat usage (``include_usage``), the async
client without streaming, raw chat bodies naming only the public model, and the model directory through the
async client."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from tests.e2e.conftest import Gateway, TenantAccess
from tests.e2e.helpers import UPSTREAM_MODEL, assert_only_public_model, body, openai_headers, sse_json

MESSAGES: Any = [{"role": "user", "content": "Say hello"}]
WITH_USAGE: Any = {"include_usage": True}


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "chat-b", "embed"])


def assert_chunks(chunks: Sequence[ChatCompletionChunk]) -> None:
    assert chunks and {chunk.model for chunk in chunks} == {"chat-a"}
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text
    usage = chunks[-1].usage
    assert not chunks[-1].choices and usage is not None
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def assert_upstream_saw(gateway: Gateway, request_id: str, *, stream: bool) -> dict[str, Any]:
    seen = gateway.mock_request(request_id)
    assert seen["path"] == "/v1/chat/completions"
    assert seen["model"] == "gpt-4o-mini"
    assert seen["stream"] is stream
    return seen


def test_streamed_chat_reports_usage(gateway: Gateway, tenant: TenantAccess) -> None:
    raw = gateway.openai(tenant).chat.completions.with_raw_response.create(
        model="chat-a", messages=MESSAGES, stream=True, stream_options=WITH_USAGE)
    chunks = list(raw.parse())
    assert_chunks(chunks)
    seen = assert_upstream_saw(gateway, raw.headers["x-request-id"], stream=True)
    assert seen["usage"]["completion_tokens"] == chunks[-1].usage.completion_tokens  # type: ignore[union-attr]


async def test_async_chat(gateway: Gateway, tenant: TenantAccess) -> None:
    async with gateway.async_openai(tenant) as sdk:
        raw = await sdk.chat.completions.with_raw_response.create(model="chat-a", messages=MESSAGES)
    completion = raw.parse()
    assert completion.model == "chat-a"
    assert completion.choices[0].message.content
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    assert_upstream_saw(gateway, raw.headers["x-request-id"], stream=False)


async def test_async_chat_streamed_with_usage(gateway: Gateway, tenant: TenantAccess) -> None:
    async with gateway.async_openai(tenant) as sdk:
        raw = await sdk.chat.completions.with_raw_response.create(
            model="chat-a", messages=MESSAGES, stream=True, stream_options=WITH_USAGE)
        chunks = [chunk async for chunk in raw.parse()]
    assert_chunks(chunks)
    assert_upstream_saw(gateway, raw.headers["x-request-id"], stream=True)


@pytest.mark.parametrize("stream", [False, True])
def test_raw_bodies_name_only_the_public_model(gateway: Gateway, tenant: TenantAccess, stream: bool) -> None:
    payload: dict[str, Any] = {"model": "chat-a", "messages": MESSAGES, "stream": stream}
    if stream:
        payload["stream_options"] = WITH_USAGE
    status, received = gateway.http("POST", "/v1/chat/completions", headers=openai_headers(tenant),
                                     body=body(payload))
    assert status == 200, received
    assert_only_public_model(received, "chat-a")
    usage = sse_json(received)[-1]["usage"] if stream else received["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert_upstream_saw(gateway, gateway.last_headers["x-request-id"], stream=stream)


async def test_async_models_list_and_retrieve(gateway: Gateway, tenant: TenantAccess) -> None:
    async with gateway.async_openai(tenant) as sdk:
        listed = [model.id async for model in sdk.models.list()]
        assert listed == ["chat-a", "chat-b", "embed"]
        assert (await sdk.models.retrieve("embed")).id == "embed"
        with pytest.raises(openai.NotFoundError):
            await sdk.models.retrieve("claude")


def test_model_directory_never_names_upstream_ids(gateway: Gateway, tenant: TenantAccess) -> None:
    status, received = gateway.http("GET", "/v1/models", headers=openai_headers(tenant))
    assert status == 200, received
    assert gateway.last_headers["x-request-id"]
    for upstream_id in UPSTREAM_MODEL.values():
        assert upstream_id not in str(received)
    status, received = gateway.http("GET", "/v1/models/chat-b", headers=openai_headers(tenant))
    assert status == 200 and received["id"] == "chat-b"
    assert "gpt-4.1" not in str(received)
