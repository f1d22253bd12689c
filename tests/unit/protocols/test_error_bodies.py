from __future__ import annotations

import json

import pytest

from lime.protocols import errors
from lime.protocols.endpoints import Protocol
from lime.protocols.error_bodies import render_error

ALL = [errors.BadRequest, errors.UnsupportedModel, errors.AuthError, errors.PermissionDenied, errors.NotFound,
       errors.MethodNotAllowed, errors.Conflict, errors.ServiceUnavailable]
# The Anthropic status <-> type table (fixtures README, "Errors and lists").
ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                   404: "not_found_error", 413: "request_too_large", 503: "api_error"}


@pytest.mark.parametrize("cls", ALL)
def test_openai_shape(cls: type[errors.LimeError]) -> None:
    reply = render_error(cls("boom", param="model"), Protocol.OPENAI, "req-1")
    body = json.loads(reply.body)
    assert reply.status == cls.status
    assert body == {"error": {"message": "boom", "type": cls.openai_type, "param": "model", "code": cls.openai_code}}
    assert ("content-type", "application/json") in reply.headers


@pytest.mark.parametrize("cls", ALL)
def test_anthropic_shape(cls: type[errors.LimeError]) -> None:
    reply = render_error(cls("boom"), Protocol.ANTHROPIC, "req-1")
    body = json.loads(reply.body)
    assert body["type"] == "error" and body["request_id"] == "req-1"
    assert body["error"] == {"type": cls.anthropic_type, "message": "boom"}
    if cls.status in ANTHROPIC_TYPES:
        assert cls.anthropic_type == ANTHROPIC_TYPES[cls.status]


def test_code_override_and_non_ascii() -> None:
    reply = render_error(errors.AuthError("clé refusée", code="revoked_api_key"), Protocol.OPENAI)
    body = json.loads(reply.body)
    assert body["error"]["code"] == "revoked_api_key" and body["error"]["message"] == "clé refusée"
    assert errors.AuthError("x").openai_code == "invalid_api_key"  # the override is per instance
