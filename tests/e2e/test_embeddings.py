"""Embeddings through Envoy with the official openai SDK, sync and async: the client sees the public model id
and the usage, the upstream its own id, and ``x-request-id`` names the request both sides saw."""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest
from openai.types import CreateEmbeddingResponse

from tests.e2e.conftest import Gateway, TenantAccess
from tests.e2e.helpers import assert_only_public_model, body, openai_headers

# The mock's vectors have text-embedding-3-small's width.
WIDTH = 1536


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "embed"])


def assert_embeddings(result: CreateEmbeddingResponse, count: int, width: int = WIDTH) -> None:
    assert result.model == "embed"
    assert [item.index for item in result.data] == list(range(count))
    assert all(len(item.embedding) == width for item in result.data)
    assert result.usage.prompt_tokens > 0
    assert result.usage.total_tokens == result.usage.prompt_tokens


def assert_upstream_saw(gateway: Gateway, request_id: str) -> dict[str, Any]:
    seen = gateway.mock_request(request_id)
    assert seen["path"] == "/v1/embeddings"
    assert seen["model"] == "text-embedding-3-small"
    return seen


def test_create(gateway: Gateway, tenant: TenantAccess) -> None:
    raw = gateway.openai(tenant).embeddings.with_raw_response.create(model="embed", input="hello world")
    result = raw.parse()
    assert_embeddings(result, 1)
    seen = assert_upstream_saw(gateway, raw.headers["x-request-id"])
    assert seen["body"]["input"] == "hello world"
    assert seen["usage"]["prompt_tokens"] == result.usage.prompt_tokens


def test_several_inputs_and_dimensions(gateway: Gateway, tenant: TenantAccess) -> None:
    raw = gateway.openai(tenant).embeddings.with_raw_response.create(
        model="embed", input=["one", "two", "three"], dimensions=256)
    assert_embeddings(raw.parse(), 3, width=256)
    assert assert_upstream_saw(gateway, raw.headers["x-request-id"])["body"]["dimensions"] == 256


async def test_async_create(gateway: Gateway, tenant: TenantAccess) -> None:
    async with gateway.async_openai(tenant) as sdk:
        raw = await sdk.embeddings.with_raw_response.create(model="embed", input=["a", "b"])
    assert_embeddings(raw.parse(), 2)
    assert_upstream_saw(gateway, raw.headers["x-request-id"])


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_raw_body_names_only_the_public_model(gateway: Gateway, tenant: TenantAccess, encoding: str) -> None:
    status, received = gateway.http("POST", "/v1/embeddings", headers=openai_headers(tenant),
                                     body=body({"model": "embed", "input": "hello", "encoding_format": encoding}))
    assert status == 200, received
    assert_only_public_model(received, "embed")
    assert received["usage"]["prompt_tokens"] > 0
    embedding = received["data"][0]["embedding"]
    if encoding == "base64":
        assert len(struct.unpack(f"<{WIDTH}f", base64.b64decode(embedding))) == WIDTH
    else:
        assert len(embedding) == WIDTH
    assert_upstream_saw(gateway, gateway.last_headers["x-request-id"])
