"""Chat completions through Envoy with the official openai SDK: the request reaches the upstream rewritten."""

from __future__ import annotations

import itertools
import json
import subprocess
import time

import openai
import pytest

from tests.e2e.conftest import UPSTREAM_SECRET, Gateway, TenantAccess


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "embed", "claude"])


def client(gateway: Gateway, access: TenantAccess) -> openai.OpenAI:
    return gateway.openai(access)


def test_chat_completion_reaches_the_upstream_rewritten(gateway: Gateway, tenant: TenantAccess) -> None:
    raw = client(gateway, tenant).chat.completions.with_raw_response.create(
        model="chat-a", messages=[{"role": "user", "content": "Say hello"}])
    completion = raw.parse()
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    request_id = raw.headers["x-request-id"]

    seen = gateway.mock_request(request_id)
    assert seen["path"] == "/v1/chat/completions"
    assert seen["model"] == "gpt-4o-mini"  # the upstream's id, not the public `chat-a`
    assert seen["body"]["messages"] == [{"role": "user", "content": "Say hello"}]
    headers = seen["headers"]
    assert headers["authorization"] == f"Bearer {UPSTREAM_SECRET}"
    assert tenant.key not in str(headers)
    assert "x-lime-tenant-id" not in headers
    assert "x-api-key" not in headers
    assert "x-lime-upstream" not in headers
    # the rewritten body is sent with its own length (a stale one is a 500 in Envoy)
    assert int(headers["content-length"]) == len(
        json.dumps(seen["body"], ensure_ascii=False, separators=(",", ":")).encode())


def test_streamed_chat_completion(gateway: Gateway, tenant: TenantAccess) -> None:
    stream = client(gateway, tenant).chat.completions.create(
        model="chat-a", messages=[{"role": "user", "content": "Stream please"}], stream=True,
        extra_headers={"x-mock-chunks": "6"},
    )
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert len([p for p in pieces if p]) == 6
    assert "".join(pieces).strip()


async def test_async_client_streams_too(gateway: Gateway, tenant: TenantAccess) -> None:
    async_client = openai.AsyncOpenAI(base_url=gateway.base_url, api_key=tenant.key,
                                      default_headers=tenant.headers, max_retries=0)
    stream = await async_client.chat.completions.create(
        model="chat-a", messages=[{"role": "user", "content": "hi"}], stream=True)
    text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
    assert text
    await async_client.close()


def test_x_api_key_works_for_openai_endpoints_too(gateway: Gateway, tenant: TenantAccess) -> None:
    status, body = gateway.http(
        "POST", "/v1/chat/completions",
        body=b'{"model":"chat-a","messages":[{"role":"user","content":"hi"}]}',
        headers={"x-api-key": tenant.key, "x-lime-tenant-id": tenant.tenant_id,
                 "content-type": "application/json"},
    )
    assert status == 200, body
    seen = gateway.mock_request(gateway.last_headers["x-request-id"])
    assert "x-api-key" not in seen["headers"]
    assert seen["headers"]["authorization"] == f"Bearer {UPSTREAM_SECRET}"


def test_embeddings(gateway: Gateway, tenant: TenantAccess) -> None:
    result = client(gateway, tenant).embeddings.create(model="embed", input="hello world")
    assert len(result.data[0].embedding) > 0
    assert result.usage.prompt_tokens > 0


def test_stream_arrives_as_the_upstream_produces_it(gateway: Gateway, tenant: TenantAccess) -> None:
    """20 chunks 50 ms apart: a gateway that buffered would deliver the first one with the last."""
    started = time.monotonic()
    arrivals = []
    stream = client(gateway, tenant).chat.completions.create(
        model="chat-a", messages=[{"role": "user", "content": "slowly"}], stream=True,
        extra_headers={"x-mock-chunks": "20", "x-mock-delay-ms": "50"},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 20
    # Proportions, not absolute times: the first piece came in the first half of the stream's life.
    assert arrivals[0] < arrivals[-1] / 2
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert sum(1 for gap in gaps if gap > 0.02) >= 10  # most came one by one, not in a burst


def test_responses_json_and_stream(gateway: Gateway, tenant: TenantAccess) -> None:
    sdk = client(gateway, tenant)
    raw = sdk.responses.with_raw_response.create(model="chat-a", input="Say hi")
    response = raw.parse()
    assert response.output_text and response.usage is not None and response.usage.output_tokens > 0
    assert gateway.mock_request(raw.headers["x-request-id"])["model"] == "gpt-4o-mini"
    with sdk.responses.stream(model="chat-a", input="Say hi") as stream:
        text = "".join(event.delta for event in stream if event.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text and final.output_text == text


def test_upstream_errors_keep_their_status_in_limes_words(gateway: Gateway, tenant: TenantAccess) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client(gateway, tenant).chat.completions.create(
            model="chat-a", messages=[{"role": "user", "content": "x"}], extra_headers={"x-mock-status": "429"})
    assert caught.value.status_code == 429
    # Lime's message, not the provider's (tests/e2e/test_upstream_errors.py has every case)
    assert caught.value.response.json()["error"]["code"] == "upstream_rate_limited"


def test_http2_clients_stream_too(gateway: Gateway, tenant: TenantAccess) -> None:
    """h2c with prior knowledge, as gRPC-style and HTTP/2-only clients speak it."""
    result = subprocess.run(
        ["curl", "-sN", "--http2-prior-knowledge", "-w", "\n%{http_version} %{http_code}",
         f"{gateway.base_url}/chat/completions",
         "-H", f"authorization: Bearer {tenant.key}", "-H", f"x-lime-tenant-id: {tenant.tenant_id}",
         "-H", "content-type: application/json", "-H", "x-mock-chunks: 3",
         "-d", '{"model":"chat-a","stream":true,"messages":[{"role":"user","content":"hi"}]}'],
        capture_output=True, text=True, timeout=30, check=True,
    )
    body, version_and_status = result.stdout.rsplit("\n", 1)
    assert version_and_status == "2 200"
    events = [line for line in body.splitlines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and len(events) >= 4


def test_client_sees_the_public_model_id(gateway: Gateway, tenant: TenantAccess) -> None:
    sdk = client(gateway, tenant)
    completion = sdk.chat.completions.create(model="chat-a", messages=[{"role": "user", "content": "hi"}])
    assert completion.model == "chat-a"
    chunks = list(sdk.chat.completions.create(model="chat-a", messages=[{"role": "user", "content": "hi"}],
                                              stream=True))
    assert chunks and {chunk.model for chunk in chunks} == {"chat-a"}
