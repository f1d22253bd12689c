"""The mock's recorded provider errors (x-mock-error-body) are the recorded bodies of the fixtures, byte for byte in
content, with the requested model where the provider echoes it."""

from __future__ import annotations

import json

import pytest

from lime.devstack.mock_upstream.config import MockConfig, resolve_overrides
from lime.devstack.mock_upstream.errors import RECORDED_ERRORS, recorded_error
from tests.provider_fixtures import PROVIDERS

# The mock's name -> the fixture it copies (the others are documented shapes the fixtures lack).
COPIES = {
    "openai-401-invalid-api-key": "openai-error-401-invalid-api-key.json",
    "openai-400-unsupported-parameter": "openai-error-400-invalid-request.json",
    "openai-404-model-not-found": "openai-error-404-model-not-found.json",
    "openai-429-insufficient-quota": "openai-error-429-insufficient-quota.json",
    "openai-429-rate-limit-exceeded": "openai-error-429-rate-limit-exceeded.json",
    "anthropic-400-invalid-request": "anthropic-error-400-invalid-request.json",
    "anthropic-401-authentication": "anthropic-error-401-authentication.json",
    "anthropic-403-permission": "anthropic-error-403-permission.json",
    "anthropic-404-not-found": "anthropic-error-404-not-found.json",
    "anthropic-429-rate-limit": "anthropic-error-429-rate-limit.json",
    "anthropic-529-overloaded": "anthropic-error-529-overloaded.json",
}


@pytest.mark.parametrize("name", sorted(COPIES))
def test_a_recorded_error_is_its_fixture(name: str) -> None:
    fixture = PROVIDERS / COPIES[name]
    model = {"openai-404-model-not-found": "gpt-4.1-nano-wrong", "anthropic-404-not-found": "claude-sonet-4-5"}
    recorded = recorded_error(name, model.get(name))
    assert recorded is not None
    status, body, content_type = recorded
    assert status == int(COPIES[name].split("-")[2])
    assert json.loads(body) == json.loads(fixture.read_bytes())
    assert content_type == "application/json"


def test_every_recorded_error_is_named_by_its_status_and_asked_for_by_header() -> None:
    for name, recorded in RECORDED_ERRORS.items():
        assert f"-{recorded.status}-" in name
    assert recorded_error("no-such-error", None) is None
    overrides = resolve_overrides({"x-mock-error-body": "anthropic-529-overloaded"}, MockConfig())
    assert overrides.error_body == "anthropic-529-overloaded"
