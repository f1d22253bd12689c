"""What Lime does not serve is answered in the client's protocol, naming the endpoint and the coverage matrix
(docs/protocols.md), so the official SDKs raise their ``NotFoundError`` with a message a user can act on; and
it is answered before the key is read (what Lime serves is public), never forwarded, never charged."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import anthropic
import openai
import pytest

from tests.e2e.conftest import Gateway, TenantAccess

MATRIX = "see docs/protocols.md for what it serves."

OPENAI_CALLS: dict[str, tuple[str, Callable[[openai.OpenAI], Any]]] = {
    "images": ("POST /v1/images/generations", lambda c: c.images.generate(model="chat-a", prompt="a lime")),
    "speech": ("POST /v1/audio/speech", lambda c: c.audio.speech.create(model="chat-a", voice="alloy", input="hi")),
    "transcriptions": ("POST /v1/audio/transcriptions", lambda c: c.audio.transcriptions.create(
        model="chat-a", file=("a.wav", io.BytesIO(b"RIFF0000WAVE"), "audio/wav"))),
    "moderations": ("POST /v1/moderations", lambda c: c.moderations.create(input="hi")),
    "files": ("GET /v1/files", lambda c: c.files.list()),
    "batches": ("POST /v1/batches", lambda c: c.batches.create(
        completion_window="24h", endpoint="/v1/chat/completions", input_file_id="file-abc")),
    "fine_tuning": ("GET /v1/fine_tuning/jobs", lambda c: c.fine_tuning.jobs.list()),
    "vector_stores": ("POST /v1/vector_stores", lambda c: c.vector_stores.create(name="docs")),
    "conversations": ("POST /v1/conversations", lambda c: c.conversations.create()),
}


@pytest.fixture(scope="module")
def tenant(gateway: Gateway) -> TenantAccess:
    return gateway.new_tenant(["chat-a", "claude"], points=1_000_000)


@pytest.mark.parametrize("family", sorted(OPENAI_CALLS))
def test_the_openai_sdk_is_told_what_is_not_served(gateway: Gateway, tenant: TenantAccess, family: str) -> None:
    request_line, call = OPENAI_CALLS[family]
    before = gateway.mock_request_count()
    with pytest.raises(openai.NotFoundError) as caught:
        call(gateway.openai(tenant))
    assert caught.value.response.json()["error"]["message"] == f"Lime does not serve {request_line}; {MATRIX}"
    assert caught.value.code == "unknown_url"
    assert gateway.mock_request_count() == before


ANTHROPIC_CALLS: dict[str, tuple[str, Callable[[anthropic.Anthropic], Any]]] = {
    "message_batches": ("POST /v1/messages/batches", lambda c: c.messages.batches.create(requests=[{
        "custom_id": "one", "params": {"model": "claude", "max_tokens": 8,
                                       "messages": [{"role": "user", "content": "hi"}]}}])),
    "files": ("GET /v1/files", lambda c: c.beta.files.list()),
    "skills": ("GET /v1/skills", lambda c: c.beta.skills.list()),
}


@pytest.mark.parametrize("family", sorted(ANTHROPIC_CALLS))
def test_the_anthropic_sdk_is_told_in_its_own_shape(gateway: Gateway, tenant: TenantAccess, family: str) -> None:
    request_line, call = ANTHROPIC_CALLS[family]
    with pytest.raises(anthropic.NotFoundError) as caught:
        call(gateway.anthropic(tenant))
    body = caught.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
    assert body["error"]["message"] == f"Lime does not serve {request_line}; {MATRIX}"
    assert body["request_id"] == caught.value.response.headers["x-request-id"]


def test_it_is_answered_before_the_key_is_read(gateway: Gateway) -> None:
    stranger = openai.OpenAI(base_url=gateway.base_url, api_key="lime-sk-nobody", max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        stranger.images.generate(model="chat-a", prompt="a lime")
    assert caught.value.message.endswith(f"Lime does not serve POST /v1/images/generations; {MATRIX}")
