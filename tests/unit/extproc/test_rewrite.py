from __future__ import annotations

import json

import pytest

from extproc.rewrite import rewrite_request
from lime.errors import BadRequest, ServiceUnavailable
from lime.grant import Grant

CHAT = Grant("req-1", "t", "k", "chat_completions", "chat", "mock", "gpt-4o-mini", False)
MESSAGES = Grant("req-2", "t", "k", "messages", "claude", "anth", "claude-x", True)
CREDENTIALS = {"mock": "sk-up", "anth": "ak-up"}


def test_openai_request_gets_bearer_credential_and_upstream_model() -> None:
    edit = rewrite_request(CHAT, b'{"model": "chat", "messages": [{"role": "user", "content": "h\\u00e9"}]}',
                           CREDENTIALS)
    assert json.loads(edit.body) == {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hé"}]}
    assert edit.set_headers == {"authorization": "Bearer sk-up", "x-lime-upstream": "mock"}
    assert set(edit.remove_headers) == {"x-api-key", "x-lime-tenant-id"}


def test_anthropic_request_gets_x_api_key_and_loses_bearer() -> None:
    edit = rewrite_request(MESSAGES, b'{"model": "claude", "max_tokens": 5, "messages": []}', CREDENTIALS)
    assert json.loads(edit.body)["model"] == "claude-x"
    assert edit.set_headers == {"x-api-key": "ak-up", "x-lime-upstream": "anth"}
    assert set(edit.remove_headers) == {"authorization", "x-lime-tenant-id"}


def test_the_rest_of_the_body_is_kept() -> None:
    body = {"model": "chat", "temperature": 0.2, "tools": [{"type": "function"}], "n": None}
    edit = rewrite_request(CHAT, json.dumps(body).encode(), CREDENTIALS)
    assert json.loads(edit.body) == {**body, "model": "gpt-4o-mini"}


def test_missing_credential_fails_closed() -> None:
    with pytest.raises(ServiceUnavailable):
        rewrite_request(CHAT, b'{"model": "chat"}', {})


@pytest.mark.parametrize("body", [b"nope", b"[1]"])
def test_bad_body(body: bytes) -> None:
    with pytest.raises(BadRequest):
        rewrite_request(CHAT, body, CREDENTIALS)
